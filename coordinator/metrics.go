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
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/metricsserver"
)

// Anomaly monitoring, in detail (see also the package documentation).
// When a plain round closes, each accepted update is flagged when:
//
//   - norm: its L2 norm lies outside [median − K·MAD, median + K·MAD] of
//     the cohort's norms (K = AnomalyConfig.NormMADs, default 3.5; MAD is
//     the median absolute deviation) and also outside [median/R, R·median]
//     (R = AnomalyConfig.NormRatio, default 3). The MAD is floored at 5% of
//     the median: when half the cohort has nearly the same norm the MAD is
//     close to zero and would flag any difference. The ratio keeps honest
//     hospitals with different data from being flagged: near convergence
//     their norms differ by a factor of two or so from round to round (the
//     WDBC demo's do), while a boosted update (model replacement, scaling)
//     is many times the median. With fewer than 3 updates the check is
//     skipped: the median says nothing.
//   - cosine: its cosine similarity to the round's reference direction is
//     below AnomalyConfig.CosineFloor (default −0.5: it points clearly
//     against the others); skipped when either vector is zero. The
//     reference is the sample-weighted mean of the updates, each first
//     scaled down to the cohort's median norm if it is larger: FedAvg's
//     direction when the updates are alike, but one that no single
//     update, however large, can drag its way. (It was the round's
//     aggregate, which a boosted update — the demo's --poison, 50 times an
//     honest one — dragged so far that the honest hospitals were the ones
//     flagged.) Honest updates near convergence are mostly noise and can
//     point slightly away from the reference (the demo's go down to about
//     −0.4), so the floor is below 0.
//   - excluded: the robust rule left it out of the aggregate (value: the
//     rule's score, when it has one).
//
// Drift monitoring looks at data rather than updates, in plain and secure
// rounds alike. Each ReportValidation may carry the aggregates of the
// participant's training rows (count, per-feature sum and sum of
// squares, the same as ReportStats). Against the federation's reference,
// the scaling fixed from all hospitals' aggregates at the start, the
// coordinator computes per feature the standardized mean shift
// |mean − mean_ref| / std_ref and the variance ratio var / std_ref²:
//
//   - drift: the largest shift exceeds AnomalyConfig.DriftShift (default
//     DefaultDriftShift, 2). Value is that shift, Feature its feature,
//     VarianceRatio that feature's variance ratio. The flag is recorded
//     when the report arrives, with the report's round and attempt; a
//     report without aggregates (or before the scaling is fixed) is not
//     checked.
//
// The reference includes the hospital's own rows, and a hospital with a
// different case mix differs from it honestly: in the demo (WDBC, each
// hospital drawing 75 % of its rows from one diagnosis) the largest
// shift of each hospital lies between 0.44 and 0.94 reference standard
// deviations (4 hospitals, data splits of seeds 1 to 5); the same
// hospitals with every feature moved by 3 standard deviations show 2.96
// or more (TestDriftDefaultOnDemo measures both). The default of 2 is
// about twice the largest honest shift and one standard deviation below
// the shifted hospitals. Comparing each hospital with its own
// first report instead would never flag a skewed but stable hospital, but
// the agent reports the aggregates of the training rows it loaded when the
// session began, which change only when it restarts; and data that was
// shifted from the start would never be flagged. So the reference is the
// federation's.

// Anomaly kinds: the values of audit.AnomalyFlagged.Kind and of the kind
// label of fedguard_anomaly_flags_total.
const (
	AnomalyNorm     = "norm"
	AnomalyCosine   = "cosine"
	AnomalyExcluded = "excluded"
	AnomalyDrift    = "drift"
)

// Defaults of AnomalyConfig.
const (
	// DefaultNormMADs is how many median absolute deviations an update's
	// norm may lie from the cohort's median before it is flagged.
	DefaultNormMADs = 3.5
	// DefaultNormRatio is how many times the cohort's median norm an
	// update's norm must also be off (above or below) before it is flagged.
	DefaultNormRatio = 3.0
	// DefaultCosineFloor is the lowest cosine similarity to the aggregate
	// an update may have without being flagged.
	DefaultCosineFloor = -0.5
	// DefaultDriftShift is the largest standardized mean shift, in
	// reference standard deviations, a participant's feature statistics
	// may show against the federation's scaling without being flagged
	// (see "Drift monitoring" above for the measurements behind it).
	DefaultDriftShift = 2.0
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

// madFloor is the smallest MAD, as a fraction of the median norm, that the
// norm check uses (see above).
const madFloor = 0.05

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
	}
	m.reg.MustRegister(m.roundsClosed, m.roundsFailed, m.roundDuration, m.cohortSize, m.dropouts,
		m.updatesAccepted, m.updatesRefused, m.connectionsRefused, m.updateNorm, m.excluded, m.anomalyFlags,
		m.auditEvents, m.auditAppend, m.securePhase, m.secureFailed, m.round, m.phase, m.lastClosed,
		m.failedAttempts, m.wedged,
		m.eventsSuppressed, m.diskFree, m.diskMinFree, m.diskPaused,
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
// expected in (see "Anomaly monitoring" above); false when there are too
// few updates (under 3) to say. The status page draws it.
func normBand(cfg AnomalyConfig, norms []float64) (lo, hi float64, ok bool) {
	if len(norms) < 3 {
		return 0, 0, false
	}
	k, ratio := cfg.normMADs(), cfg.normRatio()
	med := median(slices.Clone(norms))
	dev := make([]float64, len(norms))
	for i, v := range norms {
		dev[i] = math.Abs(v - med)
	}
	mad := max(median(dev), madFloor*med)
	return min(med-k*mad, med/ratio), max(med+k*mad, med*ratio), true
}

// refBlock is how many parameters of anomalyFlags' reference are built
// at a time: 128 KiB of float64, which stays in the cache while every
// update's dot product with it is taken.
const refBlock = 1 << 14

// anomalyFlags checks the updates of a plain round against each other
// (see "Anomaly monitoring" above). names are sorted; the flags come in
// name order, norm before cosine before excluded.
func anomalyFlags(cfg AnomalyConfig, attempt uint32, names []string, updates map[string]*received, report aggregation.Report) []audit.AnomalyFlagged {
	floor := cfg.cosineFloor()
	var flags []audit.AnomalyFlagged
	norms := make([]float64, len(names))
	for i, n := range names {
		norms[i] = updates[n].norm
	}
	lo, hi, checkNorm := normBand(cfg, norms)
	// ref is the sample-weighted mean of the updates clipped to the median
	// norm: what the round's FedAvg would be if no update were larger
	// than the median one. It is built and used a block of parameters at
	// a time (refBlock), each sum taken in the same order as over the
	// whole vector, so the flags are those of a model-sized ref without
	// holding one: in float64 it would be two models' worth of memory at
	// the round's peak.
	dots := make([]float64, len(names))
	refNorm := 0.0
	if len(names) > 0 {
		med := median(slices.Clone(norms))
		d := len(updates[names[0]].delta)
		w := make([]float64, len(names))
		for i, n := range names {
			if u := updates[n]; u.norm != 0 {
				w[i] = float64(u.samples) * min(1, med/u.norm)
			}
		}
		ref := make([]float64, min(refBlock, d))
		for lo := 0; lo < d; lo += refBlock {
			hi := min(lo+refBlock, d)
			r := ref[:hi-lo]
			clear(r)
			for i, n := range names {
				u := updates[n]
				if u.norm == 0 {
					continue
				}
				for j, v := range u.delta[lo:hi] {
					r[j] += w[i] * float64(v)
				}
			}
			for _, v := range r {
				refNorm += v * v
			}
			for i, n := range names {
				u := updates[n]
				if u.norm == 0 || len(u.delta) != d {
					continue
				}
				dot := dots[i]
				for j, v := range u.delta[lo:hi] {
					dot += float64(v) * r[j]
				}
				dots[i] = dot
			}
		}
	}
	refNorm = math.Sqrt(refNorm)
	entries := map[string]aggregation.Entry{}
	for _, e := range report.Entries {
		entries[e.ID] = e
	}
	for i, n := range names {
		u := updates[n]
		if checkNorm && (norms[i] < lo || norms[i] > hi) {
			flags = append(flags, audit.AnomalyFlagged{Attempt: attempt, Participant: n, Kind: AnomalyNorm, Value: norms[i], Band: []float64{lo, hi}})
		}
		if u.norm > 0 && refNorm > 0 && len(u.delta) == len(updates[names[0]].delta) {
			if cos := dots[i] / (u.norm * refNorm); cos < floor {
				flags = append(flags, audit.AnomalyFlagged{Attempt: attempt, Participant: n, Kind: AnomalyCosine, Value: cos, Band: []float64{floor, 1}})
			}
		}
		if e, ok := entries[n]; ok && !e.Selected {
			flags = append(flags, audit.AnomalyFlagged{Attempt: attempt, Participant: n, Kind: AnomalyExcluded, Value: e.Score})
		}
	}
	return flags
}

// drift is how far a participant's feature statistics lie from the
// federation's reference scaling, at the feature where they lie farthest.
type drift struct {
	// Feature is the index of the feature with the largest Shift.
	Feature int
	// Shift is |mean − mean_ref| / std_ref at Feature.
	Shift float64
	// VarianceRatio is var / std_ref² at Feature (population variances).
	VarianceRatio float64
}

// driftOf compares st with ref (see "Drift monitoring" above); false when
// st has no rows or its width is not ref's. Ties go to the lower feature.
func driftOf(st dataset.Stats, ref dataset.Scaling) (drift, bool) {
	w := len(ref.Mean)
	if st.Count == 0 || w == 0 || len(ref.Std) != w || len(st.Sum) != w || len(st.SumSquares) != w {
		return drift{}, false
	}
	n := float64(st.Count)
	d := drift{Shift: -1}
	for j := range w {
		mean := st.Sum[j] / n
		v := max(st.SumSquares[j]/n-mean*mean, 0)
		sd := ref.Std[j]
		if !(sd > 0) {
			sd = 1 // as dataset.ScalingFrom does for a constant column
		}
		shift := math.Abs(mean-ref.Mean[j]) / sd
		if shift > d.Shift {
			d = drift{Feature: j, Shift: shift, VarianceRatio: v / (sd * sd)}
		}
	}
	return d, true
}

// driftFlag returns the drift flag of participant's statistics st in the
// given attempt, or nil when they are within cfg's band (or cannot be
// compared). features names the reference's features.
func driftFlag(cfg AnomalyConfig, attempt uint32, participant string, features []string, st dataset.Stats, ref dataset.Scaling) *audit.AnomalyFlagged {
	d, ok := driftOf(st, ref)
	limit := cfg.driftShift()
	if !ok || !(d.Shift > limit) {
		return nil
	}
	name := fmt.Sprintf("feature %d", d.Feature)
	if d.Feature < len(features) && features[d.Feature] != "" {
		name = features[d.Feature]
	}
	return &audit.AnomalyFlagged{
		Attempt: attempt, Participant: participant, Kind: AnomalyDrift, Value: d.Shift,
		Band: []float64{0, limit}, Feature: name, VarianceRatio: d.VarianceRatio,
	}
}

// median sorts v and returns its median; v must not be empty.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// AnomalyConfig tunes the coordinator's anomaly monitoring of plain rounds
// (see the package documentation's Metrics section); zero values take the
// defaults.
type AnomalyConfig struct {
	// NormMADs is K: an update whose norm lies more than K median absolute
	// deviations from the cohort's median norm is flagged (default
	// DefaultNormMADs).
	NormMADs float64 `json:"norm_mads,omitempty"`
	// NormRatio is R: the norm must also be more than R times the median,
	// or less than the median over R (default DefaultNormRatio; at least
	// 1).
	NormRatio float64 `json:"norm_ratio,omitempty"`
	// CosineFloor: an update whose cosine similarity to the aggregate is
	// below it is flagged (default DefaultCosineFloor when absent; -1
	// turns the check off). It must be in [-1, 1].
	CosineFloor *float64 `json:"cosine_floor,omitempty"`
	// DriftShift: a participant whose reported feature statistics have a
	// feature mean more than DriftShift reference standard deviations
	// from the federation's mean is flagged (default DefaultDriftShift;
	// a finite number > 0).
	DriftShift float64 `json:"drift_shift,omitempty"`
}

func (a AnomalyConfig) driftShift() float64 {
	if a.DriftShift == 0 {
		return DefaultDriftShift
	}
	return a.DriftShift
}

func (a AnomalyConfig) normRatio() float64 {
	if a.NormRatio == 0 {
		return DefaultNormRatio
	}
	return a.NormRatio
}

func (a AnomalyConfig) cosineFloor() float64 {
	if a.CosineFloor == nil {
		return DefaultCosineFloor
	}
	return *a.CosineFloor
}

func (a AnomalyConfig) normMADs() float64 {
	if a.NormMADs == 0 {
		return DefaultNormMADs
	}
	return a.NormMADs
}

// validate checks the anomaly settings.
func (a AnomalyConfig) validate(add func(string, ...any)) {
	if !(a.NormMADs >= 0) || math.IsInf(a.NormMADs, 0) {
		add("anomaly.norm_mads %v must be a finite number ≥ 0 (0: the default %v)", a.NormMADs, DefaultNormMADs)
	}
	if !(a.NormRatio == 0 || a.NormRatio >= 1) || math.IsInf(a.NormRatio, 0) {
		add("anomaly.norm_ratio %v must be a finite number ≥ 1 (0: the default %v)", a.NormRatio, DefaultNormRatio)
	}
	if f := a.cosineFloor(); !(f >= -1 && f <= 1) {
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
