package aggregation

// # Gram-matrix distances with exact refinement
//
// Krum and Multi-Krum (and Bulyan, see bulyanGram) need all n(n−1)/2
// squared distances, the dominant cost at large n. The differences kernel (pairTile) spends a
// subtraction, a multiplication and an addition per pair and coordinate;
// the Gram form ‖x‖² + ‖y‖² − 2⟨x, y⟩ needs one fused multiply-add. The
// rules therefore first compute every distance from the Gram matrix
// (gramDistances), with a proven bound E_ij on its distance to the
// differences kernel's value D_ij, and then compute D_ij exactly (by the
// differences kernel, the same bits as before) for every row whose score
// could be on the other side of a decision: a choice is taken from the
// Gram values only when the score intervals [Ŝ − B, Ŝ + B] do not overlap
// (pairDist.resolve). So each rule selects exactly what it selected with
// the differences kernel alone, ties included; a row whose distances are
// all exact has exactly the old score. The other rows' reported scores are
// within B of the old ones.
//
// # The Gram kernel and its error
//
// The coordinates are taken in blocks of gramBlock = 512. In each block
// every row is first centred, y = fl(x − c) with c the coordinate-wise
// median of rows 0, 1 and 2 (distances do not change under translation,
// but the Gram form loses accuracy in proportion to ‖y‖², so the rows
// are moved near each other's centre first). Rows are then taken in
// tiles, 3×4 or, on the AVX-512 path, 5×5 (gramShape; a product's bits
// do not depend on its tile); each dot product is summed in 8 float32
// lanes (lane l takes the coordinates ≡ l mod 8 of the block) by fused
// multiply-add, one rounding per term, and the lanes go to float64 and
// are added by the tree (l, l+4), (l, l+2), (0, 1) into a float64 total
// per chunk of blocks (gramChunks), the chunks' totals added in order. The portable loop
// emulates the fused multiply-add exactly (fma32), so all paths give the
// same bits, and ⟨y_i, y_j⟩ is computed by the very operations of ‖y_i‖²
// when y_i = y_j: identical updates are exactly 0 apart.
//
// With u = 2⁻²⁴, U = 2⁻⁵³ and γ(m, v) = m·v/(1 − m·v), each Gram value
// satisfies |Ĝ − G| ≤ ε·Σ|y_ik·y_jk| + d·2⁻¹⁴⁹ with
// ε = γ(64, u) + γ(blocks + chunks + 4, U)·(1 + γ(64, u)) ≈ 3.8e-6 (64
// fused terms per lane, then float64 additions; the last term covers
// underflow). By Cauchy–Schwarz Σ|y_i·y_j| ≤ (N_i + N_j)/2 with N = ‖y‖².
// The centring moves each coordinate by at most u·|y| (one rounding of an
// exact difference), which changes ‖y_i − y_j‖² by at most
// 2u'(2 + u')(N_i + N_j), u' = u/(1 − u). The differences kernel's D has
// relative error δ = γ(136, u) + γ(blocks₂₀₄₈ + chunks + 2, U) + γ(d, U)
// ≈ 8.1e-6 (see "Pairwise distances" in kernel.go). gramErrors adds these
// up, with the float64 roundings of N̂_i + N̂_j − 2Ĝ, into E_ij ≥ |D̂_ij − D_ij|.
// A score, the float64 sum of the k smallest distances of a row, then moves
// by at most B_i = k·max_j E_ij plus the two sums' roundings (sum of the k
// smallest is 1-Lipschitz in each distance).

import (
	"math"
	"math/big"
	"runtime"
	"slices"
	"sync"
)

// gramBlock is the number of coordinates per block of gramDistances: the
// block of all n centred rows stays in L2 (200 KB at n = 100), and each
// float32 lane sums gramBlock/8 = 64 terms before going to float64.
const gramBlock = 512

// gramEnabled lets tests force the differences kernel throughout, the
// decisions the Gram path must reproduce.
var gramEnabled = true

// bulyanGram makes Bulyan start from the Gram matrix too; off (see
// Bulyan.Aggregate), and on in TestGramDecisionsExact, which keeps the
// refinement of its passes tested.
var bulyanGram = false

const (
	unit32 = 0x1p-24
	unit64 = 0x1p-53
)

// gammaOf is γ(m, v) = m·v/(1 − m·v), the relative error bound of m roundings.
func gammaOf(m, v float64) float64 { return m * v / (1 - m*v) }

// fma32 is the float32 rounding of the exact a·b + c, as VFMADD231PS
// computes it. a·b is exact in float64 (24 + 24 bits); the float64 sum s
// rounds to the right float32 unless s lies exactly on a float32 midpoint
// (the double rounding case) or outside the normal range, which go to the
// exact slow path.
func fma32(a, b, c float32) float32 {
	s := float64(a)*float64(b) + float64(c)
	as := math.Abs(s)
	if as == 0 || (as >= 0x1p-126 && math.Float64bits(s)&(1<<29-1) != 1<<28) || math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	var x, y big.Float
	x.SetPrec(1200).SetFloat64(float64(a))
	y.SetPrec(1200).SetFloat64(float64(b))
	x.Mul(&x, &y)
	y.SetFloat64(float64(c))
	x.Add(&x, &y)
	f, _ := x.Float32()
	return f
}

// gramTileGeneric adds to out[4p+q] the dot product of a[p] and b[q]
// (gramTileRect for a 3×4 tile).
func gramTileGeneric(out *[12]float64, a *[3][]float32, b *[4][]float32) {
	gramTileRect(out[:], a[:], b[:])
}

// gramTileRect adds to out[len(b)·p+q] the dot product of a[p] and b[q]:
// the coordinates of the whole groups of 8 summed in 8 float32 lanes by
// fma32 and reduced by laneTree64, then those of the last partial group
// (if any) the same way in fresh lanes. It defines the bits of every
// tile shape and path: a product's value does not depend on the tile it
// is computed in, nor on which of its rows is the a row (x·y and y·x are
// the same exact product).
func gramTileRect(out []float64, a, b [][]float32) {
	n := len(a[0])
	m := n &^ 7
	for _, r := range [][2]int{{0, m}, {m, n}} {
		if r[0] == r[1] {
			continue
		}
		for p := range a {
			x := a[p][r[0]:r[1]]
			for q := range b {
				y := b[q][r[0]:r[1]]
				var l [8]float32
				for i := range x {
					l[i&7] = fma32(x[i], y[i], l[i&7])
				}
				out[len(b)*p+q] += laneTree64(&l)
			}
		}
	}
}

// gramBlockOp adds to acc[np·nq·t + nq·p + q], for each tile t of
// gramDistances' np×nq tiles, the product (as gramTileRect) of the rows
// tiles[t][0]+p and tiles[t][1]+q of a block y, rows gramBlock float32
// apart, in their first m coordinates. Of a tile of rows with themselves
// (tiles[t][0] = tiles[t][1]) only the entries p ≤ q must be set: the
// others are never read.
type gramBlockOp func(acc []float64, y []float32, m int, tiles [][2]int32)

// gramBlock34 is gramBlockOp for 3×4 tiles, by gramTile.
func gramBlock34(acc []float64, y []float32, m int, tiles [][2]int32) {
	var a [3][]float32
	var b [4][]float32
	for t, tl := range tiles {
		for k := range a {
			a[k] = gramRowOf(y, int(tl[0])+k, 0, m)
		}
		for k := range b {
			b[k] = gramRowOf(y, int(tl[1])+k, 0, m)
		}
		gramTile((*[12]float64)(acc[12*t:]), &a, &b)
	}
}

// gramBlockRect is gramBlockOp for np×nq tiles in Go (gramTileRect), over
// the coordinates [lo, m) of the rows.
func gramBlockRect(np, nq int, acc []float64, y []float32, lo, m int, tiles [][2]int32) {
	a, b := make([][]float32, np), make([][]float32, nq)
	for t, tl := range tiles {
		for k := range a {
			a[k] = gramRowOf(y, int(tl[0])+k, lo, m)
		}
		for k := range b {
			b[k] = gramRowOf(y, int(tl[1])+k, lo, m)
		}
		gramTileRect(acc[np*nq*t:np*nq*(t+1)], a, b)
	}
}

// gramRowOf returns coordinates [lo, m) of row r of a block.
func gramRowOf(y []float32, r, lo, m int) []float32 {
	return y[r*gramBlock+lo : r*gramBlock+m]
}

// laneTree64 adds 8 float32 lanes in float64 by the tree (l, l+4),
// (l, l+2), (0, 1) of gramTileAVX2.
func laneTree64(l *[8]float32) float64 {
	var v [8]float64
	for i := range v {
		v[i] = float64(l[i])
	}
	for w := 4; w >= 1; w /= 2 {
		for i := range w {
			v[i] += v[i+w]
		}
	}
	return v[0]
}

// sub32Generic sets dst = x − c.
func sub32Generic(dst, x, c []float32) {
	x, c = x[:len(dst)], c[:len(dst)]
	for i := range dst {
		dst[i] = x[i] - c[i]
	}
}

// pairChunks is the number of coordinate ranges pairwiseSquaredDistancesFinite
// sums separately: a function of n and d only, so that exactRows can give
// the same bits.
func pairChunks(n, d int) int {
	blocks := (d + pairBlock - 1) / pairBlock
	return min(blocks, maxPairChunks, max(1, pairChunkBudget/(8*n*n)))
}

// gramChunks is the number of coordinate ranges gramDistances sums
// separately, which the bits of its float64 totals depend on: a function
// of n and d only (through the number of the 3×4 tiles it used on every
// path before the AVX-512 path's 5×5 ones), so that every path and tile
// shape gives the same bits.
func gramChunks(n, d int) int {
	tiles := 0
	for a := range (n + 2) / 3 {
		for b := range (n + 3) / 4 {
			if min(4*b+3, n-1) >= 3*a {
				tiles++
			}
		}
	}
	blocks := (d + gramBlock - 1) / gramBlock
	return min(blocks, maxPairChunks, max(1, pairChunkBudget/(8*12*tiles)))
}

// gramScratch is one worker's block of centred rows and its centre.
type gramScratch struct{ y, c []float32 }

// gramScratches and gramPartials keep gramDistances' buffers (the
// partials are 2.7 MB at n = 100, d = 10⁵) from one call to the next:
// allocated afresh, their pages were faulted in and cleared by the kernel
// on every call, about a tenth of Krum's time at that size.
var gramScratches, gramPartials sync.Pool

// gramDistances returns the n×n matrix of D̂_ij (clamped at 0, symmetric,
// zero diagonal) from the Gram matrix of the centred rows, and the matrix
// of bounds E_ij ≥ |D̂_ij − D_ij| (D the differences kernel's value). It
// reports false when some Gram value is not finite (a non-finite input, or
// float32 products that overflow): the caller then uses the differences
// kernel throughout. n ≥ 1, d ≥ 1.
func gramDistances(xs [][]float32) (dh, eb []float64, ok bool) {
	n, d := len(xs), len(xs[0])
	np, nq, blockOp := gramShape()
	var tiles [][2]int32 // first rows of the a and b sides
	for a := range (n + np - 1) / np {
		for b := range (n + nq - 1) / nq {
			if min(nq*b+nq-1, n-1) >= np*a {
				tiles = append(tiles, [2]int32{int32(np * a), int32(nq * b)})
			}
		}
	}
	// The last tiles reach past row n − 1 into padding rows, whose
	// products are computed and never read.
	rows := max((n+np-1)/np*np, (n+nq-1)/nq*nq)
	blocks := (d + gramBlock - 1) / gramBlock
	chunks := gramChunks(n, d)
	per := np * nq * len(tiles) // partial sums of one chunk
	pp, _ := gramPartials.Get().(*[]float64)
	if pp == nil || cap(*pp) < chunks*per {
		pp = &[]float64{}
		*pp = make([]float64, chunks*per)
	}
	defer gramPartials.Put(pp)
	partial := (*pp)[:chunks*per]
	workers := runtime.GOMAXPROCS(0)
	scr := make([]*gramScratch, workers)
	defer func() {
		for _, s := range scr {
			if s != nil {
				gramScratches.Put(s)
			}
		}
	}()
	// Tiles per call of blockOp: between calls, some rows of the next
	// block are prefetched.
	batch := max(1, min(16, len(tiles)/8))
	parallel(chunks, len(tiles)*np*nq*d, func(w, c int) {
		if scr[w] == nil {
			s, _ := gramScratches.Get().(*gramScratch)
			if s == nil || len(s.y) < rows*gramBlock {
				s = &gramScratch{make([]float32, rows*gramBlock), make([]float32, gramBlock)}
			}
			scr[w] = s
		}
		s := scr[w]
		acc := partial[c*per : (c+1)*per]
		clear(acc)
		first, last := c*blocks/chunks, (c+1)*blocks/chunks
		for blk := first; blk < last; blk++ {
			lo := blk * gramBlock
			hi := min(lo+gramBlock, d)
			m := hi - lo
			cv := s.c[:m]
			x0, x1, x2 := xs[0][lo:hi], xs[min(1, n-1)][lo:hi], xs[min(2, n-1)][lo:hi]
			for k := range cv {
				cv[k] = max(min(x0[k], x1[k]), min(max(x0[k], x1[k]), x2[k]))
			}
			for r := range n {
				sub32(gramRowOf(s.y, r, 0, m), xs[r][lo:hi], cv)
			}
			// While the tiles compute, the rows of the block this worker
			// most likely takes next (the chunks go to the workers in
			// turn) are fetched into L2, a few rows per batch of tiles.
			next := blk + 1
			if next == last {
				next = blocks
				if c+workers < chunks {
					next = (c + workers) * blocks / chunks
				}
			}
			fetched := n
			var flo, fhi int
			if next < blocks {
				fetched, flo, fhi = 0, next*gramBlock, min(next*gramBlock+gramBlock, d)
			}
			for t := 0; t < len(tiles); t += batch {
				end := min(t+batch, len(tiles))
				for ; fetched < end*n/len(tiles); fetched++ {
					prefetchRow(xs[fetched][flo:fhi])
				}
				blockOp(acc[np*nq*t:np*nq*end], s.y, m, tiles[t:end])
			}
		}
	})
	// The chunks' partial sums, added in chunk order (as a loop over the
	// chunks per product would, but reading the partials in order: a
	// chunk's are 42 KB apart at n = 100).
	tot := partial[:per]
	for k := range tot {
		tot[k] += 0 // the sum starts at +0: a −0 partial gives +0, as it did
	}
	for c := 1; c < chunks; c++ {
		for k, v := range partial[c*per : (c+1)*per] {
			tot[k] += v
		}
	}
	g := make([]float64, n*n)
	for t, tl := range tiles {
		for p := range np {
			i := int(tl[0]) + p
			for q := range nq {
				j := int(tl[1]) + q
				if i >= n || j >= n || j < i {
					continue
				}
				v := tot[np*nq*t+nq*p+q]
				if math.IsInf(v, 0) || math.IsNaN(v) {
					return nil, nil, false
				}
				g[i*n+j] = v
			}
		}
	}
	eps := gammaOf(gramBlock/8, unit32) + gammaOf(float64(blocks+chunks+4), unit64)*(1+gammaOf(gramBlock/8, unit32))
	alphaG := float64(d) * 0x1p-149
	up := unit32 / (1 - unit32)
	centre := 2 * up * (2 + up)
	blocksT := (d + pairBlock - 1) / pairBlock
	delta := gammaOf(136, unit32) + gammaOf(float64(blocksT+pairChunks(n, d)+2), unit64)*(1+gammaOf(136, unit32)) + gammaOf(float64(d), unit64)
	alphaT := float64(d) * 0x1p-140
	dh = make([]float64, n*n)
	eb = make([]float64, n*n)
	for i := range n {
		ni := g[i*n+i]
		for j := i + 1; j < n; j++ {
			nj := g[j*n+j]
			v := max(ni+nj-2*g[i*n+j], 0)
			nsum := (ni + nj + 2*alphaG) / (1 - eps)
			e1 := (2*eps+centre)*nsum + 3.03*unit64*(ni+nj) + 3*alphaG
			e := (e1 + delta*(v+e1) + alphaT) * (1 + 1e-9)
			dh[i*n+j], dh[j*n+i] = v, v
			eb[i*n+j], eb[j*n+i] = e, e
		}
	}
	return dh, eb, true
}

// exactRows returns, for each row rs[r], its distances D to the rows cols
// (row r of the result, indexed like cols) exactly as
// pairwiseSquaredDistancesFinite computes them: the same blocks, chunks,
// per-pair operations and order of float64 additions (a pair's value does
// not depend on its place in a tile, nor on which of its rows is the
// tile's: (x − y)² and (y − x)² are the same float32). A pair of two rows
// that are in both rs and cols is computed once. All of xs must be finite.
func exactRows(xs [][]float32, rs, cols []int) [][]float64 {
	n, d := len(xs), len(xs[0])
	// The rows in both lists come first in both, in the order of rs, so
	// that the tiles of those rows are the same on both sides: a tile
	// pair below the diagonal of those tiles is the transpose of one
	// above it, and is skipped.
	inCols := make(map[int]bool, len(cols))
	for _, j := range cols {
		inCols[j] = true
	}
	var shared, rowsRest []int
	for _, i := range rs {
		if inCols[i] {
			shared = append(shared, i)
		} else {
			rowsRest = append(rowsRest, i)
		}
	}
	inShared := make(map[int]bool, len(shared))
	for _, i := range shared {
		inShared[i] = true
	}
	rowsT := append(slices.Clone(shared), rowsRest...)
	colsT := slices.Clone(shared)
	for _, j := range cols {
		if !inShared[j] {
			colsT = append(colsT, j)
		}
	}
	ns := len(shared)
	full := ns / 4 // tiles made only of shared rows, on both sides
	nr, nc := len(rowsT), len(colsT)
	ta, tb := (nr+3)/4, (nc+3)/4
	skip := func(t, u int) bool { return u < t && t < full }
	blocks := (d + pairBlock - 1) / pairBlock
	chunks := pairChunks(n, d)
	m := nr * nc
	partial := make([]float64, chunks*m)
	parallel(chunks, (ta*tb-full*(full-1)/2)*16*d, func(_, c int) {
		acc := partial[c*m : (c+1)*m]
		var a, b [4][]float32
		var s [16]float32
		for blk := c * blocks / chunks; blk < (c+1)*blocks/chunks; blk++ {
			lo := blk * pairBlock
			hi := min(lo+pairBlock, d)
			for t := range ta {
				for k := range 4 {
					a[k] = xs[rowsT[min(4*t+k, nr-1)]][lo:hi]
				}
				for u := range tb {
					if skip(t, u) {
						continue
					}
					for k := range 4 {
						b[k] = xs[colsT[min(4*u+k, nc-1)]][lo:hi]
					}
					pairTile(&s, &a, &b)
					for p := range 4 {
						r := 4*t + p
						if r >= nr {
							break
						}
						for q := range 4 {
							if j := 4*u + q; j < nc {
								acc[r*nc+j] += float64(s[p*4+q])
							}
						}
					}
				}
			}
		}
	})
	rowAt := make(map[int]int, nr)
	for r, i := range rowsT {
		rowAt[i] = r
	}
	colAt := make(map[int]int, nc)
	for q, j := range colsT {
		colAt[j] = q
	}
	out := make([][]float64, len(rs))
	for ri, i := range rs {
		row := make([]float64, len(cols))
		for qi, j := range cols {
			if j == i {
				continue
			}
			r, q := rowAt[i], colAt[j]
			if skip(r/4, q/4) {
				r, q = q, r // computed as (j, i); j is a shared row
			}
			var v float64
			for c := range chunks {
				v += partial[c*m+r*nc+q]
			}
			if math.IsInf(v, 0) || math.IsNaN(v) {
				v = squaredDistance64(xs[i], xs[j])
			}
			row[qi] = max(v, 0)
		}
		out[ri] = row
	}
	return out
}

// pairDist is the distance matrix a Krum-type rule decides on: Gram values
// with their bounds, made exact row by row where a decision needs it.
type pairDist struct {
	xs      [][]float32
	n       int
	d       []float64 // current distances
	e       []float64 // bounds on |d − D|, 0 once exact; nil when all exact
	refined []bool
	nb      *neighbours
}

// newPairDist computes the distances of xs (n ≥ 2), from the Gram matrix
// when gram is set, and reports whether all of xs is finite (see
// pairwiseSquaredDistancesFinite).
func newPairDist(xs [][]float32, gram bool) (*pairDist, bool) {
	n := len(xs)
	pd := &pairDist{xs: xs, n: n, refined: make([]bool, n)}
	if gram && gramEnabled && n >= 3 && len(xs[0]) > 0 {
		if dh, eb, ok := gramDistances(xs); ok {
			pd.d, pd.e = dh, eb
			pd.nb = newNeighbours(pd.d, n)
			return pd, true
		}
	}
	dist, finite := pairwiseSquaredDistancesFinite(xs)
	pd.d = dist
	if finite {
		pd.nb = newNeighbours(dist, n)
	}
	return pd, finite
}

// bounds returns B_i ≥ |scores[i] − S_i| for the alive rows, S_i the score
// the exact distances give; 0 exactly when every distance of row i to an
// alive row is exact (then scores[i] = S_i bit for bit).
func (pd *pairDist) bounds(scores []float64, alive []bool, k int) []float64 {
	n := pd.n
	b := make([]float64, n)
	if pd.e == nil {
		return b
	}
	for i := range n {
		if !alive[i] || pd.refined[i] {
			continue
		}
		var emax float64
		for j, ej := range pd.e[i*n : (i+1)*n] {
			if alive[j] && j != i {
				emax = max(emax, ej)
			}
		}
		if emax == 0 {
			continue
		}
		ke := float64(k) * emax
		b[i] = (ke + float64(2*k+12)*unit64*(scores[i]+ke)) * (1 + 1e-9)
	}
	return b
}

// refine makes the rows rs exact.
func (pd *pairDist) refine(rs []int) {
	n := pd.n
	// Pairs with a row refined before are exact already.
	var cols []int
	for j, done := range pd.refined {
		if !done {
			cols = append(cols, j)
		}
	}
	for r, row := range exactRows(pd.xs, rs, cols) {
		i := rs[r]
		for q, v := range row {
			j := cols[q]
			pd.d[i*n+j], pd.d[j*n+i] = v, v
			pd.e[i*n+j], pd.e[j*n+i] = 0, 0
		}
	}
	for _, i := range rs {
		pd.refined[i] = true
	}
	pd.nb.resort()
}

// resort restores each row's order after some distances changed (each
// within its bound, so the rows are nearly sorted): insertion sort by the
// order of newNeighbours, a total order, so the result is the one
// newNeighbours would give.
func (nb *neighbours) resort() {
	for i, row := range nb.rows {
		di := nb.d[i*nb.n : (i+1)*nb.n]
		less := func(a, b int) bool {
			va, vb := max(di[a], 0), max(di[b], 0)
			return va < vb || va == vb && a < b
		}
		for k := 1; k < len(row); k++ {
			for m := k; m > 0 && less(row[m], row[m-1]); m-- {
				row[m], row[m-1] = row[m-1], row[m]
			}
		}
	}
}

// resolve returns the Krum scores of the alive rows (k neighbours) and the
// alive rows by increasing score (ties by ID, then index), refining rows
// until the first m positions of that order are those the exact distances
// give: each of them is certainly below every row after it. With set, only
// the set of the first m is certain (each of them below every row after
// position m), not their order among themselves: a decision that depends
// only on the set refines far fewer rows when many scores are close.
func (pd *pairDist) resolve(updates []Update, alive []bool, k, m int, set bool) ([]float64, []int) {
	for {
		scores := pd.nb.scores(alive, k)
		order := krumOrder(scores, updates, alive)
		if pd.e == nil {
			return scores, order
		}
		b := pd.bounds(scores, alive, k)
		need := make([]bool, pd.n)
		var rs []int
		mark := func(i int) {
			if b[i] > 0 && !need[i] {
				need[i] = true
				rs = append(rs, i)
			}
		}
		m := min(m, len(order))
		for r, a := range order[:m] {
			rest := order[r+1:]
			if set {
				rest = order[m:]
			}
			for _, c := range rest {
				if (b[a] == 0 && b[c] == 0) || scores[a]+b[a] < scores[c]-b[c] {
					continue
				}
				mark(a)
				mark(c)
			}
		}
		if len(rs) == 0 {
			return scores, order
		}
		// exactRows takes rows in fours: fill the last four with the
		// rows most likely needed next (the lowest scores), which
		// Bulyan's later passes compare.
		for _, i := range order {
			if len(rs)%4 == 0 {
				break
			}
			if !pd.refined[i] && !need[i] {
				need[i] = true
				rs = append(rs, i)
			}
		}
		slices.Sort(rs)
		pd.refine(rs)
	}
}
