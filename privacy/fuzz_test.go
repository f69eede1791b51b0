package privacy

import (
	"errors"
	"math"
	"testing"
)

// FuzzEpsilon drives the numeric paths with arbitrary parameters: every
// input is either refused with ErrInvalid or gives ε ≥ 0 (possibly +Inf),
// never NaN and never a panic; and every per-order RDP is ≥ 0 and not NaN.
func FuzzEpsilon(f *testing.F) {
	f.Add(0.01, 1.1, int64(10000), 1e-5, 2.5)
	f.Add(0.001, 0.5, int64(100000), 1e-5, 1.1)
	f.Add(1.0, 10.0, int64(100), 1e-5, 64.0)
	f.Add(0.5, 5.0, int64(20000), 1e-3, 1.5)
	f.Add(0.9, 0.5, int64(10), 1e-2, 1024.0)
	f.Add(1e-300, 1e-300, int64(1), 1e-300, 1.0000001)
	f.Add(0.999999999, 1e300, int64(math.MaxInt64), 0.999999, 65536.0)
	f.Add(0.0, 0.0, int64(-1), 0.0, 0.0)
	f.Fuzz(func(t *testing.T, q, sigma float64, steps int64, delta, order float64) {
		g, err := Epsilon(delta, Event{Q: q, Sigma: sigma, Steps: steps})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Epsilon(%v, q=%v σ=%v T=%d): error %v does not wrap ErrInvalid", delta, q, sigma, steps, err)
			}
		} else if math.IsNaN(g.Epsilon) || g.Epsilon < 0 {
			t.Fatalf("Epsilon(%v, q=%v σ=%v T=%d) = %v", delta, q, sigma, steps, g.Epsilon)
		}

		orders := []float64{order, 2}
		rdp, err := SampledGaussianRDP(q, sigma, orders)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("SampledGaussianRDP(%v, %v, %v): error %v does not wrap ErrInvalid", q, sigma, orders, err)
			}
			return
		}
		for i, r := range rdp {
			if math.IsNaN(r) || r < 0 {
				t.Fatalf("SampledGaussianRDP(%v, %v) at α=%v = %v", q, sigma, orders[i], r)
			}
		}
		if d, _, err := DeltaFromRDP(orders, rdp, math.Abs(delta)); err == nil && (math.IsNaN(d) || d < 0 || d > 1) {
			t.Fatalf("DeltaFromRDP(%v) = %v", math.Abs(delta), d)
		}
	})
}

// FuzzDistributedEpsilon does the same for the distributed discrete
// Gaussian: refused with ErrInvalid, or ε ≥ 0 and ρ ≥ 0, never NaN.
func FuzzDistributedEpsilon(f *testing.F) {
	f.Add(1.0, 10, 1000, 2.0, 0.0, int64(1), 1e-5)
	f.Add(0.5, 2, 1, 1.0, 0.0, int64(1), 1e-5)
	f.Add(0.5, 1<<20, 1<<30, 1e300, 1e301, int64(math.MaxInt64), 1e-300)
	f.Add(1e300, 1, 1, 1e-300, 0.0, int64(0), 0.5)
	f.Add(0.5, 1, 1, 1.0, 1.7e308, int64(1), 1e-5) // ℓ1/σ overflows while τ = 0: ∞·0
	f.Fuzz(func(t *testing.T, sigma float64, clients, dim int, l2, l1 float64, steps int64, delta float64) {
		m := DistributedDiscreteGaussian{Sigma: sigma, Clients: clients, Dim: dim, L2: l2, L1: l1, Steps: steps}
		g, err := m.Epsilon(delta)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%+v: Epsilon(%v): error %v does not wrap ErrInvalid", m, delta, err)
			}
			return
		}
		if math.IsNaN(g.Epsilon) || g.Epsilon < 0 {
			t.Fatalf("%+v: Epsilon(%v) = %v", m, delta, g.Epsilon)
		}
		rho, err := m.ZCDP()
		if err != nil || math.IsNaN(rho) || rho < 0 {
			t.Fatalf("%+v: ZCDP() = %v, %v", m, rho, err)
		}
	})
}
