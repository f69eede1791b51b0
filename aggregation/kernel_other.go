//go:build (!amd64 && !arm64) || purego

package aggregation

// availablePaths: this build has no assembly kernels.
func availablePaths() []kernelPath { return []kernelPath{pathPurego} }

func pairTile(s *[16]float32, a, b *[4][]float32) { pairTileGeneric(s, a, b) }

// pairTile2 sets s[4p+q], q < 2, to what pairTile(s, a, b) sets it to
// (the other entries are unspecified; here all sixteen are computed).
func pairTile2(s *[16]float32, a, b *[4][]float32) { pairTileGeneric(s, a, b) }

// pairTileDiag sets s[4p+q], p < q, to what pairTile(s, a, a) sets it to
// (the other entries are unspecified; here all sixteen are computed).
func pairTileDiag(s *[16]float32, a *[4][]float32) { pairTileGeneric(s, a, a) }

func closestToMedian16(dst, buf []float32, t, beta int) {
	closestToMedian16Generic(dst, buf, t, beta)
}

func rankMean16(dst, buf []float32, xs [][]float32, off int, net []int32, lo, hi int) {
	rankMeanGeneric(dst, buf, xs, off, net, lo, hi)
}

func networkRows(buf []float32, net []int32) { networkRowsGeneric(buf, net) }

func add64(acc []float64, x []float32) { add64Generic(acc, x) }

func div32(dst []float32, acc []float64, c float64) { div32Generic(dst, acc, c) }

func sort16(buf []float32, xs [][]float32, off int, net []int32) { sort16Generic(buf, xs, off, net) }

func axpy64w(acc []float64, w float64, x []float32) { axpy64wGeneric(acc, w, x) }

func sqdist4(s *[4]float64, x, y []float32) { sqdist4Generic(s, x, y) }

func sqdist4x4(s *[4][4]float64, x *[4][]float32, y []float32) { sqdist4x4Generic(s, x, y) }

// passPath is the path of the summing pass's adds.
const passPath = pathPurego

func passAdd32(acc, x []float32) { add32Generic(acc, x) }

func gramTile(out *[12]float64, a *[3][]float32, b *[4][]float32) { gramTileGeneric(out, a, b) }

func sub32(dst, x, c []float32) { sub32Generic(dst, x, c) }

// gramShape returns the tile shape of gramDistances and its block operation.
func gramShape() (p, q int, op gramBlockOp) { return 3, 4, gramBlock34 }

// prefetchRow: no prefetch here.
func prefetchRow([]float32) {}
