package participant

import (
	"context"
	"fmt"
	"log/slog"
	"math"

	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

// maxDistributedEvents bounds the distributed part of the privacy ledger:
// one event per secure session the hospital sent a masked input to, some
// 130 bytes of JSON each, so that with a full record-level part the file
// stays under maxLedgerFileSize. It is the bound the coordinator checks the
// reported number of releases against.
const maxDistributedEvents = wire.MaxDistributedReleases

// DistributedLedgerEvent is one secure round with distributed DP to which
// the agent sent its masked input: the round and attempt, and one release
// of the sum as the accountant reads it (privacy.DistributedDiscreteGaussian
// with Steps 1), computed by the hospital from the round's plan itself —
// the noise σ, the dimension and ℓ2 bound of the encoding, and the fewest
// survivors any of the plan's sums may be unmasked with (the worst case
// the protocol allows; see secureround.Plan.MinSurvivors) — not taken from
// the coordinator's privacy record.
type DistributedLedgerEvent struct {
	Round   uint64 `json:"round"`
	Attempt uint32 `json:"attempt"`
	privacy.DistributedDiscreteGaussian
}

// checkDistributed checks the distributed part of a ledger file.
func checkDistributed(evs []DistributedLedgerEvent) error {
	if len(evs) > maxDistributedEvents {
		return fmt.Errorf("%d distributed events, more than %d", len(evs), maxDistributedEvents)
	}
	for i, e := range evs {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("distributed event %d: %w", i, err)
		}
		if e.Round == 0 {
			return fmt.Errorf("distributed event %d: round 0", i)
		}
		if e.Steps != 1 {
			return fmt.Errorf("distributed event %d: %d releases, want 1 (one event per session)", i, e.Steps)
		}
	}
	return nil
}

// distributedEpsilon is the ε of the releases of evs at δ.
func distributedEpsilon(evs []DistributedLedgerEvent, delta float64) (float64, error) {
	return composedEpsilon(evs, delta, func(e DistributedLedgerEvent) privacy.DistributedDiscreteGaussian {
		return e.DistributedDiscreteGaussian
	}, privacy.DistributedEpsilon)
}

// secureLedger is the agent's federation-level privacy accounting: the
// cumulative ε of the distributed DP of the secure rounds it contributed
// to, against Config.SecureDPEpsilon.
//
// It is the hospital's own account, kept like the record-level one
// (dpLedger) and for the same reason: the coordinator's manifest records
// the federation's ε too, but it is the coordinator's claim, counts rounds
// rather than the sessions a hospital sent an input to (a retried round
// is one round to it), and a hospital that left and rejoined, or that
// takes part in several federations, is in none of them alone. The rules
// are the record-level ledger's:
//
//   - Before a secure round the agent computes, from the plan, the ε the
//     ledger would reach with one more release; over the budget it sits
//     the round out before it advertises a key, and says so as the
//     record-level budget does (a privacy_budget report the coordinator
//     records) and, since the coordinator waits for its key otherwise, in
//     a SecureDecline whose reason names the numbers.
//   - The session is recorded, durably, after the hospital trained and
//     encoded its update and before its masked input is computed and sent:
//     the release happens when the input leaves (its self-mask can be
//     recovered from the other members' shares, whether or not this
//     hospital answers the unmasking), so a session abandoned after that is
//     over-counted, never under-counted. A resumed session (the same
//     messages sent again, see runSecure) is one release, recorded once.
//   - Every session is recorded, not every round: a hospital that sends a
//     masked input in two attempts of a round is in two released sums.
//   - Record-level and federation-level ε are in different units (a
//     patient, a hospital's whole update) and are never added up; both use
//     Config.DPDelta.
//
// Without a budget the rounds are still recorded, so that the hospital
// knows what it spent if it sets one later.
type secureLedger struct {
	file   *ledgerFile
	budget float64 // +Inf for none
	delta  float64
	spent  float64
}

// newSecureLedger returns the agent's federation-level ledger, read from
// file.
func newSecureLedger(cfg Config, file *ledgerFile) (*secureLedger, error) {
	if !(cfg.SecureDPEpsilon >= 0) || math.IsInf(cfg.SecureDPEpsilon, 1) {
		return nil, fmt.Errorf("participant: Config.SecureDPEpsilon %v, want a finite number > 0 (or 0 for no budget)", cfg.SecureDPEpsilon)
	}
	budget, delta, err := ledgerBounds(cfg.SecureDPEpsilon, cfg.DPDelta)
	if err != nil {
		return nil, err
	}
	l := &secureLedger{file: file, budget: budget, delta: delta}
	spent, err := distributedEpsilon(file.rec.Distributed, l.delta)
	if err != nil {
		return nil, fmt.Errorf("participant: privacy ledger: %w", err)
	}
	l.spent = spent
	return l, nil
}

// next returns the plan's release as a ledger event and the ε the ledger
// would reach with it; ok is false when the plan has no distributed DP.
func (l *secureLedger) next(plan secureround.Plan) (DistributedLedgerEvent, float64, bool, error) {
	dp := plan.DDP()
	if dp == nil {
		return DistributedLedgerEvent{}, 0, false, nil
	}
	ev := DistributedLedgerEvent{Round: plan.Round, Attempt: plan.Attempt, DistributedDiscreteGaussian: dp.Mechanism(plan.MinSurvivors())}
	evs := l.file.rec.Distributed
	if len(evs) >= maxDistributedEvents {
		return ev, math.Inf(1), true, nil
	}
	eps, err := distributedEpsilon(append(evs[:len(evs):len(evs)], ev), l.delta)
	return ev, eps, true, err
}

// secureBudgetShortfall returns why the agent sits out plan under its
// federation-level budget, or "" if it does not.
func (a *Agent) secureBudgetShortfall(plan secureround.Plan) (string, error) {
	l := a.secureDP
	_, eps, ok, err := l.next(plan)
	if err != nil {
		return "", fmt.Errorf("participant: distributed DP accounting: %w", err)
	}
	if !ok || eps <= l.budget {
		return "", nil
	}
	return fmt.Sprintf("this hospital's federation-level privacy budget would be exceeded: the secure rounds it contributed to have spent ε = %.4g, this one would take it to %.4g > %g (δ = %g)",
		l.spent, eps, l.budget, l.delta), nil
}

// sitOutSecureBudget sits out asg's secure round for the federation-level
// budget: it declines the session (so that the coordinator does not wait
// for this member's key) with reason, then reports privacy_budget as a
// record-level refusal does, and returns the error the round ends with.
func (a *Agent) sitOutSecureBudget(ctx, rctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger, reason string) error {
	if err := a.sendDecline(ctx, rctx, client, asg, log, reason); err != nil {
		log.WarnContext(ctx, "secure round decline not sent", slog.Any("error", err))
	}
	// Sit this attempt out even if the decline did not get through: the
	// next offer of it would be refused the same way.
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
	a.reportPrivacyRefusal(rctx, client, asg, log)
	return fmt.Errorf("%w: %s", ErrPrivacyBudget, reason)
}

// recordSecureRelease records plan's release in the ledger, durably, just
// before the agent's masked input is computed and sent; over the budget
// (the ledger changed since the round was joined) it records nothing and
// returns an error wrapping ErrPrivacyBudget.
func (a *Agent) recordSecureRelease(ctx context.Context, plan secureround.Plan) error {
	l := a.secureDP
	ev, eps, ok, err := l.next(plan)
	if err != nil {
		return fmt.Errorf("participant: distributed DP accounting: %w", err)
	}
	if !ok {
		return nil
	}
	if eps > l.budget {
		return fmt.Errorf("%w: the federation-level ε would reach %.4g > budget %g", ErrPrivacyBudget, eps, l.budget)
	}
	rec := l.file.rec
	rec.Distributed = append(rec.Distributed[:len(rec.Distributed):len(rec.Distributed)], ev)
	if err := l.file.write(rec); err != nil {
		return err
	}
	l.spent = eps
	a.metrics.secureDPSpent.Set(eps)
	a.log.InfoContext(ctx, "federation-level privacy spent", slog.Uint64("round", plan.Round), slog.Uint64("attempt", uint64(plan.Attempt)),
		slog.Float64("epsilon", eps), slog.Float64("epsilon_budget", l.budget), slog.Float64("delta", l.delta),
		slog.Float64("sigma", ev.Sigma), slog.Int("min_survivors", ev.Clients), slog.Float64("l2", ev.L2), slog.Int("dim", ev.Dim))
	return nil
}

// SecurePrivacySpent returns the federation-level ε the agent's ledger
// holds for the secure rounds with distributed DP it sent an input to, its
// budget (Config.SecureDPEpsilon; +Inf for none) and δ. It must not be
// called while Run runs.
func (a *Agent) SecurePrivacySpent() (epsilon, budget, delta float64) {
	return a.secureDP.spent, a.secureDP.budget, a.secureDP.delta
}

// distributedLedger is what the agent reports with its masked input in a
// secure session (SecureMaskedChunk.distributed_privacy): the
// federation-level ε its ledger holds — the session's release included, as
// it is recorded before the input is sent — δ, the budget (0 for none) and
// the number of releases. nil when the session has no distributed DP or
// the ledger holds no release. Like the record-level ledger it is the
// hospital's own claim, which the coordinator records as reported.
func (a *Agent) distributedLedger(plan secureround.Plan) *fedguardv1.DistributedPrivacyLedger {
	l := a.secureDP
	n := len(l.file.rec.Distributed)
	if plan.DDP() == nil || n == 0 {
		return nil
	}
	budget := l.budget
	if math.IsInf(budget, 1) {
		budget = 0
	}
	return &fedguardv1.DistributedPrivacyLedger{Epsilon: l.spent, Delta: l.delta, Budget: budget, Releases: uint64(n)}
}
