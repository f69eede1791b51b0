package privacy

import (
	"errors"
	"fmt"
	"math"
)

// ErrUnreachable reports a budget no parameter in the searched range meets:
// SigmaFor found no σ up to MaxSigma that keeps ε within the target.
var ErrUnreachable = errors.New("privacy: budget unreachable")

// MaxSigma bounds SigmaFor's search. A noise multiplier of 10⁴ already
// drowns any clipped update; a budget that needs more is not one to train on.
const MaxSigma = 1e4

// sigmaRelTolerance is how close SigmaFor's σ is to the smallest one that
// meets the budget: within 1e−4 relative, and always on the safe side.
const sigmaRelTolerance = 1e-4

// validateBudget checks a target (ε, δ): ε positive and finite, 0 < δ < 1.
func validateBudget(epsilon, delta float64) error {
	if !(epsilon > 0) || math.IsInf(epsilon, 1) {
		return invalid("target ε = %v is not a positive finite number", epsilon)
	}
	return ValidateDelta(delta)
}

// SigmaFor returns a noise multiplier σ such that steps steps of the
// Poisson-subsampled Gaussian mechanism with sampling rate q are
// (epsilon, delta)-DP over the default orders — the one a hospital should
// configure for a budget. σ is at most 1e−4 relative above the smallest such
// σ, never below it. It fails with ErrUnreachable if even MaxSigma does not
// meet the budget.
func SigmaFor(q float64, steps int64, epsilon, delta float64) (float64, error) {
	if err := (Event{Q: q, Sigma: 1, Steps: steps}).Validate(); err != nil {
		return 0, err
	}
	if err := validateBudget(epsilon, delta); err != nil {
		return 0, err
	}
	fits := func(sigma float64) bool {
		g, err := Epsilon(delta, Event{Q: q, Sigma: sigma, Steps: steps})
		return err == nil && g.Epsilon <= epsilon
	}
	// ε decreases as σ grows: bracket the threshold by doubling and
	// halving from σ = 1, then bisect in log space.
	lo, hi := 1.0, 1.0
	if fits(hi) {
		for lo = hi / 2; fits(lo); lo /= 2 {
			hi = lo
			if lo < 1e-6 {
				return hi, nil // any noise meets it (e.g. no steps)
			}
		}
	} else {
		for lo = hi; !fits(hi); hi *= 2 {
			lo = hi
			if hi > MaxSigma {
				return 0, fmt.Errorf("%w: no σ up to %g keeps %d steps at q = %g within ε = %g at δ = %g",
					ErrUnreachable, MaxSigma, steps, q, epsilon, delta)
			}
		}
	}
	return narrowSigma(lo, hi, fits), nil
}

// narrowSigma returns the smallest σ in (lo, hi] that fits, to a relative
// tolerance of sigmaRelTolerance, by bisection in log space: lo does not
// fit, hi does, and fits is monotone in σ (more noise never costs more).
func narrowSigma(lo, hi float64, fits func(float64) bool) float64 {
	for hi/lo > 1+sigmaRelTolerance {
		mid := math.Sqrt(lo * hi)
		if fits(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// MaxStepsLimit bounds MaxSteps' answer: a budget that allows more steps
// than this is reported as allowing MaxStepsLimit.
const MaxStepsLimit = int64(1) << 53

// MaxSteps returns the largest number of steps of the Poisson-subsampled
// Gaussian mechanism (q, σ) that stays (epsilon, delta)-DP over the default
// orders: what is left of a hospital's budget, in steps, is MaxSteps less
// the steps spent. It is 0 if even one step exceeds the budget. One step's
// RDP is computed once; each candidate count costs a multiplication per
// order.
func MaxSteps(q, sigma, epsilon, delta float64) (int64, error) {
	if err := validateMechanism(q, sigma); err != nil {
		return 0, err
	}
	if err := validateBudget(epsilon, delta); err != nil {
		return 0, err
	}
	step, err := SampledGaussianRDP(q, sigma, defaultOrders)
	if err != nil {
		return 0, err
	}
	return maxSteps(step, epsilon, delta), nil
}

// maxSteps is the largest number of releases, each of RDP step over the
// default orders, that stays (epsilon, delta)-DP, up to MaxStepsLimit; 0
// if one release exceeds the budget.
func maxSteps(step []float64, epsilon, delta float64) int64 {
	scaled := make([]float64, len(step))
	fits := func(t int64) bool {
		for i, r := range step {
			scaled[i] = float64(t) * r
		}
		eps, _, err := EpsilonFromRDP(defaultOrders, scaled, delta)
		return err == nil && eps <= epsilon
	}
	if !fits(1) {
		return 0
	}
	// ε grows with the steps: double until over, then bisect.
	lo, hi := int64(1), int64(2)
	for fits(hi) {
		if hi >= MaxStepsLimit {
			return MaxStepsLimit
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
