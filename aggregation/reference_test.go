package aggregation

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The naive reference: every rule written from its definition with double
// loops, float64 throughout and a full sort per coordinate, sharing no code
// with the package.

// refResult is a reference aggregate and the selected inputs.
type refResult struct {
	agg      []float64
	selected []bool
	scores   []float64 // Krum scores over all inputs, when the rule has them
}

func refVectors(us []Update) [][]float64 {
	xs := make([][]float64, len(us))
	for i, u := range us {
		xs[i] = make([]float64, len(u.Delta))
		for j, v := range u.Delta {
			xs[i][j] = float64(v)
		}
	}
	return xs
}

func refSqDist(a, b []float64) float64 {
	var s float64
	for j := range a {
		s += (a[j] - b[j]) * (a[j] - b[j])
	}
	return s
}

func refColumn(xs [][]float64, idx []int, j int) []float64 {
	col := make([]float64, 0, len(idx))
	for _, i := range idx {
		col = append(col, xs[i][j])
	}
	sort.Float64s(col)
	return col
}

func allIdx(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

func refMedian(xs [][]float64, idx []int) []float64 {
	out := make([]float64, len(xs[0]))
	for j := range out {
		c := refColumn(xs, idx, j)
		if len(c)%2 == 1 {
			out[j] = c[len(c)/2]
		} else {
			out[j] = (c[len(c)/2-1] + c[len(c)/2]) / 2
		}
	}
	return out
}

func refTrimmed(xs [][]float64, k int) []float64 {
	out := make([]float64, len(xs[0]))
	for j := range out {
		c := refColumn(xs, allIdx(len(xs)), j)
		var s float64
		for _, v := range c[k : len(c)-k] {
			s += v
		}
		out[j] = s / float64(len(c)-2*k)
	}
	return out
}

func refMean(xs [][]float64, idx []int) []float64 {
	out := make([]float64, len(xs[0]))
	for _, i := range idx {
		for j := range out {
			out[j] += xs[i][j]
		}
	}
	for j := range out {
		out[j] /= float64(len(idx))
	}
	return out
}

// refKrumScores scores each member of set against the other members.
func refKrumScores(xs [][]float64, set []int, f int) map[int]float64 {
	k := min(max(len(set)-f-2, 1), len(set)-1) // Krum's n−f−2 ≥ 1; Bulyan's last passes clamp at 1
	scores := map[int]float64{}
	for _, i := range set {
		var ds []float64
		for _, j := range set {
			if j != i {
				ds = append(ds, refSqDist(xs[i], xs[j]))
			}
		}
		sort.Float64s(ds)
		var s float64
		for _, v := range ds[:k] {
			s += v
		}
		scores[i] = s
	}
	return scores
}

// refByScore orders set by score, then ID, then index.
func refByScore(set []int, scores map[int]float64, ids []string) []int {
	out := slices.Clone(set)
	sort.SliceStable(out, func(a, b int) bool {
		ia, ib := out[a], out[b]
		if scores[ia] != scores[ib] {
			return scores[ia] < scores[ib]
		}
		if ids[ia] != ids[ib] {
			return ids[ia] < ids[ib]
		}
		return ia < ib
	})
	return out
}

func ids(us []Update) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

// reference aggregates us under c, with bucketing drawing from rnd.
func reference(c Config, us []Update, rnd []byte) refResult {
	n := len(us)
	xs := refVectors(us)
	if c.NormClip > 0 {
		for _, x := range xs {
			norm := math.Sqrt(refSqDist(x, make([]float64, len(x))))
			if norm > c.NormClip {
				for j := range x {
					x[j] = float64(float32(x[j] * (c.NormClip / norm)))
				}
			}
		}
	}
	var members [][]int
	if c.Bucket > 1 {
		perm := refPermutation(rnd, n)
		for p := 0; p < n; p += c.Bucket {
			members = append(members, perm[p:min(p+c.Bucket, n)])
		}
		if c.Rule != "fedavg" && c.Rule != "" {
			inner := make([][]float64, len(members))
			bucketUpdates := make([]Update, len(members))
			for t, m := range members {
				inner[t] = refMean(xs, m)
				// Round as the package does: bucket means are float32.
				for j := range inner[t] {
					inner[t][j] = float64(float32(inner[t][j]))
				}
				var samples uint64
				for _, i := range m {
					samples += us[i].Samples
				}
				bucketUpdates[t] = Update{ID: fmt.Sprintf("bucket-%d", t+1), Samples: samples}
			}
			r := referenceRule(c, inner, bucketUpdates)
			sel := make([]bool, n)
			for t, m := range members {
				for _, i := range m {
					sel[i] = r.selected[t]
				}
			}
			return refResult{agg: r.agg, selected: sel}
		}
	}
	return referenceRule(c, xs, us)
}

func referenceRule(c Config, xs [][]float64, us []Update) refResult {
	n := len(xs)
	all := allIdx(n)
	sel := make([]bool, n)
	for i := range sel {
		sel[i] = true
	}
	switch c.Rule {
	case "", "fedavg":
		out := make([]float64, len(xs[0]))
		var total float64
		w := make([]float64, n)
		for i, u := range us {
			s := u.Samples
			if c.MaxSamples > 0 && s > c.MaxSamples {
				s = c.MaxSamples
			}
			w[i] = float64(s)
			total += w[i]
		}
		for i := range xs {
			for j := range out {
				out[j] += w[i] * xs[i][j] / total
			}
		}
		return refResult{agg: out, selected: sel}
	case "median":
		return refResult{agg: refMedian(xs, all), selected: sel}
	case "trimmed-mean":
		k := int(math.Ceil(c.Beta*float64(n) - 1e-9))
		return refResult{agg: refTrimmed(xs, k), selected: sel}
	case "krum", "multi-krum":
		m := max(c.M, 1)
		scores := refKrumScores(xs, all, c.F)
		order := refByScore(all, scores, ids(us))
		clear(sel)
		for _, i := range order[:m] {
			sel[i] = true
		}
		sc := make([]float64, n)
		for i := range sc {
			sc[i] = scores[i]
		}
		return refResult{agg: refMean(xs, order[:m]), selected: sel, scores: sc}
	case "bulyan":
		theta, beta := n-2*c.F, n-4*c.F
		left := all
		var chosen []int
		for range theta {
			order := refByScore(left, refKrumScores(xs, left, c.F), ids(us))
			chosen = append(chosen, order[0])
			left = slices.DeleteFunc(slices.Clone(left), func(i int) bool { return i == order[0] })
		}
		clear(sel)
		for _, i := range chosen {
			sel[i] = true
		}
		med := refMedian(xs, chosen)
		out := make([]float64, len(xs[0]))
		for j := range out {
			col := refColumn(xs, chosen, j)
			// Closest to the median first; at equal distance the smaller.
			sort.SliceStable(col, func(a, b int) bool {
				da, db := math.Abs(col[a]-med[j]), math.Abs(col[b]-med[j])
				if da != db {
					return da < db
				}
				return col[a] < col[b]
			})
			var s float64
			for _, v := range col[:beta] {
				s += v
			}
			out[j] = s / float64(beta)
		}
		sc := make([]float64, n)
		for i, s := range refKrumScores(xs, all, c.F) {
			sc[i] = s
		}
		return refResult{agg: out, selected: sel, scores: sc}
	case "centered-clipping":
		l := c.Iterations
		if l == 0 {
			l = 3
		}
		// The center is rounded to float32 after each iteration.
		round := func(v []float64) {
			for j := range v {
				v[j] = float64(float32(v[j]))
			}
		}
		v := refMedian(xs, all)
		round(v)
		for range l {
			next := slices.Clone(v)
			for _, x := range xs {
				dd := math.Sqrt(refSqDist(x, v))
				s := 1.0
				if dd > c.Tau {
					s = c.Tau / dd
				}
				for j := range next {
					next[j] += s * (x[j] - v[j]) / float64(n)
				}
			}
			round(next)
			v = next
		}
		return refResult{agg: v, selected: sel}
	case "rfa":
		// Smoothed Weiszfeld, straight from the paper's definition: the
		// iterate is rounded to float32 after each step, as the package
		// keeps it in the float32 dst.
		iters, nu := RFA{Iterations: c.Iterations, Nu: c.Nu}.params()
		alpha := make([]float64, n)
		var total float64
		for i, u := range us {
			s := u.Samples
			if c.MaxSamples > 0 {
				s = min(s, c.MaxSamples)
			}
			alpha[i] = float64(s)
			total += alpha[i]
		}
		v := make([]float64, len(xs[0]))
		if c.Start != "zero" {
			for i, x := range xs {
				for j := range v {
					v[j] += alpha[i] / total * x[j]
				}
			}
		}
		for range iters {
			next := make([]float64, len(v))
			var sum float64
			beta := make([]float64, n)
			for i, x := range xs {
				beta[i] = alpha[i] / max(nu, math.Sqrt(refSqDist(x, float32s(v))))
				sum += beta[i]
			}
			for i, x := range xs {
				for j := range next {
					next[j] += beta[i] / sum * x[j]
				}
			}
			v = float32s(next)
		}
		return refResult{agg: v, selected: sel}
	}
	panic("reference: unknown rule " + c.Rule)
}

// refPermutation is Fisher–Yates with 8-byte little-endian draws, rejecting
// u ≥ 2⁶⁴ − (2⁶⁴ mod b).
func refPermutation(rnd []byte, n int) []int {
	r := bytes.NewReader(rnd)
	p := allIdx(n)
	for i := n - 1; i > 0; i-- {
		b := uint64(i + 1)
		rem := -b % b // 2⁶⁴ mod b
		for {
			var u uint64
			if err := binary.Read(r, binary.LittleEndian, &u); err != nil {
				panic(err)
			}
			if rem == 0 || u < -rem {
				j := u % b
				p[i], p[j] = p[j], p[i]
				break
			}
		}
	}
	return p
}

// randomCohort is n updates of length d: honest ones around a random
// centre, each with its own spread.
func randomCohort(rng *rand.Rand, n, d int) []Update {
	centre := make([]float64, d)
	for j := range centre {
		centre[j] = rng.NormFloat64()
	}
	us := make([]Update, n)
	for i := range us {
		x := make([]float32, d)
		spread := 0.1 + rng.Float64()*2
		for j := range x {
			x[j] = float32(centre[j] + spread*rng.NormFloat64())
		}
		us[i] = Update{ID: fmt.Sprintf("p%02d", i), Delta: x, Samples: 1 + rng.Uint64N(1000)}
	}
	return us
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// closeTo reports whether got is within tol (relative, plus absolute on
// the vector's scale) of want everywhere.
func closeTo(got []float32, want []float64, tol float64) (int, bool) {
	var scale float64
	for _, w := range want {
		scale = max(scale, math.Abs(w))
	}
	for j := range want {
		if math.Abs(float64(got[j])-want[j]) > tol*(math.Abs(want[j])+scale+1e-30) {
			return j, false
		}
	}
	return -1, true
}

// nearTie reports whether the reference's selection is fragile: the last
// selected and first excluded scores differ by less than 1e-4 relative.
func nearTie(r refResult) bool {
	if r.scores == nil {
		return false
	}
	var in, out []float64
	for i, s := range r.scores {
		if r.selected[i] {
			in = append(in, s)
		} else {
			out = append(out, s)
		}
	}
	if len(in) == 0 || len(out) == 0 {
		return false
	}
	hi, lo := slices.Max(in), slices.Min(out)
	return lo-hi <= 1e-4*math.Abs(lo)
}

func configString(c Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", c.Rule)
	for _, p := range []struct {
		k string
		v float64
	}{{"f", float64(c.F)}, {"m", float64(c.M)}, {"beta", c.Beta}, {"tau", c.Tau}, {"L", float64(c.Iterations)}, {"clip", c.NormClip}, {"s", float64(c.Bucket)}, {"cap", float64(c.MaxSamples)}} {
		if p.v != 0 {
			fmt.Fprintf(&b, " %s=%v", p.k, p.v)
		}
	}
	return b.String()
}

// differentialConfigs lists the configurations tried for a cohort of n.
func differentialConfigs(n int) []Config {
	var cs []Config
	cs = append(cs, Config{}, Config{Rule: "fedavg", MaxSamples: 300})
	for f := 0; 2*f < n; f++ {
		cs = append(cs, Config{Rule: "median", F: f})
	}
	for _, beta := range []float64{0, 0.1, 0.2, 1.0 / 3, 0.45} {
		k := trimCount(beta, n)
		if 2*k < n {
			cs = append(cs, Config{Rule: "trimmed-mean", Beta: beta, F: k})
		}
	}
	for f := 0; 2*f+3 <= n; f++ {
		cs = append(cs, Config{Rule: "krum", F: f})
		for _, m := range []int{1, 2, n - f} {
			if m >= 1 && m <= n-f {
				cs = append(cs, Config{Rule: "multi-krum", F: f, M: m})
			}
		}
	}
	for f := 0; 4*f+3 <= n; f++ {
		cs = append(cs, Config{Rule: "bulyan", F: f})
	}
	for _, tau := range []float64{0.5, 5, 1e6} {
		cs = append(cs, Config{Rule: "centered-clipping", Tau: tau}, Config{Rule: "centered-clipping", Tau: tau, Iterations: 1, F: (n - 1) / 2})
	}
	for _, nu := range []float64{0, 0.1, 100} {
		cs = append(cs, Config{Rule: "rfa", Nu: nu}, Config{Rule: "rfa", Nu: nu, Iterations: 12, Start: "zero", MaxSamples: 1},
			Config{Rule: "rfa", Nu: nu, Iterations: 1, F: (n - 1) / 2, MaxSamples: 300})
	}
	// Pre-steps on a few rules.
	var pre []Config
	for _, c := range cs {
		if c.Rule == "median" && c.F == 0 || c.Rule == "krum" && c.F == 0 || c.Rule == "" || c.Rule == "centered-clipping" && c.Iterations == 0 && c.Tau == 5 ||
			c.Rule == "rfa" && c.Nu == 0.1 && c.Iterations == 0 {
			pre = append(pre, withPre(c, 3, 0), withPre(c, 0, 2), withPre(c, 2.5, 3))
		}
	}
	cs = append(cs, pre...)
	for s := 2; s <= 4; s++ {
		if m := buckets(n, s); m >= 3 {
			cs = append(cs, Config{Rule: "krum", Bucket: s}, Config{Rule: "trimmed-mean", Beta: 0.2, Bucket: s})
		}
		if m := buckets(n, s); m >= 7 {
			cs = append(cs, Config{Rule: "bulyan", F: 1, Bucket: s})
		}
	}
	return cs
}

func withPre(c Config, clip float64, bucket int) Config {
	c.NormClip, c.Bucket = clip, bucket
	return c
}

// TestRulesMatchReference compares every rule with the naive reference on
// random cohorts, including lengths that are not multiples of the kernels'
// block and lane sizes.
func TestRulesMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := []struct{ n, d int }{
		{1, 1}, {2, 3}, {3, 1}, {3, 7}, {4, 5}, {5, 17}, {6, 2}, {7, 33}, {8, 15},
		{9, 100}, {11, 63}, {12, 129}, {15, 257}, {16, 31}, {20, 1000}, {23, 2051}, {9, 4099},
	}
	if testing.Short() {
		sizes = sizes[:12]
	}
	for _, sz := range sizes {
		us := randomCohort(rng, sz.n, sz.d)
		rnd := randomBytes(rng, 8*64)
		for _, c := range differentialConfigs(sz.n) {
			name := fmt.Sprintf("n=%d d=%d %s", sz.n, sz.d, configString(c))
			if err := c.CheckCohort(sz.n); err != nil {
				continue
			}
			rule, err := New(c)
			if err != nil {
				t.Fatalf("%s: New: %v", name, err)
			}
			rule = WithRand(rule, bytes.NewReader(rnd))
			dst := make([]float32, sz.d)
			rep, err := rule.Aggregate(dst, us)
			if err != nil {
				t.Fatalf("%s: Aggregate: %v", name, err)
			}
			want := reference(c, us, rnd)
			if nearTie(want) {
				t.Logf("%s: near tie in the reference's scores, skipped", name)
				continue
			}
			if j, ok := closeTo(dst, want.agg, 2e-5); !ok {
				t.Errorf("%s: dst[%d] = %v, want %v", name, j, dst[j], want.agg[j])
			}
			if len(rep.Entries) != sz.n {
				t.Fatalf("%s: %d entries, want %d", name, len(rep.Entries), sz.n)
			}
			for i, e := range rep.Entries {
				if e.ID != us[i].ID || e.Selected != want.selected[i] {
					t.Errorf("%s: entry %d = %+v, want ID %q selected %v", name, i, e, us[i].ID, want.selected[i])
				}
				if want.scores != nil && c.Bucket <= 1 && math.Abs(e.Score-want.scores[i]) > 1e-4*(want.scores[i]+1e-30) {
					t.Errorf("%s: entry %d score %v, want %v", name, i, e.Score, want.scores[i])
				}
			}
		}
	}
}

// float32s rounds v to float32 values (a copy when the rounding is the
// package's: iterates live in float32 destinations).
func float32s(v []float64) []float64 {
	out := make([]float64, len(v))
	for j, x := range v {
		out[j] = float64(float32(x))
	}
	return out
}
