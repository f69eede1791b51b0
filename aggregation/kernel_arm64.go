//go:build arm64 && !purego

package aggregation

// The arm64 kernels: NEON (Advanced SIMD) in kernel_arm64.s, written by
// hand because avo generates amd64 only. They accelerate what the AVX2
// path accelerates and give the portable path's bits; their speed has
// only been reasoned about, never measured (this project's machines are
// amd64, and arm64 runs under qemu-user, which says nothing about speed).

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// availablePaths lists the kernel paths this CPU runs. Advanced SIMD is
// mandatory in ARMv8-A, but the kernels check for it all the same, so a
// CPU or emulator without it falls back to the portable loops.
func availablePaths() []kernelPath {
	p := []kernelPath{pathPurego}
	if cpu.ARM64.HasASIMD {
		p = append(p, pathNEON)
	}
	return p
}

// pairTileNEON adds (a_p[i] − b_q[i])² (float32 difference, square and
// sum, no FMA) to acc[4p+q][i mod 16] for i < n, i increasing; rows holds
// a0..a3, b0..b3; n > 0 is a multiple of 16.
//
//go:noescape
func pairTileNEON(acc *[16][16]float32, rows *[8]*float32, n int)

// sort16NEON copies xs[r][off:off+16] into row r (64 bytes) of buf for
// r < n, then applies the comparators net (nnet int32s), with the choices
// of networkRowsGeneric; n > 0. net must come from sortNetwork: its first
// blockComparators·(n/8) comparators, the 8-sorter of each full block of 8
// rows, are applied in registers as the rows are loaded.
//
//go:noescape
func sort16NEON(buf *float32, xs *[]float32, n int, off int, net *int32, nnet int)

// meanRowsNEON writes float32(s_l / cnt) into dst[l], s_l the float64 sum
// of lane l of the 64-byte rows lo..hi-1 of buf added in row order; lo < hi.
//
//go:noescape
func meanRowsNEON(dst *[16]float32, buf *float32, lo int, hi int, cnt float64)

// add64NEON sets acc[i] += float64(x[i]) for i < n; n > 0 is a multiple of 8.
//
//go:noescape
func add64NEON(acc *float64, x *float32, n int)

// div32NEON sets dst[i] = float32(acc[i] / c) for i < n; n > 0 is a multiple of 8.
//
//go:noescape
func div32NEON(dst *float32, acc *float64, n int, c float64)

// axpy64NEON sets acc[i] += float64(w·float64(x[i])) for i < n, the
// product rounded before the addition; n > 0 is a multiple of 8.
//
//go:noescape
func axpy64NEON(acc *float64, x *float32, n int, w float64)

// sqdist4x4NEON adds float64(t·t), t = float64(rows[r][k]) − float64(y[k]),
// to s[r][k mod 4] for k < n, k increasing; n > 0 is a multiple of 4.
//
//go:noescape
func sqdist4x4NEON(s *[4][4]float64, rows *[4]*float32, y *float32, n int)

// add32NEON sets acc[i] += x[i] in float32 for i < n; n > 0 is a multiple of 16.
//
//go:noescape
func add32NEON(acc *float32, x *float32, n int)

// gramTileNEON adds to out[4p+q] the float64 lane tree (laneTree64) of
// the 8 float32 FMA lanes of Σ a_p[i]·b_q[i] for i < n; rows holds
// a0..a2, b0..b3; n > 0 is a multiple of 8.
//
//go:noescape
func gramTileNEON(out *[12]float64, rows *[7]*float32, n int)

// sub32NEON sets dst[i] = x[i] − c[i] in float32 for i < n; n > 0 is a multiple of 8.
//
//go:noescape
func sub32NEON(dst *float32, x *float32, c *float32, n int)

func pairTile(s *[16]float32, a, b *[4][]float32) {
	n := len(a[0])
	m := n &^ (lanes - 1)
	if kernel == pathPurego || m == 0 {
		pairTileGeneric(s, a, b)
		return
	}
	var rows [8]*float32
	rowPointers(rows[:4], n, a[:]...)
	rowPointers(rows[4:], n, b[:]...)
	// The lanes of the whole 16-coordinate groups, then the tail in Go,
	// then the lane tree, as on AVX2.
	var acc [16][lanes]float32
	pairTileNEON(&acc, &rows, m)
	pairTileAcc(&acc, a, b, m)
	for k := range acc {
		s[k] = laneTree(&acc[k])
	}
}

// closestToMedian16 sets dst[l] = closestToMedianLaneFinite(buf, l, t,
// beta) for the 16 lanes (portable code on arm64).
func closestToMedian16(dst, buf []float32, t, beta int) {
	closestToMedian16Generic(dst, buf, t, beta)
}

// pairTile2 sets s[4p+q], q < 2, to what pairTile(s, a, b) sets it to
// (the other entries are unspecified; here all sixteen are computed).
func pairTile2(s *[16]float32, a, b *[4][]float32) { pairTile(s, a, b) }

// pairTileDiag sets s[4p+q], p < q, to what pairTile(s, a, a) sets it to
// (the other entries are unspecified; here all sixteen are computed).
func pairTileDiag(s *[16]float32, a *[4][]float32) { pairTile(s, a, a) }

// rankMean16Asm is rankMean16's assembly: the sort, then the mean.
func rankMean16Asm(dst *[lanes]float32, buf *float32, xs *[]float32, n, off int, net []int32, lo, hi int) {
	sort16NEON(buf, xs, n, off, unsafe.SliceData(net), len(net))
	meanRowsNEON(dst, buf, lo, hi, float64(hi-lo))
}

// networkRows serves only the last, partial group of a vector, so the
// portable loop is enough.
func networkRows(buf []float32, net []int32) { networkRowsGeneric(buf, net) }

// simdPrefix returns how many of the first n elements the element-wise
// assembly of the current path takes (a multiple of 8), 0 for the
// portable path.
func simdPrefix(n int) int {
	if kernel == pathNEON {
		return n &^ 7
	}
	return 0
}

// add64Asm is add64's assembly over the first n elements (simdPrefix).
func add64Asm(acc *float64, x *float32, n int) { add64NEON(acc, x, n) }

// div32Asm is div32's assembly over the first n elements (simdPrefix).
func div32Asm(dst *float32, acc *float64, n int, c float64) { div32NEON(dst, acc, n, c) }

// sort16Asm is sort16's assembly over n > 0 rows.
func sort16Asm(buf *float32, xs *[]float32, n, off int, net []int32) {
	sort16NEON(buf, xs, n, off, unsafe.SliceData(net), len(net))
}

// axpy64Asm is axpy64w's assembly over the first n elements (simdPrefix).
func axpy64Asm(acc *float64, x *float32, n int, w float64) { axpy64NEON(acc, x, n, w) }

// sqdist4x4Asm is sqdist4x4's assembly over the first n elements.
func sqdist4x4Asm(s *[4][4]float64, rows *[4]*float32, y *float32, n int) {
	sqdist4x4NEON(s, rows, y, n)
}

// passPath is the path of the summing pass's adds: NEON whenever the CPU
// has it, whatever FEDGUARD_KERNEL forces.
var passPath = map[bool]kernelPath{true: pathNEON, false: pathPurego}[cpu.ARM64.HasASIMD]

// add32Block is the number of elements add32Asm takes at a time.
const add32Block = 16

// add32Asm is passAdd32's assembly over the first n elements (a multiple
// of add32Block).
func add32Asm(acc, x *float32, n int) { add32NEON(acc, x, n) }

// gramTileAsm is gramTile's assembly over the first n elements (a
// multiple of 8).
func gramTileAsm(out *[12]float64, rows *[7]*float32, n int) { gramTileNEON(out, rows, n) }

// sub32Asm is sub32's assembly over the first n elements (a multiple of 8).
func sub32Asm(dst, x, c *float32, n int) { sub32NEON(dst, x, c, n) }

// gramShape returns the tile shape of gramDistances and its block operation.
func gramShape() (p, q int, op gramBlockOp) { return 3, 4, gramBlock34 }

// prefetchRow: no prefetch here.
func prefetchRow([]float32) {}
