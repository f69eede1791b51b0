package aggregation

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// The kernels are checked against naive references: double loops in float64
// and a sort per coordinate.

func naiveDistances(xs [][]float32) []float64 {
	n := len(xs)
	out := make([]float64, n*n)
	for i := range n {
		for j := range n {
			out[i*n+j] = squaredDistance64(xs[i], xs[j])
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
					if g < 0 || math.Abs(g-w) > 8.1e-6*w {
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
	want := naiveDistances(xs)
	for i := range got {
		if math.IsInf(got[i], 0) || math.Abs(got[i]-want[i]) > 1e-12*want[i] {
			t.Errorf("D[%d] = %v, want %v", i, got[i], want[i])
		}
	}
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

// naiveClosestToMedianMean is Bulyan's step by a sort per coordinate and a
// binary search, growing the window as the kernel documents.
func naiveClosestToMedianMean(xs [][]float32, sel []int, beta int) []float32 {
	d, t := len(xs[0]), len(sel)
	out := make([]float32, d)
	col := make([]float32, t)
	for c := range d {
		for k, i := range sel {
			col[k] = xs[i][c]
		}
		slices.Sort(col)
		var m float64
		if t%2 == 1 {
			m = float64(col[t/2])
		} else {
			m = (float64(col[t/2-1]) + float64(col[t/2])) / 2
		}
		b, _ := slices.BinarySearchFunc(col, m, func(v float32, m float64) int {
			switch {
			case float64(v) < m:
				return -1
			case float64(v) > m:
				return 1
			}
			return 0
		})
		a := b
		for b-a < beta {
			switch {
			case a == 0:
				b++
			case b == t:
				a--
			case m-float64(col[a-1]) <= float64(col[b])-m:
				a--
			default:
				b++
			}
		}
		var s float64
		for _, v := range col[a:b] {
			s += float64(v)
		}
		out[c] = float32(s / float64(beta))
	}
	return out
}

func TestCoordinateClosestToMedianMean(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			rng := rand.New(rand.NewPCG(uint64(n), uint64(d)))
			for _, sel := range [][]int{rng.Perm(n), rng.Perm(n)[:(n+1)/2]} {
				for _, beta := range slices.Compact([]int{1, (len(sel) + 1) / 2, len(sel)}) {
					want := naiveClosestToMedianMean(xs, sel, beta)
					got := make([]float32, d)
					coordinateClosestToMedianMean(got, xs, sel, beta)
					checkEqual(t, fmt.Sprintf("coordinateClosestToMedianMean(%v, %d)", sel, beta), got, want)
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

func TestWeightedSumMatchesScalarLoop(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		forKernelCases(t, func(t *testing.T, xs [][]float32) {
			n, d := len(xs), len(xs[0])
			w := rampWeights(n)
			acc := make([]float64, d)
			for j, x := range xs {
				// The textbook loop: each product rounded, then added.
				for c, v := range x {
					acc[c] += float64(w[j] * float64(v))
				}
			}
			got := make([]float32, d)
			weightedSum(got, xs, w)
			for c := range acc {
				if math.Float32bits(got[c]) != math.Float32bits(float32(acc[c])) {
					t.Fatalf("weightedSum: dst[%d] = %v, want %v", c, got[c], float32(acc[c]))
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
			want := squaredDistance64(x, c)
			if math.Abs(got[i]-want) > 1e-12*want {
				t.Fatalf("squaredDistancesTo[%d] = %v, want %v", i, got[i], want)
			}
		}
	})
}

// squaredDistancesToRef is squaredDistancesTo's documented order: per block
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
