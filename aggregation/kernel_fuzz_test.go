package aggregation

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/model"
)

// FuzzKernelPaths runs each kernel on every path the CPU offers, over raw
// float32 bits (subnormals, signed zeros, infinities, NaNs, values whose
// squares overflow) and lengths around the SIMD groups, and wants the
// portable path's bits. Arithmetic on NaNs may carry another payload when an
// instruction takes its operands in the other order, so a NaN matches any
// NaN there; the sorting network only moves values and must match exactly.
func FuzzKernelPaths(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(4), uint16(37))
	f.Add([]byte{0, 0, 0, 0x80, 0, 0, 0, 0, 1, 0, 0, 0}, uint8(5), uint16(40))
	f.Add([]byte{0xff, 0xff, 0x7f, 0x7f, 0, 0, 0x80, 0xff, 0x01, 0, 0xc0, 0x7f}, uint8(3), uint16(64))
	f.Add([]byte{0xff, 0xff, 0x7f, 0x5f, 0xff, 0xff, 0x7f, 0xdf, 3, 0, 0, 0}, uint8(8), uint16(129))
	f.Add([]byte{0x9a, 0x99, 0x99, 0x3f, 0, 0, 0, 0x80, 0xcd, 0xcc, 0xcc, 0xbd, 1, 0, 0x80, 0}, uint8(7), uint16(519))
	f.Fuzz(func(t *testing.T, data []byte, nb uint8, db uint16) {
		if len(data) < 4 {
			return
		}
		n, d := 1+int(nb%9), int(db%600)
		xs := make([][]float32, n)
		for i := range xs {
			xs[i] = make([]float32, d)
			for j := range xs[i] {
				k := 4 * (i*d + j)
				var b [4]byte
				for l := range b {
					b[l] = data[(k+l)%len(data)]
				}
				// The first pass over data gives its raw values; later
				// ones flip low bits, so that rows differ.
				bits := binary.LittleEndian.Uint32(b[:]) ^ uint32(k/len(data))
				xs[i][j] = math.Float32frombits(bits)
			}
		}
		row := func(k int) []float32 { return xs[k%n] }
		saved := kernel
		defer func() { kernel = saved }()
		run := func(p kernelPath) map[string]any {
			kernel = p
			out := map[string]any{}
			var a4, b4 [4][]float32
			for k := range 4 {
				a4[k], b4[k] = row(k), row(k+4)
			}
			if d > 0 {
				var s [16]float32
				pairTile(&s, &a4, &b4)
				out["pairTile"] = s[:]
				var s2 [16]float32
				pairTile2(&s2, &a4, &b4)
				out["pairTile2"] = []float32{s2[0], s2[1], s2[4], s2[5], s2[8], s2[9], s2[12], s2[13]} // q < 2
				var sd [16]float32
				pairTileDiag(&sd, &a4)
				out["pairTileDiag"] = []float32{sd[1], sd[2], sd[3], sd[6], sd[7], sd[11]} // p < q
				var a3 [3][]float32
				for k := range 3 {
					a3[k] = row(k)
				}
				var g [12]float64
				gramTile(&g, &a3, &b4)
				out["gramTile"] = g[:]
				a5, b5 := make([][]float32, 5), make([][]float32, 5)
				for k := range 5 {
					a5[k], b5[k] = row(k)[:min(d, gramBlock)], row(k + 5)[:min(d, gramBlock)]
				}
				g5 := make([]float64, 25)
				gramTileOf(g5, a5, b5)
				out["gramTile5x5"] = g5
				var sq [4][4]float64
				sqdist4x4(&sq, &a4, row(n-1))
				out["sqdist4x4"] = sq[:]
			}
			acc := make([]float64, d)
			for i, v := range row(1) {
				acc[i] = float64(v)
			}
			add64(acc, row(0))
			out["add64"] = append([]float64(nil), acc...)
			w := 1.5
			if d > 0 {
				w = float64(row(2)[0])
			}
			axpy64w(acc, w, row(3))
			out["axpy64w"] = append([]float64(nil), acc...)
			dst := make([]float32, d)
			div32(dst, acc, 3)
			out["div32"] = append([]float32(nil), dst...)
			sub32(dst, row(0), row(1))
			out["sub32"] = append([]float32(nil), dst...)
			sum := append([]float32(nil), row(0)...)
			// The pass runs the widest path whatever kernel says: compare
			// it with the portable loop.
			if p == pathPurego {
				add32Generic(sum, row(1))
			} else {
				passAdd32(sum, row(1))
			}
			out["passAdd32"] = sum
			if d >= lanes {
				off := (d - lanes) / 2
				for _, rk := range [][2]int{{0, n}, {n / 2, n/2 + 1}} {
					net := sortNetwork(n, rk[0], rk[1])
					buf := alignedFloats(n * lanes)
					sort16(buf, xs, off, net)
					out["sort16/"+string(rune('0'+rk[0]))] = buf
					if rk[0] == 0 && model.AllFinite(buf) {
						// Bulyan's window over the sorted rows, for
						// every β.
						for beta := 1; beta <= n; beta++ {
							w := make([]float32, lanes)
							closestToMedian16(w, buf, n, beta)
							out["closestToMedian16/"+strconv.Itoa(beta)] = w
						}
					}
					m := make([]float32, lanes)
					rankMean16(m, alignedFloats(n*lanes), xs, off, net, rk[0], rk[1])
					out["rankMean16/"+string(rune('0'+rk[0]))] = m
				}
			}
			return out
		}
		want := run(pathPurego)
		for _, p := range availablePaths()[1:] {
			got := run(p)
			for name, w := range want {
				exact := strings.HasPrefix(name, "sort16/")
				if i := diffAt(got[name], w, exact); i >= 0 {
					t.Fatalf("%s %s n=%d d=%d: element %d differs from purego's\n got %v\nwant %v",
						p, name, n, d, i, at(got[name], i), at(w, i))
				}
			}
		}
	})
}

// diffAt returns the first index where a and b ([]float32, []float64 or
// [][4]float64) differ in bits, any NaN matching any NaN unless exact, or
// -1.
func diffAt(a, b any, exact bool) int {
	switch a := a.(type) {
	case []float32:
		b := b.([]float32)
		for i := range max(len(a), len(b)) {
			if i >= len(a) || i >= len(b) {
				return i
			}
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) && (exact || a[i] == a[i] || b[i] == b[i]) {
				return i
			}
		}
	case []float64:
		b := b.([]float64)
		for i := range max(len(a), len(b)) {
			if i >= len(a) || i >= len(b) {
				return i
			}
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) && (exact || !math.IsNaN(a[i]) || !math.IsNaN(b[i])) {
				return i
			}
		}
	case [][4]float64:
		b := b.([][4]float64)
		for i := range a {
			if diffAt(a[i][:], b[i][:], exact) >= 0 {
				return i
			}
		}
	default:
		panic("diffAt: unexpected type")
	}
	return -1
}

// at returns element i of a slice diffAt takes, for messages.
func at(v any, i int) any {
	switch v := v.(type) {
	case []float32:
		if i < len(v) {
			return v[i]
		}
	case []float64:
		if i < len(v) {
			return v[i]
		}
	case [][4]float64:
		if i < len(v) {
			return v[i]
		}
	}
	return "none"
}
