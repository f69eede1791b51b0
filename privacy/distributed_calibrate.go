package privacy

import (
	"fmt"
)

// MaxDistributedSigma bounds DistributedSigmaFor's search: a client's noise
// in grid units (a 32-bit ring cannot carry more than about 2^31 anyway).
const MaxDistributedSigma = 1 << 40

// DistributedSigmaFor returns the smallest client noise σ (within 1e−4
// relative, never below it) for which m, with Sigma set to σ, is
// (epsilon, delta)-DP over the default orders: the noise each client of a
// distributed discrete Gaussian federation must add for a budget. m's other
// fields (Clients: the fewest survivors, Dim, L2, L1, Steps: the rounds)
// are the round's; its Sigma is ignored. It fails with ErrUnreachable if no
// σ up to MaxDistributedSigma meets the budget.
func DistributedSigmaFor(m DistributedDiscreteGaussian, epsilon, delta float64) (float64, error) {
	m.Sigma = 1
	if err := m.Validate(); err != nil {
		return 0, err
	}
	if err := validateBudget(epsilon, delta); err != nil {
		return 0, err
	}
	fits := func(sigma float64) bool {
		m.Sigma = sigma
		g, err := m.Epsilon(delta)
		return err == nil && g.Epsilon <= epsilon
	}
	if fits(0.5) {
		return 0.5, nil // the smallest σ the theorem covers
	}
	lo, hi := 0.5, 1.0
	for !fits(hi) {
		lo = hi
		if hi *= 2; hi > MaxDistributedSigma {
			return 0, fmt.Errorf("%w: no client σ up to %g keeps %d releases of %d clients' sum (ℓ2 sensitivity %g, dimension %d) within ε = %g at δ = %g",
				ErrUnreachable, float64(MaxDistributedSigma), m.Steps, m.Clients, m.L2, m.Dim, epsilon, delta)
		}
	}
	return narrowSigma(lo, hi, fits), nil
}

// DistributedMaxSteps returns the largest number of releases of the
// distributed discrete Gaussian m that stays (epsilon, delta)-DP over the
// default orders: how many more rounds a secure federation's noise allows
// (less those already released). m's Steps is ignored. It is 0 if even one
// release exceeds the budget, and at most MaxStepsLimit. One release's RDP
// is computed once; each candidate count costs a multiplication per order,
// the same product DistributedDiscreteGaussian.RDP forms, so m with Steps
// set to the answer has an Epsilon within the budget.
func DistributedMaxSteps(m DistributedDiscreteGaussian, epsilon, delta float64) (int64, error) {
	m.Steps = 1
	if err := m.Validate(); err != nil {
		return 0, err
	}
	if err := validateBudget(epsilon, delta); err != nil {
		return 0, err
	}
	step, err := m.RDP(defaultOrders)
	if err != nil {
		return 0, err
	}
	return maxSteps(step, epsilon, delta), nil
}
