package participant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/metricsserver"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// Reasons a round was sat out: the reason label of
// fedguard_participant_rounds_sat_out_total. The set is fixed; no label
// holds data values or names.
const (
	// SatOutDataRefused: in enforce mode the data file failed its
	// expectations ([ErrDataRefused]).
	SatOutDataRefused = "data_refused"
	// SatOutDeclined: the agent declined a secure round (shares already
	// revealed for its starting model, or a bucket below
	// Config.MinSecureBucket).
	SatOutDeclined = "declined"
	// SatOutManifestRefused: the round's manifest was refused
	// ([ErrManifestRefused]); Run stops.
	SatOutManifestRefused = "manifest_refused"
	// SatOutModelRefused: the starting model failed verification
	// ([ErrModelRefused]).
	SatOutModelRefused = "model_refused"
	// SatOutPlainRefused: a plain round offered to an agent with
	// Config.RequireSecure ([ErrPlainRound]); Run stops.
	SatOutPlainRefused = "plain_refused"
	// SatOutSecureAbandoned: the agent abandoned a secure round
	// ([ErrSecureRound]).
	SatOutSecureAbandoned = "secure_abandoned"
	// SatOutIncompatible: the trainer found the model incompatible with
	// the local data ([ErrIncompatible]); Run stops.
	SatOutIncompatible = "incompatible"
	// SatOutCoordinator: the coordinator ended the round for this agent
	// (FailedPrecondition, InvalidArgument or Aborted: the round closed,
	// the update was refused).
	SatOutCoordinator = "coordinator_refused"
	// SatOutConnection: the connection failed during the round; the agent
	// reconnects.
	SatOutConnection = "connection"
	// SatOutTrainingFailed: local training (or checking its result)
	// failed.
	SatOutTrainingFailed = "training_failed"
	// SatOutPrivacyBudget: training would have exceeded the hospital's
	// record-level privacy budget ([ErrPrivacyBudget]).
	SatOutPrivacyBudget = "privacy_budget"
)

var (
	satOutReasons = []string{
		SatOutDataRefused, SatOutDeclined, SatOutManifestRefused, SatOutModelRefused, SatOutPlainRefused,
		SatOutSecureAbandoned, SatOutIncompatible, SatOutCoordinator, SatOutConnection, SatOutTrainingFailed,
		SatOutPrivacyBudget,
	}
	manifestReasons = manifest.Reasons()
	severities      = []validation.Severity{validation.SeverityWarn, validation.SeverityError}
)

// labelOther stands for a value outside a fixed label set, so that the
// set stays bounded whatever a peer sends.
const labelOther = "other"

// metrics are one agent's Prometheus collectors. The agent is one
// participant, so no label names it.
type metrics struct {
	reg *prometheus.Registry

	satOut          *prometheus.CounterVec
	round           prometheus.Gauge
	lastRound       prometheus.Gauge
	roundDuration   prometheus.Histogram
	trainDuration   prometheus.Histogram
	findings        *prometheus.CounterVec
	manifestRefused *prometheus.CounterVec
	securePhase     *prometheus.HistogramVec
	dpSpent         prometheus.Gauge
	dpBudgetG       prometheus.Gauge
	secureDPSpent   prometheus.Gauge
	secureDPBudgetG prometheus.Gauge

	mu   sync.Mutex
	addr string // bound metrics listener, while Run runs
}

// newMetrics returns the agent's metrics; the counters the agent already
// keeps (AgentStats) are read from a at scrape time.
func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		satOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedguard_participant_rounds_sat_out_total", Help: "Round assignments this participant did not complete, by reason.",
		}, []string{"reason"}),
		round: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_round", Help: "The round of the last assignment received (0 before the first).",
		}),
		lastRound: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_last_round", Help: "The last round whose update the coordinator accepted from this participant (0 before the first).",
		}),
		roundDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fedguard_participant_round_duration_seconds", Help: "Time from a round's assignment to the coordinator accepting this participant's update (plain) or unmasking its sum (secure).",
			Buckets: prometheus.ExponentialBuckets(0.1, 2.5, 12), // 0.1s to about 6h
		}),
		trainDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fedguard_participant_training_duration_seconds", Help: "Duration of successful local training runs.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10ms to about 30min
		}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedguard_participant_validation_findings_total", Help: "Data validation findings before rounds (and before reporting feature statistics), by severity (warn, error).",
		}, []string{"severity"}),
		manifestRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedguard_participant_manifests_refused_total", Help: "Round manifests refused, by reason (manifest.Reason).",
		}, []string{"reason"}),
		securePhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedguard_participant_secure_phase_duration_seconds", Help: "Time from sending a secure-aggregation phase's message to the coordinator's answer, by phase.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10), // 10ms to about 200s
		}, []string{"phase"}),
		dpSpent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_dp_epsilon_spent", Help: "Record-level privacy loss ε of the rounds this participant trained with DP-SGD, by its ledger, at the budget's δ.",
		}),
		dpBudgetG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_dp_epsilon_budget", Help: "The hospital's record-level privacy budget ε (+Inf for none; 0 without DP).",
		}),
		secureDPSpent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_dp_secure_epsilon_spent", Help: "Federation-level privacy loss ε of the secure rounds with distributed DP this participant sent an input to, by its own ledger, at the budget's δ.",
		}),
		secureDPBudgetG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedguard_participant_dp_secure_epsilon_budget", Help: "The hospital's federation-level privacy budget ε for secure rounds with distributed DP (+Inf for none).",
		}),
	}
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	m.reg.MustRegister(m.satOut, m.round, m.lastRound, m.roundDuration, m.trainDuration, m.findings, m.manifestRefused, m.securePhase,
		m.dpSpent, m.dpBudgetG, m.secureDPSpent, m.secureDPBudgetG,
		counter("fedguard_participant_rounds_completed_total", "Rounds whose update the coordinator accepted (secure: whose sum was unmasked with this participant's input).", a.rounds.Load),
		counter("fedguard_participant_bytes_sent_total", "Payload bytes of update chunks (secure rounds: masked-input chunks) sent.", a.bytesOut.Load),
		counter("fedguard_participant_bytes_received_total", "Payload bytes of model chunks received.", a.bytesIn.Load),
		counter("fedguard_participant_reconnects_total", "Reconnections to the coordinator after transient failures.", a.retries.Load),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every series of a fixed label set exists from the start, at zero, so
	// that rate() and increase() see the first event.
	for _, v := range satOutReasons {
		m.satOut.WithLabelValues(v)
	}
	for _, v := range manifestReasons {
		m.manifestRefused.WithLabelValues(string(v))
	}
	for _, v := range severities {
		m.findings.WithLabelValues(string(v))
	}
	for _, p := range secagg.Phases() {
		m.securePhase.WithLabelValues(p.Label())
	}
	return m
}

// Gatherer returns the agent's metrics registry: what /metrics on
// Config.MetricsListen serves, for callers that export it otherwise.
func (a *Agent) Gatherer() prometheus.Gatherer { return a.metrics.reg }

// MetricsAddr returns the address the metrics listener is bound to, or ""
// when Config.MetricsListen is empty or Run has not bound it yet (or has
// returned).
func (a *Agent) MetricsAddr() string {
	a.metrics.mu.Lock()
	defer a.metrics.mu.Unlock()
	return a.metrics.addr
}

// serveMetrics binds Config.MetricsListen and serves /metrics and
// /healthz until the returned stop is called; stop waits for the server
// to shut down. Without MetricsListen it does nothing.
func (a *Agent) serveMetrics(ctx context.Context) (stop func(), err error) {
	if a.cfg.MetricsListen == "" {
		return func() {}, nil
	}
	srv, err := metricsserver.Listen(a.cfg.MetricsListen, metricsserver.Mux(a.metrics.reg, logPrinter{a}))
	if err != nil {
		return nil, fmt.Errorf("participant: %w", err)
	}
	a.metrics.mu.Lock()
	a.metrics.addr = srv.Addr()
	a.metrics.mu.Unlock()
	a.log.InfoContext(ctx, "metrics listening", "addr", srv.Addr())
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(sctx); err != nil {
			a.log.ErrorContext(ctx, "metrics server failed", "error", err)
		}
	}()
	return func() {
		cancel()
		<-done
		a.metrics.mu.Lock()
		a.metrics.addr = ""
		a.metrics.mu.Unlock()
	}, nil
}

// logPrinter sends promhttp's error log to the agent's logger.
type logPrinter struct{ a *Agent }

func (p logPrinter) Println(v ...any) {
	p.a.log.Error("metrics: "+fmt.Sprint(v...), "component", "metrics")
}

// assigned publishes the round of a new assignment.
func (m *metrics) assigned(round uint64) { m.round.Set(float64(round)) }

// roundEnded records the outcome of one assignment: completed (the
// coordinator accepted the update, started being when the assignment
// arrived), or sat out for err. A nil err without completion is a decline,
// counted by decline itself; an ended ctx counts nothing.
func (m *metrics) roundEnded(ctx context.Context, round uint64, started time.Time, completed bool, err error) {
	switch {
	case completed:
		m.roundDuration.Observe(time.Since(started).Seconds())
		m.lastRound.Set(float64(round))
	case err != nil && ctx.Err() == nil:
		m.satOut.WithLabelValues(satOutReason(err)).Inc()
	}
}

// satOutReason classifies the error of a round that was not completed.
func satOutReason(err error) string {
	var st interface{ GRPCStatus() *status.Status }
	switch {
	case errors.Is(err, ErrDataRefused):
		return SatOutDataRefused
	case errors.Is(err, ErrPrivacyBudget):
		return SatOutPrivacyBudget
	case errors.Is(err, ErrManifestRefused):
		return SatOutManifestRefused
	case errors.Is(err, ErrModelRefused):
		return SatOutModelRefused
	case errors.Is(err, ErrPlainRound):
		return SatOutPlainRefused
	case errors.Is(err, ErrSecureRound):
		return SatOutSecureAbandoned
	case errors.Is(err, ErrIncompatible):
		return SatOutIncompatible
	case errors.As(err, &st) && roundLevel(status.Code(err)):
		return SatOutCoordinator
	case errors.As(err, &st):
		return SatOutConnection
	}
	return SatOutTrainingFailed
}

// dpBudget publishes the ledger's budget and what it has spent.
func (m *metrics) dpBudget(l *dpLedger) {
	if l == nil {
		return
	}
	m.dpBudgetG.Set(l.budget)
	m.dpSpent.Set(l.spent)
}

// secureDPBudget publishes the federation-level ledger's budget and what
// it has spent.
func (m *metrics) secureDPBudget(l *secureLedger) {
	m.secureDPBudgetG.Set(l.budget)
	m.secureDPSpent.Set(l.spent)
}

// declined counts a declined secure round.
func (m *metrics) declined() { m.satOut.WithLabelValues(SatOutDeclined).Inc() }

// trained observes a successful training run that began at started.
func (m *metrics) trained(started time.Time) { m.trainDuration.Observe(time.Since(started).Seconds()) }

// refusedManifest counts a refused manifest; a reason outside manifest's
// set counts as "other".
func (m *metrics) refusedManifest(r manifest.Reason) {
	v := string(r)
	if !slices.Contains(manifestReasons, r) {
		v = labelOther
	}
	m.manifestRefused.WithLabelValues(v).Inc()
}

// validated counts the findings of one data check (those it reports).
func (m *metrics) validated(req *fedguardv1.ReportValidationRequest) {
	for _, f := range req.GetFindings() {
		v := f.GetSeverity()
		if !slices.Contains(severities, validation.Severity(v)) {
			v = labelOther
		}
		m.findings.WithLabelValues(v).Inc()
	}
}

// securePhaseDone observes how long the coordinator took to answer a
// secure-aggregation phase's message sent at sent.
func (m *metrics) securePhaseDone(p secagg.Phase, sent time.Time) {
	m.securePhase.WithLabelValues(p.Label()).Observe(time.Since(sent).Seconds())
}

// countingClient counts the validation findings the agent reports before
// a round, on their way to the coordinator.
type countingClient struct {
	fedguardv1.CoordinatorServiceClient
	m *metrics
}

var _ fedguardv1.CoordinatorServiceClient = countingClient{}

func (c countingClient) ReportValidation(ctx context.Context, req *fedguardv1.ReportValidationRequest, opts ...grpc.CallOption) (*fedguardv1.ReportValidationResponse, error) {
	c.m.validated(req)
	return c.CoordinatorServiceClient.ReportValidation(ctx, req, opts...)
}
