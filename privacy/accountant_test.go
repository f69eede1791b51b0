package privacy

import (
	"errors"
	"math"
	"testing"
)

func TestValidation(t *testing.T) {
	orders := DefaultOrders()
	tests := []struct {
		name   string
		delta  float64
		events []Event
	}{
		{"q zero", 1e-5, []Event{{Q: 0, Sigma: 1, Steps: 1}}},
		{"q negative", 1e-5, []Event{{Q: -0.1, Sigma: 1, Steps: 1}}},
		{"q above one", 1e-5, []Event{{Q: 1.5, Sigma: 1, Steps: 1}}},
		{"q NaN", 1e-5, []Event{{Q: math.NaN(), Sigma: 1, Steps: 1}}},
		{"sigma zero", 1e-5, []Event{{Q: 0.1, Sigma: 0, Steps: 1}}},
		{"sigma negative", 1e-5, []Event{{Q: 0.1, Sigma: -1, Steps: 1}}},
		{"sigma inf", 1e-5, []Event{{Q: 0.1, Sigma: math.Inf(1), Steps: 1}}},
		{"sigma NaN", 1e-5, []Event{{Q: 0.1, Sigma: math.NaN(), Steps: 1}}},
		{"steps negative", 1e-5, []Event{{Q: 0.1, Sigma: 1, Steps: -1}}},
		{"second event bad", 1e-5, []Event{{Q: 0.1, Sigma: 1, Steps: 1}, {Q: 0.1, Sigma: 1, Steps: -3}}},
		{"delta zero", 0, []Event{{Q: 0.1, Sigma: 1, Steps: 1}}},
		{"delta one", 1, []Event{{Q: 0.1, Sigma: 1, Steps: 1}}},
		{"delta NaN", math.NaN(), []Event{{Q: 0.1, Sigma: 1, Steps: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g, err := Epsilon(tt.delta, tt.events...); !errors.Is(err, ErrInvalid) {
				t.Errorf("Epsilon(%v, %+v) = %+v, %v; want ErrInvalid", tt.delta, tt.events, g, err)
			}
		})
	}
	for _, bad := range [][]float64{nil, {}, {1}, {0.5, 2}, {2, math.Inf(1)}, {math.NaN()}, {MaxOrder + 1}} {
		if _, err := Compose(bad, Event{Q: 0.1, Sigma: 1, Steps: 1}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Compose(orders %v) error = %v, want ErrInvalid", bad, err)
		}
		if _, err := SampledGaussianRDP(0.1, 1, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SampledGaussianRDP(orders %v) error = %v, want ErrInvalid", bad, err)
		}
	}
	if _, _, err := EpsilonFromRDP(orders, []float64{1}, 1e-5); !errors.Is(err, ErrInvalid) {
		t.Errorf("EpsilonFromRDP with short RDP: error = %v, want ErrInvalid", err)
	}
	if _, _, err := DeltaFromRDP(orders, make([]float64, len(orders)), -1); !errors.Is(err, ErrInvalid) {
		t.Errorf("DeltaFromRDP(ε = -1): error = %v, want ErrInvalid", err)
	}
}

// TestGaussianClosedForm checks q = 1 against the conversion written out by
// hand: T steps of the Gaussian mechanism are (α, Tα/(2σ²))-RDP, and the
// order α = 3 gives ε = 3T/(2σ²) + log(2/3) − log(3δ)/2.
func TestGaussianClosedForm(t *testing.T) {
	const sigma, steps, delta = 4.0, 10, 1e-5
	rdp, err := Compose([]float64{3}, Event{Q: 1, Sigma: sigma, Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	want := 3.0 * steps / (2 * sigma * sigma)
	if rdp[0] != want {
		t.Fatalf("Compose(Gaussian) at α=3 = %v, want %v", rdp[0], want)
	}
	eps, order, err := EpsilonFromRDP([]float64{3}, rdp, delta)
	if err != nil {
		t.Fatal(err)
	}
	wantEps := want + math.Log(2.0/3) - math.Log(3*delta)/2
	if relErr(eps, wantEps) > 1e-15 || order != 3 {
		t.Errorf("EpsilonFromRDP = %v at α=%v, want %v at α=3", eps, order, wantEps)
	}
}

// TestSampledTendsToGaussian checks the integer-order series against the
// closed form: as q → 1 the subsampled mechanism tends to the Gaussian one,
// and for integer α the expansion at q = 1 − 1e−12 is within rounding.
func TestSampledTendsToGaussian(t *testing.T) {
	for _, a := range []float64{2, 5, 32} {
		got := sampledGaussianRDP(1-1e-12, 2, a, newErfcTable(1-1e-12, 2))
		if want := GaussianRDP(2, a); relErr(got, want) > 1e-9 {
			t.Errorf("sampledGaussianRDP(1−1e−12, 2, %v) = %v, want ≈ %v", a, got, want)
		}
	}
}

// TestComposeGroupsEvents checks that a ledger's split events add up to the
// same curve as one merged event, through both the linear scan (few
// configurations) and the map (more than 16).
func TestComposeGroupsEvents(t *testing.T) {
	orders := DefaultOrders()
	var split, merged []Event
	for k := range 20 {
		q, sigma := 0.001*float64(k+1), 0.7+0.2*float64(k)
		merged = append(merged, Event{Q: q, Sigma: sigma, Steps: 600})
		split = append(split, Event{Q: q, Sigma: sigma, Steps: 100})
	}
	for range 5 {
		split = append(split, split[:20]...)
	}
	split = append(split, Event{Q: 0.5, Sigma: 1, Steps: 0}) // contributes nothing
	a, err := Compose(orders, split...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compose(orders, merged...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range orders {
		if relErr(a[i], b[i]) > 1e-12 {
			t.Errorf("at α=%v: split ledger %v, merged %v", orders[i], a[i], b[i])
		}
	}
}

// TestMonotone checks the properties a budget relies on: ε grows with the
// steps and the sampling rate and shrinks as σ grows.
func TestMonotone(t *testing.T) {
	eps := func(q, sigma float64, steps int64) float64 {
		t.Helper()
		g, err := Epsilon(1e-5, Event{Q: q, Sigma: sigma, Steps: steps})
		if err != nil {
			t.Fatal(err)
		}
		return g.Epsilon
	}
	prev := -1.0
	for _, steps := range []int64{0, 1, 10, 100, 1000, 10_000, 100_000} {
		e := eps(0.01, 1, steps)
		if e < prev {
			t.Errorf("ε(steps=%d) = %v < ε with fewer steps %v", steps, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, sigma := range []float64{0.5, 0.7, 1, 2, 4, 10} {
		e := eps(0.01, sigma, 1000)
		if e > prev {
			t.Errorf("ε(σ=%v) = %v > ε with less noise %v", sigma, e, prev)
		}
		prev = e
	}
	prev = -1
	for _, q := range []float64{0.001, 0.01, 0.1, 0.5, 1} {
		e := eps(q, 1, 100)
		if e < prev {
			t.Errorf("ε(q=%v) = %v < ε at a lower rate %v", q, e, prev)
		}
		prev = e
	}
	if e := eps(0.5, 1, 0); e != 0 {
		t.Errorf("ε of zero steps = %v, want 0", e)
	}
}

func TestLogErfc(t *testing.T) {
	// Reference values: log(erfc(x)) from mpmath with 40 digits (Debian's
	// python3-mpmath: mpmath.log(mpmath.erfc(x))).
	tests := []struct{ x, want float64 }{
		{-3, 0.69313613525044681032},
		{0, 0},
		{1, -1.8496055099332482486},
		{19.5, -383.7940900381005038},
		{20, -403.56934333410423496},
		{30, -903.97411711064387808},
		{1000, -1000007.4801207219062},
	}
	for _, tt := range tests {
		if got := logErfc(tt.x); relErr(got, tt.want) > 1e-14 {
			t.Errorf("logErfc(%v) = %.17g, want %.17g", tt.x, got, tt.want)
		}
	}
	if got := logErfc(math.Inf(1)); !math.IsInf(got, -1) {
		t.Errorf("logErfc(+Inf) = %v, want -Inf", got)
	}
}
