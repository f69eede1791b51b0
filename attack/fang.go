package attack

import (
	"math"
	"slices"
)

// fangKrum is Fang et al.'s attack on Krum.
type fangKrum struct{ base }

// Craft implements Attack: F copies of −λ·s, λ halved from Fang et al.'s
// bound until simulated Krum selects it.
func (a fangKrum) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, false)
	if v == nil {
		return nothing(err)
	}
	mu := mean(v.benign, v.d)
	s := make([]float64, v.d)
	var ss float64
	for j, x := range mu {
		s[j] = sign(x)
		ss += s[j] * s[j]
	}
	f := r.Rule.F
	if f <= 0 {
		f = r.F
	}
	k := newKrumSim(v.others, s, ss, r.F, f)
	lambda := k.bound()
	for lambda >= FangThreshold && !k.selected(lambda) {
		lambda /= 2
	}
	for j := range s {
		s[j] *= -lambda
	}
	return copies(s, r.F), nil
}

// krumSim simulates Krum over c identical crafted updates −λ·s and the
// updates others (K), with squared distances among K computed once and
// those to the crafted update as quadratics in λ:
// ‖−λs − bᵢ‖² = λ²·ss + 2λ·g[i] + q[i].
type krumSim struct {
	c, f int
	d    int
	dist []float64 // pairwise squared distances among K
	g, q []float64
	ss   float64
}

func newKrumSim(others [][]float32, s []float64, ss float64, c, f int) krumSim {
	k := krumSim{c: c, f: f, d: len(s), dist: pairwise(others), ss: ss,
		g: make([]float64, len(others)), q: make([]float64, len(others))}
	for i, b := range others {
		var g, q float64
		for j, x := range b {
			g += s[j] * float64(x)
			q += float64(x) * float64(x)
		}
		k.g[i], k.q[i] = g, q
	}
	return k
}

// bound is the upper bound on λ of Fang et al.'s Theorem 1, in update
// space (see the package documentation), with m = |K| + c.
func (k krumSim) bound() float64 {
	nk := len(k.g)
	m := nk + k.c
	if k.d == 0 {
		return 0
	}
	sqrtD := math.Sqrt(float64(k.d))
	nb := max(m-k.c-2, 0)
	minSum := math.Inf(1)
	row := make([]float64, 0, nk)
	for i := range nk {
		row = row[:0]
		for j := range nk {
			if j != i {
				row = append(row, math.Sqrt(max(k.dist[i*nk+j], 0)))
			}
		}
		slices.Sort(row)
		var sum float64
		for _, x := range row[:min(nb, len(row))] {
			sum += x
		}
		minSum = min(minSum, sum)
	}
	var maxNorm float64
	for _, q := range k.q {
		maxNorm = max(maxNorm, math.Sqrt(q))
	}
	den := float64(max(m-2*k.c-1, 1))
	return minSum/(den*sqrtD) + maxNorm/sqrtD
}

// selected says whether Krum, with f assumed Byzantine and n−f−2
// neighbours as package aggregation computes it, selects a crafted update
// −λ·s over every update of K (strictly lower score).
func (k krumSim) selected(lambda float64) bool {
	nk := len(k.g)
	n := nk + k.c
	nb := min(max(n-k.f-2, 0), n-1)
	delta := make([]float64, nk)
	for i := range nk {
		delta[i] = max(lambda*lambda*k.ss+2*lambda*k.g[i]+k.q[i], 0)
	}
	// A crafted update: c−1 copies at distance 0, then K.
	row := make([]float64, 0, n-1)
	for range k.c - 1 {
		row = append(row, 0)
	}
	row = append(row, delta...)
	mal := smallestSum(row, nb)
	for i := range nk {
		row = row[:0]
		for range k.c {
			row = append(row, delta[i])
		}
		for j := range nk {
			if j != i {
				row = append(row, max(k.dist[i*nk+j], 0))
			}
		}
		if smallestSum(row, nb) <= mal {
			return false
		}
	}
	return true
}

// smallestSum returns the sum of the k smallest values of row (which it
// sorts).
func smallestSum(row []float64, k int) float64 {
	slices.Sort(row)
	var s float64
	for _, x := range row[:min(k, len(row))] {
		s += x
	}
	return s
}

// fangTrim is Fang et al.'s attack on trimmed mean (and median).
type fangTrim struct{ base }

// Craft implements Attack: per coordinate, values beyond the benign
// extreme opposite to the estimated direction (full knowledge), or 3 to 4
// standard deviations from the mean (partial knowledge, OwnOnly).
func (a fangTrim) Craft(r Round) ([][]float32, error) {
	v, err := a.prepare(r, true)
	if v == nil {
		return nothing(err)
	}
	mu := mean(v.benign, v.d)
	lo, hi := make([]float64, v.d), make([]float64, v.d)
	if v.full {
		wmin, wmax := make([]float64, v.d), make([]float64, v.d)
		for j := range wmin {
			wmin[j], wmax[j] = math.Inf(1), math.Inf(-1)
		}
		for _, b := range v.benign {
			for j, x := range b {
				wmin[j] = min(wmin[j], float64(x))
				wmax[j] = max(wmax[j], float64(x))
			}
		}
		for j, m := range mu {
			switch {
			case m > 0 && wmin[j] > 0:
				lo[j], hi[j] = wmin[j]/FangB, wmin[j]
			case m > 0:
				lo[j], hi[j] = FangB*wmin[j], wmin[j]
			case m < 0 && wmax[j] > 0:
				lo[j], hi[j] = wmax[j], FangB*wmax[j]
			case m < 0:
				lo[j], hi[j] = wmax[j]/FangB, wmax[j]
			default:
				lo[j], hi[j] = m, m
			}
		}
	} else {
		sd := std(v.benign, mu)
		for j, m := range mu {
			switch {
			case m > 0:
				lo[j], hi[j] = m-4*sd[j], m-3*sd[j]
			case m < 0:
				lo[j], hi[j] = m+3*sd[j], m+4*sd[j]
			default:
				lo[j], hi[j] = m, m
			}
		}
	}
	out := make([][]float32, r.F)
	for i := range out {
		w := make([]float32, v.d)
		for j := range w {
			w[j] = to32(lo[j] + (hi[j]-lo[j])*r.Rng.Float64())
		}
		out[i] = w
	}
	return out, nil
}
