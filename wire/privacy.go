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
	ok := func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
	switch {
	case !ok(p.GetEpsilon()):
		return fmt.Errorf("epsilon %v: want a finite number ≥ 0", p.GetEpsilon())
	case !ok(p.GetBudget()):
		return fmt.Errorf("budget %v: want a finite number ≥ 0 (0: none)", p.GetBudget())
	case !(p.GetDelta() > 0 && p.GetDelta() < 1):
		return fmt.Errorf("delta %v: want a number in (0, 1)", p.GetDelta())
	}
	return nil
}
