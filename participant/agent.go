package participant

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/metricsserver"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

// Defaults for the fields of [Config] and for the [Option]s.
const (
	// DefaultMinBackoff is the first wait after a transient failure: long
	// enough not to hammer a restarting coordinator, short enough that a
	// brief network blip costs no round.
	DefaultMinBackoff = 200 * time.Millisecond
	// DefaultMaxBackoff caps the wait between retries so that an agent notices
	// a coordinator that is back within seconds, even after a long outage.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultGiveUpAfter is how long the agent keeps retrying a coordinator
	// it cannot reach before Run returns ErrCoordinatorGone: long enough
	// for a restart or a maintenance window, short enough that an agent
	// whose federation finished while it was away (and whose coordinator
	// then exited) stops on its own.
	DefaultGiveUpAfter = time.Hour
	// DefaultWaitRoundTimeout bounds one WaitRound long poll. The coordinator
	// answers empty before that; the bound only detects a silently dead link.
	DefaultWaitRoundTimeout = 2 * time.Minute
	// DefaultCallTimeout bounds Join and ReportStats, which the coordinator
	// answers at once; a hung call means a broken link.
	DefaultCallTimeout = 30 * time.Second
	// DefaultRoundTimeout is the per-RPC deadline for GetModel and
	// SubmitUpdate when an assignment carries no deadline.
	DefaultRoundTimeout = 10 * time.Minute
	// MinRoundTimeout is the shortest deadline the agent gives to GetModel,
	// training and SubmitUpdate, so that a small clock skew between hospital
	// and coordinator does not make every round fail locally: the coordinator
	// enforces the real deadline anyway.
	MinRoundTimeout = 10 * time.Second
	// SecureRoundMargin is added to the deadline of a secure round's
	// context beyond the round deadline and the two phase timeouts that
	// may follow it (consistency check and unmasking), for the
	// coordinator's own work and the network between phases.
	SecureRoundMargin = 30 * time.Second
)

// Trainer is the agent's local work, behind an interface so that the
// benchmark can run no-op training and tests can inject faults.
type Trainer interface {
	// Prepare is called after Join with the federation's model spec; it loads
	// and checks local data and returns the feature aggregates for scaling.
	// An error is permanent: Run returns it.
	Prepare(spec *fedguardv1.ModelSpec) (dataset.Stats, error)
	// Train trains from start (the round's global model) and returns the
	// update. It must not modify start. An error skips the round, unless it
	// wraps [ErrIncompatible] or ctx ended. Calls do not overlap: the
	// agent trains one round at a time.
	Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (Result, error)
}

// Result is one round's local outcome.
type Result struct {
	// Delta is the trained model minus the starting model. The caller is
	// done with it by its next call to Train, which may write the next
	// update into the same memory (ExecTrainer does, rather than allocate
	// a model-sized vector every round): the agent sends it, or encodes it
	// for secure aggregation, and keeps nothing of it.
	Delta []float32
	// Samples is the number of training rows behind Delta; the coordinator
	// weighs updates by it.
	Samples uint64
	// Holdout is the starting model's quality on the local holdout rows
	// (federated evaluation).
	Holdout model.Metrics
	// DPEvents are the DP mechanisms a trainer that accounts after the
	// fact (the exec trainer's metrics file) reports it ran; the agent's
	// ledger accounts for them before the update leaves.
	DPEvents []privacy.Event
}

// Config is what an [Agent] needs. Coordinator, TLS and Trainer are required.
type Config struct {
	// Coordinator is the coordinator's address, host:port.
	Coordinator string
	// TLS is the client side of the federation's mutual TLS, as made by
	// certs.ClientConfig.
	TLS *tls.Config
	// Trainer does the local work.
	Trainer Trainer
	// Log receives the agent's progress; nil means slog.Default().
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between retries; zero means
	// DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// GiveUpAfter is how long Run keeps retrying without reaching the
	// coordinator (since the last call it answered, or since Run started)
	// before it returns ErrCoordinatorGone; zero means DefaultGiveUpAfter,
	// a negative value retries forever.
	GiveUpAfter time.Duration
	// AgentVersion is reported in Join for the operator's records.
	AgentVersion string
	// Federation is the federation's name; manifests of another are
	// refused.
	Federation string
	// CoordinatorKeys are the coordinator's manifest-signing keys (its
	// signing.pub), pinned at enrolment. The agent trains only on models
	// whose signed manifest verifies against both of them.
	CoordinatorKeys manifest.PublicKeys
	// DataSalt is the federation's data-version salt (lineage.SaltFor of
	// its CA certificate). When set and the Trainer is a [DataDescriber],
	// every update carries the data version it was trained on, which the
	// coordinator records in its audit log and the round's manifest. Nil
	// means no data version is reported.
	DataSalt *lineage.Salt
	// StateFile keeps the last manifest the agent accepted, so that a
	// restarted agent still refuses a rolled-back or forked model. Empty
	// means memory only (for tests).
	StateFile string
	// RequireSecure makes the agent take part in secure rounds only: a
	// coordinator that asks for a plain update (and so would see it) is
	// refused, and Run stops with ErrPlainRound.
	RequireSecure bool
	// MinSecureBucket is the smallest secure sum the agent contributes
	// to; it declines a round that puts it in a smaller bucket. 0 means
	// any (secure sums always have at least two members).
	MinSecureBucket int
	// SecureDPRoundEpsilon, when positive, is the most ε one secure
	// round may cost this hospital's update under the coordinator's
	// distributed DP (at DPDelta, or DefaultDPDelta), computed from the
	// plan's own parameters: its noise, the fewest survivors a sum may be
	// unmasked with, and the ℓ2 bound. The agent declines a secure round
	// without distributed DP or with less noise, so that the guarantee
	// does not rest on the coordinator's configuration. 0 means no limit.
	SecureDPRoundEpsilon float64
	// SecureDPEpsilon, when positive, is the hospital's federation-level
	// privacy budget: the most ε (at DPDelta, or DefaultDPDelta) all the
	// secure rounds with distributed DP it sends an input to may cost its
	// update together. The agent keeps the ledger of those rounds in
	// [PrivacyLedgerPath](StateFile), beside the record-level one (see
	// secureLedger), and sits out ([ErrPrivacyBudget]) a secure round that
	// would take it past the budget. 0 means no budget (the rounds are
	// still recorded).
	SecureDPEpsilon float64
	// Expectations is the path of an expectations file (package
	// validation). When set, the agent checks its data file against it
	// before every round and reports the findings, as counts only, to the
	// coordinator's audit log. Empty means no validation.
	Expectations string
	// ValidationMode is ValidationWarn (the default with Expectations:
	// report and train) or ValidationEnforce (report, and sit the round
	// out when a finding is an error).
	ValidationMode string
	// ValidationData is the data file to check; empty means the Trainer's
	// DataFile, when the Trainer is a *LocalTrainer.
	ValidationData string
	// MetricsListen is the TCP address (host:port) of an HTTP listener
	// that serves the agent's Prometheus metrics at /metrics and a
	// liveness check at /healthz while Run runs (see Agent.MetricsAddr;
	// port 0 picks a free port). Empty, the default, means no listener.
	MetricsListen string
	// DPEpsilon is the hospital's record-level privacy budget ε: before
	// each round the agent computes, with package privacy, the ε its
	// ledger would reach with the round's DP-SGD (see [DPTrainer]) and
	// sits the round out ([ErrPrivacyBudget]) when that exceeds
	// DPEpsilon. 0 means no budget (a DP trainer's rounds are still
	// recorded). The ledger is kept in [PrivacyLedgerPath](StateFile).
	DPEpsilon float64
	// DPDelta is the δ of the budget; 0 means [DefaultDPDelta].
	DPDelta float64
}

// Option changes an Agent's defaults, for tests and the benchmark.
type Option func(*Agent)

// WithDialOptions adds gRPC dial options after the agent's own (for example
// a bufconn dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(a *Agent) { a.dialOpts = append(a.dialOpts, opts...) }
}

// WithWaitRoundTimeout sets the deadline of one WaitRound long poll
// (default [DefaultWaitRoundTimeout]).
func WithWaitRoundTimeout(d time.Duration) Option {
	return func(a *Agent) { a.waitTimeout = d }
}

// WithSecureHook sets a function the agent calls in secure rounds just
// before it sends each phase's message (secagg.PhaseAdvertiseKeys,
// PhaseShareKeys, PhaseMaskedInput, PhaseConsistencyCheck,
// PhaseUnmasking). A non-nil error makes the agent abandon the round at
// once, cancelling its SecureAggregate stream, as a participant that drops
// out at that phase; the round ends with that error (logged like a failed
// local training, then the agent waits for the next assignment). It is
// meant for fault-injection tests and is called from Run's goroutine.
func WithSecureHook(hook func(phase secagg.Phase) error) Option {
	return func(a *Agent) { a.secureHook = hook }
}

// AgentStats are counters of an Agent, for tests, the benchmark and the
// operator.
type AgentStats struct {
	// Rounds is the number of updates the coordinator accepted: plain
	// updates, and secure rounds whose bucket sum was unmasked with this
	// agent's input in it.
	Rounds uint64
	// BytesReceived and BytesSent count payload bytes of model and update
	// chunks (in secure rounds, of the masked input's chunks).
	BytesReceived, BytesSent uint64
	// SecureBytesSent and SecureBytesReceived count the encoded size of
	// every SecureAggregate message sent and received (all phases, the
	// masked input's chunks included): what a secure round adds to the
	// model download.
	SecureBytesSent, SecureBytesReceived uint64
	// ModelsRefused counts starting models that failed verification.
	ModelsRefused uint64
	// Retries counts backoffs after transient failures.
	Retries uint64
}

// Agent takes part in a federation on behalf of one hospital. Create it with
// [New]; Run it once.
type Agent struct {
	cfg         Config
	log         *slog.Logger
	creds       *certWatch // nil without Config.TLS (an Ops's own transport)
	ops         Ops
	dialOpts    []grpc.DialOption
	waitTimeout time.Duration
	secureHook  func(secagg.Phase) error
	validator   *validator // nil without Config.Expectations
	dp          *dpLedger  // nil without DP training or budget
	secureDP    *secureLedger
	metrics     *metrics
	// presented is the client certificate last presented in a TLS
	// handshake: its key signs in secure rounds, since the coordinator
	// relays the certificate of the connection. Nil until a handshake
	// asked for one (or when the certificate is static).
	presented atomic.Pointer[tls.Certificate]

	rounds, bytesIn, bytesOut, refused, retries atomic.Uint64
	secureIn, secureOut                         atomic.Uint64
	running                                     atomic.Bool

	// State of Run; only Run's goroutine touches it.
	prepared *fedguardv1.ModelSpec
	spec     model.Spec
	stats    dataset.Stats
	last     struct{ round, attempt uint64 } // last accepted submission, completed or declined secure round
	attempt  int                             // consecutive transient failures
	contact  time.Time                       // when the coordinator last answered (or Run started)
	accepted *manifest.Accepted              // last manifest accepted; nil before the first
	// data is the data version reported with each update; nil for none.
	data []byte
	// checkpoint is the signed audit checkpoint of the accepted manifest
	// (nil if it had none), kept for `fedguard participant witness`.
	checkpoint []byte
	name       string // the participant name the coordinator knows us by (Join)
	// revealed holds the digests (hex) of the starting models of the
	// secure rounds in which the agent revealed its shares; see runSecure.
	revealed map[string]bool
	// keys are the coordinator keys the agent pins now: Config's, or the
	// keys the rotations it followed (recorded in rotations) lead to.
	keys      manifest.PublicKeys
	rotations []rotationRecord
	// pending is the secure session the agent took part in last, kept
	// until it takes part in another so that a restarted coordinator can
	// resume it; see runSecure.
	pending *secureSession
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config, opts ...Option) (*Agent, error) {
	switch {
	case cfg.Coordinator == "":
		return nil, errors.New("participant: Config.Coordinator is empty")
	case cfg.Trainer == nil:
		return nil, errors.New("participant: Config.Trainer is nil")
	case cfg.Federation == "":
		return nil, errors.New("participant: Config.Federation is empty")
	case cfg.CoordinatorKeys.Fingerprint() == "": // "" for incomplete keys
		return nil, errors.New("participant: Config.CoordinatorKeys are not set: pin the coordinator's signing.pub")
	case cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("participant: negative backoff")
	}
	if cfg.MetricsListen != "" {
		if err := metricsserver.ValidateAddr(cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("participant: Config.MetricsListen %w", err)
		}
	}
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, DefaultMinBackoff)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.GiveUpAfter = cmp.Or(cfg.GiveUpAfter, DefaultGiveUpAfter)
	if cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("participant: MaxBackoff %v < MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	a := &Agent{
		cfg:         cfg,
		log:         cfg.Log,
		waitTimeout: DefaultWaitRoundTimeout,
		revealed:    map[string]bool{},
		keys:        cfg.CoordinatorKeys,
		ops:         DefaultOps,
	}
	for _, o := range opts {
		o(a)
	}
	// Only an Ops of a test may bring its own transport.
	switch {
	case cfg.TLS == nil && a.ops == DefaultOps:
		return nil, errors.New("participant: Config.TLS is nil (the federation requires mutual TLS)")
	case cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil:
		return nil, errors.New("participant: Config.TLS has no client certificate")
	case a.ops == nil:
		return nil, errors.New("participant: WithOps(nil)")
	}
	a.metrics = newMetrics(a)
	if cfg.TLS != nil {
		a.creds = newCertWatch(credentials.NewTLS(a.watchClientCertificate(cfg.TLS)))
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if et, ok := cfg.Trainer.(*ExecTrainer); ok && et.Log == nil {
		et.Log = a.log // the trainer's output belongs in the agent's log
	}
	if cfg.StateFile != "" {
		st, err := a.ops.LoadState(cfg.StateFile)
		if err != nil {
			return nil, fmt.Errorf("participant: %w", err)
		}
		a.accepted, a.checkpoint, a.revealed = st.Accepted, st.Checkpoint, st.Revealed
		if err := a.pinRecorded(st.rotations); err != nil {
			return nil, fmt.Errorf("participant: state %s: %w", cfg.StateFile, err)
		}
	}
	v, err := newValidator(cfg)
	if err != nil {
		return nil, err
	}
	a.validator = v
	ledger, err := newLedgerFile(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	if a.dp, err = newDPLedger(cfg, ledger); err != nil {
		return nil, err
	}
	if a.secureDP, err = newSecureLedger(cfg, ledger); err != nil {
		return nil, err
	}
	if et, ok := cfg.Trainer.(*ExecTrainer); ok && a.dp != nil {
		et.dpPlan = a.dp.planDP
	}
	if a.dp != nil && a.dp.trainer != nil {
		a.cfg.Trainer = dpGuard{a.dp.trainer, a}
	} else if a.dp != nil {
		a.cfg.Trainer = reportedDPGuard{a.cfg.Trainer, a}
	}
	a.metrics.dpBudget(a.dp)
	a.metrics.secureDPBudget(a.secureDP)
	if a.waitTimeout <= 0 {
		return nil, errors.New("participant: WaitRound timeout must be positive")
	}
	return a, nil
}

// Stats returns the agent's counters; it is safe to call while Run runs.
func (a *Agent) Stats() AgentStats {
	return AgentStats{
		Rounds:              a.rounds.Load(),
		BytesReceived:       a.bytesIn.Load(),
		BytesSent:           a.bytesOut.Load(),
		SecureBytesSent:     a.secureOut.Load(),
		SecureBytesReceived: a.secureIn.Load(),
		ModelsRefused:       a.refused.Load(),
		Retries:             a.retries.Load(),
	}
}

// ErrCoordinatorGone is returned by Run when the coordinator could not be
// reached for Config.GiveUpAfter: most often because the federation
// finished while the agent was away and the coordinator exited.
var ErrCoordinatorGone = errors.New("participant: coordinator unreachable, giving up")

// permanentError carries an error that ends Run.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// Run takes part until the coordinator says the training is finished
// (returns nil), ctx is cancelled (returns ctx.Err()), the coordinator
// stays unreachable for Config.GiveUpAfter ([ErrCoordinatorGone]), or a
// permanent error
// (returns it: PermissionDenied, Unauthenticated or Unimplemented from the
// coordinator, [ErrIncompatible], [ErrCertificate]). Transient failures are
// retried with exponential backoff and jitter, each retry logged.
//
// Run may be called only once at a time: the agent's state (the prepared
// specification, the last submitted round) belongs to one run.
//
// With Config.MetricsListen set, Run first binds the metrics listener
// (failing to is an error, before anything is dialled) and shuts it down
// before it returns.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("participant: Run is already running")
	}
	defer a.running.Store(false)
	stopMetrics, err := a.serveMetrics(ctx)
	if err != nil {
		return err
	}
	defer stopMetrics()
	opts := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                30 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  a.cfg.MinBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   a.cfg.MaxBackoff,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithUserAgent("fedguard-participant/" + a.cfg.AgentVersion),
	}
	if a.creds != nil { // nil only with an Ops that brings its transport
		opts = append(opts, grpc.WithTransportCredentials(a.creds))
	}
	opts = append(opts, wire.DialOptions()...)
	opts = append(opts, a.dialOpts...)
	conn, err := a.ops.Dial(a.cfg.Coordinator, opts...)
	if err != nil {
		return fmt.Errorf("participant: dial %s: %w", a.cfg.Coordinator, err)
	}
	defer conn.Close()
	client := countingClient{fedguardv1.NewCoordinatorServiceClient(conn), a.metrics}

	var round uint64
	a.contact = a.ops.Now()
	for {
		err := a.session(ctx, client, &round)
		if err == nil {
			a.log.InfoContext(ctx, "training finished", slog.Uint64("rounds", a.rounds.Load()))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := a.classify(err); err != nil {
			a.log.ErrorContext(ctx, "stopping", slog.Any("error", err), slog.Uint64("round", round))
			return err
		}
		if away := a.ops.Now().Sub(a.contact); a.cfg.GiveUpAfter > 0 && away >= a.cfg.GiveUpAfter {
			err := fmt.Errorf("%w: no answer from %s for %v (%d attempts; last error: %w); if the federation has finished, this is expected, otherwise restart the agent when the coordinator is back",
				ErrCoordinatorGone, a.cfg.Coordinator, away.Round(time.Second), a.attempt, err)
			a.log.ErrorContext(ctx, "stopping", slog.Any("error", err), slog.Uint64("round", round))
			return err
		}
		a.attempt++
		a.retries.Add(1)
		d := a.backoff(a.attempt)
		a.log.WarnContext(ctx, "coordinator unreachable, retrying",
			slog.Any("error", err), slog.Uint64("round", round),
			slog.Int("attempt", a.attempt), slog.Duration("backoff", d))
		if err := a.ops.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// classify returns the error that ends Run, or nil when err is transient.
func (a *Agent) classify(err error) error {
	var p permanentError
	if errors.As(err, &p) {
		return p.err
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		return fmt.Errorf("participant: coordinator refused the agent: %w", err)
	case codes.Unavailable:
		if cerr := a.creds.take(); cerr != nil {
			return fmt.Errorf("%w (coordinator %s)%s", cerr, a.cfg.Coordinator, a.refusalHint(cerr))
		}
	}
	return nil
}

// backoff returns the wait before retry number attempt (1-based):
// exponential from MinBackoff, capped at MaxBackoff, then drawn uniformly
// from its upper half ("equal jitter") so that hospitals cut off together do
// not all return at the same instant.
func (a *Agent) backoff(attempt int) time.Duration {
	d := float64(a.cfg.MinBackoff) * math.Pow(2, float64(min(attempt-1, 30)))
	d = min(d, float64(a.cfg.MaxBackoff))
	return time.Duration(d/2 + a.ops.Float64()*d/2)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// session runs one connection's life: Join, Prepare, ReportStats, rounds.
// It returns nil when the training is finished.
func (a *Agent) session(ctx context.Context, client fedguardv1.CoordinatorServiceClient, round *uint64) error {
	cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	jr, err := client.Join(cctx, &fedguardv1.JoinRequest{AgentVersion: a.cfg.AgentVersion})
	cancel()
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	a.creds.clear()
	a.contact = a.ops.Now()
	// A new session may be with a restarted coordinator, which keeps only
	// closed rounds and so offers an open round again from its first
	// attempt: what this agent submitted to its predecessor is gone. The
	// coordinator decides who still owes an update; the guard below only
	// stops a spin within one session.
	a.last.round, a.last.attempt = 0, 0
	a.name = jr.GetParticipant()
	a.log.InfoContext(ctx, "joined", slog.String("federation", jr.GetFederation()), slog.String("participant", jr.GetParticipant()))
	if err := a.prepare(jr.GetModel()); err != nil {
		if errors.Is(err, ErrTrainerNotApproved) {
			// The hospital's allow-list refuses its own trainer: the
			// federation's audit log records that, as any refusal.
			return a.refuseTrainer(ctx, client, err)
		}
		return err
	}
	if jr.GetStatsNeeded() {
		if err := checkStats(a.stats, a.spec.Features); err != nil {
			return permanent(err)
		}
		// The statistics fix the federation's scaling: in enforce mode,
		// data that fails its expectations must not shape it either. The
		// check is repeated on the next connection attempt, so a fixed
		// file gets through.
		if a.validator != nil {
			req, refused := a.validator.check(ctx, a.log)
			a.metrics.validated(req)
			if refused != nil {
				a.log.WarnContext(ctx, "feature statistics withheld: the data fails its expectations", slog.Any("error", refused))
				return refused
			}
		}
		st := &fedguardv1.FeatureStats{Count: a.stats.Count, Sum: a.stats.Sum, SumSquares: a.stats.SumSquares}
		cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
		_, err := client.ReportStats(cctx, &fedguardv1.ReportStatsRequest{Stats: st})
		cancel()
		if err != nil {
			return fmt.Errorf("report stats: %w", err)
		}
		a.log.InfoContext(ctx, "feature statistics reported", slog.Uint64("rows", a.stats.Count))
	}
	refusals := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, a.waitTimeout)
		wr, err := client.WaitRound(wctx, &fedguardv1.WaitRoundRequest{})
		cancel()
		if err != nil {
			if ctx.Err() == nil && status.Code(err) == codes.DeadlineExceeded {
				continue // our own long-poll bound; ask again
			}
			return fmt.Errorf("wait round: %w", err)
		}
		a.attempt, a.contact = 0, a.ops.Now()
		if wr.GetFinished() {
			return a.acceptFinal(ctx, client, wr.GetManifest())
		}
		asg := wr.GetAssignment()
		if asg == nil {
			continue
		}
		*round = asg.GetRound()
		if asg.GetRound() == a.last.round && uint64(asg.GetAttempt()) == a.last.attempt {
			// Already submitted; the coordinator should not offer it again.
			// Wait rather than spin.
			refusals++
			if err := a.ops.Sleep(ctx, a.backoff(refusals)); err != nil {
				return err
			}
			continue
		}
		a.metrics.assigned(asg.GetRound())
		started, done := time.Now(), a.rounds.Load()
		err = a.runRound(ctx, client, asg)
		a.metrics.roundEnded(ctx, asg.GetRound(), started, a.rounds.Load() > done, err)
		var st interface{ GRPCStatus() *status.Status }
		switch {
		case err == nil:
			refusals = 0
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, new(permanentError)):
			return err
		case errors.Is(err, ErrDataRefused):
			a.log.WarnContext(ctx, "round sat out: the data file does not meet its expectations", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		case errors.Is(err, ErrPrivacyBudget):
			a.log.WarnContext(ctx, "round sat out: the privacy budget would be exceeded", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		case errors.Is(err, ErrModelRefused):
			a.refused.Add(1)
			a.log.WarnContext(ctx, "starting model refused", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		case errors.Is(err, ErrTrainer):
			a.log.WarnContext(ctx, "round sat out: the external trainer failed", slog.Any("error", err),
				slog.String("reason", trainerReason(err)), slog.Uint64("round", asg.GetRound()))
			a.reportSatOut(ctx, client, asg, "trainer_"+trainerReason(err), err)
		case errors.Is(err, ErrSecureRound):
			a.log.WarnContext(ctx, "secure round abandoned", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
			if errors.As(err, new(*badShareError)) {
				// Only this agent saw the bad share: without the report the
				// coordinator's record shows it dropped, and the sender as
				// a member like the others.
				a.reportSatOut(ctx, client, asg, satOutBadShare, err)
			}
		case errors.As(err, &st) && roundLevel(status.Code(err)):
			a.log.WarnContext(ctx, "round not completed", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		case errors.As(err, &st):
			return err // transient or permanent: the caller decides
		default:
			// A local training failure: skip the round.
			a.log.ErrorContext(ctx, "local training failed", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		}
		refusals++
		if err := sleep(ctx, a.backoff(refusals)); err != nil {
			return err
		}
	}
}

// roundLevel reports whether a status code from a round RPC ends only the
// round, not the session.
func roundLevel(c codes.Code) bool {
	return c == codes.FailedPrecondition || c == codes.InvalidArgument || c == codes.Aborted
}

// prepare checks spec and hands it to the Trainer, once per distinct spec.
func (a *Agent) prepare(spec *fedguardv1.ModelSpec) error {
	if spec == nil {
		return permanent(fmt.Errorf("%w: Join returned no model specification", ErrIncompatible))
	}
	if a.prepared != nil && proto.Equal(a.prepared, spec) {
		return nil
	}
	s, err := wire.SpecFromProto(spec)
	if err != nil {
		return permanent(fmt.Errorf("%w: %w", ErrIncompatible, err))
	}
	st, err := a.cfg.Trainer.Prepare(spec)
	if err != nil {
		return permanent(fmt.Errorf("participant: prepare local data: %w", err))
	}
	if a.prepared != nil {
		a.log.Warn("model specification changed", slog.Int("params", s.NumParams()))
	}
	a.prepared, a.spec, a.stats = proto.Clone(spec).(*fedguardv1.ModelSpec), s, st
	if a.data, err = a.dataVersion(); err != nil {
		return permanent(err)
	}
	if a.data != nil {
		a.log.Info("data version", slog.String("data_sha256", hex.EncodeToString(a.data)))
	}
	return nil
}

// checkStats refuses to report aggregates the coordinator could not use.
func checkStats(st dataset.Stats, features int) error {
	if st.Count == 0 || len(st.Sum) != features || len(st.SumSquares) != features {
		return fmt.Errorf("%w: trainer returned statistics for %d rows and %d/%d features, want %d features",
			ErrIncompatible, st.Count, len(st.Sum), len(st.SumSquares), features)
	}
	for i := range features {
		if math.IsNaN(st.Sum[i]) || math.IsInf(st.Sum[i], 0) || math.IsNaN(st.SumSquares[i]) || math.IsInf(st.SumSquares[i], 0) {
			return fmt.Errorf("%w: feature statistics are not finite", ErrIncompatible)
		}
	}
	return nil
}

// roundContext returns the context for a round's RPCs and training. A
// secure round lasts beyond the round deadline, by two phase timeouts
// (consistency check and unmasking follow the masked inputs, which the
// coordinator awaits until the deadline) and [SecureRoundMargin].
func roundContext(ctx context.Context, asg *fedguardv1.RoundAssignment) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(DefaultRoundTimeout)
	if d := asg.GetDeadline(); d != nil && d.IsValid() {
		deadline = d.AsTime()
	}
	if s := asg.GetSecure(); s != nil {
		phase := time.Duration(min(s.GetPhaseTimeoutMillis(), uint64(secureround.MaxPhaseTimeout/time.Millisecond))) * time.Millisecond
		deadline = deadline.Add(2*phase + SecureRoundMargin)
	}
	if floor := time.Now().Add(MinRoundTimeout); deadline.Before(floor) {
		deadline = floor
	}
	return context.WithDeadline(ctx, deadline)
}

// runRound fetches and checks the starting model, trains and submits; a
// secure round goes through runSecure instead once the manifest is
// checked.
func (a *Agent) runRound(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment) error {
	if m := asg.GetModel(); m != nil && !proto.Equal(m, a.prepared) {
		// The coordinator changed the specification: join again to pick
		// it up (and prepare the data for it).
		return status.Error(codes.Unavailable, "assignment carries a different model specification")
	}
	rctx, cancel := roundContext(ctx, asg)
	defer cancel()
	log := a.log.With(slog.Uint64("round", asg.GetRound()))
	log.InfoContext(ctx, "round assigned", slog.Uint64("attempt", uint64(asg.GetAttempt())))
	if err := a.validateData(rctx, client, asg, log); err != nil {
		// Sit this attempt out; do not check it again when offered again.
		a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
		return err
	}
	v, err := a.checkManifest(rctx, client, asg)
	if err != nil {
		return err
	}
	if err := a.checkTrainer(rctx, client, v.Round); err != nil {
		return err
	}
	if err := a.checkPrivacy(rctx, client, asg, log); err != nil {
		if errors.Is(err, ErrPrivacyBudget) {
			a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
		}
		return err
	}
	if asg.GetSecure() != nil {
		return a.runSecure(ctx, rctx, client, asg, log)
	}
	if a.cfg.RequireSecure {
		return permanent(fmt.Errorf("%w: round %d", ErrPlainRound, asg.GetRound()))
	}

	start, err := a.fetchModel(rctx, client, asg)
	if err != nil {
		return err
	}
	res, err := a.train(rctx, client, asg, start, log)
	if err != nil {
		return err
	}
	resp, err := a.submit(rctx, client, asg, res)
	if err != nil {
		return err
	}
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
	a.rounds.Add(1)
	log.InfoContext(ctx, "update accepted", slog.Float64("norm", resp.GetNorm()),
		slog.Uint64("samples", res.Samples), slog.Float64("holdout_accuracy", res.Holdout.Accuracy))
	return nil
}

// train runs the trainer from start and checks its result, for a plain
// round and a secure one alike. An incompatible trainer is a permanent
// error. A privacy budget that only training found exhausted (an exec
// trainer's DP events) drops the update: this attempt is sat out and the
// coordinator told why.
func (a *Agent) train(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, start []float32, log *slog.Logger) (Result, error) {
	trainStart := time.Now()
	res, err := a.cfg.Trainer.Train(ctx, asg, start)
	if err != nil {
		if errors.Is(err, ErrIncompatible) {
			return Result{}, permanent(err)
		}
		if errors.Is(err, ErrPrivacyBudget) {
			a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
			a.reportPrivacyRefusal(ctx, client, asg, log)
		}
		return Result{}, fmt.Errorf("participant: train: %w", err)
	}
	a.metrics.trained(trainStart)
	if err := a.checkResult(res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// checkResult refuses to send an update the coordinator would have to refuse.
func (a *Agent) checkResult(res Result) error {
	if len(res.Delta) != a.spec.NumParams() {
		return fmt.Errorf("participant: trainer returned %d parameters, want %d", len(res.Delta), a.spec.NumParams())
	}
	if res.Samples == 0 {
		return errors.New("participant: trainer reported no training rows")
	}
	if err := model.CheckFinite(res.Delta); err != nil {
		return fmt.Errorf("participant: trainer returned a non-finite update: %w", err)
	}
	return nil
}

// fetchModel streams the starting model of asg's round and verifies it.
func (a *Agent) fetchModel(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment) ([]float32, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the stream early on refusal
	defer cancel()
	stream, err := client.GetModel(ctx, &fedguardv1.GetModelRequest{Round: asg.GetRound()})
	if err != nil {
		return nil, fmt.Errorf("get model: %w", err)
	}
	n := a.spec.NumParams()
	collectBefore(n)
	params := make([]float32, n)
	asm := wire.NewAssembler(params)
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("get model: %w", err)
		}
		switch {
		case msg.GetRound() != asg.GetRound():
			return nil, fmt.Errorf("%w: chunk for round %d, assignment is for round %d", ErrModelRefused, msg.GetRound(), asg.GetRound())
		case msg.GetFormatVersion() != model.FormatVersion:
			return nil, fmt.Errorf("%w: chunk in format version %d, want %d", ErrModelRefused, msg.GetFormatVersion(), model.FormatVersion)
		case msg.GetNumParams() != uint64(n):
			return nil, fmt.Errorf("%w: chunk for %d parameters, want %d", ErrModelRefused, msg.GetNumParams(), n)
		}
		if err := asm.Add(msg.GetOffset(), msg.GetData()); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelRefused, err)
		}
		a.bytesIn.Add(uint64(len(msg.GetData())))
	}
	if err := asm.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelRefused, err)
	}
	sum := asm.Sum()
	if subtle.ConstantTimeCompare(sum[:], asg.GetModelSha256()) != 1 {
		return nil, fmt.Errorf("%w: digest %x differs from the assignment's %x", ErrModelRefused, sum, asg.GetModelSha256())
	}
	return params, nil
}

// submit streams res as the update for asg's round.
func (a *Agent) submit(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, res Result) (*fedguardv1.SubmitUpdateResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.SubmitUpdate(ctx)
	if err != nil {
		return nil, fmt.Errorf("submit update: %w", err)
	}
	digest := model.Digest(res.Delta)
	hdr := &fedguardv1.SubmitUpdateRequest{
		Round:         asg.GetRound(),
		FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams:   uint64(len(res.Delta)),
			SampleCount: res.Samples,
			Sha256:      digest[:],
			DataSha256:  a.data,
			Privacy:     a.privacyLedger(),
			Holdout: &fedguardv1.Evaluation{
				Count:    uint64(max(res.Holdout.Count, 0)),
				Loss:     res.Holdout.Loss,
				Accuracy: res.Holdout.Accuracy,
			},
		}},
	}
	var sent uint64
	err = stream.Send(hdr)
	if err == nil {
		err = wire.Chunks(res.Delta, func(offset uint64, data []byte) error {
			err := stream.Send(&fedguardv1.SubmitUpdateRequest{
				Round:         asg.GetRound(),
				FormatVersion: model.FormatVersion,
				Body:          &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: offset, Data: data}},
			})
			if err == nil {
				sent += uint64(len(data))
			}
			return err
		})
	}
	a.bytesOut.Add(sent)
	// io.EOF from Send means the coordinator ended the stream; its status
	// comes from CloseAndRecv.
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("submit update: %w", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("submit update: %w", err)
	}
	if resp.GetRound() != asg.GetRound() {
		a.log.WarnContext(ctx, "coordinator acknowledged another round", slog.Uint64("round", asg.GetRound()), slog.Uint64("acknowledged", resp.GetRound()))
	}
	return resp, nil
}
