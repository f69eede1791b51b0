package privacy

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestDistributedDiscreteGaussianFormulas compares τ, ρ, the RDP at three
// orders and ε with testdata/ddg.json, the paper's formulas evaluated at 50
// digits by testdata/ddg_reference.py.
func TestDistributedDiscreteGaussianFormulas(t *testing.T) {
	var ref struct {
		Cases []struct {
			DistributedDiscreteGaussian
			Delta   float64            `json:"delta"`
			Tau     float64            `json:"tau"`
			Rho     float64            `json:"rho"`
			RDP     map[string]float64 `json:"rdp"`
			Epsilon float64            `json:"epsilon"`
			Order   float64            `json:"order"`
		} `json:"cases"`
	}
	readTestdata(t, "ddg.json", &ref)
	if len(ref.Cases) < 5 {
		t.Fatalf("only %d cases", len(ref.Cases))
	}
	const tol = 1e-12
	for _, c := range ref.Cases {
		m := c.DistributedDiscreteGaussian
		if got := m.Tau(); relErr(got, c.Tau) > tol {
			t.Errorf("%+v: Tau() = %.17g, want %.17g", m, got, c.Tau)
		}
		rho, err := m.ZCDP()
		if err != nil {
			t.Fatalf("%+v: ZCDP: %v", m, err)
		}
		if relErr(rho, c.Rho) > tol {
			t.Errorf("%+v: ZCDP() = %.17g, want %.17g", m, rho, c.Rho)
		}
		for k, want := range c.RDP {
			a, err := strconv.ParseFloat(k, 64)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.RDP([]float64{a})
			if err != nil {
				t.Fatal(err)
			}
			if relErr(got[0], want) > tol {
				t.Errorf("%+v: RDP at α=%v = %.17g, want %.17g", m, a, got[0], want)
			}
		}
		checkEpsilon(t, m, c.Delta, c.Epsilon, c.Order, 1e-9)
	}
}

// checkEpsilon checks m.Epsilon(delta) against a reference: ε within tol
// (relative), at the same order.
func checkEpsilon(t *testing.T, m DistributedDiscreteGaussian, delta, eps, order, tol float64) {
	t.Helper()
	g, err := m.Epsilon(delta)
	if err != nil {
		t.Fatal(err)
	}
	if relErr(g.Epsilon, eps) > tol || g.Order != order {
		t.Errorf("%+v: Epsilon(%v) = %.17g at α=%v, want %.17g at α=%v", m, delta, g.Epsilon, g.Order, eps, order)
	}
}

// TestDistributedDiscreteGaussianOneClient checks the one-client case, where
// τ = 0 and the mechanism is the discrete Gaussian, against dp_accounting's
// DiscreteGaussianDpEvent.
func TestDistributedDiscreteGaussianOneClient(t *testing.T) {
	ref := loadReference(t)
	if len(ref.DiscreteGaussian) == 0 {
		t.Fatal("no discrete Gaussian reference cases")
	}
	for _, c := range ref.DiscreteGaussian {
		m := DistributedDiscreteGaussian{Sigma: c.Sigma, Clients: 1, Dim: c.Dim, L2: c.L2, Steps: c.Steps}
		if tau := m.Tau(); tau != 0 {
			t.Errorf("%+v: Tau() = %v, want 0", m, tau)
		}
		checkEpsilon(t, m, c.Delta, c.Epsilon, c.Order, 1e-12)
	}
}

// TestDistributedDiscreteGaussianLimits checks what the formulas must do at
// their edges: with many clients and σ large, τ vanishes and the mechanism
// costs what the continuous Gaussian with the summed noise costs; fewer
// surviving clients never cost less.
func TestDistributedDiscreteGaussianLimits(t *testing.T) {
	m := DistributedDiscreteGaussian{Sigma: 10, Clients: 100, Dim: 1 << 16, L2: 100, Steps: 20}
	g, err := m.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	// Summed noise σ√n = 100 over sensitivity 100: noise multiplier 1.
	want, err := Epsilon(1e-5, Event{Q: 1, Sigma: 1, Steps: 20})
	if err != nil {
		t.Fatal(err)
	}
	if relErr(g.Epsilon, want.Epsilon) > 1e-12 {
		t.Errorf("large-σ distributed discrete Gaussian ε = %v, continuous Gaussian %v", g.Epsilon, want.Epsilon)
	}
	prev := math.Inf(1)
	for _, n := range []int{2, 5, 10, 20, 50, 100} {
		m := DistributedDiscreteGaussian{Sigma: 0.8, Clients: n, Dim: 1000, L2: 5, Steps: 10}
		g, err := m.Epsilon(1e-5)
		if err != nil {
			t.Fatal(err)
		}
		if g.Epsilon > prev {
			t.Errorf("%d clients: ε = %v > ε with fewer clients %v", n, g.Epsilon, prev)
		}
		prev = g.Epsilon
	}
}

func TestDistributedDiscreteGaussianValidation(t *testing.T) {
	ok := DistributedDiscreteGaussian{Sigma: 1, Clients: 10, Dim: 100, L2: 5, Steps: 1}
	for _, tt := range []struct {
		name string
		edit func(*DistributedDiscreteGaussian)
	}{
		{"sigma below 1/2", func(m *DistributedDiscreteGaussian) { m.Sigma = 0.49 }},
		{"sigma NaN", func(m *DistributedDiscreteGaussian) { m.Sigma = math.NaN() }},
		{"sigma inf", func(m *DistributedDiscreteGaussian) { m.Sigma = math.Inf(1) }},
		{"no clients", func(m *DistributedDiscreteGaussian) { m.Clients = 0 }},
		{"too many clients", func(m *DistributedDiscreteGaussian) { m.Clients = MaxClients + 1 }},
		{"no dimension", func(m *DistributedDiscreteGaussian) { m.Dim = 0 }},
		{"l2 zero", func(m *DistributedDiscreteGaussian) { m.L2 = 0 }},
		{"l2 NaN", func(m *DistributedDiscreteGaussian) { m.L2 = math.NaN() }},
		{"l1 below l2", func(m *DistributedDiscreteGaussian) { m.L1 = 4 }},
		{"l1 NaN", func(m *DistributedDiscreteGaussian) { m.L1 = math.NaN() }},
		{"steps negative", func(m *DistributedDiscreteGaussian) { m.Steps = -1 }},
	} {
		m := ok
		tt.edit(&m)
		if _, err := m.Epsilon(1e-5); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Epsilon error = %v, want ErrInvalid", tt.name, err)
		}
		if _, err := m.ZCDP(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ZCDP error = %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, err := ok.Epsilon(1e-5); err != nil {
		t.Errorf("valid mechanism: %v", err)
	}
}

func TestConditionalRoundingL2Bound(t *testing.T) {
	tests := []struct {
		c, beta float64
		dim     int
		want    float64
	}{
		{10, 0, 100, 20}, // c + √d
		{10, math.Exp(-0.5), 100, math.Sqrt(140)}, // √(100 + 25 + 1·(10 + 5))
		{1, 1e-10, 1, 2}, // √(1.25 + √(2 log 1e10)·1.5) ≈ 3.4 > c + √d
	}
	for _, tt := range tests {
		got, err := ConditionalRoundingL2Bound(tt.c, tt.beta, tt.dim)
		if err != nil || relErr(got, tt.want) > 1e-15 {
			t.Errorf("ConditionalRoundingL2Bound(%v, %v, %d) = %v, %v; want %v", tt.c, tt.beta, tt.dim, got, err, tt.want)
		}
	}
	for _, bad := range []struct {
		c, beta float64
		dim     int
	}{{0, 0, 1}, {1, 1, 1}, {1, -0.1, 1}, {1, 0, 0}, {math.Inf(1), 0, 1}} {
		if _, err := ConditionalRoundingL2Bound(bad.c, bad.beta, bad.dim); !errors.Is(err, ErrInvalid) {
			t.Errorf("ConditionalRoundingL2Bound(%+v) error = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestDistributedEpsilon checks the composition of distributed releases:
// T identical releases give what one mechanism with Steps = T gives, in
// any grouping; two different mechanisms give the ε of their summed RDP
// curves, more than either alone; no release is ε = 0; and an invalid
// mechanism or δ is refused, naming the mechanism.
func TestDistributedEpsilon(t *testing.T) {
	a := DistributedDiscreteGaussian{Sigma: 80, Clients: 10, Dim: 32, L2: 100, Steps: 1}
	b := DistributedDiscreteGaussian{Sigma: 300, Clients: 5, Dim: 1024, L2: 400, Steps: 1}
	ten := a
	ten.Steps = 10
	want, err := ten.Epsilon(1e-5)
	if err != nil {
		t.Fatal(err)
	}
	ones := make([]DistributedDiscreteGaussian, 10)
	for i := range ones {
		ones[i] = a
	}
	seven := a
	seven.Steps = 7
	for name, ms := range map[string][]DistributedDiscreteGaussian{
		"ten ones": ones, "one of ten": {ten}, "seven, one, two": {seven, a, {Sigma: 80, Clients: 10, Dim: 32, L2: 100, Steps: 2}},
	} {
		got, err := DistributedEpsilon(1e-5, ms...)
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, want)
		}
	}
	mixed, err := DistributedEpsilon(1e-5, a, b, a)
	if err != nil {
		t.Fatal(err)
	}
	ra, _ := a.RDP(DefaultOrders())
	rb, _ := b.RDP(DefaultOrders())
	sum := make([]float64, len(ra))
	for i := range ra {
		sum[i] = 2*ra[i] + rb[i]
	}
	eps, order, err := EpsilonFromRDP(DefaultOrders(), sum, 1e-5)
	if err != nil || math.Abs(mixed.Epsilon-eps) > 1e-12*eps || mixed.Order != order {
		t.Errorf("a, b, a: %+v, want ε %v at order %v (summed curves)", mixed, eps, order)
	}
	ga, _ := DistributedEpsilon(1e-5, a, a)
	gb, _ := DistributedEpsilon(1e-5, b)
	if !(mixed.Epsilon > ga.Epsilon && mixed.Epsilon > gb.Epsilon) {
		t.Errorf("a, b, a: ε %v, not above a, a (%v) and b (%v)", mixed.Epsilon, ga.Epsilon, gb.Epsilon)
	}
	if g, err := DistributedEpsilon(1e-5); err != nil || g.Epsilon != 0 {
		t.Errorf("no release: %+v, %v; want ε = 0", g, err)
	}
	bad := a
	bad.Sigma = 0.1
	if _, err := DistributedEpsilon(1e-5, a, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "mechanism 1") {
		t.Errorf("invalid mechanism: %v, want ErrInvalid naming mechanism 1", err)
	}
	if _, err := DistributedEpsilon(0, a); !errors.Is(err, ErrInvalid) {
		t.Errorf("δ = 0: %v, want ErrInvalid", err)
	}
}
