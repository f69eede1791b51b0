package privacy

import (
	"errors"
	"testing"
)

// TestDistributedSigmaFor checks that the σ found meets the budget, that
// 0.1 % less does not, and that impossible budgets are refused.
func TestDistributedSigmaFor(t *testing.T) {
	for _, m := range []DistributedDiscreteGaussian{
		{Clients: 5, Dim: 1 << 14, L2: 2048, Steps: 20},
		{Clients: 2, Dim: 1 << 10, L2: 512, Steps: 1},
		{Clients: 100, Dim: 1 << 20, L2: 16384, Steps: 1000},
	} {
		for _, eps := range []float64{1, 8} {
			sigma, err := DistributedSigmaFor(m, eps, 1e-5)
			if err != nil {
				t.Fatalf("%+v ε=%v: %v", m, eps, err)
			}
			m.Sigma = sigma
			g, err := m.Epsilon(1e-5)
			if err != nil || g.Epsilon > eps {
				t.Errorf("%+v: ε = %v, %v; want ≤ %v", m, g.Epsilon, err, eps)
			}
			m.Sigma = sigma * 0.999
			if g, _ := m.Epsilon(1e-5); g.Epsilon <= eps {
				t.Errorf("%+v: 0.1 %% less noise still meets ε = %v", m, eps)
			}
		}
	}
	if _, err := DistributedSigmaFor(DistributedDiscreteGaussian{Clients: 2, Dim: 4, L2: 1, Steps: 1}, 0, 1e-5); !errors.Is(err, ErrInvalid) {
		t.Errorf("ε = 0: %v, want ErrInvalid", err)
	}
	if _, err := DistributedSigmaFor(DistributedDiscreteGaussian{Clients: 2, Dim: 4, L2: 1e12, Steps: 1e9}, 1e-6, 1e-12); !errors.Is(err, ErrUnreachable) {
		t.Errorf("unreachable budget: %v, want ErrUnreachable", err)
	}
}

// TestDistributedMaxSteps checks that the number of releases found meets
// the budget and one more does not, through DistributedDiscreteGaussian's
// own Epsilon, and that a budget one release exceeds gives 0.
func TestDistributedMaxSteps(t *testing.T) {
	for _, m := range []DistributedDiscreteGaussian{
		{Sigma: 82, Clients: 10, Dim: 32, L2: 100.5},
		{Sigma: 4096, Clients: 3, Dim: 1 << 14, L2: 2048},
		{Sigma: 0.9, Clients: 5, Dim: 1024, L2: 2, L1: 4},
		{Sigma: 1e6, Clients: 100, Dim: 1 << 20, L2: 16384},
	} {
		for _, eps := range []float64{1, 8} {
			steps, err := DistributedMaxSteps(m, eps, 1e-5)
			if err != nil {
				t.Fatalf("%+v ε=%v: %v", m, eps, err)
			}
			m.Steps = steps
			if g, err := m.Epsilon(1e-5); err != nil || g.Epsilon > eps {
				t.Errorf("%+v: ε = %v, %v; want ≤ %v", m, g.Epsilon, err, eps)
			}
			if steps == MaxStepsLimit {
				continue
			}
			m.Steps = steps + 1
			if g, _ := m.Epsilon(1e-5); g.Epsilon <= eps {
				t.Errorf("%+v: one more release still meets ε = %v (%v)", m, eps, g.Epsilon)
			}
			t.Logf("σ = %v, %d clients, d = %d, Δ₂ = %v: %d releases within ε = %v", m.Sigma, m.Clients, m.Dim, m.L2, steps, eps)
		}
	}
	if n, err := DistributedMaxSteps(DistributedDiscreteGaussian{Sigma: 0.5, Clients: 2, Dim: 4, L2: 100}, 1, 1e-5); err != nil || n != 0 {
		t.Errorf("one release past the budget: %d, %v; want 0", n, err)
	}
	if _, err := DistributedMaxSteps(DistributedDiscreteGaussian{Sigma: 0.4, Clients: 2, Dim: 4, L2: 1}, 1, 1e-5); !errors.Is(err, ErrInvalid) {
		t.Errorf("σ = 0.4: %v, want ErrInvalid", err)
	}
	if _, err := DistributedMaxSteps(DistributedDiscreteGaussian{Sigma: 1, Clients: 2, Dim: 4, L2: 1}, 0, 1e-5); !errors.Is(err, ErrInvalid) {
		t.Errorf("ε = 0: %v, want ErrInvalid", err)
	}
}
