package attack

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// none sends the honest updates unchanged.
type none struct{ base }

// Craft implements Attack: copies of Own.
func (a none) Craft(r Round) ([][]float32, error) {
	if _, err := a.check(r); err != nil {
		return nil, err
	}
	return scaled(r.Own, 1), nil
}

// signFlip sends the negated own update.
type signFlip struct{ base }

// Craft implements Attack: −Own[i].
func (a signFlip) Craft(r Round) ([][]float32, error) {
	if _, err := a.check(r); err != nil {
		return nil, err
	}
	return scaled(r.Own, -1), nil
}

// gaussian sends N(0, σ²) noise.
type gaussian struct {
	base
	sigma float64
}

// Craft implements Attack: F independent N(0, σ²) vectors.
func (a gaussian) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, true)
	if v == nil {
		return nothing(err)
	}
	out := make([][]float32, r.F)
	for i := range out {
		w := make([]float32, v.d)
		for j := range w {
			w[j] = to32(a.sigma * r.Rng.NormFloat64())
		}
		out[i] = w
	}
	return out, nil
}

// labelFlip is the data poisoning attack y → classes−1−y; it sends the
// update trained on the flipped rows.
type labelFlip struct{ none }

// Poison implements Attack: labels in [0, classes) become classes−1−y;
// others are kept. x is returned as is (its rows are not changed), y is a
// new slice.
func (labelFlip) Poison(x [][]float64, y []int, classes int, _ *rand.Rand) ([][]float64, []int) {
	out := make([]int, len(y))
	for i, l := range y {
		if l >= 0 && l < classes {
			l = classes - 1 - l
		}
		out[i] = l
	}
	return x, out
}

// DefaultZ returns Baruch et al.'s z_max for n participants, f of them
// Byzantine: s = ⌊n/2 + 1⌋ − f (kept in [1, n]), z_max = Φ⁻¹((n − s)/n),
// and 0 when that is negative or undefined (n < 1).
func DefaultZ(n, f int) float64 {
	if n < 1 {
		return 0
	}
	s := min(max(n/2+1-f, 1), n)
	z := distuv.UnitNormal.Quantile(float64(n-s) / float64(n))
	if !(z > 0) || math.IsInf(z, 0) {
		return 0
	}
	return z
}

// ALIE's z conventions (Config.ZRule).
const (
	// ZRuleBaruch is z_max = Φ⁻¹((n − s)/n), Baruch et al. 2019, Section
	// 3 (the default).
	ZRuleBaruch = "baruch"
	// ZRuleBucketing is Φ⁻¹((n − f − s)/(n − f)), the formula of the
	// bucketing paper's code (epfml/byzantine-robust-noniid-optimizer,
	// codes/attacks/alittle.py, ALittleIsEnoughAttack.__init__:
	// cdf_value = (n - m - s) / (n - m)), with the same s.
	ZRuleBucketing = "bucketing"
)

// ALIE's sign conventions (Config.ZSign): the space in which the
// Byzantine participants send μ − z·σ.
const (
	// ZSignUpdates is μ − z·σ of the updates the participants send, the
	// literal reading of the paper's formula for the vectors exchanged
	// and ByzFL's direction (LPD-EPFL/byzfl, ALittleIsEnough: μ + τσ of
	// gradients). The default.
	ZSignUpdates = "updates"
	// ZSignGradients is μ − z·σ of gradients, what the papers' code
	// sends: Baruch et al.'s (malicious.py DriftAttack: grads_mean -=
	// num_std * grads_stdev) and the bucketing paper's
	// (epfml/byzantine-robust-noniid-optimizer, codes/attacks/alittle.py:
	// mu - std * z_max). An update is −lr times a gradient, so it is
	// μ + z·σ of the updates.
	ZSignGradients = "gradients"
)

// DefaultZFor returns ALIE's default z for n participants, f of them
// Byzantine, under rule: DefaultZ for ZRuleBaruch (or ""), and for
// ZRuleBucketing Φ⁻¹((n − f − s)/(n − f)) with s = ⌊n/2 + 1⌋ − f (kept in
// [1, n − f]), 0 when that is negative or undefined. For n = 25, f = 5:
// s = 8, Baruch's z = Φ⁻¹(17/25) ≈ 0.4677, the bucketing code's
// Φ⁻¹(12/20) ≈ 0.2533.
func DefaultZFor(rule string, n, f int) float64 {
	if rule != ZRuleBucketing {
		return DefaultZ(n, f)
	}
	g := n - f
	if g < 1 {
		return 0
	}
	s := min(max(n/2+1-f, 1), g)
	z := distuv.UnitNormal.Quantile(float64(g-s) / float64(g))
	if !(z > 0) || math.IsInf(z, 0) {
		return 0
	}
	return z
}

// alie is Baruch et al.'s "A Little Is Enough".
type alie struct {
	base
	z     float64 // 0: DefaultZFor(zRule, N, F)
	zRule string
	// gradients is ZSignGradients: μ + z·σ of the updates.
	gradients bool
}

// Craft implements Attack: F copies of μ − z·σ (μ + z·σ with
// ZSignGradients).
func (a alie) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, false)
	if v == nil {
		return nothing(err)
	}
	z := a.z
	if z == 0 {
		z = DefaultZFor(a.zRule, r.N, r.F)
	}
	if a.gradients {
		z = -z
	}
	mu := mean(v.benign, v.d)
	sd := std(v.benign, mu)
	for j := range mu {
		mu[j] -= z * sd[j]
	}
	return copies(mu, r.F), nil
}

// ipm is Xie et al.'s Inner Product Manipulation.
type ipm struct {
	base
	eps float64
}

// Craft implements Attack: F copies of −ε·μ.
func (a ipm) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, false)
	if v == nil {
		return nothing(err)
	}
	mu := mean(v.benign, v.d)
	for j := range mu {
		mu[j] *= -a.eps
	}
	return copies(mu, r.F), nil
}
