package aggregation

// Kernels: the dense numeric loops the rules are built from. They take the
// updates as [][]float32 of one length d, never modify them, and keep at most
// one small scratch block per worker goroutine (never a copy of the inputs).
//
// # Design
//
// Every kernel walks the coordinates in blocks that stay in L1/L2 and spreads
// the blocks over GOMAXPROCS goroutines. Each output value is computed by one
// goroutine in an order fixed by n and d alone, so results are the same bit
// for bit whatever the number of cores.
//
// On amd64 (without the purego build tag) the inner loops are Go assembly:
// AVX-512 (kernel_amd64.s, and kernel_avx512gen_amd64.s generated with avo) or
// AVX2 (kernel_avx2_amd64.s, generated with avo),
// and on arm64 NEON (kernel_arm64.s), as kernel_path.go selects. The portable Go loops in this file
// perform exactly the same float32 and float64 operations in the same order
// (the assembly uses no fused multiply-add, and the Go code forbids fusion
// with explicit conversions), so both give the same bits: a round can be
// recomputed anywhere from its inputs.
//
// # Pairwise distances
//
// ||x_i − x_j||² is summed from the differences themselves, not expanded into
// norms and a dot product, so there is no cancellation: identical vectors
// give exactly 0 and every computed distance has a small relative error. Rows
// are taken in tiles of 4×4 pairs; for each tile and each block of
// pairBlock = 2048 coordinates, the sixteen squared differences are summed in
// float32 in 16 lanes (lane l takes the coordinates ≡ l mod 16 of the block,
// 128 terms per lane), the lanes are added by a fixed tree (8, 4, 2, 1) and
// the block's float32 partial is added to a float64 total. All terms are
// non-negative, so each block partial p of an exact block sum s satisfies
//
//	|p − s| ≤ ((pairBlock/16 + 4) + 3)·u·s ≈ 135·2⁻²⁴·s < 8.1e-6·s  (u = 2⁻²⁴),
//
// (128 lane additions, the 4-level tree, and one rounding each for the
// difference, the square and the partial's conversion being exact) and so
// the total has relative error below 8.1e-6 + n_blocks·2⁻⁵³ ≈ 8.1e-6. A
// float32 square that overflows (|x_i − x_j| ≳ 1.8e19) makes the pair's sum
// infinite; such pairs are recomputed in float64.
//
// Krum and Multi-Krum first take every distance from the Gram
// matrix, a third of the work, and run this kernel only on the rows whose
// exact scores a decision needs (gram.go): they decide exactly as if every
// distance came from here.
//
// # Distances to a center and finiteness
//
// squaredDistancesTo sums (x_k − c_k)² in float64 in four lanes by k mod 4
// per block of colChunk coordinates; the assembly (sqdist4x4, four rows at
// a time) keeps one 4-lane chain per row, so the order and the
// bits are the portable loop's. weightedSumDist fuses centered clipping's
// weighted sum with the next iteration's distances. The first pass each
// rule makes over its inputs (weightedSum, pairwiseSquaredDistancesFinite,
// squaredDistancesTo) doubles as the finiteness test: a NaN or infinity in
// an input always reaches one of its outputs, and only then is the exact
// per-update test run (deferredFinite in aggregation.go).
//
// # Per-coordinate order statistics
//
// Median and trimmed mean load 16 consecutive coordinates of every update
// into an n × 16 scratch block (one 64-byte row per update) and run a sorting
// network over its rows with 16-lane min/max: Batcher's odd–even merge sort
// for n wires, pruned backwards to the comparators that can reach the wanted
// ranks. The kept ranks are then summed in float64 in rank order. No value is
// compared by a branch, so ties and duplicates cost nothing extra.

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fedguard/fedguard/internal/workers"
	"github.com/fedguard/fedguard/model"
)

const (
	// pairBlock is the number of coordinates summed in float32 before the
	// partial goes to float64 in pairwiseSquaredDistances.
	pairBlock = 2048
	// lanes is the SIMD width the kernels' summation order is defined by.
	lanes = 16
	// pairChunkBudget bounds the float64 partial matrices (bytes) kept to
	// reduce pairwise distances in a fixed order.
	pairChunkBudget = 16 << 20
	// maxPairChunks is the number of coordinate ranges (at most) the
	// pairwise work is cut into for the goroutines.
	maxPairChunks = 64
	// colChunk is the number of coordinates per task of the per-coordinate
	// kernels and meanOf.
	colChunk = 8192
	// minParallelWork is the rough number of inner-loop operations below
	// which a kernel stays on the calling goroutine.
	minParallelWork = 1 << 16
)

// parallel runs task(worker, i) for every i in [0, tasks) on up to
// GOMAXPROCS goroutines, fewer when work, the total number of inner-loop
// operations, is small (one per minParallelWork); worker is in
// [0, GOMAXPROCS) and no two concurrent calls share it (workers.Indexed).
func parallel(tasks, work int, task func(worker, i int)) {
	workers.Indexed(min(runtime.GOMAXPROCS(0), max(1, work/minParallelWork)), tasks, task)
}

// pairwiseSquaredDistances returns the n×n matrix (row-major, len n*n) of
// ||x_i − x_j||², computed from the coordinate differences with float32
// partial sums over blocks of 2048 coordinates added into float64 (relative
// error below 8.1e-6 per entry, see the file comment), clamped at 0,
// symmetric, with a zero diagonal. Identical vectors are exactly 0 apart.
func pairwiseSquaredDistances(xs [][]float32) []float64 {
	out, _ := pairwiseSquaredDistancesFinite(xs)
	return out
}

// pairwiseSquaredDistancesFinite is pairwiseSquaredDistances that also
// reports whether all of xs is finite, for n ≥ 2 (every row then takes part
// in some pair, whose float32 partial a NaN or infinity makes non-finite).
// When it reports false, the matrix holds NaNs and must not be used.
func pairwiseSquaredDistancesFinite(xs [][]float32) ([]float64, bool) {
	n := len(xs)
	out := make([]float64, n*n)
	if n < 2 {
		return out, true
	}
	d := len(xs[0])
	if d == 0 {
		return out, true
	}
	tiles := (n + 3) / 4
	type tilePair struct{ a, b int }
	tps := make([]tilePair, 0, tiles*(tiles+1)/2)
	for a := range tiles {
		for b := a; b < tiles; b++ {
			tps = append(tps, tilePair{a, b})
		}
	}
	blocks := (d + pairBlock - 1) / pairBlock
	chunks := min(blocks, maxPairChunks, max(1, pairChunkBudget/(8*n*n)))
	partial := make([]float64, chunks*n*n)
	rowOf := func(t, k int) int { return min(4*t+k, n-1) } // a short last tile repeats its last row
	parallel(chunks, len(tps)*16*d, func(_, c int) {
		acc := partial[c*n*n : (c+1)*n*n]
		var a, b [4][]float32
		var s [16]float32
		for blk := c * blocks / chunks; blk < (c+1)*blocks/chunks; blk++ {
			lo := blk * pairBlock
			hi := min(lo+pairBlock, d)
			for _, tp := range tps {
				for k := range 4 {
					a[k] = xs[rowOf(tp.a, k)][lo:hi]
					b[k] = xs[rowOf(tp.b, k)][lo:hi]
				}
				// Only the pairs j > i, j < n are read below.
				switch {
				case tp.a == tp.b:
					pairTileDiag(&s, &a)
				case 4*tp.b+2 >= n: // b rows 2 and 3 repeat row n − 1
					pairTile2(&s, &a, &b)
				default:
					pairTile(&s, &a, &b)
				}
				if tp.a != tp.b && 4*tp.b+3 < n {
					// A full off-diagonal tile: every pair has j > i.
					for p := range 4 {
						row := acc[(4*tp.a+p)*n+4*tp.b:][:4]
						row[0] += float64(s[p*4])
						row[1] += float64(s[p*4+1])
						row[2] += float64(s[p*4+2])
						row[3] += float64(s[p*4+3])
					}
					continue
				}
				for p := range 4 {
					i := 4*tp.a + p
					if i >= n {
						break
					}
					for q := range 4 {
						j := 4*tp.b + q
						if j >= n {
							break
						}
						if j > i {
							acc[i*n+j] += float64(s[p*4+q])
						}
					}
				}
			}
		}
	})
	finite := true
	rowOK := make([]int8, n) // 0 unknown, 1 finite, -1 not
	rowFinite := func(i int) bool {
		if rowOK[i] == 0 {
			rowOK[i] = 1
			if !model.AllFinite(xs[i]) {
				rowOK[i] = -1
			}
		}
		return rowOK[i] > 0
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			var v float64
			for c := range chunks {
				v += partial[c*n*n+i*n+j]
			}
			if math.IsInf(v, 0) || math.IsNaN(v) {
				if !rowFinite(i) || !rowFinite(j) {
					finite = false
					v = math.NaN()
					out[i*n+j], out[j*n+i] = v, v
					continue
				}
				v = squaredDistance64(xs[i], xs[j])
			}
			v = max(v, 0)
			out[i*n+j], out[j*n+i] = v, v
		}
	}
	return out, finite
}

// squaredDistance64 is ||x − y||² entirely in float64, the slow path for
// pairs whose float32 squares overflow.
func squaredDistance64(x, y []float32) float64 {
	var s float64
	for i := range x {
		t := float64(x[i]) - float64(y[i])
		s += t * t
	}
	return s
}

// pairTileGeneric is the portable pairTile: s[4p+q] = Σ (a[p][i] − b[q][i])²
// over the block, summed in 16 float32 lanes by i mod 16, then the lanes by
// the tree (l, l+8), (l, l+4), (l, l+2), (0, 1).
func pairTileGeneric(s *[16]float32, a, b *[4][]float32) {
	var acc [16][lanes]float32
	pairTileAcc(&acc, a, b, 0)
	for k := range acc {
		s[k] = laneTree(&acc[k])
	}
}

// pairTileAcc adds (a[p][i] − b[q][i])² to acc[4p+q][i mod 16] for i from
// `from` to the end of the block, i increasing.
func pairTileAcc(acc *[16][lanes]float32, a, b *[4][]float32, from int) {
	n := len(a[0])
	for p := range 4 {
		x := a[p][:n]
		for q := range 4 {
			y := b[q][:n]
			l := &acc[p*4+q]
			for i := from; i < n; i++ {
				t := x[i] - y[i]
				l[i&(lanes-1)] += float32(t * t)
			}
		}
	}
}

// laneTree adds 16 lanes in the fixed tree order the assembly uses.
func laneTree(l *[lanes]float32) float32 {
	v := *l
	for w := lanes / 2; w >= 1; w /= 2 {
		for i := range w {
			v[i] += v[i+w]
		}
	}
	return v[0]
}

// coordinateMedian writes the per-coordinate median (mean of the two middle
// values, computed in float64, for even n) into dst.
func coordinateMedian(dst []float32, xs [][]float32) {
	n := len(xs)
	if n%2 == 1 {
		orderStat(dst, xs, n/2, n/2+1)
	} else {
		orderStat(dst, xs, n/2-1, n/2+1)
	}
}

// coordinateTrimmedMean writes, per coordinate, the mean (float64
// accumulation, in rank order) of the values left after dropping the k
// smallest and k largest (0 ≤ k < n/2) into dst.
func coordinateTrimmedMean(dst []float32, xs [][]float32, k int) {
	orderStat(dst, xs, k, len(xs)-k)
}

// orderStat writes, per coordinate, the float64 mean of the values of ranks
// lo..hi-1 (0-based, ascending) into dst.
func orderStat(dst []float32, xs [][]float32, lo, hi int) {
	n, d := len(xs), len(dst)
	if n == 0 || d == 0 {
		return
	}
	for _, x := range xs {
		if len(x) < d {
			panic("aggregation: update shorter than dst")
		}
	}
	net := sortNetwork(n, lo, hi)
	laneGroups(d, n, d*(n+len(net)/2), func(buf []float32, off, m int) {
		if m == lanes {
			rankMean16(dst[off:off+lanes], buf, xs, off, net, lo, hi)
			return
		}
		var tmp [lanes]float32
		padGroup(buf, xs, off, d)
		networkRows(buf, net)
		meanRowsGeneric(&tmp, buf, lo, hi)
		copy(dst[off:d], tmp[:m])
	})
}

// laneGroups runs group(buf, off, m) for the groups [off, off+m) of lanes
// coordinates of [0, d) (m < lanes only for the last), colChunk
// coordinates a task on all cores (work as for parallel), buf a scratch
// of rows×lanes float32 (rows of 64 bytes) that belongs to the worker:
// the frame of orderStat and coordinateClosestToMedianMean, which sort
// each group across the updates.
func laneGroups(d, rows, work int, group func(buf []float32, off, m int)) {
	groups := (d + lanes - 1) / lanes
	perTask := colChunk / lanes
	tasks := (groups + perTask - 1) / perTask
	scratch := make([][]float32, runtime.GOMAXPROCS(0))
	parallel(tasks, work, func(w, t int) {
		if scratch[w] == nil {
			scratch[w] = alignedFloats(rows * lanes)
		}
		for g := t * perTask; g < min((t+1)*perTask, groups); g++ {
			off := g * lanes
			group(scratch[w], off, min(lanes, d-off))
		}
	})
}

// padGroup copies the last, partial group [off, d) of each of xs into its
// row of buf, padding the row's other lanes with zeros.
func padGroup(buf []float32, xs [][]float32, off, d int) {
	m := d - off
	for r, x := range xs {
		row := buf[r*lanes : (r+1)*lanes]
		copy(row, x[off:d])
		clear(row[m:])
	}
}

// rankMeanGeneric is the portable rankMean16: gather 16 coordinates from off,
// sort them across rows, and write the mean of ranks lo..hi-1.
func rankMeanGeneric(dst []float32, buf []float32, xs [][]float32, off int, net []int32, lo, hi int) {
	for r, x := range xs {
		copy(buf[r*lanes:(r+1)*lanes], x[off:off+lanes])
	}
	networkRowsGeneric(buf, net)
	meanRowsGeneric((*[lanes]float32)(dst), buf, lo, hi)
}

// networkRowsGeneric applies the comparators net (pairs of byte offsets of
// 16-float rows of buf) with lane-wise min and max.
func networkRowsGeneric(buf []float32, net []int32) {
	for c := 0; c+1 < len(net); c += 2 {
		x := (*[lanes]float32)(buf[net[c]/4:])
		y := (*[lanes]float32)(buf[net[c+1]/4:])
		for l := range lanes {
			// The same choices as VMINPS/VMAXPS, which return their
			// second operand on equal values (so −0 and +0 too).
			a, b := x[l], y[l]
			lo, hi := b, b
			if a < b {
				lo = a
			}
			if a > b {
				hi = a
			}
			x[l], y[l] = lo, hi
		}
	}
}

// meanRowsGeneric writes the float64 mean of rows lo..hi-1 of buf, added in
// row order, per lane.
func meanRowsGeneric(dst *[lanes]float32, buf []float32, lo, hi int) {
	var s [lanes]float64
	for r := lo; r < hi; r++ {
		row := buf[r*lanes : (r+1)*lanes]
		for l := range lanes {
			s[l] += float64(row[l])
		}
	}
	cnt := float64(hi - lo)
	for l := range lanes {
		dst[l] = float32(s[l] / cnt)
	}
}

// alignedFloats returns a zeroed slice of n float32 starting on a 64-byte
// boundary.
func alignedFloats(n int) []float32 {
	b := make([]float32, n+lanes)
	off := 0
	for off < lanes && uintptr(unsafe.Pointer(&b[off]))%64 != 0 {
		off++
	}
	return b[off : off+n : off+n]
}

var networks sync.Map // networkKey → []int32

type networkKey struct{ n, lo, hi int }

// sortNetwork returns Batcher's odd–even merge sorting network for n wires,
// pruned to the comparators that can change the values of ranks lo..hi-1, as
// pairs of byte offsets of 16-float rows (wire i at 64·i), min to the first.
//
// Its first blockComparators·(n/8) comparators are, block by block, the
// complete first three stages (p = 1, 2, 4) on each full block of 8 wires
// 8b..8b+7, i.e. Batcher's 8-sorter, unpruned: the AVX2 kernel runs them
// with the 8 rows in registers. Reordering comparators of disjoint wires
// and keeping comparators on wires that cannot reach the wanted ranks
// change none of the kept ranks' values.
func sortNetwork(n, lo, hi int) []int32 {
	key := networkKey{n, lo, hi}
	if v, ok := networks.Load(key); ok {
		return v.([]int32)
	}
	type comparator struct{ a, b, p int }
	var all []comparator
	for p := 1; p < n; p <<= 1 {
		for k := p; k >= 1; k >>= 1 {
			for j := k % p; j+k < n; j += 2 * k {
				for i := 0; i < k && i+j+k < n; i++ {
					if (i+j)/(2*p) == (i+j+k)/(2*p) {
						all = append(all, comparator{i + j, i + j + k, p})
					}
				}
			}
		}
	}
	live := make([]bool, n)
	for r := lo; r < hi; r++ {
		live[r] = true
	}
	keep := make([]bool, len(all))
	for c := len(all) - 1; c >= 0; c-- {
		i, j := all[c].a, all[c].b
		if live[i] || live[j] {
			keep[c] = true
			live[i], live[j] = true, true
		}
	}
	// inBlock reports whether comparator c is one of the first stages of a
	// full block of 8 wires.
	inBlock := func(c comparator) bool { return c.p <= 4 && c.b < n&^7 }
	net := make([]int32, 0, 2*len(all))
	add := func(c comparator) { net = append(net, int32(c.a*lanes*4), int32(c.b*lanes*4)) }
	for b := range n / 8 {
		for _, c := range all {
			if inBlock(c) && c.a/8 == b {
				add(c)
			}
		}
	}
	for i, c := range all {
		if keep[i] && !inBlock(c) {
			add(c)
		}
	}
	v, _ := networks.LoadOrStore(key, net)
	return v.([]int32)
}

// blockComparators is the number of comparators of Batcher's 8-sorter, the
// start of every network of sortNetwork per full block of 8 wires.
const blockComparators = 19

// meanOf writes the unweighted mean of xs[idx...] into dst (float64
// accumulation in the order of idx).
func meanOf(dst []float32, xs [][]float32, idx []int) {
	d := len(dst)
	if d == 0 || len(idx) == 0 {
		return
	}
	cnt := float64(len(idx))
	columnChunks(d, d*len(idx), func(acc []float64, lo, hi int) {
		for _, i := range idx {
			add64(acc, xs[i][lo:hi])
		}
		div32(dst[lo:hi], acc, cnt)
	})
}

// columnChunks runs chunk(acc, lo, hi) for the chunks [lo, hi) of
// colChunk coordinates of [0, d) on all cores (work as for parallel),
// acc a zeroed float64 scratch of hi − lo values that belongs to the
// worker: the frame of meanOf and weightedSum, which sum their updates'
// coordinates in float64 a chunk at a time.
func columnChunks(d, work int, chunk func(acc []float64, lo, hi int)) {
	tasks := (d + colChunk - 1) / colChunk
	scratch := make([][]float64, runtime.GOMAXPROCS(0))
	parallel(tasks, work, func(w, t int) {
		if scratch[w] == nil {
			scratch[w] = make([]float64, colChunk)
		}
		lo := t * colChunk
		hi := min(lo+colChunk, d)
		acc := scratch[w][:hi-lo]
		clear(acc)
		chunk(acc, lo, hi)
	})
}

// add64Generic sets acc[i] += float64(x[i]).
func add64Generic(acc []float64, x []float32) {
	x = x[:len(acc)]
	for i := range acc {
		acc[i] += float64(x[i])
	}
}

// div32Generic sets dst[i] = float32(acc[i] / c).
func div32Generic(dst []float32, acc []float64, c float64) {
	acc = acc[:len(dst)]
	for i := range dst {
		dst[i] = float32(acc[i] / c)
	}
}

// sort16Generic is the portable sort16: gather 16 coordinates from off into
// the rows of buf and sort them across rows.
func sort16Generic(buf []float32, xs [][]float32, off int, net []int32) {
	for r, x := range xs {
		copy(buf[r*lanes:(r+1)*lanes], x[off:off+lanes])
	}
	networkRowsGeneric(buf, net)
}

// axpy64wGeneric sets acc[i] += float64(w·float64(x[i])), the product
// rounded before the addition.
func axpy64wGeneric(acc []float64, w float64, x []float32) {
	x = x[:len(acc)]
	for i := range acc {
		acc[i] += float64(w * float64(x[i]))
	}
}

// weightedSum writes Σ w[j]·xs[j] into dst: per coordinate, in float64, the
// products rounded and added in the order of xs (exactly FedAvg's
// arithmetic, so the same bits as its scalar loop), over blocks of colChunk
// coordinates on all cores. It reports whether every value written is
// finite: with finite weights, a NaN or infinity in any xs[j] makes the
// coordinate's float64 sum, and so dst, non-finite.
func weightedSum(dst []float32, xs [][]float32, w []float64) bool {
	d := len(dst)
	if d == 0 {
		return true
	}
	var bad atomic.Bool
	columnChunks(d, d*len(xs), func(acc []float64, lo, hi int) {
		for j, x := range xs {
			axpy64w(acc, w[j], x[lo:hi])
		}
		div32(dst[lo:hi], acc, 1)
		if !model.AllFinite(dst[lo:hi]) {
			bad.Store(true)
		}
	})
	return !bad.Load()
}

// fuseSub is the sub-block of weightedSumDist: small enough that the n
// updates' slices of it stay in L2 between the two uses.
const fuseSub = 2048

// weightedSumDist is weightedSum(dst, terms, w) followed by
// squaredDistancesTo(xs, dst), fused: each block of colChunk coordinates
// is produced in sub-blocks of fuseSub coordinates, and the distances of xs
// to a sub-block are summed while xs's slices of it are still in cache. The
// bits are those of the two calls (the 4-lane accumulators carry across
// sub-blocks, which start at multiples of 4). It reports whether dst is
// finite, as weightedSum does.
func weightedSumDist(dst []float32, terms [][]float32, w []float64, xs [][]float32) ([]float64, bool) {
	n, d := len(xs), len(dst)
	out := make([]float64, n)
	if d == 0 {
		return out, true
	}
	blocks := (d + colChunk - 1) / colChunk
	part := make([]float64, n*blocks)
	workers := runtime.GOMAXPROCS(0)
	scratch := make([][]float64, workers)
	lanesAcc := make([][][4]float64, workers)
	var bad atomic.Bool
	parallel(blocks, d*(len(terms)+n), func(wk, b int) {
		if scratch[wk] == nil {
			scratch[wk] = make([]float64, fuseSub)
			lanesAcc[wk] = make([][4]float64, n)
		}
		sa := lanesAcc[wk]
		clear(sa)
		lo := b * colChunk
		hi := min(lo+colChunk, d)
		for slo := lo; slo < hi; slo += fuseSub {
			shi := min(slo+fuseSub, hi)
			acc := scratch[wk][:shi-slo]
			clear(acc)
			for j, x := range terms {
				axpy64w(acc, w[j], x[slo:shi])
			}
			v := dst[slo:shi]
			div32(v, acc, 1)
			if !model.AllFinite(v) {
				bad.Store(true)
			}
			sqdistRows(sa, xs, slo, shi, v)
		}
		for i := range n {
			part[i*blocks+b] = (sa[i][0] + sa[i][1]) + (sa[i][2] + sa[i][3])
		}
	})
	for i := range n {
		var v float64
		for b := range blocks {
			v += part[i*blocks+b]
		}
		out[i] = v
	}
	return out, !bad.Load()
}

// squaredDistancesTo returns ||x_i − c||² for every update, each summed in
// float64 (four lanes by coordinate mod 4 per block of colChunk
// coordinates, the blocks added in order), over all cores. It is for scores
// and clipping: the order differs from a plain sequential sum.
func squaredDistancesTo(xs [][]float32, c []float32) []float64 {
	n, d := len(xs), len(c)
	out := make([]float64, n)
	if n == 0 || d == 0 {
		return out
	}
	blocks := (d + colChunk - 1) / colChunk
	part := make([]float64, n*blocks)
	groups := (n + 3) / 4
	parallel(groups*blocks, n*d, func(_, t int) {
		g, b := t/blocks, t%blocks
		lo := b * colChunk
		hi := min(lo+colChunk, d)
		rows := xs[4*g : min(4*g+4, n)]
		var s [4][4]float64
		sqdistRows(s[:len(rows)], rows, lo, hi, c[lo:hi])
		for r := range rows {
			part[(4*g+r)*blocks+b] = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3])
		}
	})
	for i := range n {
		var v float64
		for b := range blocks {
			v += part[i*blocks+b]
		}
		out[i] = v
	}
	return out
}

// sqdist4Generic is the portable sqdist4: s[k&3] += float64(t·t) with
// t = float64(x[k]) − float64(y[k]), k increasing (len(x) ≤ len(y); the
// lane of x[k] is k mod 4, so callers split a block only at multiples of 4).
func sqdist4Generic(s *[4]float64, x, y []float32) {
	y = y[:len(x)]
	k := 0
	for ; k+4 <= len(x); k += 4 {
		xx, yy := x[k:k+4:k+4], y[k:k+4:k+4]
		t0 := float64(xx[0]) - float64(yy[0])
		t1 := float64(xx[1]) - float64(yy[1])
		t2 := float64(xx[2]) - float64(yy[2])
		t3 := float64(xx[3]) - float64(yy[3])
		s[0] += float64(t0 * t0)
		s[1] += float64(t1 * t1)
		s[2] += float64(t2 * t2)
		s[3] += float64(t3 * t3)
	}
	for ; k < len(x); k++ {
		t := float64(x[k]) - float64(y[k])
		s[k&3] += float64(t * t)
	}
}

// sqdist4x4Generic is the portable sqdist4x4: sqdist4 of each x[r] (each
// at least len(y) long) against y into s[r].
func sqdist4x4Generic(s *[4][4]float64, x *[4][]float32, y []float32) {
	for r := range 4 {
		sqdist4Generic(&s[r], x[r][:len(y)], y)
	}
}

// sqdistRows adds sqdist4 of every xs[i][lo:hi] against y (len hi−lo)
// into s[i], four rows at a time.
func sqdistRows(s [][4]float64, xs [][]float32, lo, hi int, y []float32) {
	n := len(xs)
	var rows [4][]float32
	var acc [4][4]float64
	for g := 0; g < n; g += 4 {
		for r := range 4 {
			i := min(g+r, n-1) // a short last group repeats its last row
			rows[r] = xs[i][lo:hi]
			acc[r] = s[i]
		}
		sqdist4x4(&acc, &rows, y)
		for r := range min(4, n-g) {
			s[g+r] = acc[r]
		}
	}
}

// coordinateClosestToMedianMean is Bulyan's last step: per coordinate, over
// the updates xs[sel...] (t of them), the float64 mean of the beta values
// closest to their median (mean of the two middle values for even t),
// taken as the window [a, b) of the sorted values grown from the first value
// ≥ the median outwards, the lower side winning ties, and added in ascending
// order. 1 ≤ beta ≤ t. finite promises that every selected value is finite
// (Bulyan has checked), which allows closestToMedianLaneFinite.
func coordinateClosestToMedianMean(dst []float32, xs [][]float32, sel []int, beta int, finite bool) {
	t, d := len(sel), len(dst)
	if t == 0 || d == 0 {
		return
	}
	rows := make([][]float32, t)
	for c, i := range sel {
		if len(xs[i]) < d {
			panic("aggregation: update shorter than dst")
		}
		rows[c] = xs[i]
	}
	// Fully sorted: with ties at the median the window can reach any rank.
	net := sortNetwork(t, 0, t)
	laneGroups(d, t, d*(t+len(net)/2), func(buf []float32, off, m int) {
		if m == lanes {
			sort16(buf, rows, off, net)
		} else {
			padGroup(buf, rows, off, d)
			networkRows(buf, net)
		}
		if finite && m == lanes {
			closestToMedian16(dst[off:off+lanes], buf, t, beta)
			return
		}
		lane := closestToMedianLane
		if finite {
			lane = closestToMedianLaneFinite
		}
		for l := range m {
			dst[off+l] = lane(buf, l, t, beta)
		}
	})
}

// closestToMedianLane computes coordinateClosestToMedianMean for lane l of
// the sorted rows of buf.
func closestToMedianLane(buf []float32, l, t, beta int) float32 {
	at := func(r int) float32 { return buf[r*lanes+l] }
	var m float64
	if t%2 == 1 {
		m = float64(at(t / 2))
	} else {
		m = (float64(at(t/2-1)) + float64(at(t/2))) / 2
	}
	// First rank with value ≥ m: at or next to the middle.
	b := (t - 1) / 2
	for b > 0 && float64(at(b-1)) >= m {
		b--
	}
	for b < t && float64(at(b)) < m {
		b++
	}
	a := b
	for b-a < beta {
		switch {
		case a == 0:
			b++
		case b == t:
			a--
		case m-float64(at(a-1)) <= float64(at(b))-m:
			a--
		default:
			b++
		}
	}
	var s float64
	for r := a; r < b; r++ {
		s += float64(at(r))
	}
	return float32(s / float64(beta))
}

// closestToMedianLaneFinite is closestToMedianLane, bit for bit, for a lane
// whose t values are all finite (so the network sorted them and the median
// is finite).
//
// closestToMedianLane grows the window one step at a time, each step waiting
// for the last and taking a branch that goes either way at random: at n = 50,
// θ = 28, β = 6 it took 73 ns a lane on random sorted lanes, this 49 ns.
// Growing the window merges two sorted lists, the distances m−at(b0−i) below
// (i = 1, 2, …) and at(b0+j)−m above (j = 0, 1, …), taking the lower one on
// ties. After β steps it has taken k from below, where k counts the
// i in 1..min(β, b0) for which the i-th distance below is ≤ the
// (β−i+1)-th above, or there are fewer than β−i+1 above. That predicate
// only turns from true to false as i grows (the distance below grows, the
// one above shrinks), so the count is the merge's k; its terms are
// independent, and there is no branch on the data.
func closestToMedianLaneFinite(buf []float32, l, t, beta int) float32 {
	c := buf[l : l+(t-1)*lanes+1] // rank r of lane l is c[r*lanes]
	var m float64
	if t%2 == 1 {
		m = float64(c[t/2*lanes])
	} else {
		m = (float64(c[(t/2-1)*lanes]) + float64(c[t/2*lanes])) / 2
	}
	// First rank with value ≥ m: at or next to the middle.
	b0 := (t - 1) / 2
	for b0 > 0 && float64(c[(b0-1)*lanes]) >= m {
		b0--
	}
	for b0 < t && float64(c[b0*lanes]) < m {
		b0++
	}
	up := t - b0 // values at or above m
	k := 0
	for i := 1; i <= min(beta, b0); i++ {
		j := beta - i
		dl := m - float64(c[(b0-i)*lanes])
		dr := float64(c[min(b0+j, t-1)*lanes]) - m
		k += b2i(j >= up) | b2i(dl <= dr)
	}
	var s float64
	for r := b0 - k; r < b0-k+beta; r++ {
		s += float64(c[r*lanes])
	}
	return float32(s / float64(beta))
}

// closestToMedian16Generic is the portable closestToMedian16: dst[l] =
// closestToMedianLaneFinite(buf, l, t, beta) for the 16 lanes.
func closestToMedian16Generic(dst, buf []float32, t, beta int) {
	for l := range lanes {
		dst[l] = closestToMedianLaneFinite(buf, l, t, beta)
	}
}

// b2i is 1 for true and 0 for false (a SETcc, no branch).
func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
