package privacy_test

import (
	"fmt"
	"math"

	"github.com/fedguard/fedguard/privacy"
)

// A hospital trains 10⁴ DP-SGD steps, each on a Poisson sample of 1 % of its
// patients, with noise multiplier 1.1: the guarantee at δ = 10⁻⁵.
func ExampleEpsilon() {
	g, err := privacy.Epsilon(1e-5, privacy.Event{Q: 0.01, Sigma: 1.1, Steps: 10_000})
	if err != nil {
		panic(err)
	}
	fmt.Printf("ε = %.3f at δ = %g (Rényi order %g)\n", g.Epsilon, g.Delta, g.Order)
	// Output: ε = 5.632 at δ = 1e-05 (Rényi order 4.7)
}

// A ledger of rounds with different settings composes into one guarantee.
func ExampleEpsilon_ledger() {
	ledger := []privacy.Event{
		{Q: 0.01, Sigma: 1.0, Steps: 500},
		{Q: 0.02, Sigma: 2.0, Steps: 1000},
		{Q: 1, Sigma: 10, Steps: 10}, // ten full-batch Gaussian releases
	}
	g, err := privacy.Epsilon(1e-5, ledger...)
	if err != nil {
		panic(err)
	}
	fmt.Printf("ε = %.3f\n", g.Epsilon)
	// Output: ε = 2.527
}

// The RDP curve can be kept and extended, then converted at any δ.
func ExampleCompose() {
	orders := privacy.DefaultOrders()
	rdp, err := privacy.Compose(orders, privacy.Event{Q: 0.004, Sigma: 4, Steps: 100_000})
	if err != nil {
		panic(err)
	}
	for _, delta := range []float64{1e-5, 1e-7} {
		eps, order, err := privacy.EpsilonFromRDP(orders, rdp, delta)
		if err != nil {
			panic(err)
		}
		fmt.Printf("δ = %g: ε = %.3f (order %g)\n", delta, eps, order)
	}
	// Output:
	// δ = 1e-05: ε = 1.333 (order 14)
	// δ = 1e-07: ε = 1.650 (order 17)
}

// The inverse questions a hospital asks: how much noise for a budget, and how
// many steps a budget allows.
func ExampleSigmaFor() {
	sigma, err := privacy.SigmaFor(0.01, 10_000, 8, 1e-5)
	if err != nil {
		panic(err)
	}
	steps, err := privacy.MaxSteps(0.01, 1.1, 8, 1e-5)
	if err != nil {
		panic(err)
	}
	fmt.Printf("σ = %.3f for ε = 8 over 10000 steps\n", sigma)
	fmt.Printf("σ = 1.1 allows %d steps within ε = 8\n", steps)
	// Output:
	// σ = 0.917 for ε = 8 over 10000 steps
	// σ = 1.1 allows 18503 steps within ε = 8
}

// Ten hospitals each add discrete Gaussian noise to their clipped, rotated
// updates, scaled so that the clipping norm is 100 units of the integer grid
// they are rounded to, before secure aggregation: the unmasked sum is then
// DP by itself. With at most two dropouts allowed, every sum holds at least
// 8 hospitals' noise.
func ExampleDistributedDiscreteGaussian() {
	// Conditional rounding with β = e^(−1/2) keeps the rounded norm within:
	l2, err := privacy.ConditionalRoundingL2Bound(100, math.Exp(-0.5), 1000)
	if err != nil {
		panic(err)
	}
	m := privacy.DistributedDiscreteGaussian{Sigma: 40, Clients: 8, Dim: 1000, L2: l2, Steps: 10}
	g, err := m.Epsilon(1e-5)
	if err != nil {
		panic(err)
	}
	rho, err := m.ZCDP()
	if err != nil {
		panic(err)
	}
	fmt.Printf("ℓ2 sensitivity %.2f grid units, τ = %.1e\n", l2, m.Tau())
	fmt.Printf("%.4f-zCDP per round, ε = %.2f at δ = 1e-5 after 10 rounds\n", rho, g.Epsilon)
	// Output:
	// ℓ2 sensitivity 101.81 grid units, τ = 0.0e+00
	// 0.4049-zCDP per round, ε = 16.64 at δ = 1e-5 after 10 rounds
}

// A hospital's federation-level ledger: the secure rounds it sent an input
// to, whose noise and fewest survivors changed when the federation grew.
// The releases compose by adding their RDP curves.
func ExampleDistributedEpsilon() {
	early := privacy.DistributedDiscreteGaussian{Sigma: 40, Clients: 4, Dim: 1024, L2: 110, Steps: 1}
	later := privacy.DistributedDiscreteGaussian{Sigma: 30, Clients: 8, Dim: 1024, L2: 110, Steps: 1}
	ledger := []privacy.DistributedDiscreteGaussian{early, early, early, later, later}
	g, err := privacy.DistributedEpsilon(1e-5, ledger...)
	if err != nil {
		panic(err)
	}
	fmt.Printf("5 rounds: ε = %.2f at δ = 1e-5\n", g.Epsilon)
	// Output:
	// 5 rounds: ε = 17.84 at δ = 1e-5
}
