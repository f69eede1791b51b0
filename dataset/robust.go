package dataset

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// ClipBand is how far, in robust standard deviations, a party's mean may
// lie from the robust centre (and its standard deviation from zero) before
// RobustScaling clips it. It is wide enough that honest non-IID parties
// are left alone: the demo's label-skewed hospitals (WDBC, data splits of
// seeds 1 to 5) are never clipped with 4, while 3 clipped an honest
// hospital in one feature in two of the five splits; and narrow enough
// that one party cannot move the scaling by more than a few honest
// spreads (coordinator's TestDriftDefaultOnDemo checks the first).
const ClipBand = 4

// Party is one party's statistics, named, for RobustScaling.
type Party struct {
	Name  string
	Stats Stats
}

// Clipped names a party whose moments RobustScaling clipped, and in how
// many features.
type Clipped struct {
	Name     string `json:"name"`
	Features int    `json:"features"`
}

// ErrInconsistentStats is wrapped by CheckStats for statistics no data
// set can have: a mean whose square exceeds the mean of the squares (the
// Cauchy–Schwarz bound Σx² ≥ (Σx)²/n), or moments that overflow.
var ErrInconsistentStats = errors.New("dataset: statistics no data set can have")

// CheckStats reports whether s could come from count rows of finite
// numbers: every per-feature mean and mean of squares is finite, and the
// variance they imply is not negative beyond float64 rounding.
func CheckStats(s Stats) error {
	if s.Count == 0 {
		return fmt.Errorf("%w: zero rows", ErrInconsistentStats)
	}
	if len(s.Sum) != len(s.SumSquares) {
		return fmt.Errorf("%w: %d sums, %d sums of squares", ErrInconsistentStats, len(s.Sum), len(s.SumSquares))
	}
	n := float64(s.Count)
	for j := range s.Sum {
		mean, m2 := s.Sum[j]/n, s.SumSquares[j]/n
		sq := mean * mean
		if !finite(mean) || !finite(m2) || !finite(sq) || m2 < 0 {
			return fmt.Errorf("%w: feature %d: moments are not finite", ErrInconsistentStats, j)
		}
		// Σx²/n ≥ (Σx/n)² for any data; allow the rounding of n
		// additions of squares.
		if sq > m2*(1+1e-9)+math.SmallestNonzeroFloat64 {
			return fmt.Errorf("%w: feature %d: squared mean %g exceeds the mean of squares %g", ErrInconsistentStats, j, sq, m2)
		}
	}
	return nil
}

// RobustScaling derives a federation's scaling from per-party statistics
// so that no single party can move it arbitrarily, whatever it reports.
// Self-reported counts and moments are both untrusted:
//
//  1. Weights. A party weighs its row count capped at the median count of
//     all parties (the lower median), so claiming 2⁴⁰ rows buys no more
//     weight than the median party has.
//  2. Centre and spread, per feature. The centre m is the weighted (lower)
//     median of the parties' means; the spread s² is the weighted median of
//     each party's second moment about m, varᵢ + (meanᵢ − m)². With three or
//     more parties one party holds less than half the weight, so m and s lie
//     within the honest parties' values.
//  3. Clipping. Each party's mean is clipped to m ± ClipBand·s and its
//     variance to at most (ClipBand·s)².
//  4. Pooling. Mean and variance are pooled from the clipped moments with
//     the capped weights, as Merge and ScalingFrom would pool the raw ones.
//
// So one party among three or more shifts the mean by less than
// ClipBand·s and inflates the standard deviation to at most about
// ClipBand·s·√2, where s is set by the honest parties. With one party
// the result is its own scaling; with two, neither can be outvoted and
// each can still skew it (within the band set by the other). Every party
// must pass CheckStats; parties must have the same width. Clipped lists
// the parties clipped in at least one feature. Parties are taken in
// name order, so the result, to the bit, does not depend on their order.
func RobustScaling(parties []Party) (Scaling, []Clipped, error) {
	if len(parties) == 0 {
		return Scaling{}, nil, errors.New("dataset: robust scaling of no parties")
	}
	parties = slices.Clone(parties)
	slices.SortStableFunc(parties, func(a, b Party) int { return strings.Compare(a.Name, b.Name) })
	w := len(parties[0].Stats.Sum)
	counts := make([]float64, len(parties))
	for i, p := range parties {
		if len(p.Stats.Sum) != w {
			return Scaling{}, nil, fmt.Errorf("dataset: robust scaling: %s has %d features, want %d", p.Name, len(p.Stats.Sum), w)
		}
		if err := CheckStats(p.Stats); err != nil {
			return Scaling{}, nil, fmt.Errorf("robust scaling: %s: %w", p.Name, err)
		}
		counts[i] = float64(p.Stats.Count)
	}
	ones := make([]float64, len(parties))
	for i := range ones {
		ones[i] = 1
	}
	capCount := weightedMedian(counts, ones)
	weights := make([]float64, len(parties))
	var total float64
	for i, n := range counts {
		weights[i] = min(n, capCount)
		total += weights[i]
	}
	means := make([]float64, len(parties))
	vars := make([]float64, len(parties))
	second := make([]float64, len(parties))
	clipped := make([]int, len(parties))
	sc := Scaling{Mean: make([]float64, w), Std: make([]float64, w)}
	for j := range w {
		for i, p := range parties {
			n := counts[i]
			means[i] = p.Stats.Sum[j] / n
			vars[i] = max(p.Stats.SumSquares[j]/n-means[i]*means[i], 0)
		}
		m := weightedMedian(means, weights)
		for i := range parties {
			d := means[i] - m
			second[i] = vars[i] + d*d
		}
		band := ClipBand * math.Sqrt(weightedMedian(second, weights))
		var mean float64
		for i := range parties {
			cm := min(max(means[i], m-band), m+band)
			cv := min(vars[i], band*band)
			if cm != means[i] || cv != vars[i] {
				clipped[i]++
			}
			means[i], vars[i] = cm, cv
			mean += weights[i] * cm
		}
		mean /= total
		var v float64
		for i := range parties {
			d := means[i] - mean
			v += weights[i] * (vars[i] + d*d)
		}
		v /= total
		std := math.Sqrt(v)
		if !finite(mean) || !finite(std) {
			return Scaling{}, nil, fmt.Errorf("dataset: robust scaling: feature %d: moments overflow", j)
		}
		// As ScalingFrom: a constant column, or one whose variance is
		// rounding noise of its second moment, keeps its values.
		if std < MinStd || v <= 0x1p-46*(mean*mean+v) {
			std = 1
		}
		sc.Mean[j], sc.Std[j] = mean, std
	}
	var out []Clipped
	for i, p := range parties {
		if clipped[i] > 0 {
			out = append(out, Clipped{Name: p.Name, Features: clipped[i]})
		}
	}
	return sc, out, nil
}

// weightedMedian is the lower weighted median of xs: the smallest x whose
// cumulative weight, in ascending order of x, reaches half the total.
// Ties in x are broken by weight, so the result does not depend on the
// order of the inputs.
func weightedMedian(xs, ws []float64) float64 {
	idx := make([]int, len(xs))
	var total float64
	for i := range idx {
		idx[i] = i
		total += ws[i]
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmpFloat(xs[a], xs[b]); c != 0 {
			return c
		}
		return cmpFloat(ws[a], ws[b])
	})
	var cum float64
	for _, i := range idx {
		cum += ws[i]
		if 2*cum >= total {
			return xs[i]
		}
	}
	return xs[idx[len(idx)-1]]
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
