package wire_test

import (
	"encoding/json"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// FuzzCheckPrivacyLedger feeds arbitrary PrivacyLedger messages (the
// hospital's own record-level claim on UpdateHeader and SecureMaskedChunk)
// to the check: it never panics, and what it accepts is what the manifest
// and the audit log can record — finite numbers that encode as JSON, ε and
// the budget ≥ 0 and δ in (0, 1).
func FuzzCheckPrivacyLedger(f *testing.F) {
	for _, p := range []*fedguardv1.PrivacyLedger{
		{Epsilon: 2.5, Delta: 1e-5, Budget: 8},
		{Epsilon: math.NaN(), Delta: 1e-5},
		{Epsilon: math.Inf(1), Delta: 1e-5},
		{Epsilon: 1, Delta: 1e-5, Budget: math.Inf(1)},
		{Epsilon: math.Copysign(0, -1), Delta: math.SmallestNonzeroFloat64},
		{Epsilon: math.MaxFloat64, Delta: math.Nextafter(1, 0), Budget: math.MaxFloat64},
		{Epsilon: 1, Delta: 1},
		{Epsilon: 1, Delta: math.NaN()},
	} {
		b, err := proto.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p fedguardv1.PrivacyLedger
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		if wire.CheckPrivacyLedger(&p) != nil {
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
