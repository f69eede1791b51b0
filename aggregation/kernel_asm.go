//go:build (amd64 || arm64) && !purego

package aggregation

import "unsafe"

// The kernels whose assembly covers a whole-block prefix of the vectors
// and leaves the tail to the portable code. They are the same on every
// architecture with assembly; each architecture's file supplies the
// ...Asm function that runs its instructions over the prefix.

func sqdist4x4(s *[4][4]float64, x *[4][]float32, y []float32) {
	n := len(y)
	m := n &^ 3
	if kernel == pathPurego || m == 0 {
		sqdist4x4Generic(s, x, y)
		return
	}
	var rows [4]*float32
	for r := range 4 {
		rows[r] = unsafe.SliceData(x[r][:n])
	}
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
	for k := range 3 {
		rows[k] = unsafe.SliceData(a[k][:n])
	}
	for k := range 4 {
		rows[3+k] = unsafe.SliceData(b[k][:n])
	}
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
