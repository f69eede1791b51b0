package aggregation

import (
	"cmp"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The kernels are checked against naive references that share no code and
// no loop structure with the kernels: sums in float64 (compensated, or in
// double-double where a tolerance must be argued from the kernel's own
// rounding), and a sort per coordinate for the order statistics.

// u64 is the unit roundoff of float64, 2⁻⁵³.
const u64 = 0x1p-53

// gamma is Higham's γ_k = k·u/(1−k·u): a sum of k terms in float64, in any
// order, is within γ_(k−1)·Σ|term| of the exact sum (Higham, Accuracy and
// Stability of Numerical Algorithms, 2nd ed., §4.2).
func gamma(k int) float64 { return float64(k) * u64 / (1 - float64(k)*u64) }

// neumaierSum is the Kahan–Babuška–Neumaier compensated sum: within
// 2u·Σ|x| of the exact sum (plus a term in n·u², negligible here), whatever
// the order and the length.
func neumaierSum(xs func(yield func(float64) bool)) float64 {
	var s, c float64
	for x := range xs {
		t := s + x
		if math.Abs(s) >= math.Abs(x) {
			c += (s - t) + x
		} else {
			c += (x - t) + s
		}
		s = t
	}
	return s + c
}

// refSquaredDistance is ||x − y||², each difference and square in float64
// (a difference of two float32 rounds at most once, its square once) and
// the squares added with neumaierSum: within about 4u relative of the
// exact value, all terms being non-negative.
func refSquaredDistance(x, y []float32) float64 {
	return neumaierSum(func(yield func(float64) bool) {
		for i := range x {
			t := float64(x[i]) - float64(y[i])
			if !yield(t * t) {
				return
			}
		}
	})
}

func naiveDistances(xs [][]float32) []float64 {
	n := len(xs)
	out := make([]float64, n*n)
	for i := range n {
		for j := i + 1; j < n; j++ { // the squares do not depend on the order of the pair
			out[i*n+j] = refSquaredDistance(xs[i], xs[j])
			out[j*n+i] = out[i*n+j]
		}
	}
	return out
}

// naiveRankMean sorts each coordinate and averages ranks lo..hi-1 in float64,
// adding in ascending order.
func naiveRankMean(xs [][]float32, lo, hi int) []float32 {
	d := len(xs[0])
	out := make([]float32, d)
	col := make([]float32, len(xs))
	for c := range d {
		for r, x := range xs {
			col[r] = x[c]
		}
		slices.Sort(col)
		var s float64
		for _, v := range col[lo:hi] {
			s += float64(v)
		}
		out[c] = float32(s / float64(hi-lo))
	}
	return out
}

func naiveMeanOf(xs [][]float32, idx []int) []float32 {
	d := len(xs[0])
	out := make([]float32, d)
	for c := range d {
		var s float64
		for _, i := range idx {
			s += float64(xs[i][c])
		}
		out[c] = float32(s / float64(len(idx)))
	}
	return out
}

// kernelInputs returns n vectors of length d of the given kind.
func kernelInputs(rng *rand.Rand, kind string, n, d int) [][]float32 {
	xs := make([][]float32, n)
	for i := range xs {
		xs[i] = make([]float32, d)
		for c := range xs[i] {
			switch kind {
			case "normal":
				xs[i][c] = float32(rng.NormFloat64())
			case "ties": // few distinct values, many equal ones, ±0
				xs[i][c] = float32(rng.IntN(5)-2) * 0.5
				if xs[i][c] == 0 && rng.IntN(2) == 0 {
					xs[i][c] = float32(math.Copysign(0, -1))
				}
			case "offset": // large common offset: cancellation bait
				xs[i][c] = 1e6 + float32(rng.NormFloat64())
			case "outliers":
				xs[i][c] = float32(rng.NormFloat64())
				if rng.IntN(7) == 0 {
					xs[i][c] = float32(rng.NormFloat64() * 1e15)
				}
			}
		}
	}
	// Duplicated vectors: distance exactly 0.
	if n >= 3 {
		copy(xs[n-1], xs[0])
		xs[n/2] = slices.Clone(xs[1])
	}
	return xs
}

var (
	kernelNs    = []int{1, 2, 3, 4, 5, 7, 16, 50}
	kernelDs    = []int{1, 3, 17, 4095, 4097, 10000}
	kernelKinds = []string{"normal", "ties", "offset", "outliers"}
)

// forKernelCases runs f for the case grid, trimmed under the race detector
// and -short to keep the run short.
func forKernelCases(t *testing.T, f func(t *testing.T, xs [][]float32)) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, kind := range kernelKinds {
		for _, n := range kernelNs {
			for _, d := range kernelDs {
				if (raceEnabled || testing.Short()) && n*d > 40000 {
					continue
				}
				xs := kernelInputs(rng, kind, n, d)
				t.Run(fmt.Sprintf("%s/n=%d/d=%d", kind, n, d), func(t *testing.T) { f(t, xs) })
			}
		}
	}
}

// withPaths runs f once per kernel path this CPU offers (the portable loops
// included), as a subtest named after the path.
func withPaths(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := kernel
	defer func() { kernel = saved }()
	for _, p := range availablePaths() {
		kernel = p
		t.Run(p.String(), f)
	}
}

func TestPairwiseSquaredDistances(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n := len(xs)
			got := pairwiseSquaredDistances(xs)
			want := naiveDistances(xs)
			if len(got) != n*n {
				t.Fatalf("len = %d, want %d", len(got), n*n)
			}
			for i := range n {
				for j := range n {
					g, w := got[i*n+j], want[i*n+j]
					if g != got[j*n+i] {
						t.Fatalf("D[%d,%d] = %v, D[%d,%d] = %v: not symmetric", i, j, g, j, i, got[j*n+i])
					}
					if w == 0 && g != 0 {
						t.Fatalf("D[%d,%d] = %v, want exactly 0", i, j, g)
					}
					// The kernel is within 8.1e-6 relative of the exact
					// value (kernel.go), the reference within 4u: their
					// sum bounds the gap.
					if g < 0 || math.Abs(g-w) > (8.1e-6+4*u64)*w {
						t.Fatalf("D[%d,%d] = %v, want %v (rel. error %.3g)", i, j, g, w, math.Abs(g-w)/w)
					}
				}
			}
		})
	})
}

func TestPairwiseOverflowFallsBack(t *testing.T) {
	xs := [][]float32{{3e19, 1}, {-3e19, 1}, {0, 1}}
	got := pairwiseSquaredDistances(xs)
	for i := range xs {
		for j := range xs {
			// Exact in big.Float (float32 values; 512 bits hold their
			// squares and sums exactly), then rounded once: the float64
			// fallback, two roundings per term and one addition, is
			// within γ_3 ≈ 3.3e-16 of it, well inside 1e-12.
			want := exactSquaredDistance(xs[i], xs[j])
			if g := got[i*len(xs)+j]; math.IsInf(g, 0) || math.Abs(g-want) > 1e-12*want {
				t.Errorf("D[%d,%d] = %v, want %v", i, j, g, want)
			}
		}
	}
}

// exactSquaredDistance is ||x − y||² computed exactly with math/big and
// rounded once to float64.
func exactSquaredDistance(x, y []float32) float64 {
	const prec = 512
	sum := new(big.Float).SetPrec(prec)
	for i := range x {
		t := new(big.Float).SetPrec(prec).SetFloat64(float64(x[i]))
		t.Sub(t, new(big.Float).SetPrec(prec).SetFloat64(float64(y[i])))
		sum.Add(sum, t.Mul(t, t))
	}
	f, _ := sum.Float64()
	return f
}

func TestCoordinateMedian(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			lo, hi := n/2, n/2+1
			if n%2 == 0 {
				lo = n/2 - 1
			}
			want := naiveRankMean(xs, lo, hi)
			got := make([]float32, d)
			coordinateMedian(got, xs)
			checkEqual(t, "coordinateMedian", got, want)
		})
	})
}

func TestCoordinateTrimmedMean(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			for _, k := range slices.Compact([]int{0, 1, (n - 1) / 4, (n - 1) / 2}) {
				if 2*k >= n {
					continue
				}
				want := naiveRankMean(xs, k, n-k)
				got := make([]float32, d)
				coordinateTrimmedMean(got, xs, k)
				checkEqual(t, fmt.Sprintf("coordinateTrimmedMean(k=%d)", k), got, want)
			}
		})
	})
}

func TestMeanOf(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			rng := rand.New(rand.NewPCG(uint64(n), uint64(d)))
			for _, idx := range [][]int{{0}, rng.Perm(n), rng.Perm(n)[:(n+1)/2], {n - 1, 0, n - 1}} {
				want := naiveMeanOf(xs, idx)
				got := make([]float32, d)
				meanOf(got, xs, idx)
				checkEqual(t, fmt.Sprintf("meanOf(%v)", idx), got, want)
			}
		})
	})
}

// checkEqual wants the same values (the kernels add in the reference's order,
// so there is no rounding difference; −0 equals +0).
func checkEqual(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for c := range want {
		if got[c] != want[c] {
			t.Fatalf("%s: dst[%d] = %v, want %v", name, c, got[c], want[c])
		}
	}
}

// TestSortNetwork checks the networks by the 0–1 principle: a comparator
// network sorts every input if it sorts every input of zeros and ones.
func TestSortNetwork(t *testing.T) {
	for n := 1; n <= 14; n++ {
		for _, r := range [][2]int{{0, n}, {n / 2, n/2 + 1}, {(n - 1) / 2, n/2 + 1}, {n / 4, n - n/4}} {
			lo, hi := r[0], r[1]
			if lo >= hi {
				continue
			}
			net := sortNetwork(n, lo, hi)
			buf := make([]float32, n*lanes)
			for bits := 0; bits < 1<<n; bits++ {
				ones := 0
				for w := range n {
					v := float32(bits >> w & 1)
					ones += int(v)
					for l := range lanes {
						buf[w*lanes+l] = v
					}
				}
				networkRowsGeneric(buf, net)
				for w := lo; w < hi; w++ {
					if want := float32(btoi(w >= n-ones)); buf[w*lanes] != want {
						t.Fatalf("n=%d ranks [%d,%d): input %0*b: wire %d = %v, want %v", n, lo, hi, n, bits, w, buf[w*lanes], want)
					}
				}
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestKernelsDeterministic wants the same bits on one core and on two, and
// from the default kernel path and the portable loops.
func TestKernelsDeterministic(t *testing.T) {
	n, d := 20, 3*pairBlock+5
	if !raceEnabled && !testing.Short() {
		d = 70000
	}
	xs := kernelInputs(rand.New(rand.NewPCG(3, 4)), "normal", n, d)
	idx := []int{3, 1, 4, 1, 5, 9, 2, 6}
	run := func() ([]float64, []float32, []float32, []float32) {
		med := make([]float32, d)
		tm := make([]float32, d)
		mo := make([]float32, d)
		coordinateMedian(med, xs)
		coordinateTrimmedMean(tm, xs, 4)
		meanOf(mo, xs, idx)
		return pairwiseSquaredDistances(xs), med, tm, mo
	}
	saved := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(saved)
	d1, m1, t1, o1 := run()
	runtime.GOMAXPROCS(2)
	d2, m2, t2, o2 := run()
	savedPath := kernel
	kernel = pathPurego
	d3, m3, t3, o3 := run()
	kernel = savedPath
	for _, c := range []struct {
		name string
		a, b any
	}{
		{"1 vs 2 cores", []any{d1, m1, t1, o1}, []any{d2, m2, t2, o2}},
		{kernel.String() + " vs purego", []any{d2, m2, t2, o2}, []any{d3, m3, t3, o3}},
	} {
		a, b := c.a.([]any), c.b.([]any)
		for k := range a {
			if !sameBits(a[k], b[k]) {
				t.Errorf("%s: result %d differs", c.name, k)
			}
		}
	}
}

func sameBits(a, b any) bool {
	switch a := a.(type) {
	case []float64:
		b := b.([]float64)
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
				return false
			}
		}
	case []float32:
		b := b.([]float32)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
	}
	return true
}

func TestKernelsDoNotModifyInputs(t *testing.T) {
	xs := kernelInputs(rand.New(rand.NewPCG(5, 6)), "ties", 9, 1000)
	orig := make([][]float32, len(xs))
	for i := range xs {
		orig[i] = slices.Clone(xs[i])
	}
	dst := make([]float32, 1000)
	pairwiseSquaredDistances(xs)
	coordinateMedian(dst, xs)
	coordinateTrimmedMean(dst, xs, 2)
	meanOf(dst, xs, []int{1, 2})
	for i := range xs {
		if !slices.Equal(xs[i], orig[i]) {
			t.Fatalf("input %d modified", i)
		}
	}
}

// naiveClosestToMedianMean is Bulyan's step from its definition, not from
// the kernel's window: per coordinate, the median m of the selected values
// (the mean of the two middle ones, in float64, for an even count), then
// the beta values nearest m, added in ascending order. Nearest is by
// |v − m| in float64; where those distances tie, values below m come
// first, and on one side the one nearer m exactly (float64 distances tie
// where exact ones do not, for values far from a huge median). The kernel
// grows a window of the sorted values outwards from m, the lower side
// winning ties; that is a merge of the two sides by the same order, so it
// selects the same values, and both add them in ascending order: the
// results must be equal.
func naiveClosestToMedianMean(xs [][]float32, sel []int, beta int) []float32 {
	d, t := len(xs[0]), len(sel)
	out := make([]float32, d)
	col := make([]float32, t)
	type cand struct {
		dist  float64
		upper bool    // v ≥ m
		away  float32 // larger is farther from m on v's side
		v     float32
	}
	cs := make([]cand, t)
	near := make([]float32, beta)
	for c := range d {
		for k, i := range sel {
			col[k] = xs[i][c]
		}
		slices.Sort(col)
		m := float64(col[t/2])
		if t%2 == 0 {
			m = (float64(col[t/2-1]) + float64(col[t/2])) / 2
		}
		for k, v := range col {
			up := float64(v) >= m
			away := -v
			if up {
				away = v
			}
			cs[k] = cand{math.Abs(float64(v) - m), up, away, v}
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if c := cmp.Compare(a.dist, b.dist); c != 0 {
				return c
			}
			if a.upper != b.upper {
				if a.upper {
					return 1
				}
				return -1
			}
			return cmp.Compare(a.away, b.away)
		})
		for k := range near {
			near[k] = cs[k].v
		}
		slices.Sort(near)
		var s float64
		for _, v := range near {
			s += float64(v)
		}
		out[c] = float32(s / float64(beta))
	}
	return out
}

func TestCoordinateClosestToMedianMean(t *testing.T) {
	// Every path sees the same cases: the reference runs once per case.
	wants := map[string][]float32{}
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			rng := rand.New(rand.NewPCG(uint64(n), uint64(d)))
			_, kase, _ := strings.Cut(t.Name()[len("TestCoordinateClosestToMedianMean/"):], "/")
			for _, sel := range [][]int{rng.Perm(n), rng.Perm(n)[:(n+1)/2]} {
				for _, beta := range slices.Compact([]int{1, (len(sel) + 1) / 2, len(sel)}) {
					key := fmt.Sprint(kase, sel, beta)
					want, ok := wants[key]
					if !ok {
						want = naiveClosestToMedianMean(xs, sel, beta)
						wants[key] = want
					}
					for _, finite := range []bool{false, true} { // the cases are finite
						got := make([]float32, d)
						coordinateClosestToMedianMean(got, xs, sel, beta, finite)
						checkEqual(t, fmt.Sprintf("coordinateClosestToMedianMean(%v, %d, %v)", sel, beta, finite), got, want)
					}
				}
			}
		})
	})
}

// rampWeights are n distinct weights 1..n, normalised to sum to one.
func rampWeights(n int) []float64 {
	w := make([]float64, n)
	for j := range w {
		w[j] = float64(j+1) / float64(n*(n+1)/2)
	}
	return w
}

// TestWeightedSumMatchesExactSum checks weightedSum against Σ w[j]·xs[j]
// computed in double-double (error-free products by FMA, error-free sums),
// within the bound of the kernel's documented arithmetic: products rounded
// and added in float64 in some order, γ_n·Σ|w[j]·xs[j]| (Higham (3.4),
// each product's rounding counted as one more operation), then one
// rounding to float32, u32·|sum|. The double-double reference's own error
// (about n·2⁻¹⁰⁶ relative) is covered by a 2⁻¹⁰⁰·Σ|…| margin. That
// weightedSum has the same bits on every kernel path is
// TestPathsSameBits's job; here it must be right.
func TestWeightedSumMatchesExactSum(t *testing.T) {
	const u32 = 0x1p-24
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			w := rampWeights(n)
			got := make([]float32, d)
			weightedSum(got, xs, w)
			for c := range d {
				var hi, lo, abs float64
				for j, x := range xs {
					p := w[j] * float64(x[c])
					pe := math.FMA(w[j], float64(x[c]), -p) // p + pe = w·x exactly
					s := hi + p
					bp := s - hi
					se := (hi - (s - bp)) + (p - bp) // s + se = hi + p exactly
					hi, lo = s, lo+se+pe
					abs += math.Abs(p)
				}
				exact := hi + lo
				bound := gamma(n)*abs + u32*(math.Abs(exact)+gamma(n)*abs) + 0x1p-100*abs
				if diff := math.Abs(float64(got[c]) - exact); diff > bound || math.IsNaN(diff) {
					t.Fatalf("weightedSum: dst[%d] = %v, want %v within %.3g", c, got[c], exact, bound)
				}
			}
		})
	})
}

func TestSquaredDistancesTo(t *testing.T) {
	forKernelCases(t, func(t *testing.T, xs [][]float32) {
		c := xs[len(xs)-1]
		got := squaredDistancesTo(xs, c)
		for i, x := range xs {
			// The kernel: terms within 3u of t², added in float64 in its
			// lane and block order, so within γ_(d+2) of the exact sum of
			// non-negative terms; the reference within 4u.
			want := refSquaredDistance(x, c)
			if math.Abs(got[i]-want) > (gamma(len(c)+2)+4*u64)*want {
				t.Fatalf("squaredDistancesTo[%d] = %v, want %v", i, got[i], want)
			}
		}
	})
}

// squaredDistancesToRef is squaredDistancesTo's documented order, on
// purpose the same loop as sqdist4Generic: it pins the order that
// weightedSumDist's fusion and the SIMD paths must reproduce bit for bit
// (TestSquaredDistancesTo checks the values independently). Per block
// of colChunk coordinates four float64 lanes by coordinate mod 4, the lanes
// added as (0+1)+(2+3), the blocks added in order.
func squaredDistancesToRef(x, c []float32) float64 {
	var v float64
	for lo := 0; lo < len(c); lo += colChunk {
		hi := min(lo+colChunk, len(c))
		var s [4]float64
		for k := lo; k < hi; k++ {
			t := float64(x[k]) - float64(c[k])
			s[(k-lo)&3] += float64(t * t)
		}
		v += (s[0] + s[1]) + (s[2] + s[3])
	}
	return v
}

func TestSquaredDistancesToBits(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			c := xs[len(xs)-1]
			got := squaredDistancesTo(xs, c)
			for i, x := range xs {
				if want := squaredDistancesToRef(x, c); math.Float64bits(got[i]) != math.Float64bits(want) {
					t.Fatalf("squaredDistancesTo[%d] = %v, want %v", i, got[i], want)
				}
			}
		})
	})
}

func TestWeightedSumDistMatchesUnfused(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			w := rampWeights(n)
			want := make([]float32, d)
			weightedSum(want, xs, w)
			wantSq := squaredDistancesTo(xs, want)
			got := make([]float32, d)
			gotSq, ok := weightedSumDist(got, xs, w, xs)
			if !ok {
				t.Fatal("weightedSumDist reported a non-finite result")
			}
			for c := range want {
				if math.Float32bits(got[c]) != math.Float32bits(want[c]) {
					t.Fatalf("dst[%d] = %v, want %v", c, got[c], want[c])
				}
			}
			for i := range wantSq {
				if math.Float64bits(gotSq[i]) != math.Float64bits(wantSq[i]) {
					t.Fatalf("sq[%d] = %v, want %v", i, gotSq[i], wantSq[i])
				}
			}
		})
	})
}

func TestKernelsFlagNonFinite(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, d := range []int{1, 17, 3000, 9001} {
				for row := range 3 {
					xs := make([][]float32, 3)
					for i := range xs {
						xs[i] = make([]float32, d)
						for c := range xs[i] {
							xs[i][c] = float32(i*d + c)
						}
					}
					xs[row][d-1] = bad
					if _, ok := pairwiseSquaredDistancesFinite(xs); ok {
						t.Fatalf("pairwise: %v in row %d of d=%d not flagged", bad, row, d)
					}
					if ok := weightedSum(make([]float32, d), xs, []float64{0, 0.5, 0.5}); ok {
						t.Fatalf("weightedSum: %v in row %d of d=%d not flagged", bad, row, d)
					}
				}
			}
		}
	})
}

// TestSortNetworkBlocks pins the layout the AVX2 kernel relies on: each
// network starts, per full block of 8 wires, with Batcher's 8-sorter on
// that block (the comparators of the 8-wire network, shifted).
func TestSortNetworkBlocks(t *testing.T) {
	eight := sortNetwork(8, 0, 8)
	if len(eight) != 2*blockComparators {
		t.Fatalf("8-sorter has %d comparators, want %d", len(eight)/2, blockComparators)
	}
	for _, n := range []int{8, 9, 16, 23, 50, 100} {
		for _, r := range [][2]int{{0, n}, {n / 2, n/2 + 1}} {
			net := sortNetwork(n, r[0], r[1])
			for b := range n / 8 {
				for c := range 2 * blockComparators {
					got, want := net[2*blockComparators*b+c], eight[c]+int32(b*8*lanes*4)
					if got != want {
						t.Fatalf("n=%d ranks %v block %d: entry %d = %d, want %d", n, r, b, c, got, want)
					}
				}
			}
		}
	}
}

// TestClosestToMedianLaneFinite checks the counting form of Bulyan's window
// against the step-by-step one, bit for bit, on sorted finite lanes: many
// with ties at and around the median (where the window can start far from
// the middle), some with signed zeros and magnitudes far apart (where the
// float64 median and distances round), the rest normal, for every t ≤ 40
// and β ≤ t. The 16-lane form closestToMedian16 (assembly on amd64) must
// give the same bits on every path.
func TestClosestToMedianLaneFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 28))
	saved := kernel
	defer func() { kernel = saved }()
	extremes := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, 1e-38, 3e38, -3e38, 1, 1 + 0x1p-23, 16777216, 16777218}
	for tt := 1; tt <= 40; tt++ {
		buf := make([]float32, tt*lanes)
		col := make([]float32, tt)
		for range 50 {
			distinct := 1 + rng.IntN(2*tt)
			for l := range lanes {
				for r := range col {
					switch l % 4 {
					case 3:
						col[r] = float32(rng.NormFloat64())
					case 2:
						col[r] = extremes[rng.IntN(len(extremes))]
					default:
						col[r] = float32(rng.IntN(distinct) - distinct/2)
					}
				}
				slices.Sort(col)
				for r, v := range col {
					buf[r*lanes+l] = v
				}
			}
			for beta := 1; beta <= tt; beta++ {
				var want [lanes]float32
				for l := range lanes {
					want[l] = closestToMedianLane(buf, l, tt, beta)
					got := closestToMedianLaneFinite(buf, l, tt, beta)
					if math.Float32bits(got) != math.Float32bits(want[l]) {
						t.Fatalf("t=%d β=%d lane %d: got %v, want %v", tt, beta, l, got, want[l])
					}
				}
				for _, p := range availablePaths() {
					kernel = p
					var got [lanes]float32
					closestToMedian16(got[:], buf, tt, beta)
					for l := range lanes {
						if math.Float32bits(got[l]) != math.Float32bits(want[l]) {
							t.Fatalf("%s: t=%d β=%d lane %d: got %v, want %v", p, tt, beta, l, got[l], want[l])
						}
					}
				}
			}
		}
	}
}
