//go:build (amd64 || arm64) && !purego

package aggregation

import "unsafe"

// The kernel wrappers that are the same on every architecture with
// assembly: the fall-back to the portable code, the bounds checks the
// assembly does not make and, where the assembly covers a whole-block
// prefix of the vectors, the portable code over the tail. Each
// architecture's file supplies the ...Asm function that runs its
// instructions (and chooses among them, on amd64).

// rowPointers sets ptrs[k] to the first element of rows[k], having
// checked that the row holds n values: the assembly does no bounds
// checks, so a short row panics here, as it would in the portable loop.
func rowPointers(ptrs []*float32, n int, rows ...[]float32) {
	for k, r := range rows {
		ptrs[k] = unsafe.SliceData(r[:n])
	}
}

func sqdist4x4(s *[4][4]float64, x *[4][]float32, y []float32) {
	n := len(y)
	m := n &^ 3
	if kernel == pathPurego || m == 0 {
		sqdist4x4Generic(s, x, y)
		return
	}
	var rows [4]*float32
	rowPointers(rows[:], n, x[:]...)
	sqdist4x4Asm(s, &rows, &y[0], m)
	for r := range 4 {
		sqdist4Generic(&s[r], x[r][m:n], y[m:])
	}
}

// gramTile adds the 12 dot products of a 3×4 tile of block rows to out
// (see gramTileGeneric): the whole groups of 8 in assembly, the last
// partial group in Go.
func gramTile(out *[12]float64, a *[3][]float32, b *[4][]float32) {
	n := len(a[0])
	m := n &^ 7
	if kernel == pathPurego || m == 0 {
		gramTileGeneric(out, a, b)
		return
	}
	var rows [7]*float32
	rowPointers(rows[:3], n, a[:]...)
	rowPointers(rows[3:], n, b[:]...)
	gramTileAsm(out, &rows, m)
	if m < n {
		var ta [3][]float32
		var tb [4][]float32
		for k := range 3 {
			ta[k] = a[k][m:n]
		}
		for k := range 4 {
			tb[k] = b[k][m:n]
		}
		gramTileGeneric(out, &ta, &tb)
	}
}

// sub32 sets dst = x − c (float32).
func sub32(dst, x, c []float32) {
	n := len(dst)
	x, c = x[:n], c[:n]
	if m := n &^ 7; kernel != pathPurego && m > 0 {
		sub32Asm(&dst[0], &x[0], &c[0], m)
		dst, x, c = dst[m:], x[m:], c[m:]
	}
	sub32Generic(dst, x, c)
}

func rankMean16(dst, buf []float32, xs [][]float32, off int, net []int32, lo, hi int) {
	if kernel == pathPurego {
		rankMeanGeneric(dst, buf, xs, off, net, lo, hi)
		return
	}
	// orderStat checked that every update holds off+16 values.
	n := len(xs)
	_ = buf[n*lanes-1]
	_ = dst[lanes-1]
	if !(0 <= lo && lo < hi && hi <= n) {
		panic("aggregation: rank range out of bounds")
	}
	rankMean16Asm((*[lanes]float32)(dst), &buf[0], &xs[0], n, off, net, lo, hi)
}

func sort16(buf []float32, xs [][]float32, off int, net []int32) {
	if kernel == pathPurego || len(xs) == 0 {
		sort16Generic(buf, xs, off, net)
		return
	}
	// The callers checked that every update holds off+16 values.
	_ = buf[len(xs)*lanes-1]
	sort16Asm(&buf[0], &xs[0], len(xs), off, net)
}

func add64(acc []float64, x []float32) {
	n := len(acc)
	x = x[:n]
	if m := simdPrefix(n); m > 0 {
		add64Asm(&acc[0], &x[0], m)
		acc, x = acc[m:], x[m:]
	}
	add64Generic(acc, x)
}

func div32(dst []float32, acc []float64, c float64) {
	n := len(dst)
	acc = acc[:n]
	if m := simdPrefix(n); m > 0 {
		div32Asm(&dst[0], &acc[0], m, c)
		dst, acc = dst[m:], acc[m:]
	}
	div32Generic(dst, acc, c)
}

func axpy64w(acc []float64, w float64, x []float32) {
	n := len(acc)
	x = x[:n]
	if m := simdPrefix(n); m > 0 {
		axpy64Asm(&acc[0], &x[0], m, w)
		acc, x = acc[m:], x[m:]
	}
	axpy64wGeneric(acc, w, x)
}

// passAdd32 is the summing pass's acc += x.
func passAdd32(acc, x []float32) {
	n := len(acc)
	x = x[:n]
	if m := n &^ (add32Block - 1); passPath != pathPurego && m > 0 {
		add32Asm(&acc[0], &x[0], m)
		acc, x = acc[m:], x[m:]
	}
	add32Generic(acc, x)
}
