package privacy

import (
	"errors"
	"math"
	"testing"
)

func epsilonOf(t *testing.T, delta float64, e Event) float64 {
	t.Helper()
	g, err := Epsilon(delta, e)
	if err != nil {
		t.Fatal(err)
	}
	return g.Epsilon
}

func TestSigmaFor(t *testing.T) {
	tests := []struct {
		q              float64
		steps          int64
		epsilon, delta float64
	}{
		{0.01, 10_000, 8, 1e-5},
		{0.01, 10_000, 1, 1e-5},
		{0.001, 100_000, 2, 1e-6},
		{1, 100, 4, 1e-5},
		{0.25, 200, 16, 1e-5},
	}
	for _, tt := range tests {
		sigma, err := SigmaFor(tt.q, tt.steps, tt.epsilon, tt.delta)
		if err != nil {
			t.Fatalf("SigmaFor(%v, %d, %v, %v): %v", tt.q, tt.steps, tt.epsilon, tt.delta, err)
		}
		if e := epsilonOf(t, tt.delta, Event{Q: tt.q, Sigma: sigma, Steps: tt.steps}); e > tt.epsilon {
			t.Errorf("SigmaFor(%v, %d, %v, %v) = %v, whose ε is %v: over budget", tt.q, tt.steps, tt.epsilon, tt.delta, sigma, e)
		}
		less := sigma / (1 + 2*sigmaRelTolerance)
		if e := epsilonOf(t, tt.delta, Event{Q: tt.q, Sigma: less, Steps: tt.steps}); e <= tt.epsilon {
			t.Errorf("SigmaFor(%v, %d, %v, %v) = %v, but %v (ε %v) also fits: not tight", tt.q, tt.steps, tt.epsilon, tt.delta, sigma, less, e)
		}
	}
	// The reference case: dp_accounting gives ε = 5.632010670081592 for
	// q = 0.01, σ = 1.1, 10⁴ steps, δ = 1e−5.
	sigma, err := SigmaFor(0.01, 10_000, 5.632010670081592*(1+1e-9), 1e-5)
	if err != nil || math.Abs(sigma-1.1) > 1.1*2*sigmaRelTolerance {
		t.Errorf("SigmaFor(abadi-mnist ε) = %v, %v; want ≈ 1.1", sigma, err)
	}
	if _, err := SigmaFor(1, 1_000_000, 1e-3, 1e-10); !errors.Is(err, ErrUnreachable) {
		t.Errorf("SigmaFor(unreachable) error = %v, want ErrUnreachable", err)
	}
	for _, bad := range []struct{ q, eps, delta float64 }{{0, 1, 1e-5}, {0.1, 0, 1e-5}, {0.1, math.Inf(1), 1e-5}, {0.1, 1, 0}} {
		if _, err := SigmaFor(bad.q, 10, bad.eps, bad.delta); !errors.Is(err, ErrInvalid) {
			t.Errorf("SigmaFor(%+v) error = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestMaxSteps(t *testing.T) {
	tests := []struct{ q, sigma, epsilon, delta float64 }{
		{0.01, 1.1, 8, 1e-5},
		{0.01, 1.1, 5.632010670081592 * (1 + 1e-9), 1e-5},
		{0.001, 1, 2, 1e-6},
		{1, 10, 4.728507067217623 * (1 + 1e-9), 1e-5},
		{0.5, 5, 1, 1e-5},
	}
	for _, tt := range tests {
		n, err := MaxSteps(tt.q, tt.sigma, tt.epsilon, tt.delta)
		if err != nil {
			t.Fatalf("MaxSteps(%+v): %v", tt, err)
		}
		if e := epsilonOf(t, tt.delta, Event{Q: tt.q, Sigma: tt.sigma, Steps: n}); e > tt.epsilon {
			t.Errorf("MaxSteps(%+v) = %d, whose ε is %v: over budget", tt, n, e)
		}
		if e := epsilonOf(t, tt.delta, Event{Q: tt.q, Sigma: tt.sigma, Steps: n + 1}); e <= tt.epsilon {
			t.Errorf("MaxSteps(%+v) = %d, but %d steps (ε %v) also fit", tt, n, n+1, e)
		}
	}
	// dp_accounting's reference sequences: exactly their step counts fit.
	if n, _ := MaxSteps(0.01, 1.1, 5.632010670081592*(1+1e-9), 1e-5); n != 10_000 {
		t.Errorf("MaxSteps(abadi-mnist ε) = %d, want 10000", n)
	}
	if n, _ := MaxSteps(1, 0.5, 1, 1e-5); n != 0 {
		t.Errorf("MaxSteps(one step over budget) = %d, want 0", n)
	}
	if n, err := MaxSteps(1e-9, 1e3, 10, 1e-5); err != nil || n != MaxStepsLimit {
		t.Errorf("MaxSteps(almost no privacy loss) = %d, %v; want MaxStepsLimit", n, err)
	}
	if _, err := MaxSteps(0.1, -1, 1, 1e-5); !errors.Is(err, ErrInvalid) {
		t.Errorf("MaxSteps(σ = -1) error = %v, want ErrInvalid", err)
	}
}
