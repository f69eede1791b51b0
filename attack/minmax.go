package attack

import "math"

// minMax is Shejwalkar & Houmansadr's min-max (sum false) and min-sum (sum
// true) attacks; gradients is Config.ZSign = ZSignGradients.
type minMax struct {
	base
	perturbation string
	sum          bool
	gradients    bool
}

// Craft implements Attack: F copies of μ + γ·p, γ maximal under the
// attack's constraint.
func (a minMax) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, false)
	if v == nil {
		return nothing(err)
	}
	mu := mean(v.benign, v.d)
	p := perturbation(a.perturbation, v.benign, mu, a.gradients)
	q := newQuadratics(v.benign, mu, p, a.sum)
	gamma := q.maxGamma()
	mal := make([]float64, v.d)
	for j := range mal {
		mal[j] = mu[j] + gamma*p[j]
	}
	return copies(mal, r.F), nil
}

// perturbation returns min-max's p: −σ ("std"), −μ/‖μ‖ ("unit") or
// −sign(μ) ("sign"); zeros where it is undefined. With gradients, p is
// what the authors' code subtracts from the mean of gradients, in update
// space: unit and sign are odd in the updates and do not change, std is
// +σ of the updates (see ZSignGradients).
func perturbation(kind string, benign [][]float32, mu []float64, gradients bool) []float64 {
	p := make([]float64, len(mu))
	switch kind {
	case PerturbationUnit:
		var n float64
		for _, x := range mu {
			n += x * x
		}
		if n = math.Sqrt(n); n > 0 {
			for j, x := range mu {
				p[j] = -x / n
			}
		}
	case PerturbationSign:
		for j, x := range mu {
			p[j] = -sign(x)
		}
	default:
		sign := -1.0
		if gradients {
			sign = 1
		}
		for j, s := range std(benign, mu) {
			p[j] = sign * s
		}
	}
	return p
}

// quadratics holds the squared distances from μ + γp to the benign
// updates bᵢ as quadratics in γ, ‖μ − bᵢ + γp‖² = a[i] + 2γ·c[i] + γ²·pp,
// and the threshold the constraint compares them with.
type quadratics struct {
	a, c      []float64
	pp        float64
	sum       bool
	threshold float64
}

// newQuadratics computes the coefficients and the threshold: the largest
// benign pairwise squared distance (min-max), or the largest benign sum of
// squared distances to the others, Σⱼ‖bᵢ − bⱼ‖² = m·a[i] + Σⱼ a[j]
// (min-sum).
func newQuadratics(benign [][]float32, mu, p []float64, sum bool) quadratics {
	m := len(benign)
	q := quadratics{a: make([]float64, m), c: make([]float64, m), sum: sum}
	for _, x := range p {
		q.pp += x * x
	}
	for i, b := range benign {
		var a, c float64
		for j, x := range b {
			e := mu[j] - float64(x)
			a += e * e
			c += e * p[j]
		}
		q.a[i], q.c[i] = a, c
	}
	if sum {
		var total float64
		for _, a := range q.a {
			total += a
		}
		for _, a := range q.a {
			q.threshold = max(q.threshold, float64(m)*a+total)
		}
		return q
	}
	for _, d := range pairwise(benign) {
		q.threshold = max(q.threshold, d)
	}
	return q
}

// value is the constrained quantity at γ: the largest squared distance
// (min-max) or the sum of squared distances (min-sum) from μ + γp to the
// benign updates.
func (q quadratics) value(gamma float64) float64 {
	var out float64
	for i := range q.a {
		d := q.a[i] + 2*gamma*q.c[i] + gamma*gamma*q.pp
		if q.sum {
			out += d
		} else {
			out = max(out, d)
		}
	}
	return out
}

// ok says whether γ satisfies the constraint.
func (q quadratics) ok(gamma float64) bool { return q.value(gamma) <= q.threshold }

// maxGamma returns the largest γ ≥ 0 satisfying the constraint, to within
// GammaTolerance relative: starting from DefaultGammaInit, the upper bound
// is doubled while it satisfies the constraint, then the bracket is
// bisected. 0 when p = 0 or no positive γ fits.
func (q quadratics) maxGamma() float64 {
	if q.pp == 0 {
		return 0
	}
	lo, hi := 0.0, DefaultGammaInit
	for q.ok(hi) {
		lo, hi = hi, 2*hi
		if hi > math.MaxFloat64/4 {
			return lo
		}
	}
	for range 2000 {
		if hi-lo <= GammaTolerance*hi {
			break
		}
		mid := lo + (hi-lo)/2
		if q.ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
