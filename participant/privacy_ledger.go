package participant

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// DefaultDPDelta is the δ of a hospital's record-level budget when it sets
// ε and not δ: below 1/N for any hospital of fewer than 100,000 patients.
const DefaultDPDelta = 1e-5

// ledgerBounds reads a ledger's budget and δ from Config the way both of
// the agent's ledgers do: a budget of 0 is none (+Inf), a δ of 0 is
// DefaultDPDelta, and δ must be valid. Each ledger checks its budget's
// range itself before.
func ledgerBounds(budget, delta float64) (float64, float64, error) {
	if budget == 0 {
		budget = math.Inf(1)
	}
	delta = cmp.Or(delta, DefaultDPDelta)
	if err := privacy.ValidateDelta(delta); err != nil {
		return 0, 0, fmt.Errorf("participant: Config.DPDelta: %w", err)
	}
	return budget, delta, nil
}

// ErrPrivacyBudget marks a round the agent sat out because training in it
// would take the hospital's record-level privacy loss above its budget
// (Config.DPEpsilon). The agent reports it to the coordinator and waits
// for the next assignment, so Run does not return this error.
var ErrPrivacyBudget = errors.New("participant: round would exceed the privacy budget")

// DPTrainer is a Trainer that trains with DP-SGD: before each round the
// agent asks it what the round will cost, as one event of the accountant
// (package privacy), and keeps the ledger itself.
type DPTrainer interface {
	Trainer
	// DPEvent returns the Poisson-subsampled Gaussian mechanism that
	// training for assignment a will run: sampling rate, noise multiplier
	// and number of steps. ok is false when the trainer does not train
	// with DP.
	DPEvent(a *fedguardv1.RoundAssignment) (ev privacy.Event, ok bool, err error)
}

// maxLedgerEvents bounds the privacy ledger: one event per round trained,
// so 100,000 rounds, some 8 MB of JSON.
const maxLedgerEvents = 100_000

// maxLedgerFileSize bounds the ledger file the agent reads.
const maxLedgerFileSize = 16 << 20

// ledgerVersion is the format version of the privacy ledger file.
const ledgerVersion = 1

// LedgerEvent is one round the agent trained with DP-SGD: the round and
// attempt, and the mechanism it ran (privacy.Event).
type LedgerEvent struct {
	Round   uint64 `json:"round"`
	Attempt uint32 `json:"attempt"`
	privacy.Event
}

// ledgerRecord is the content of the privacy ledger file, one JSON object:
//
//	{"version": 1, "events": [{"round": 3, "attempt": 0, "q": 0.01, "sigma": 1.1, "steps": 300}, ...],
//	 "distributed": [{"round": 3, "attempt": 0, "sigma": 4096, "clients": 7, "dim": 65536, "l2": 1100.4, "steps": 1}, ...]}
//
// It is a file of its own beside the state file (see [PrivacyLedgerPath])
// rather than a field of it: the state file records the manifests the agent
// accepted and is written by other parts of the agent, and the ledger must
// survive a state file being reset (a new federation) — a hospital's
// patients do not get their privacy back when the coordinator changes.
//
// It holds the hospital's two ledgers, which are in different units and
// never compose: Events, the record-level DP-SGD rounds (the unit is one
// patient), and Distributed, the secure rounds with distributed DP it sent
// a masked input to (the unit is the hospital's whole update; see
// [DistributedLedgerEvent]). Distributed is left out when empty, so the
// file of a hospital that never took part in distributed DP is what
// version 1 always was; an older agent refuses a file that has it (the
// parser is strict), rather than dropping it on its next write.
type ledgerRecord struct {
	Version     int                      `json:"version"`
	Events      []LedgerEvent            `json:"events"`
	Distributed []DistributedLedgerEvent `json:"distributed,omitempty"`
}

// PrivacyLedgerPath returns the privacy ledger file of the agent whose
// state file is state: beside it, with ".privacy.json" in place of its
// extension (alice.accepted.json gives alice.accepted.privacy.json).
func PrivacyLedgerPath(state string) string {
	if state == "" {
		return ""
	}
	return strings.TrimSuffix(state, filepath.Ext(state)) + ".privacy.json"
}

// parseLedger decodes and checks a ledger file's content.
func parseLedger(b []byte) (ledgerRecord, error) {
	if len(b) > maxLedgerFileSize {
		return ledgerRecord{}, fmt.Errorf("larger than %d bytes", maxLedgerFileSize)
	}
	var rec ledgerRecord
	if err := strictjson.Unmarshal(b, &rec); err != nil {
		return ledgerRecord{}, err
	}
	if rec.Version != ledgerVersion {
		return ledgerRecord{}, fmt.Errorf("version %d, want %d", rec.Version, ledgerVersion)
	}
	if len(rec.Events) > maxLedgerEvents {
		return ledgerRecord{}, fmt.Errorf("%d events, more than %d", len(rec.Events), maxLedgerEvents)
	}
	for i, e := range rec.Events {
		if err := e.Validate(); err != nil {
			return ledgerRecord{}, fmt.Errorf("event %d: %w", i, err)
		}
		if e.Round == 0 {
			return ledgerRecord{}, fmt.Errorf("event %d: round 0", i)
		}
	}
	if err := checkDistributed(rec.Distributed); err != nil {
		return ledgerRecord{}, err
	}
	return rec, nil
}

// loadLedger reads the ledger at path; a missing file is an empty ledger.
func loadLedger(path string) (ledgerRecord, error) {
	b, err := readAgentFile(path, maxLedgerFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return ledgerRecord{Version: ledgerVersion}, nil
	}
	if err != nil {
		return ledgerRecord{}, fmt.Errorf("privacy ledger: %w", err)
	}
	rec, err := parseLedger(b)
	if err != nil {
		return ledgerRecord{}, fmt.Errorf("privacy ledger %s: %w", path, err)
	}
	return rec, nil
}

// saveLedger replaces the ledger at path atomically (a crash leaves the old
// ledger or the new one) with mode 0600.
func saveLedger(path string, rec ledgerRecord) error {
	if len(rec.Events) > maxLedgerEvents {
		return fmt.Errorf("privacy ledger: %d events, more than %d", len(rec.Events), maxLedgerEvents)
	}
	if len(rec.Distributed) > maxDistributedEvents {
		return fmt.Errorf("privacy ledger: %d distributed events, more than %d", len(rec.Distributed), maxDistributedEvents)
	}
	rec.Version = ledgerVersion
	if rec.Events == nil {
		rec.Events = []LedgerEvent{}
	}
	if err := certs.WriteJSONAtomic(path, rec, 0o600); err != nil {
		return fmt.Errorf("privacy ledger: %w", err)
	}
	return nil
}

// ledgerFile is the privacy ledger file as the agent last wrote or read
// it: both ledgers write through it, each replacing its own part, so that
// neither loses the other's (nor a part the agent no longer keeps: the
// record-level events of a hospital that stopped training with DP-SGD).
type ledgerFile struct {
	path string // "" keeps it in memory (tests)
	rec  ledgerRecord
}

// newLedgerFile reads the agent's ledger file (beside state; in memory
// when state is "").
func newLedgerFile(state string) (*ledgerFile, error) {
	f := &ledgerFile{path: PrivacyLedgerPath(state), rec: ledgerRecord{Version: ledgerVersion}}
	if f.path == "" {
		return f, nil
	}
	rec, err := loadLedger(f.path)
	if err != nil {
		return nil, fmt.Errorf("participant: %w", err)
	}
	f.rec = rec
	return f, nil
}

// write makes rec the file's content: on disk first, then in memory.
func (f *ledgerFile) write(rec ledgerRecord) error {
	if f.path != "" {
		if err := saveLedger(f.path, rec); err != nil {
			return fmt.Errorf("participant: %w", err)
		}
	}
	f.rec = rec
	return nil
}

// errUnboundedEpsilon marks DP-SGD events whose composition has no finite
// ε at the ledger's δ: a noise multiplier so small (or so many steps) that
// the accountant bounds nothing. Such a round is never recorded nor its
// update sent: the ledger could not account for it, and the ε the agent
// reports with its updates must be a finite number (the coordinator
// refuses any other, see wire.CheckPrivacyLedger), so one recorded
// unbounded round would have every later update refused.
var errUnboundedEpsilon = errors.New("the DP-SGD events give no finite ε (the noise multiplier is too small for the accountant to bound the privacy loss)")

// composedEpsilon is the ε at δ of the releases of a ledger's events, each
// mapped to its mechanism and composed by compose from scratch, 0 for an
// empty ledger: the federation-level ledger's (whose mechanisms' RDP is in
// closed form), and the reference the record-level ledger's kept
// composition is tested against.
func composedEpsilon[E, M any](evs []E, delta float64, mech func(E) M, compose func(float64, ...M) (privacy.Guarantee, error)) (float64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	ms := make([]M, len(evs))
	for i, e := range evs {
		ms[i] = mech(e)
	}
	g, err := compose(delta, ms...)
	if err != nil {
		return 0, err
	}
	return g.Epsilon, nil
}

// dpLedger is an agent's record-level privacy accounting.
type dpLedger struct {
	trainer DPTrainer
	file    *ledgerFile
	budget  float64 // ε budget; +Inf when the hospital set none
	delta   float64
	events  []LedgerEvent
	spent   float64 // ε of events
	// comp is the composition of events, kept beside them so that
	// accounting for a round evaluates only the mechanisms it brings (see
	// privacy.Composition): a trainer whose (q, σ) differs a little every
	// round would otherwise cost one evaluation per round recorded, each
	// round, three times. Its ε is the composition's of events, bit for
	// bit.
	comp *privacy.Composition
}

// epsilonWith is the ε at the ledger's δ of its events followed by more
// (none: the ledger's own), from its composition; an unbounded one is an
// error wrapping errUnboundedEpsilon, as ledgerEpsilon's.
func (l *dpLedger) epsilonWith(more ...LedgerEvent) (float64, error) {
	evs := make([]privacy.Event, len(more))
	for i, e := range more {
		evs[i] = e.Event
	}
	g, err := l.comp.Epsilon(l.delta, evs...)
	if err != nil {
		return 0, err
	}
	if math.IsInf(g.Epsilon, 0) || math.IsNaN(g.Epsilon) {
		return 0, fmt.Errorf("ε at δ = %g is %v: %w", l.delta, g.Epsilon, errUnboundedEpsilon)
	}
	return g.Epsilon, nil
}

// commitLedger adds added, after which the ledger's ε is eps (computed by
// epsilonWith(added...)), to the ledger: on disk first (the spending is
// durable before the update it pays for can leave), then in memory and
// the metric.
func (a *Agent) commitLedger(l *dpLedger, added []LedgerEvent, eps float64) error {
	evs := append(l.events[:len(l.events):len(l.events)], added...)
	rec := l.file.rec
	rec.Events = evs
	if err := l.file.write(rec); err != nil {
		return err
	}
	evs2 := make([]privacy.Event, len(added))
	for i, e := range added {
		evs2[i] = e.Event
	}
	// Validated when eps was computed: Add cannot refuse them.
	if err := l.comp.Add(evs2...); err != nil {
		return fmt.Errorf("participant: privacy accounting: %w", err)
	}
	l.events, l.spent = evs, eps
	a.metrics.dpSpent.Set(eps)
	return nil
}

// newDPLedger returns the agent's record-level ledger: nil when the
// trainer does not train with DP and no record-level budget is set. A
// budget with a trainer that cannot account for its training is an error:
// the budget could not be enforced. A δ alone (Config.DPDelta without
// Config.DPEpsilon) asks for no record-level ledger from a trainer without
// DP-SGD: it is then the δ of the federation-level ledger.
func newDPLedger(cfg Config, file *ledgerFile) (*dpLedger, error) {
	dt, ok := cfg.Trainer.(DPTrainer)
	_, reports := cfg.Trainer.(*ExecTrainer)
	if cfg.DPEpsilon == 0 && (!ok || !trainsWithDP(dt)) && !(reports && cfg.DPDelta != 0) {
		return nil, nil
	}
	switch {
	case reports:
		// The exec trainer reports its DP events after training, in its
		// metrics file; reportedDPGuard accounts for them.
		dt = nil
	case !ok || !trainsWithDP(dt):
		return nil, errors.New("participant: Config.DPEpsilon is set but the trainer does not train with DP-SGD (set a noise multiplier and a clipping norm)")
	}
	if !(cfg.DPEpsilon >= 0) {
		return nil, fmt.Errorf("participant: Config.DPEpsilon %v, want > 0 (or 0 for no budget)", cfg.DPEpsilon)
	}
	budget, delta, err := ledgerBounds(cfg.DPEpsilon, cfg.DPDelta)
	if err != nil {
		return nil, err
	}
	l := &dpLedger{trainer: dt, file: file, budget: budget, delta: delta}
	l.events = file.rec.Events
	comp, err := privacy.NewComposition(privacy.DefaultOrders())
	if err != nil {
		return nil, fmt.Errorf("participant: privacy accounting: %w", err)
	}
	l.comp = comp
	for _, e := range l.events {
		if err := comp.Add(e.Event); err != nil {
			return nil, fmt.Errorf("participant: privacy ledger: %w", err)
		}
	}
	spent, err := l.epsilonWith()
	if err != nil {
		return nil, fmt.Errorf("participant: privacy ledger: %w", err)
	}
	l.spent = spent
	return l, nil
}

// trainsWithDP asks the trainer whether it trains with DP at all.
func trainsWithDP(dt DPTrainer) bool {
	if lt, ok := dt.(*LocalTrainer); ok {
		return lt.DP != nil
	}
	return true
}

// roundEvent returns the round's event and the ε the ledger would reach
// with it; ok is false when the trainer does not train with DP.
func (l *dpLedger) roundEvent(asg *fedguardv1.RoundAssignment) (LedgerEvent, float64, bool, error) {
	if l.trainer == nil {
		return l.predictReported(asg)
	}
	ev, ok, err := l.trainer.DPEvent(asg)
	if err != nil || !ok {
		return LedgerEvent{}, 0, false, err
	}
	le := LedgerEvent{Round: asg.GetRound(), Attempt: asg.GetAttempt(), Event: ev}
	if len(l.events) >= maxLedgerEvents {
		return le, math.Inf(1), true, nil
	}
	eps, err := l.epsilonWith(le)
	return le, eps, true, err
}

// checkPrivacy runs before each round, once its manifest is accepted: it
// computes the ε the ledger would reach with the round's DP-SGD and, when
// that exceeds the budget, reports to the coordinator that the agent sits
// the round out and returns an error wrapping ErrPrivacyBudget. It records
// nothing: the round is recorded by the trainer guard (dpGuard) just
// before training, once the starting model has been verified, so that a
// coordinator cannot drain a hospital's budget with rounds the agent
// refuses or declines.
func (a *Agent) checkPrivacy(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger) error {
	l := a.dp
	if l == nil {
		return nil
	}
	_, eps, ok, err := l.roundEvent(asg)
	if err != nil {
		return fmt.Errorf("participant: privacy accounting: %w", err)
	}
	if !ok || eps <= l.budget {
		return nil
	}
	a.reportPrivacyRefusal(ctx, client, asg, log)
	return fmt.Errorf("%w: ε would reach %.4g > budget %.4g (δ = %g; spent so far %.4g)", ErrPrivacyBudget, eps, l.budget, l.delta, l.spent)
}

// dpGuard is the agent's Trainer when it keeps a privacy ledger: before
// handing a round to the trainer it checks the budget again and records
// the round in the ledger, durably — before training, so that a crash can
// never leave a trained round unaccounted (a round recorded whose update
// then does not reach the coordinator is over-counted, never
// under-counted).
type dpGuard struct {
	DPTrainer
	a *Agent
}

// Train implements Trainer.
func (g dpGuard) Train(ctx context.Context, asg *fedguardv1.RoundAssignment, start []float32) (Result, error) {
	l, a := g.a.dp, g.a
	le, eps, ok, err := l.roundEvent(asg)
	if err != nil {
		return Result{}, fmt.Errorf("participant: privacy accounting: %w", err)
	}
	if ok {
		if eps > l.budget {
			return Result{}, fmt.Errorf("%w: ε would reach %.4g > budget %.4g", ErrPrivacyBudget, eps, l.budget)
		}
		if err := a.commitLedger(l, []LedgerEvent{le}, eps); err != nil {
			return Result{}, err
		}
		a.log.InfoContext(ctx, "privacy spent", slog.Uint64("round", asg.GetRound()), slog.Float64("epsilon", eps),
			slog.Float64("epsilon_budget", l.budget), slog.Float64("delta", l.delta),
			slog.Float64("q", le.Q), slog.Float64("sigma", le.Sigma), slog.Int64("steps", le.Steps))
	}
	return g.DPTrainer.Train(ctx, asg, start)
}

// DataDescription passes the wrapped trainer's data description through,
// so that the data version is reported as without the guard.
func (g dpGuard) DataDescription() (lineage.Description, bool) {
	if d, ok := g.DPTrainer.(DataDescriber); ok {
		return d.DataDescription()
	}
	return lineage.Description{}, false
}

// reportPrivacyRefusal tells the coordinator, through ReportValidation
// (mode enforce, not training, one error finding with rule
// privacy_budget), that the agent sits the round out for its privacy
// budget; the coordinator records it in its audit log and the
// participant's status. A failed report is logged, not fatal.
func (a *Agent) reportPrivacyRefusal(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger) {
	req := &fedguardv1.ReportValidationRequest{
		Round: asg.GetRound(), Attempt: asg.GetAttempt(), Mode: ValidationEnforce, Training: false,
		Findings: []*fedguardv1.ValidationFinding{{Rule: string(validation.RulePrivacyBudget), Severity: string(validation.SeverityError)}},
	}
	cctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	_, err := client.ReportValidation(cctx, req)
	cancel()
	if err != nil {
		log.WarnContext(ctx, "privacy budget refusal not reported to the coordinator", slog.Any("error", err))
	}
}

// PrivacySpent returns the record-level ε the agent's ledger holds, its
// budget (+Inf for none) and δ; ok is false when the agent keeps no ledger.
// It must not be called while Run runs.
func (a *Agent) PrivacySpent() (epsilon, budget, delta float64, ok bool) {
	if a.dp == nil {
		return 0, 0, 0, false
	}
	return a.dp.spent, a.dp.budget, a.dp.delta, true
}

// privacyLedger is what the agent reports with its update: the ε its ledger
// holds after the round (the round was recorded before training), δ and the
// budget (0 for none). nil when it keeps no ledger. The coordinator records
// it as the hospital's own claim: it cannot check it (see docs/privacy.md).
func (a *Agent) privacyLedger() *fedguardv1.PrivacyLedger {
	l := a.dp
	if l == nil {
		return nil
	}
	budget := l.budget
	if math.IsInf(budget, 1) {
		budget = 0
	}
	return &fedguardv1.PrivacyLedger{Epsilon: l.spent, Delta: l.delta, Budget: budget}
}

// predictReported is roundEvent for a trainer that reports its DP events
// only after training (the exec trainer): it expects the round to cost
// what the last round recorded did (the last event of the ledger; a
// round that reported several events is expected to cost its last one
// only, so the check after training is the one that binds), and, before
// any round was recorded, that it costs nothing — ok is then false. A
// spent budget is refused either way.
func (l *dpLedger) predictReported(asg *fedguardv1.RoundAssignment) (LedgerEvent, float64, bool, error) {
	if len(l.events) == 0 {
		return LedgerEvent{}, 0, false, nil
	}
	if l.spent >= l.budget {
		return LedgerEvent{}, math.Inf(1), true, nil // any round adds ε > 0
	}
	le := l.events[len(l.events)-1]
	le.Round, le.Attempt = asg.GetRound(), asg.GetAttempt()
	if len(l.events) >= maxLedgerEvents {
		return le, math.Inf(1), true, nil
	}
	eps, err := l.epsilonWith(le)
	return le, eps, true, err
}

// reportedDPGuard is the agent's Trainer when it keeps a privacy ledger
// for a trainer that reports its DP events in its metrics file (the exec
// trainer): after training, and before the update can leave, it composes
// the reported events with the ledger. Over the budget, the update is
// dropped (it never leaves the hospital, so nothing is spent and nothing
// recorded) and the round sat out; otherwise the events are recorded,
// durably, before the agent sends the update. A trainer that reports no
// event while the hospital has a budget cannot be accounted for, and its
// update is dropped too.
type reportedDPGuard struct {
	Trainer
	a *Agent
}

// Train implements Trainer.
func (g reportedDPGuard) Train(ctx context.Context, asg *fedguardv1.RoundAssignment, start []float32) (Result, error) {
	res, err := g.Trainer.Train(ctx, asg, start)
	if err != nil {
		return res, err
	}
	l, a := g.a.dp, g.a
	if len(res.DPEvents) == 0 {
		return Result{}, &TrainerError{Reason: TrainerBadMetrics, Err: errors.New(
			"the hospital has a privacy budget (dp_epsilon) but the trainer's metrics file reports no dp_events: its update cannot be accounted for and is not sent")}
	}
	if len(l.events)+len(res.DPEvents) > maxLedgerEvents {
		return Result{}, fmt.Errorf("%w: the ledger holds %d events, at most %d", ErrPrivacyBudget, len(l.events), maxLedgerEvents)
	}
	var added []LedgerEvent
	for _, e := range res.DPEvents {
		added = append(added, LedgerEvent{Round: asg.GetRound(), Attempt: asg.GetAttempt(), Event: e})
	}
	eps, err := l.epsilonWith(added...)
	if errors.Is(err, errUnboundedEpsilon) {
		return Result{}, &TrainerError{Reason: TrainerBadMetrics, Err: fmt.Errorf(
			"the trainer's dp_events cannot be accounted for: %w; its update is not sent", err)}
	}
	if err != nil {
		return Result{}, fmt.Errorf("participant: privacy accounting: %w", err)
	}
	if eps > l.budget {
		return Result{}, fmt.Errorf("%w: the trainer reports DP events that take ε to %.4g > budget %.4g; the update is dropped", ErrPrivacyBudget, eps, l.budget)
	}
	if err := a.commitLedger(l, added, eps); err != nil {
		return Result{}, err
	}
	a.log.InfoContext(ctx, "privacy spent", slog.Uint64("round", asg.GetRound()), slog.Float64("epsilon", eps),
		slog.Float64("epsilon_budget", l.budget), slog.Float64("delta", l.delta), slog.Int("events", len(res.DPEvents)))
	return res, nil
}

// DataDescription passes the wrapped trainer's data description through.
func (g reportedDPGuard) DataDescription() (lineage.Description, bool) {
	if d, ok := g.Trainer.(DataDescriber); ok {
		return d.DataDescription()
	}
	return lineage.Description{}, false
}

// planDP is the ledger as an exec trainer's plan.json shows it.
func (l *dpLedger) planDP() *TrainerPlanDP {
	budget := l.budget
	if math.IsInf(budget, 1) {
		budget = 0
	}
	return &TrainerPlanDP{Delta: l.delta, EpsilonBudget: budget, EpsilonSpent: l.spent}
}
