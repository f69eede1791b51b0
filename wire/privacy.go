package wire

import (
	"fmt"
	"math"

	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// CheckPrivacyLedger checks a participant's reported record-level privacy
// ledger (UpdateHeader.privacy, SecureMaskedChunk.privacy): absent, or
// finite values with ε and the budget non-negative (0: no budget) and δ in
// (0, 1). What it says is the participant's own claim; this only keeps
// malformed numbers out of the manifest and the audit log.
func CheckPrivacyLedger(p *fedguardv1.PrivacyLedger) error {
	if p == nil {
		return nil
	}
	return checkLedger(p.GetEpsilon(), p.GetDelta(), p.GetBudget())
}

// checkLedger checks a reported ledger's numbers: ε and the budget finite
// and ≥ 0, δ in (0, 1).
func checkLedger(epsilon, delta, budget float64) error {
	ok := func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
	switch {
	case !ok(epsilon):
		return fmt.Errorf("epsilon %v: want a finite number ≥ 0", epsilon)
	case !ok(budget):
		return fmt.Errorf("budget %v: want a finite number ≥ 0 (0: none)", budget)
	case !(delta > 0 && delta < 1):
		return fmt.Errorf("delta %v: want a number in (0, 1)", delta)
	}
	return nil
}

// MaxDistributedReleases bounds DistributedPrivacyLedger.releases: the
// number of distributed-DP sessions a participant's ledger file can hold
// (one release per session it sent a masked input to).
const MaxDistributedReleases = 50_000

// CheckDistributedPrivacyLedger checks a participant's reported
// federation-level (distributed DP) ledger
// (SecureMaskedChunk.distributed_privacy): absent, or finite values with ε
// and the budget non-negative (0: no budget), δ in (0, 1), and between 1
// and MaxDistributedReleases releases — it is sent with a masked input,
// whose release the ledger already holds. As with CheckPrivacyLedger, what
// it says is the participant's own claim; this keeps malformed numbers out
// of the manifest and the audit log.
func CheckDistributedPrivacyLedger(p *fedguardv1.DistributedPrivacyLedger) error {
	if p == nil {
		return nil
	}
	if err := checkLedger(p.GetEpsilon(), p.GetDelta(), p.GetBudget()); err != nil {
		return err
	}
	if r := p.GetReleases(); r < 1 || r > MaxDistributedReleases {
		return fmt.Errorf("releases %d: want 1 to %d", r, MaxDistributedReleases)
	}
	return nil
}
