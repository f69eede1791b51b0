package privacy

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// reference is testdata/dp_accounting.json, written by
// testdata/dp_accounting_reference.py from Google's dp_accounting.
type reference struct {
	Source string    `json:"source"`
	Orders []float64 `json:"orders"`
	Cases  []struct {
		Name           string  `json:"name"`
		Delta          float64 `json:"delta"`
		Events         []Event `json:"events"`
		Epsilon        float64 `json:"epsilon"`
		Order          float64 `json:"order"`
		DeltaAtEpsilon float64 `json:"delta_at_epsilon"`
	} `json:"cases"`
	SingleStep []struct {
		Q     float64    `json:"q"`
		Sigma float64    `json:"sigma"`
		RDP   []*float64 `json:"rdp"` // nil: +Inf (order excluded)
	} `json:"single_step_rdp"`
	// DiscreteGaussian are dp_accounting's DiscreteGaussianDpEvent cases.
	DiscreteGaussian []struct {
		Sigma, L2, Delta, Epsilon, Order float64
		Dim                              int
		Steps                            int64
	} `json:"discrete_gaussian"`
}

func loadReference(t testing.TB) reference {
	t.Helper()
	var ref reference
	readTestdata(t, "dp_accounting.json", &ref)
	if len(ref.Cases) < 10 || len(ref.SingleStep) == 0 {
		t.Fatalf("reference has %d cases and %d single steps; want at least 10 and 1", len(ref.Cases), len(ref.SingleStep))
	}
	return ref
}

// readTestdata decodes the JSON file testdata/name into v.
func readTestdata(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

// relErr is |got − want| / |want|, or |got| when want is 0.
func relErr(got, want float64) float64 {
	if want == 0 {
		return math.Abs(got)
	}
	return math.Abs(got-want) / math.Abs(want)
}

// The issue asks for 1 %; fedguard follows dp_accounting's arithmetic, so it
// is held to far less. A regression in the series, the order grid or the
// conversion moves ε by much more than this.
//
// One step's RDP is held to 1e-9 relative or 1e-14 absolute: for q ≈ 0.001
// it is ~1e−7, computed as the log of a sum within 1e−7 of 1, where both
// implementations round differently in the 16th digit.
const (
	epsilonTolerance = 1e-9
	rdpTolerance     = 1e-9
	rdpAbsTolerance  = 1e-14
)

func TestDefaultOrdersMatchReference(t *testing.T) {
	ref := loadReference(t)
	got := DefaultOrders()
	if len(got) != len(ref.Orders) {
		t.Fatalf("DefaultOrders has %d orders, dp_accounting %d", len(got), len(ref.Orders))
	}
	for i := range got {
		if got[i] != ref.Orders[i] {
			t.Errorf("DefaultOrders()[%d] = %v, dp_accounting has %v", i, got[i], ref.Orders[i])
		}
	}
}

// TestSampledGaussianRDPMatchesReference compares one step's RDP at every
// default order, including which orders dp_accounting excludes.
func TestSampledGaussianRDPMatchesReference(t *testing.T) {
	ref := loadReference(t)
	for _, s := range ref.SingleStep {
		got, err := SampledGaussianRDP(s.Q, s.Sigma, ref.Orders)
		if err != nil {
			t.Fatalf("SampledGaussianRDP(%v, %v): %v", s.Q, s.Sigma, err)
		}
		for i, w := range s.RDP {
			a := ref.Orders[i]
			if w == nil {
				if !math.IsInf(got[i], 1) {
					t.Errorf("SampledGaussianRDP(q=%v, σ=%v) at α=%v = %v, want +Inf (excluded)", s.Q, s.Sigma, a, got[i])
				}
				continue
			}
			if e := relErr(got[i], *w); e > rdpTolerance && math.Abs(got[i]-*w) > rdpAbsTolerance {
				t.Errorf("SampledGaussianRDP(q=%v, σ=%v) at α=%v = %.17g, want %.17g (rel. error %.2g)", s.Q, s.Sigma, a, got[i], *w, e)
			}
		}
	}
}

// TestEpsilonMatchesReference is the cross-check the issue asks for: the
// same event sequences through fedguard and through dp_accounting.
func TestEpsilonMatchesReference(t *testing.T) {
	ref := loadReference(t)
	var worst float64
	for _, c := range ref.Cases {
		t.Run(c.Name, func(t *testing.T) {
			g, err := Epsilon(c.Delta, c.Events...)
			if err != nil {
				t.Fatalf("Epsilon(%v, %+v): %v", c.Delta, c.Events, err)
			}
			e := relErr(g.Epsilon, c.Epsilon)
			worst = math.Max(worst, e)
			if e > epsilonTolerance {
				t.Errorf("Epsilon(%v, %+v) = %.17g, dp_accounting %.17g (rel. error %.2g)", c.Delta, c.Events, g.Epsilon, c.Epsilon, e)
			}
			if g.Order != c.Order {
				t.Errorf("Epsilon(%v, %+v) order = %v, dp_accounting %v", c.Delta, c.Events, g.Order, c.Order)
			}
			if g.Delta != c.Delta {
				t.Errorf("Epsilon(%v, …).Delta = %v", c.Delta, g.Delta)
			}

			rdp, err := Compose(ref.Orders, c.Events...)
			if err != nil {
				t.Fatal(err)
			}
			d, _, err := DeltaFromRDP(ref.Orders, rdp, c.Epsilon)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(d, c.DeltaAtEpsilon); e > epsilonTolerance {
				t.Errorf("DeltaFromRDP(ε=%v) = %.17g, dp_accounting %.17g (rel. error %.2g)", c.Epsilon, d, c.DeltaAtEpsilon, e)
			}
		})
	}
	t.Logf("%d sequences, largest relative ε error %.3g (%s)", len(ref.Cases), worst, ref.Source)
}
