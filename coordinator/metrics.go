package coordinator

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/metricsserver"
)

// Anomaly monitoring, in detail: the heuristics (norm, cosine, excluded
// on the updates of a plain round; drift on the data statistics every
// participant reports, in plain and secure rounds alike) are package
// anomaly's, which the simulator runs too; see its documentation for what
// each flags and the measurements behind the defaults. The coordinator
// runs anomaly.Check when a plain round closes and records each flag as
// an audit.AnomalyFlagged event with the attempt, and anomaly.DriftOf when
// a ReportValidation carrying the participant's training-row aggregates
// arrives, against the participant's reference: the robust scaling of the
// other hospitals' aggregates at the start (anomaly.References), so that
// its own rows, which the federation's scaling includes, do not hide a
// drift present from the start; a hospital that did not report
// aggregates then, and every hospital after a restart (the references are
// kept in memory only, as the aggregates are), is checked against the
// federation's scaling. A report without aggregates (or before the
// scaling is fixed) is not checked. Comparing each hospital
// with its own first report instead would never flag a skewed but stable
// hospital, but the agent reports the aggregates of the training rows it
// loaded when the session began, which change only when it restarts; and
// data that was shifted from the start would never be flagged. So the
// reference is the federation's, less the hospital.

// Anomaly kinds: the values of audit.AnomalyFlagged.Kind and of the kind
// label of fedguard_anomaly_flags_total.
const (
	AnomalyNorm     = anomaly.Norm
	AnomalyCosine   = anomaly.Cosine
	AnomalyExcluded = anomaly.Excluded
	AnomalyDrift    = anomaly.Drift
)

// Defaults of AnomalyConfig (see package anomaly).
const (
	DefaultNormMADs    = anomaly.DefaultNormMADs
	DefaultNormRatio   = anomaly.DefaultNormRatio
	DefaultCosineFloor = anomaly.DefaultCosineFloor
	DefaultDriftShift  = anomaly.DefaultDriftShift
)

// Round failure classes: the reason label of fedguard_rounds_failed_total.
const (
	failQuorum      = "quorum"         // too few updates (or secure inputs) before the deadline
	failAggregation = "aggregation"    // the rule could not aggregate the updates
	failSecure      = "secure_session" // every secure session failed
	failAudit       = "audit"          // the audit log could not record the outcome
)

// failure is why a round attempt failed: a class for the metric, the
// reason for the log and the audit record. The zero value means no failure.
type failure struct{ class, reason string }

var (
	failClasses  = []string{failQuorum, failAggregation, failSecure, failAudit}
	anomalyKinds = []string{AnomalyNorm, AnomalyCosine, AnomalyExcluded, AnomalyDrift}
	certReasons  = []string{
		certs.ReasonUnknownAuthority, certs.ReasonExpired, certs.ReasonNotYetValid, certs.ReasonRevoked,
		certs.ReasonWrongRole, certs.ReasonNotEnrolled, certs.ReasonBadIdentity, certs.ReasonNoCertificate, certs.ReasonOther,
		ReasonTooManyConnections, ReasonTooManyCalls,
	}
	// refusedCodes are the codes a refused update is pre-counted under;
	// any other valid code appears on first use.
	refusedCodes = []codes.Code{codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated}
	// auditKinds are the kinds the coordinator appends, and quotaKinds
	// those a client's calls cause, under its quota: both from the table
	// of event kinds.
	auditKinds = audit.KindNames(func(k audit.KindSpec) bool { return k.Writers&audit.WriterCoordinator != 0 })
	quotaKinds = audit.KindNames(func(k audit.KindSpec) bool { return k.Quota })
)

// metrics are one coordinator's Prometheus collectors.
type metrics struct {
	reg *prometheus.Registry

	roundsClosed       prometheus.Counter
	roundsFailed       *prometheus.CounterVec
	roundDuration      prometheus.Histogram
	cohortSize         prometheus.Gauge
	dropouts           prometheus.Counter
	updatesAccepted    prometheus.Counter
	updatesRefused     *prometheus.CounterVec
	connectionsRefused *prometheus.CounterVec
	updateNorm         prometheus.Histogram
	excluded           prometheus.Counter
	anomalyFlags       *prometheus.CounterVec
	auditEvents        *prometheus.CounterVec
	auditAppend        prometheus.Histogram
	securePhase        *prometheus.HistogramVec
	secureFailed       prometheus.Counter
	round              prometheus.Gauge
	phase              *prometheus.GaugeVec
	lastClosed         prometheus.Gauge
	failedAttempts     prometheus.Gauge
	wedged             prometheus.Gauge
	eventsSuppressed   *prometheus.CounterVec
	diskFree           prometheus.Gauge
	diskMinFree        prometheus.Gauge
	diskPaused         prometheus.Gauge
	privacy            privacyMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		roundsClosed: newCounter("fedguard_rounds_closed_total",
			"Rounds closed with a new global model."),
		roundsFailed: newCounterVec("fedguard_rounds_failed_total",
			"Round attempts that failed and were retried, by reason class (quorum, aggregation, secure_session, audit).", "reason"),
		roundDuration: newHistogram("fedguard_round_duration_seconds",
			"Time from a round's opening to its close, for closed rounds.",
			prometheus.ExponentialBuckets(0.1, 2.5, 12)), // 0.1s to about 6h
		cohortSize: newGauge("fedguard_cohort_size",
			"Participants in the cohort of the last round opened."),
		dropouts: newCounter("fedguard_dropouts_total",
			"Cohort members that sent no update (or left their secure session) before their round ended."),
		updatesAccepted: newCounter("fedguard_updates_accepted_total",
			"Plain updates accepted into a round."),
		updatesRefused: newCounterVec("fedguard_updates_refused_total",
			"Updates refused, by gRPC status code.", "code"),
		connectionsRefused: newCounterVec("fedguard_connections_refused_total",
			"TLS handshakes refused, and calls refused by the per-call revocation and enrolment check, by reason.", "reason"),
		updateNorm: newHistogram("fedguard_update_norm",
			"L2 norms of accepted plain updates.",
			prometheus.ExponentialBuckets(0.001, 4, 13)), // 0.001 to about 16800
		excluded: newCounter("fedguard_participants_excluded_total",
			"Participants whose update (or secure bucket) the aggregation rule left out of a closed round."),
		anomalyFlags: newCounterVec("fedguard_anomaly_flags_total",
			"Anomaly flags raised on plain updates (norm, cosine, excluded) and on participants' data statistics (drift), by kind.", "kind"),
		auditEvents: newCounterVec("fedguard_audit_events_total",
			"Events appended to the audit log, by kind.", "kind"),
		auditAppend: newHistogram("fedguard_audit_append_seconds",
			"Latency of one audit log append (a batch of events made durable).",
			prometheus.ExponentialBuckets(0.0005, 2, 14)), // 0.5ms to about 4s
		securePhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedguard_secure_phase_duration_seconds", Help: "Duration of each phase of a secure-aggregation session, by phase.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10), // 10ms to about 200s
		}, []string{"phase"}),
		secureFailed: newCounter("fedguard_secure_sessions_failed_total",
			"Secure-aggregation sessions (one per bucket) that failed."),
		round: newGauge("fedguard_round",
			"The round being trained, or the last closed round when none is open."),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fedguard_phase", Help: "1 for the coordinator's current phase (stats, cohort, training, finished), 0 for the others.",
		}, []string{"phase"}),
		lastClosed: newGauge("fedguard_last_round_closed_timestamp_seconds",
			"Unix time the last round closed in this process (0 before the first)."),
		failedAttempts: newGauge("fedguard_round_failed_attempts",
			"Attempts of the next round that failed in a row (0 once it closes); the next one opens after an exponential backoff."),
		wedged: newGauge("fedguard_round_wedged",
			"1 while the next round cannot open: too few participants are left that have not declined it as already revealed, or its last attempts failed identically (see the status page)."),
		eventsSuppressed: newCounterVec("fedguard_audit_events_suppressed_total",
			"Events beyond an identity's per-minute quota (or while paused), counted in events_suppressed instead of written one by one, by kind.", "kind"),
		diskFree: newGauge("fedguard_disk_free_bytes",
			"Free space on the data directory's file system, as last checked."),
		diskMinFree: newGauge("fedguard_disk_min_free_bytes",
			"The free space below which the coordinator pauses (min_free_bytes)."),
		diskPaused: newGauge("fedguard_disk_paused",
			"1 while the coordinator is paused because its disk is nearly full, else 0."),
		privacy: newPrivacyMetrics(),
	}
	m.reg.MustRegister(m.roundsClosed, m.roundsFailed, m.roundDuration, m.cohortSize, m.dropouts,
		m.updatesAccepted, m.updatesRefused, m.connectionsRefused, m.updateNorm, m.excluded, m.anomalyFlags,
		m.auditEvents, m.auditAppend, m.securePhase, m.secureFailed, m.round, m.phase, m.lastClosed,
		m.failedAttempts, m.wedged,
		m.eventsSuppressed, m.diskFree, m.diskMinFree, m.diskPaused,
		m.privacy.spent, m.privacy.budget, m.privacy.exhausted, m.privacy.hospitalSpent, m.privacy.hospitalRemaining, m.privacy.hospitals,
		m.privacy.distributedSpent, m.privacy.distributedRemaining, m.privacy.distributed,
		// The process's own: memory against MemoryBudget, file descriptors,
		// garbage collection.
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every series of a fixed label set exists from the start, at zero, so
	// that rate() and increase() see the first event.
	for _, v := range failClasses {
		m.roundsFailed.WithLabelValues(v)
	}
	for _, v := range refusedCodes {
		m.updatesRefused.WithLabelValues(v.String())
	}
	for _, v := range certReasons {
		m.connectionsRefused.WithLabelValues(v)
	}
	for _, v := range anomalyKinds {
		m.anomalyFlags.WithLabelValues(v)
	}
	for _, v := range auditKinds {
		m.auditEvents.WithLabelValues(v)
	}
	for _, v := range quotaKinds {
		m.eventsSuppressed.WithLabelValues(v)
	}
	for _, p := range secagg.Phases() {
		m.securePhase.WithLabelValues(p.Label())
	}
	for p := phaseStats; p <= phaseFinished; p++ {
		m.phase.WithLabelValues(p.String())
	}
	return m
}

// setState publishes the coordinator's phase and round.
func (m *metrics) setState(p phase, round uint64) {
	for q := phaseStats; q <= phaseFinished; q++ {
		v := 0.0
		if q == p {
			v = 1
		}
		m.phase.WithLabelValues(q.String()).Set(v)
	}
	m.round.Set(float64(round))
}

// refusedUpdate counts a refused update under its code; codes outside
// gRPC's set count as Unknown, so the label stays bounded.
func (m *metrics) refusedUpdate(c codes.Code) {
	if c > codes.Unauthenticated {
		c = codes.Unknown
	}
	m.updatesRefused.WithLabelValues(c.String()).Inc()
}

// refusedConnection counts a refused connection or call under reason; a
// reason outside certs' set counts as certs.ReasonOther.
func (m *metrics) refusedConnection(reason string) {
	if !slices.Contains(certReasons, reason) {
		reason = certs.ReasonOther
	}
	m.connectionsRefused.WithLabelValues(reason).Inc()
}

// Gatherer returns the coordinator's metrics registry: what /metrics on
// Config.MetricsListen serves, for callers that export it otherwise.
func (c *Coordinator) Gatherer() prometheus.Gatherer { return c.metrics.reg }

// MetricsAddr returns the address the metrics listener is bound to, or ""
// when Config.MetricsListen is empty or Serve has not bound it yet (or has
// returned).
func (c *Coordinator) MetricsAddr() string {
	c.metricsMu.Lock()
	defer c.metricsMu.Unlock()
	return c.metricsAddr
}

// listenMetrics binds Config.MetricsListen with /metrics, /healthz and the
// status page (status.go); nil when it is empty.
func (c *Coordinator) listenMetrics() (*metricsserver.Server, error) {
	if c.cfg.MetricsListen == "" {
		return nil, nil
	}
	mux := metricsserver.Mux(c.metrics.reg, slogPrinter{c})
	newStatusHandler(c.Status).register(mux)
	ms, err := metricsserver.Listen(c.cfg.MetricsListen, mux)
	if err != nil {
		return nil, err
	}
	c.metricsMu.Lock()
	c.metricsAddr = ms.Addr()
	c.metricsMu.Unlock()
	return ms, nil
}

// serveMetrics runs the metrics server until ctx ends, then shuts it down.
func (c *Coordinator) serveMetrics(ctx context.Context, ms *metricsserver.Server) error {
	c.opts.log.InfoContext(ctx, "metrics listening", "addr", ms.Addr())
	err := ms.Serve(ctx)
	c.metricsMu.Lock()
	c.metricsAddr = ""
	c.metricsMu.Unlock()
	return err
}

// slogPrinter sends promhttp's error log to the coordinator's logger.
type slogPrinter struct{ c *Coordinator }

func (p slogPrinter) Println(v ...any) {
	p.c.opts.log.Error("metrics: "+fmt.Sprint(v...), "component", "metrics")
}

// validateMetricsListen checks a host:port for the metrics listener.
func validateMetricsListen(addr, grpcListen string) error {
	if err := metricsserver.ValidateAddr(addr); err != nil {
		return fmt.Errorf("metrics_listen %w", err)
	}
	if _, port, _ := net.SplitHostPort(addr); addr == grpcListen && port != "0" {
		return fmt.Errorf("metrics_listen %q is the participants' listen address", addr)
	}
	return nil
}

// normBand is the interval [lo, hi] a plain round's update norms are
// expected in (anomaly.NormBand); false when there are too few updates
// (under 3) to say. The status page draws it.
func normBand(cfg AnomalyConfig, norms []float64) (lo, hi float64, ok bool) {
	return anomaly.NormBand(cfg, norms)
}

// anomalyFlags checks the updates of a plain round against each other
// (anomaly.Check). names are sorted; the flags come in name order, norm
// before cosine before excluded.
func anomalyFlags(cfg AnomalyConfig, attempt uint32, names []string, updates map[string]*received, report aggregation.Report) []audit.AnomalyFlagged {
	flags, _ := anomalyFlagsFrom(cfg, attempt, names, updates, report, nil, 0)
	return flags
}

// anomalyFlagsFrom is anomalyFlags with the updates' vectors read from
// rows (params each) when rows is not nil: a round that spills
// (anomaly.CheckRows).
func anomalyFlagsFrom(cfg AnomalyConfig, attempt uint32, names []string, updates map[string]*received, report aggregation.Report, rows aggregation.Rows, params int) ([]audit.AnomalyFlagged, error) {
	in := make([]anomaly.Update, len(names))
	for i, n := range names {
		u := updates[n]
		in[i] = anomaly.Update{ID: n, Delta: u.delta, Samples: u.samples, Norm: u.norm}
	}
	var found []anomaly.Flag
	if rows != nil {
		var err error
		if found, err = anomaly.CheckRows(cfg, in, params, rows, report); err != nil {
			return nil, err
		}
	} else {
		found = anomaly.Check(cfg, in, report)
	}
	var flags []audit.AnomalyFlagged
	for _, f := range found {
		flags = append(flags, audit.AnomalyFlagged{Attempt: attempt, Participant: f.ID, Kind: f.Kind, Value: f.Value, Band: f.Band})
	}
	return flags, nil
}

// drift is how far a participant's feature statistics lie from the
// federation's reference scaling, at the feature where they lie farthest.
type drift = anomaly.Shift

// driftOf compares st with ref (anomaly.DriftOf).
func driftOf(st dataset.Stats, ref dataset.Scaling) (drift, bool) { return anomaly.DriftOf(st, ref) }

// driftFlag returns the drift flag of participant's statistics st in the
// given attempt, or nil when they are within cfg's band (or cannot be
// compared). features names the reference's features.
func driftFlag(cfg AnomalyConfig, attempt uint32, participant string, features []string, st dataset.Stats, ref dataset.Scaling) *audit.AnomalyFlagged {
	d, ok := driftOf(st, ref)
	if !ok || !cfg.Drifted(d) {
		return nil
	}
	name := fmt.Sprintf("feature %d", d.Feature)
	if d.Feature < len(features) && features[d.Feature] != "" {
		name = features[d.Feature]
	}
	return &audit.AnomalyFlagged{
		Attempt: attempt, Participant: participant, Kind: AnomalyDrift, Value: d.Shift,
		Band: []float64{0, cfg.WithDefaults().DriftShift}, Feature: name, VarianceRatio: d.VarianceRatio,
	}
}

// AnomalyConfig tunes the coordinator's anomaly monitoring (see the
// package documentation's Metrics section and package anomaly); zero
// values take the defaults.
type AnomalyConfig = anomaly.Config

// validateAnomaly checks the anomaly settings.
func validateAnomaly(a AnomalyConfig, add func(string, ...any)) {
	if !(a.NormMADs >= 0) || math.IsInf(a.NormMADs, 0) {
		add("anomaly.norm_mads %v must be a finite number ≥ 0 (0: the default %v)", a.NormMADs, DefaultNormMADs)
	}
	if !(a.NormRatio == 0 || a.NormRatio >= 1) || math.IsInf(a.NormRatio, 0) {
		add("anomaly.norm_ratio %v must be a finite number ≥ 1 (0: the default %v)", a.NormRatio, DefaultNormRatio)
	}
	if f := *a.WithDefaults().CosineFloor; !(f >= -1 && f <= 1) {
		add("anomaly.cosine_floor %v must be between -1 and 1", f)
	}
	if !(a.DriftShift >= 0) || math.IsInf(a.DriftShift, 0) {
		add("anomaly.drift_shift %v must be a finite number > 0 (0: the default %v)", a.DriftShift, DefaultDriftShift)
	}
}

// securePhaseDone observes how long a secure-aggregation phase took.
func (m *metrics) securePhaseDone(p secagg.Phase, d time.Duration) {
	m.securePhase.WithLabelValues(p.Label()).Observe(d.Seconds())
}

// roundClosed counts a committed round and the anomaly flags it recorded.
func (m *metrics) roundClosed(rec RoundRecord, flags []audit.AnomalyFlagged) {
	m.roundsClosed.Inc()
	m.roundDuration.Observe(rec.Closed.Sub(rec.Opened).Seconds())
	m.dropouts.Add(float64(len(rec.Dropped)))
	m.excluded.Add(float64(excludedCount(rec)))
	m.lastClosed.Set(float64(rec.Closed.UnixNano()) / 1e9)
	for _, f := range flags {
		m.anomalyFlags.WithLabelValues(f.Kind).Inc()
	}
}

// excludedCount is how many participants the rule left out of rec: those
// whose update, or whose secure bucket, it did not select.
func excludedCount(rec RoundRecord) int {
	selected := map[string]bool{}
	for _, e := range rec.Report.Entries {
		selected[e.ID] = e.Selected
	}
	n := 0
	for _, p := range rec.Participants {
		key := p.Name
		if p.Bucket > 0 {
			key = bucketID(p.Bucket - 1)
		}
		if s, ok := selected[key]; ok && !s {
			n++
		}
	}
	return n
}

// dropouts counts the cohort members that took no part in the attempt:
// in a plain round, those with neither an update nor a refused one; in a
// secure round, those dropped from their sessions.
func (r *openRound) dropouts() int {
	n := 0
	if r.secure != nil {
		for _, b := range r.secure.buckets {
			select {
			case <-b.Done():
				n += len(b.Result().Dropped)
			default:
			}
		}
		return n
	}
	for _, m := range r.cohort {
		if r.updates[m] == nil && r.refused[m] == "" {
			n++
		}
	}
	return n
}

// newCounter, newGauge, newCounterVec and newHistogram build one
// collector each from its name and help text, so that the table in
// newMetrics reads one metric an entry.
func newCounter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func newGauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func newCounterVec(name, help, label string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

func newHistogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}
