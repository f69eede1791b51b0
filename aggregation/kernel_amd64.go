//go:build amd64 && !purego

package aggregation

// The amd64 kernels: AVX-512 in kernel_amd64.s (hand-written) and
// kernel_avx512gen_amd64.s (the 5×5 Gram tile and a prefetch, generated),
// AVX2 in kernel_avx2_amd64.s; the generated files come from avo
// descriptions in internal/asm (`make asm`). kernel_amd64.s stays
// hand-written: it was written and reviewed on a machine without AVX-512,
// and regenerating it is worth doing only where its tests run (they do on
// the machines with AVX-512 of later sessions).

//go:generate go run -C internal/asm . -out ../../kernel_avx2_amd64.s -stubs ../../kernel_avx2_stubs_amd64.go -pkg aggregation
//go:generate go run -C internal/asm . -set avx512 -out ../../kernel_avx512gen_amd64.s -stubs ../../kernel_avx512gen_stubs_amd64.go -pkg aggregation

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// availablePaths lists the kernel paths this CPU runs: the AVX-512 kernels
// need AVX512F, VL and DQ, the AVX2 ones AVX2 and FMA (for an exact a·1 − b).
func availablePaths() []kernelPath {
	p := []kernelPath{pathPurego}
	if cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		p = append(p, pathAVX2)
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ {
		p = append(p, pathAVX512)
	}
	return p
}

//go:noescape
func pairTileAVX512(s *[16]float32, rows *[8]*float32, n int)

//go:noescape
func rankMean16AVX512(dst *float32, buf *float32, xs *[]float32, n int, off int, net *int32, nnet int, lo, hi int)

//go:noescape
func sort16AVX512(buf *float32, xs *[]float32, n int, off int, net *int32, nnet int)

//go:noescape
func axpy64AVX512(acc *float64, x *float32, n int, w float64)

//go:noescape
func add64AVX512(acc *float64, x *float32, n int)

//go:noescape
func div32AVX512(dst *float32, acc *float64, n int, c float64)

//go:noescape
func sqdist4x4AVX512(s *[4][4]float64, rows *[4]*float32, y *float32, n int)

func pairTile(s *[16]float32, a, b *[4][]float32) {
	n := len(a[0])
	if kernel == pathPurego || n == 0 {
		pairTileGeneric(s, a, b)
		return
	}
	var rows [8]*float32
	rowPointers(rows[:4], n, a[:]...)
	rowPointers(rows[4:], n, b[:]...)
	if kernel == pathAVX512 {
		pairTileAVX512(s, &rows, n)
		return
	}
	// AVX2: the lanes of the whole 16-coordinate groups, then the tail
	// in Go, then the same lane tree.
	var acc [16][lanes]float32
	m := n &^ (lanes - 1)
	if m > 0 {
		pairTileAVX2(&acc, &rows, m)
	}
	pairTileTail(s, &acc, a, b, m, n)
}

// pairTileTail completes the accumulators acc of a tile on the AVX2 path,
// which its kernel (pairTileAVX2, pairTile2AVX2 or pairTileDiagAVX2) has
// filled for the first m = n &^ 15 coordinates: the others in Go, then the
// lane tree of each into s.
func pairTileTail(s *[16]float32, acc *[16][lanes]float32, a, b *[4][]float32, m, n int) {
	if m < n {
		pairTileAcc(acc, a, b, m)
	}
	laneTreeAVX2(s, acc)
}

// pairTile2 sets s[4p+q], q < 2, to what pairTile(s, a, b) sets it to; the
// other entries are unspecified. On AVX2 it computes those eight pairs only
// (pairTile2AVX2).
func pairTile2(s *[16]float32, a, b *[4][]float32) {
	n := len(a[0])
	if kernel != pathAVX2 || n == 0 {
		pairTile(s, a, b)
		return
	}
	var rows [8]*float32
	rowPointers(rows[:4], n, a[:]...)
	rowPointers(rows[4:], n, b[:]...)
	var acc [16][lanes]float32
	m := n &^ (lanes - 1)
	if m > 0 {
		pairTile2AVX2(&acc, &rows, m)
	}
	pairTileTail(s, &acc, a, b, m, n)
}

// pairTileDiag sets s[4p+q], p < q, to what pairTile(s, a, a) sets it to;
// the other entries are unspecified. On AVX2 it computes those six pairs
// only (pairTileDiagAVX2), not the sixteen of pairTile.
func pairTileDiag(s *[16]float32, a *[4][]float32) {
	n := len(a[0])
	if kernel != pathAVX2 || n == 0 {
		pairTile(s, a, a)
		return
	}
	var rows [4]*float32
	rowPointers(rows[:], n, a[:]...)
	var acc [16][lanes]float32
	m := n &^ (lanes - 1)
	if m > 0 {
		pairTileDiagAVX2(&acc, &rows, m)
	}
	pairTileTail(s, &acc, a, a, m, n)
}

// rankMean16Asm is rankMean16's assembly: one kernel on AVX-512, the
// sort and the mean on AVX2.
func rankMean16Asm(dst *[lanes]float32, buf *float32, xs *[]float32, n, off int, net []int32, lo, hi int) {
	if kernel == pathAVX512 {
		rankMean16AVX512(&dst[0], buf, xs, n, off, unsafe.SliceData(net), len(net), lo, hi)
		return
	}
	sort16AVX2(buf, xs, n, off, unsafe.SliceData(net), len(net))
	meanRowsAVX2(dst, buf, lo, hi, float64(hi-lo))
}

// closestToMedian16 sets dst[l] = closestToMedianLaneFinite(buf, l, t,
// beta) for the 16 lanes of the t sorted, finite rows of buf. Both
// assembly paths run the AVX2 kernel (every AVX-512 CPU has AVX2).
func closestToMedian16(dst, buf []float32, t, beta int) {
	if kernel == pathPurego {
		closestToMedian16Generic(dst, buf, t, beta)
		return
	}
	if !(1 <= beta && beta <= t) {
		panic("aggregation: window larger than the values")
	}
	_ = buf[t*lanes-1]
	_ = dst[lanes-1]
	closestToMedian16AVX2(&dst[0], &buf[0], t, beta)
}

// networkRows serves only the last, partial group of a vector, so the
// portable loop is enough (it gives the same bits as the assembly).
func networkRows(buf []float32, net []int32) { networkRowsGeneric(buf, net) }

// simdPrefix returns how many of the first n elements the element-wise
// assembly of the current path takes (a multiple of its group), 0 for the
// portable path.
func simdPrefix(n int) int {
	switch kernel {
	case pathAVX512:
		return n &^ 15
	case pathAVX2:
		return n &^ 7
	}
	return 0
}

// add64Asm is add64's assembly over the first n elements (simdPrefix).
func add64Asm(acc *float64, x *float32, n int) {
	if kernel == pathAVX512 {
		add64AVX512(acc, x, n)
	} else {
		add64AVX2(acc, x, n)
	}
}

// div32Asm is div32's assembly over the first n elements (simdPrefix).
func div32Asm(dst *float32, acc *float64, n int, c float64) {
	if kernel == pathAVX512 {
		div32AVX512(dst, acc, n, c)
	} else {
		div32AVX2(dst, acc, n, c)
	}
}

// sort16Asm is sort16's assembly over n > 0 rows.
func sort16Asm(buf *float32, xs *[]float32, n, off int, net []int32) {
	if kernel == pathAVX512 {
		sort16AVX512(buf, xs, n, off, unsafe.SliceData(net), len(net))
	} else {
		sort16AVX2(buf, xs, n, off, unsafe.SliceData(net), len(net))
	}
}

// axpy64Asm is axpy64w's assembly over the first n elements (simdPrefix).
func axpy64Asm(acc *float64, x *float32, n int, w float64) {
	if kernel == pathAVX512 {
		axpy64AVX512(acc, x, n, w)
	} else {
		axpy64AVX2(acc, x, n, w)
	}
}

// sqdist4x4Asm is sqdist4x4's assembly over the first n elements.
func sqdist4x4Asm(s *[4][4]float64, rows *[4]*float32, y *float32, n int) {
	if kernel == pathAVX512 {
		sqdist4x4AVX512(s, rows, y, n)
	} else {
		sqdist4x4AVX2(s, rows, y, n)
	}
}

// passPath is the path of the summing pass's adds: AVX2 on every CPU that
// has it (AVX-512 ones too), whatever FEDGUARD_KERNEL forces.
var passPath = map[bool]kernelPath{true: pathAVX2, false: pathPurego}[cpu.X86.HasAVX2]

// add32Block is the number of elements add32Asm takes at a time.
const add32Block = 32

// add32Asm is passAdd32's assembly over the first n elements (a multiple
// of add32Block).
func add32Asm(acc, x *float32, n int) { add32AVX2(acc, x, n) }

// gramTileAsm is gramTile's assembly over the first n elements (a
// multiple of 8). Every AVX-512 CPU has AVX2 and FMA, so both assembly
// paths run the AVX2 kernel.
func gramTileAsm(out *[12]float64, rows *[7]*float32, n int) { gramTileAVX2(out, rows, n) }

// gramShape returns the tile shape of gramDistances on the current path
// and its block operation: 5×5 on AVX-512, whose 32 registers hold the 25
// accumulators (gramTiles5x5AVX512), else 3×4.
func gramShape() (p, q int, op gramBlockOp) {
	if kernel == pathAVX512 {
		return 5, 5, gramBlock5x5
	}
	return 3, 4, gramBlock34
}

// gramTiles5x5AVX512 takes a block's rows 2048 bytes apart.
const (
	_ uint = gramBlock*4 - 2048
	_ uint = 2048 - gramBlock*4
)

// gramBlock5x5 is gramBlockOp for 5×5 tiles: the whole groups of 8 by
// gramTiles5x5AVX512, the last partial group in Go. gramShape returns it
// only on the AVX-512 path.
func gramBlock5x5(acc []float64, y []float32, m int, tiles [][2]int32) {
	k := m &^ 7
	if k > 0 && len(tiles) > 0 {
		_ = acc[25*len(tiles)-1]
		for _, tl := range tiles {
			if tl[0] < 0 || tl[1] < 0 || (int(max(tl[0], tl[1]))+4)*gramBlock+m > len(y) {
				panic("aggregation: Gram tile outside its block")
			}
		}
		gramTiles5x5AVX512(&acc[0], &y[0], &tiles[0], len(tiles), k)
	}
	if k < m {
		gramBlockRect(5, 5, acc, y, k, m, tiles)
	}
}

// prefetchRow asks for x to be brought into L2 (no effect on any value).
func prefetchRow(x []float32) {
	if kernel != pathPurego && len(x) > 0 {
		prefetchL2(&x[0], len(x))
	}
}

// sub32Asm is sub32's assembly over the first n elements (a multiple of 8).
func sub32Asm(dst, x, c *float32, n int) { sub32AVX2(dst, x, c, n) }
