package wire_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// FuzzCheckPrivacyLedger feeds arbitrary PrivacyLedger messages (the
// hospital's own record-level claim on UpdateHeader and SecureMaskedChunk)
// to the check: it never panics, and what it accepts is what the manifest
// and the audit log can record — finite numbers that encode as JSON, ε and
// the budget ≥ 0 and δ in (0, 1).
func FuzzCheckPrivacyLedger(f *testing.F) {
	protofuzz.Seed(f, []*fedguardv1.PrivacyLedger{
		{Epsilon: 2.5, Delta: 1e-5, Budget: 8},
		{Epsilon: math.NaN(), Delta: 1e-5},
		{Epsilon: math.Inf(1), Delta: 1e-5},
		{Epsilon: 1, Delta: 1e-5, Budget: math.Inf(1)},
		{Epsilon: math.Copysign(0, -1), Delta: math.SmallestNonzeroFloat64},
		{Epsilon: math.MaxFloat64, Delta: math.Nextafter(1, 0), Budget: math.MaxFloat64},
		{Epsilon: 1, Delta: 1},
		{Epsilon: 1, Delta: math.NaN()},
	}...)
	protofuzz.Fuzz(f, func(t *testing.T, p *fedguardv1.PrivacyLedger) {
		if wire.CheckPrivacyLedger(p) != nil {
			return
		}
		e, d, bu := p.GetEpsilon(), p.GetDelta(), p.GetBudget()
		if !(e >= 0) || !(bu >= 0) || !(d > 0 && d < 1) || math.IsInf(e, 0) || math.IsInf(bu, 0) {
			t.Fatalf("accepted ledger ε %v δ %v budget %v", e, d, bu)
		}
		if _, err := json.Marshal(map[string]float64{"epsilon": e, "delta": d, "budget": bu, "remaining": max(bu-e, 0)}); err != nil {
			t.Fatalf("accepted ledger does not encode: %v", err)
		}
	})
}

// FuzzCheckDistributedPrivacyLedger feeds arbitrary
// DistributedPrivacyLedger messages (the hospital's own federation-level
// claim on SecureMaskedChunk) to the check: it never panics, and what it
// accepts is what the manifest, the audit log, the status page and the
// metrics can record — finite numbers that encode as JSON, ε and the
// budget ≥ 0, δ in (0, 1), and 1 to MaxDistributedReleases releases.
func FuzzCheckDistributedPrivacyLedger(f *testing.F) {
	protofuzz.Seed(f, []*fedguardv1.DistributedPrivacyLedger{
		{Epsilon: 3.5, Delta: 1e-5, Budget: 10, Releases: 4},
		{Epsilon: 3.5, Delta: 1e-5, Releases: 0},
		{Epsilon: 3.5, Delta: 1e-5, Releases: wire.MaxDistributedReleases + 1},
		{Epsilon: 3.5, Delta: 1e-5, Releases: math.MaxUint64},
		{Epsilon: math.NaN(), Delta: 1e-5, Releases: 1},
		{Epsilon: math.Inf(1), Delta: 1e-5, Releases: 1},
		{Epsilon: 1, Delta: 1e-5, Budget: math.Inf(1), Releases: 1},
		{Epsilon: math.MaxFloat64, Delta: math.Nextafter(1, 0), Budget: math.MaxFloat64, Releases: wire.MaxDistributedReleases},
		{Epsilon: 1, Delta: 1, Releases: 1},
	}...)
	protofuzz.Fuzz(f, func(t *testing.T, p *fedguardv1.DistributedPrivacyLedger) {
		if wire.CheckDistributedPrivacyLedger(p) != nil {
			return
		}
		e, d, bu, r := p.GetEpsilon(), p.GetDelta(), p.GetBudget(), p.GetReleases()
		if !(e >= 0) || !(bu >= 0) || !(d > 0 && d < 1) || math.IsInf(e, 0) || math.IsInf(bu, 0) || r < 1 || r > wire.MaxDistributedReleases {
			t.Fatalf("accepted ledger ε %v δ %v budget %v releases %d", e, d, bu, r)
		}
		if _, err := json.Marshal(map[string]any{"epsilon": e, "delta": d, "budget": bu, "remaining": max(bu-e, 0), "releases": r}); err != nil {
			t.Fatalf("accepted ledger does not encode: %v", err)
		}
	})
}
