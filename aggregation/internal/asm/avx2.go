// Command asm generates the AVX2 kernels of package aggregation
// (kernel_avx2_amd64.s and its Go declarations) and, with -set avx512, its
// generated AVX-512 kernels (kernel_avx512gen_amd64.s, see avx512.go) with
// avo. Run it through `go generate ./aggregation` or `make asm`; CI (`make
// asm-check`) fails when the committed files differ from what it makes.
//
// Each kernel performs exactly the float32 and float64 operations of its
// portable loop in kernel.go, in the same order and without fused
// multiply-add, so every path gives the same bits. The summation order is
// defined by 16 lanes (lanes in kernel.go); an AVX2 register holds 8
// float32 or 4 float64, so a 16-lane accumulator is two or four registers.
//
// It is a module of its own so that avo does not become a dependency of
// fedguard's main module.
package main

import (
	"flag"
	"fmt"
	"log"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// set selects the kernels of one output file.
var set = flag.String("set", "avx2", "kernels to generate: avx2 or avx512")

func main() {
	flag.Parse()
	ConstraintExpr("amd64,!purego")
	switch *set {
	case "avx2":
		avx2()
	case "avx512":
		avx512()
	default:
		log.Fatalf("asm: -set %q: want avx2 or avx512", *set)
	}
	Generate()
}

// avx2 declares the kernels of kernel_avx2_amd64.s.
func avx2() {
	pairTile("pairTileAVX2", 4)
	pairTile("pairTile2AVX2", 2)
	pairTileDiag()
	laneTree()
	sort16()
	meanRows()
	add64()
	div32()
	axpy64()
	sqdist4x4()
	add32()
	gramTile()
	sub32()
	closestToMedian()
}

// kernel starts the TEXT block of a kernel with its Go declaration's doc
// comment. Every kernel is NOSPLIT and noescape: it calls nothing, and no
// pointer it is passed outlives the call.
func kernel(name, signature string, doc ...string) {
	TEXT(name, NOSPLIT, signature)
	Pragma("noescape")
	Doc(doc...)
}

// A cursor is a register that a loop advances by step bytes per pass.
type cursor struct {
	r    Register
	step int
}

// repeat emits a loop at label name: body, then each cursor advanced in
// turn, and round again while the first cursor is below end. body runs
// at least once.
func repeat(name string, end Op, body func(), cs ...cursor) {
	Label(name)
	body()
	for _, c := range cs {
		ADDQ(U8(c.step), c.r)
	}
	CMPQ(cs[0].r, end)
	JL(LabelRef(name))
}

// whileBelow is repeat behind a check, for loops that may run no pass:
// while the first cursor is below end. It ends at label name+"done".
func whileBelow(name string, end Op, body func(), cs ...cursor) {
	CMPQ(cs[0].r, end)
	JGE(LabelRef(name + "done"))
	repeat(name, end, body, cs...)
	Label(name + "done")
}

// pairTile: the 16 squared-difference accumulators of a 4×4 tile of rows,
// each 16 float32 lanes (two YMM). The block is walked in chunks of
// pairChunk coordinates (the 8 rows' chunks, 16 KB, stay in L1), and each
// chunk in four passes: b rows {0, 1} or {2, 3} against all four a rows,
// lanes 0-7 or 8-15. A pass keeps its 8 accumulators in registers, loads
// one b value per b row and takes each a value as the memory operand of
// the subtraction: t = b − a, which is −(a − b) exactly (rounding to
// nearest is symmetric), so t·t has the portable loop's bits.
//
// Every difference is a VSUBPS. Earlier versions computed half of them as
// a·1 − b by VFMSUB231PS (exact product, one rounding: the same bits) so
// that the FMA pipes shared the additions' work, as the AVX-512 kernel
// does; on this machine's AMD Zen (family 17h) that was slower: 2.6-2.9
// cycles per 8 squared differences against 2.0-2.2 for VSUBPS with a
// memory operand, which is the bound of its two 128-bit add pipes (a
// subtraction and an addition per difference, each two µops).
const pairChunk = 512

// pairTile2AVX2 is the same kernel for the pairs of b rows 0 and 1 only (two
// passes): the last tile column of the distance matrix when n mod 4 is 1
// or 2, where the other b rows repeat row n − 1.
func pairTile(name string, bRows int) {
	doc := []string{name + " adds (a_p[i] − b_q[i])² (float32 difference, square",
		"and sum, no FMA) to acc[4p+q][i mod 16] for i < n, i increasing;",
		"rows holds a0..a3, b0..b3; n is a multiple of 16."}
	if bRows == 2 {
		doc = []string{name + " is pairTileAVX2 for the pairs q < 2 only: it adds",
			"(a_p[i] − b_q[i])² to acc[4p+q][i mod 16] for q < 2 and leaves the",
			"other accumulators as they are; rows holds a0..a3, b0..b3 (b2, b3",
			"unused); n is a multiple of 16."}
	}
	kernel(name, "func(acc *[16][16]float32, rows *[8]*float32, n int)", doc...)
	lbl := func(s string) string { return fmt.Sprintf("%s%d", s, bRows) }
	accp := Load(Param("acc"), GP64())
	rows := Load(Param("rows"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), n) // bytes
	start, end := GP64(), GP64()
	XORQ(start, start)
	TESTQ(n, n)
	JZ(LabelRef(lbl("pairdone")))
	Label(lbl("chunk"))
	MOVQ(start, end)
	ADDQ(U32(4*pairChunk), end)
	CMPQ(end, n)
	CMOVQGT(n, end)
	for pass := range bRows { // two b rows and one half of the lanes per pass
		q0, h := 2*(pass/2), pass%2
		var a [4]GPVirtual
		for p := range 4 {
			a[p] = GP64()
			MOVQ(Mem{Base: rows, Disp: 8 * p}, a[p])
		}
		b := [2]GPVirtual{GP64(), GP64()}
		for q := range 2 {
			MOVQ(Mem{Base: rows, Disp: 8 * (4 + q0 + q)}, b[q])
		}
		// acc[p][q]: pair (p, q0+q), lanes 8h..8h+7.
		var acc [4][2]VecVirtual
		for p := range 4 {
			for q := range 2 {
				acc[p][q] = YMM()
				VMOVUPS(Mem{Base: accp, Disp: 64*(4*p+q0+q) + 32*h}, acc[p][q])
			}
		}
		i := GP64()
		MOVQ(start, i)
		repeat(fmt.Sprintf("pair%d_%d", bRows, pass), end, func() {
			for q := range 2 {
				y := YMM()
				VMOVUPS(Mem{Base: b[q], Index: i, Scale: 1, Disp: 32 * h}, y)
				for p := range 4 {
					t := YMM()
					VSUBPS(Mem{Base: a[p], Index: i, Scale: 1, Disp: 32 * h}, y, t) // t = b − a
					VMULPS(t, t, t)
					VADDPS(t, acc[p][q], acc[p][q])
				}
			}
		}, cursor{i, 64})
		for p := range 4 {
			for q := range 2 {
				VMOVUPS(acc[p][q], Mem{Base: accp, Disp: 64*(4*p+q0+q) + 32*h})
			}
		}
	}
	MOVQ(end, start)
	CMPQ(start, n)
	JL(LabelRef(lbl("chunk")))
	Label(lbl("pairdone"))
	VZEROUPPER()
	RET()
}

// diagPairs are the pairs (p, q), p < q, of a tile of rows with itself.
var diagPairs = [6][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}

// pairTileDiag: the accumulators of a tile of four rows with itself, for
// its six pairs p < q only (the diagonal tiles of the distance matrix,
// where pairTile would spend 16 pairs' work on 6). Both halves of the
// lanes in one pass: 12 accumulators, rows 1-3 in registers and row p as
// the memory operand, t = a_q − a_p, whose square is (a_p − a_q)²'s.
// Each row is read once, so the block is not cut into chunks.
func pairTileDiag() {
	kernel("pairTileDiagAVX2", "func(acc *[16][16]float32, rows *[4]*float32, n int)",
		"pairTileDiagAVX2 adds (a_p[i] − a_q[i])² (float32 difference, square",
		"and sum, no FMA) to acc[4p+q][i mod 16] for i < n, i increasing, for",
		"the six pairs p < q of the rows a0..a3; n is a multiple of 16. The",
		"other ten accumulators are left as they are.")
	accp := Load(Param("acc"), GP64())
	rows := Load(Param("rows"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), n) // bytes
	var a [4]GPVirtual
	for p := range 4 {
		a[p] = GP64()
		MOVQ(Mem{Base: rows, Disp: 8 * p}, a[p])
	}
	var acc [6][2]VecVirtual
	for k, pq := range diagPairs {
		for h := range 2 {
			acc[k][h] = YMM()
			VMOVUPS(Mem{Base: accp, Disp: 64*(4*pq[0]+pq[1]) + 32*h}, acc[k][h])
		}
	}
	i := GP64()
	XORQ(i, i)
	TESTQ(n, n)
	JZ(LabelRef("diagstore"))
	repeat("diag", n, func() {
		for h := range 2 {
			var x [4]VecVirtual
			for q := 1; q < 4; q++ {
				x[q] = YMM()
				VMOVUPS(Mem{Base: a[q], Index: i, Scale: 1, Disp: 32 * h}, x[q])
			}
			for k, pq := range diagPairs {
				t := YMM()
				VSUBPS(Mem{Base: a[pq[0]], Index: i, Scale: 1, Disp: 32 * h}, x[pq[1]], t) // t = a_q − a_p
				VMULPS(t, t, t)
				VADDPS(t, acc[k][h], acc[k][h])
			}
		}
	}, cursor{i, 64})
	Label("diagstore")
	for k, pq := range diagPairs {
		for h := range 2 {
			VMOVUPS(acc[k][h], Mem{Base: accp, Disp: 64*(4*pq[0]+pq[1]) + 32*h})
		}
	}
	VZEROUPPER()
	RET()
}

// laneTree: the portable laneTree for the 16 accumulators of a tile, in
// the same order: lanes (l, l+8), (l, l+4), (l, l+2), (0, 1), each sum
// with the lower lane as the first operand (as the portable v[i] += v[i+w],
// which matters only for the payload of a NaN).
func laneTree() {
	kernel("laneTreeAVX2", "func(s *[16]float32, acc *[16][16]float32)",
		"laneTreeAVX2 sets s[k] to the sum of the 16 float32 lanes of acc[k]",
		"by the tree of laneTree: (l, l+8), (l, l+4), (l, l+2), (0, 1).")
	sp := Load(Param("s"), GP64())
	accp := Load(Param("acc"), GP64())
	for k := range 16 {
		v, w := YMM(), XMM()
		VMOVUPS(Mem{Base: accp, Disp: 64 * k}, v)
		VADDPS(Mem{Base: accp, Disp: 64*k + 32}, v, v) // (l, l+8)
		VEXTRACTF128(U8(1), v, w)
		VADDPS(w, v.AsX(), w) // (l, l+4)
		u := XMM()
		VMOVHLPS(w, w, u)
		VADDPS(u, w, w) // (l, l+2)
		VMOVSHDUP(w, u)
		VADDSS(u, w, w) // (0, 1)
		VMOVSS(w, Mem{Base: sp, Disp: 4 * k})
	}
	VZEROUPPER()
	RET()
}

// sort16: gather 16 coordinates of every update into 64-byte rows, then the
// comparators of a sorting network, lane-wise, on the rows in memory.
func sort16() {
	kernel("sort16AVX2", "func(buf *float32, xs *[]float32, n int, off int, net *int32, nnet int)",
		"sort16AVX2 copies xs[r][off:off+16] into row r (64 bytes) of buf for",
		"r < n, then applies the comparators net (nnet int32s: pairs of byte",
		"offsets of rows; the minimum to the first, the maximum to the second,",
		"VMINPS/VMAXPS returning the second row's value on equal values).")
	buf := Load(Param("buf"), GP64())
	xs := Load(Param("xs"), GP64())
	n := Load(Param("n"), GP64())
	off := Load(Param("off"), GP64())
	SHLQ(U8(2), off)
	dst := GP64()
	MOVQ(buf, dst)
	TESTQ(n, n)
	JZ(LabelRef("network"))
	Label("gather")
	src := GP64()
	MOVQ(Mem{Base: xs}, src)
	lo, hi := YMM(), YMM()
	VMOVUPS(Mem{Base: src, Index: off, Scale: 1}, lo)
	VMOVUPS(Mem{Base: src, Index: off, Scale: 1, Disp: 32}, hi)
	VMOVUPS(lo, Mem{Base: dst})
	VMOVUPS(hi, Mem{Base: dst, Disp: 32})
	ADDQ(U8(24), xs) // next slice header
	ADDQ(U8(64), dst)
	DECQ(n)
	JNZ(LabelRef("gather"))

	// The first 19·(n/8) comparators are Batcher's 8-sorter on each full
	// block of 8 rows (see sortNetwork): run them on the block's rows in
	// registers, one half of the lanes at a time, then skip them.
	Label("network")
	blocks := Load(Param("n"), GP64())
	SHRQ(U8(3), blocks)
	skip := GP64()
	MOVQ(blocks, skip)
	IMUL3Q(U32(8*len(sorter8())), skip, skip) // bytes of net
	blk := GP64()
	MOVQ(buf, blk)
	TESTQ(blocks, blocks)
	JZ(LabelRef("rest"))
	Label("block")
	for h := range 2 {
		var r [8]VecVirtual
		for w := range 8 {
			r[w] = YMM()
			VMOVUPS(Mem{Base: blk, Disp: 64*w + 32*h}, r[w])
		}
		for _, c := range sorter8() {
			x, y := r[c[0]], r[c[1]]
			mn, mx := YMM(), YMM()
			VMINPS(y, x, mn)
			VMAXPS(y, x, mx)
			r[c[0]], r[c[1]] = mn, mx
		}
		for w := range 8 {
			VMOVUPS(r[w], Mem{Base: blk, Disp: 64*w + 32*h})
		}
	}
	ADDQ(U32(8*64), blk)
	DECQ(blocks)
	JNZ(LabelRef("block"))
	Label("rest")
	net := Load(Param("net"), GP64())
	end := Load(Param("nnet"), GP64())
	LEAQ(Mem{Base: net, Index: end, Scale: 4}, end)
	ADDQ(skip, net)
	CMPQ(net, end)
	JGE(LabelRef("done"))
	repeat("cmp", end, func() {
		r0, r1 := GP64(), GP64()
		MOVLQSX(Mem{Base: net}, r0)
		MOVLQSX(Mem{Base: net, Disp: 4}, r1)
		for h := range 2 {
			x, y, mn, mx := YMM(), YMM(), YMM(), YMM()
			VMOVUPS(Mem{Base: buf, Index: r0, Scale: 1, Disp: 32 * h}, x)
			VMOVUPS(Mem{Base: buf, Index: r1, Scale: 1, Disp: 32 * h}, y)
			VMINPS(y, x, mn)
			VMAXPS(y, x, mx)
			VMOVUPS(mn, Mem{Base: buf, Index: r0, Scale: 1, Disp: 32 * h})
			VMOVUPS(mx, Mem{Base: buf, Index: r1, Scale: 1, Disp: 32 * h})
		}
	}, cursor{net, 8})
	Label("done")
	VZEROUPPER()
	RET()
}

// sorter8 returns Batcher's odd–even merge sorting network for 8 wires in
// the order of aggregation's sortNetwork.
func sorter8() [][2]int {
	const n = 8
	var net [][2]int
	for p := 1; p < n; p <<= 1 {
		for k := p; k >= 1; k >>= 1 {
			for j := k % p; j+k < n; j += 2 * k {
				for i := 0; i < k && i+j+k < n; i++ {
					if (i+j)/(2*p) == (i+j+k)/(2*p) {
						net = append(net, [2]int{i + j, i + j + k})
					}
				}
			}
		}
	}
	return net
}

// meanRows: the float64 mean of rows lo..hi-1 in four 4-lane accumulators.
func meanRows() {
	kernel("meanRowsAVX2", "func(dst *[16]float32, buf *float32, lo, hi int, cnt float64)",
		"meanRowsAVX2 writes float32(s_l / cnt) into dst[l], s_l the float64 sum",
		"of lane l of the 64-byte rows lo..hi-1 of buf added in row order; lo < hi.")
	dst := Load(Param("dst"), GP64())
	buf := Load(Param("buf"), GP64())
	lo := Load(Param("lo"), GP64())
	hi := Load(Param("hi"), GP64())
	cnt := YMM()
	VBROADCASTSD(Load(Param("cnt"), XMM()), cnt)
	SHLQ(U8(6), lo)
	SHLQ(U8(6), hi)
	var s [4]VecVirtual
	for k := range s {
		s[k] = YMM()
		VXORPD(s[k], s[k], s[k])
	}
	repeat("row", hi, func() {
		for k := range s {
			v := YMM()
			VCVTPS2PD(Mem{Base: buf, Index: lo, Scale: 1, Disp: 16 * k}, v)
			VADDPD(v, s[k], s[k])
		}
	}, cursor{lo, 64})
	for k := range s {
		VDIVPD(cnt, s[k], s[k])
		x := XMM()
		VCVTPD2PSY(s[k], x)
		VMOVUPS(x, Mem{Base: dst, Disp: 16 * k})
	}
	VZEROUPPER()
	RET()
}

// elementwise emits a loop over n (a multiple of 8) elements: body gets the
// byte offsets of the float32 and float64 element 0 of the group and the
// group's half (4 elements) k in {0, 1}.
func elementwise(name string, n Register, i32, i64 GPVirtual, body func(k int)) {
	XORQ(i32, i32)
	XORQ(i64, i64)
	SHLQ(U8(2), n)
	whileBelow(name, n, func() {
		body(0)
		body(1)
	}, cursor{i32, 32}, cursor{i64, 64})
	VZEROUPPER()
	RET()
}

func add64() {
	kernel("add64AVX2", "func(acc *float64, x *float32, n int)",
		"add64AVX2 sets acc[i] += float64(x[i]) for i < n; n is a multiple of 8.")
	acc := Load(Param("acc"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	i32, i64 := GP64(), GP64()
	elementwise("add64", n, i32, i64, func(k int) {
		v := YMM()
		VCVTPS2PD(Mem{Base: x, Index: i32, Scale: 1, Disp: 16 * k}, v)
		VADDPD(Mem{Base: acc, Index: i64, Scale: 1, Disp: 32 * k}, v, v)
		VMOVUPD(v, Mem{Base: acc, Index: i64, Scale: 1, Disp: 32 * k})
	})
}

func div32() {
	kernel("div32AVX2", "func(dst *float32, acc *float64, n int, c float64)",
		"div32AVX2 sets dst[i] = float32(acc[i] / c) for i < n; n is a multiple of 8.")
	dst := Load(Param("dst"), GP64())
	acc := Load(Param("acc"), GP64())
	n := Load(Param("n"), GP64())
	c := YMM()
	VBROADCASTSD(Load(Param("c"), XMM()), c)
	i32, i64 := GP64(), GP64()
	elementwise("div32", n, i32, i64, func(k int) {
		v := YMM()
		VMOVUPD(Mem{Base: acc, Index: i64, Scale: 1, Disp: 32 * k}, v)
		VDIVPD(c, v, v)
		x := XMM()
		VCVTPD2PSY(v, x)
		VMOVUPS(x, Mem{Base: dst, Index: i32, Scale: 1, Disp: 16 * k})
	})
}

func axpy64() {
	kernel("axpy64AVX2", "func(acc *float64, x *float32, n int, w float64)",
		"axpy64AVX2 sets acc[i] += float64(w·float64(x[i])) for i < n, the",
		"product rounded before the addition (no FMA); n is a multiple of 8.")
	acc := Load(Param("acc"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	w := YMM()
	VBROADCASTSD(Load(Param("w"), XMM()), w)
	i32, i64 := GP64(), GP64()
	elementwise("axpy64", n, i32, i64, func(k int) {
		v := YMM()
		VCVTPS2PD(Mem{Base: x, Index: i32, Scale: 1, Disp: 16 * k}, v)
		VMULPD(w, v, v)
		VADDPD(Mem{Base: acc, Index: i64, Scale: 1, Disp: 32 * k}, v, v)
		VMOVUPD(v, Mem{Base: acc, Index: i64, Scale: 1, Disp: 32 * k})
	})
}

func sqdist4x4() {
	kernel("sqdist4x4AVX2", "func(s *[4][4]float64, rows *[4]*float32, y *float32, n int)",
		"sqdist4x4AVX2 adds float64(t·t), t = float64(rows[r][k]) − float64(y[k]),",
		"to s[r][k mod 4] for k < n, k increasing, for the four rows (four",
		"independent 4-lane float64 chains); n is a multiple of 4.")
	s := Load(Param("s"), GP64())
	rows := Load(Param("rows"), GP64())
	y := Load(Param("y"), GP64())
	n := Load(Param("n"), GP64())
	var x [4]GPVirtual
	var acc [4]VecVirtual
	for r := range 4 {
		x[r] = GP64()
		MOVQ(Mem{Base: rows, Disp: 8 * r}, x[r])
		acc[r] = YMM()
		VMOVUPD(Mem{Base: s, Disp: 32 * r}, acc[r])
	}
	i := GP64()
	XORQ(i, i)
	SHLQ(U8(2), n)
	whileBelow("sq", n, func() {
		yv := YMM()
		VCVTPS2PD(Mem{Base: y, Index: i, Scale: 1}, yv)
		for r := range 4 {
			t := YMM()
			VCVTPS2PD(Mem{Base: x[r], Index: i, Scale: 1}, t)
			VSUBPD(yv, t, t)
			VMULPD(t, t, t)
			VADDPD(t, acc[r], acc[r])
		}
	}, cursor{i, 16})
	for r := range 4 {
		VMOVUPD(acc[r], Mem{Base: s, Disp: 32 * r})
	}
	VZEROUPPER()
	RET()
}

func add32() {
	kernel("add32AVX2", "func(acc *float32, x *float32, n int)",
		"add32AVX2 sets acc[i] += x[i] in float32 for i < n; n is a multiple of 32.",
		"It is the summing pass benchmarks divide by, not a rule's kernel.")
	acc := Load(Param("acc"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	i := GP64()
	XORQ(i, i)
	SHLQ(U8(2), n)
	whileBelow("add32", n, func() {
		for k := range 4 {
			v := YMM()
			VMOVUPS(Mem{Base: acc, Index: i, Scale: 1, Disp: 32 * k}, v)
			VADDPS(Mem{Base: x, Index: i, Scale: 1, Disp: 32 * k}, v, v)
			VMOVUPS(v, Mem{Base: acc, Index: i, Scale: 1, Disp: 32 * k})
		}
	}, cursor{i, 128})
	VZEROUPPER()
	RET()
}

// gramTile: the 12 dot products of a 3×4 tile of rows over one block, for
// the Gram-matrix distances. Each product is summed in 8 float32 lanes
// (lane l takes the coordinates ≡ l mod 8) by VFMADD231PS, one rounding
// per term, the same as the portable fma32. The 12 accumulators, the 3 a
// values and one b value fill the 16 YMM registers; 7 loads per 12 FMAs.
// The lanes then go to float64 (exact) and are added by the tree
// (l, l+4), (l, l+2), (0, 1), and the result is added to out.
func gramTile() {
	kernel("gramTileAVX2", "func(out *[12]float64, rows *[7]*float32, n int)",
		"gramTileAVX2 adds to out[4p+q] the float64 lane tree of the 8",
		"float32 FMA lanes of Σ a_p[i]·b_q[i] for i < n; rows holds a0..a2,",
		"b0..b3; n is a positive multiple of 8.")
	outp := Load(Param("out"), GP64())
	rows := Load(Param("rows"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), n)
	var a [3]GPVirtual
	for p := range 3 {
		a[p] = GP64()
		MOVQ(Mem{Base: rows, Disp: 8 * p}, a[p])
	}
	var b [4]GPVirtual
	for q := range 4 {
		b[q] = GP64()
		MOVQ(Mem{Base: rows, Disp: 8 * (3 + q)}, b[q])
	}
	var acc [3][4]VecVirtual
	for p := range 3 {
		for q := range 4 {
			acc[p][q] = YMM()
			VXORPS(acc[p][q], acc[p][q], acc[p][q])
		}
	}
	i := GP64()
	XORQ(i, i)
	repeat("gram", n, func() {
		var x [3]VecVirtual
		for p := range 3 {
			x[p] = YMM()
			VMOVUPS(Mem{Base: a[p], Index: i, Scale: 1}, x[p])
		}
		for q := range 4 {
			y := YMM()
			VMOVUPS(Mem{Base: b[q], Index: i, Scale: 1}, y)
			for p := range 3 {
				VFMADD231PS(y, x[p], acc[p][q])
			}
		}
	}, cursor{i, 32})
	for p := range 3 {
		for q := range 4 {
			laneTree1(acc[p][q], Mem{Base: outp, Disp: 8 * (4*p + q)}, vextractf128)
		}
	}
	VZEROUPPER()
	RET()
}

// sub32: dst = x − c, the centring of the Gram-matrix distances.
func sub32() {
	kernel("sub32AVX2", "func(dst *float32, x *float32, c *float32, n int)",
		"sub32AVX2 sets dst[i] = x[i] − c[i] in float32 for i < n; n is a multiple of 8.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	c := Load(Param("c"), GP64())
	n := Load(Param("n"), GP64())
	i := GP64()
	XORQ(i, i)
	SHLQ(U8(2), n)
	whileBelow("sub32", n, func() {
		v := YMM()
		VMOVUPS(Mem{Base: x, Index: i, Scale: 1}, v)
		VSUBPS(Mem{Base: c, Index: i, Scale: 1}, v, v)
		VMOVUPS(v, Mem{Base: dst, Index: i, Scale: 1})
	}, cursor{i, 32})
	VZEROUPPER()
	RET()
}

// closestToMedian: Bulyan's window of β values closest to the median, for
// the 16 sorted lanes of a block, four float64 lanes at a time. It is
// closestToMedianLaneFinite with every data-dependent index replaced by a
// mask over a fixed range of ranks, so that the lanes need no gathers:
//
//   - b0, the first rank with value ≥ m, is the number of ranks below t/2
//     whose value is < m (the values are sorted and ranks ≥ t/2 are ≥ m);
//   - k counts the ranks r in [b0 − β, b0) (r = b0 − i) for which r + β ≥ t
//     (fewer than β − i + 1 values at or above m) or m − c[r] ≤
//     c[min(r + β, t − 1)] − m;
//   - the window [b0 − k, b0 − k + β) is summed over all ranks below
//     min(t, t/2 + β) in ascending order, the ranks outside it adding +0,
//     which changes no sum (the sum starts at +0 and is never −0).
//
// Each float64 operation is the portable one on the same values, so the
// bits are the same.
func closestToMedian() {
	kernel("closestToMedian16AVX2", "func(dst *float32, buf *float32, t, beta int)",
		"closestToMedian16AVX2 sets dst[l], l < 16, to closestToMedianLaneFinite(buf,",
		"l, t, beta) for the t sorted, finite 64-byte rows of buf; 1 ≤ beta ≤ t.")
	dst := Load(Param("dst"), GP64())
	buf := Load(Param("buf"), GP64())
	t := Load(Param("t"), GP64())
	beta := Load(Param("beta"), GP64())

	// Constants: int64 1, β (int64 and float64), 2.0.
	one, betaI, betaF, two := YMM(), YMM(), YMM(), YMM()
	g := GP64()
	MOVQ(U64(1), g)
	VMOVQ(g, one.AsX())
	VPBROADCASTQ(one.AsX(), one)
	VMOVQ(beta, betaI.AsX())
	VPBROADCASTQ(betaI.AsX(), betaI)
	VCVTSI2SDQ(beta, betaF.AsX(), betaF.AsX())
	VBROADCASTSD(betaF.AsX(), betaF)
	MOVQ(U64(0x4000000000000000), g) // 2.0
	VMOVQ(g, two.AsX())
	VBROADCASTSD(two.AsX(), two)

	// Rank bounds, in bytes of buf (64 per rank): half = t/2; the ranks
	// [0, kEnd) compare, kEnd = clamp(t − β, 0, half); the ranks
	// [kEnd, half) have r + β ≥ t; the sum runs over [0, sumEnd),
	// sumEnd = min(t, half + β).
	half := GP64()
	MOVQ(t, half)
	SHRQ(U8(1), half)
	kEnd := GP64()
	MOVQ(t, kEnd)
	SUBQ(beta, kEnd)
	CMPQ(kEnd, half)
	CMOVQGT(half, kEnd)
	XORQ(g, g)
	TESTQ(kEnd, kEnd)
	CMOVQLT(g, kEnd)
	sumEnd := GP64()
	MOVQ(half, sumEnd)
	ADDQ(beta, sumEnd)
	CMPQ(sumEnd, t)
	CMOVQGT(t, sumEnd)
	odd := GP64()
	MOVQ(t, odd)
	ANDQ(U8(1), odd)
	halfV := YMM() // t/2 in int64 lanes
	VMOVQ(half, halfV.AsX())
	VPBROADCASTQ(halfV.AsX(), halfV)
	SHLQ(U8(6), half)
	SHLQ(U8(6), kEnd)
	SHLQ(U8(6), sumEnd)
	betaB := GP64()
	MOVQ(beta, betaB)
	SHLQ(U8(6), betaB)

	grp := GP64()
	XORQ(grp, grp)
	Label("ctmgroup")
	col := GP64() // lanes 4·group.. of rank 0
	LEAQ(Mem{Base: buf, Index: grp, Scale: 1}, col)

	// m: the median of the lanes.
	m := YMM()
	VCVTPS2PD(Mem{Base: col, Index: half, Scale: 1}, m)
	TESTQ(odd, odd)
	JNZ(LabelRef("ctmodd"))
	below := YMM()
	VCVTPS2PD(Mem{Base: col, Index: half, Scale: 1, Disp: -64}, below)
	VADDPD(m, below, m) // float64(c[t/2−1]) + float64(c[t/2])
	VDIVPD(two, m, m)
	Label("ctmodd")

	// b0 = #{r < t/2 : c[r] < m}, counted by subtracting the all-ones (−1)
	// masks.
	b0 := YMM()
	VPXOR(b0, b0, b0)
	rb := GP64()
	XORQ(rb, rb)
	CMPQ(rb, half)
	JGE(LabelRef("ctmb0done"))
	// Without ties at the median every rank below t/2 is < m: when rank
	// t/2 − 1 is in all four lanes, b0 = t/2 without the count (the
	// values are sorted).
	{
		v, lt := YMM(), YMM()
		VCVTPS2PD(Mem{Base: col, Index: half, Scale: 1, Disp: -64}, v)
		VCMPPD(U8(0x11), m, v, lt) // v < m (LT_OQ)
		msk := GP32()
		VMOVMSKPD(lt, msk)
		CMPL(msk, U8(15))
		JNE(LabelRef("ctmb0"))
		VMOVDQU(halfV, b0)
		JMP(LabelRef("ctmb0done"))
	}
	repeat("ctmb0", half, func() {
		v, lt := YMM(), YMM()
		VCVTPS2PD(Mem{Base: col, Index: rb, Scale: 1}, v)
		VCMPPD(U8(0x11), m, v, lt) // v < m (LT_OQ)
		VPSUBQ(lt, b0, b0)
	}, cursor{rb, 64})
	Label("ctmb0done")

	// Only the ranks around b0 matter: k looks at [b0 − β, b0) and the
	// window lies in [b0 − k, b0 − k + β). Both loops run over the union
	// of those ranges for the four lanes (the lanes' masks keep each to
	// its own), so at t = 28, β = 6 they take 6 ranks each, not 14 and 20.
	b0min, b0max := hMinMax(b0)
	lo, hi, e := GP64(), GP64(), GP64()
	MOVQ(b0min, lo)
	SHLQ(U8(6), lo)
	SUBQ(betaB, lo)
	XORQ(e, e)
	CMPQ(lo, e)
	CMOVQLT(e, lo) // max(0, b0min − β)
	MOVQ(b0max, hi)
	SHLQ(U8(6), hi)
	MOVQ(hi, e)
	CMPQ(e, kEnd)
	CMOVQGT(kEnd, e) // min(b0max, kEnd)

	// k: the ranks r in [lo, e) count when in [b0 − β, b0) and
	// m − c[r] ≤ c[r + β] − m; those in [max(lo, kEnd), hi) when in range
	// (r + β ≥ t). rv holds r in int64 lanes.
	kc, rv := YMM(), YMM()
	VPXOR(kc, kc, kc)
	colB := GP64()
	LEAQ(Mem{Base: col, Index: betaB, Scale: 1}, colB)
	r := GP64()
	MOVQ(lo, r)
	broadcastRank(r, rv)
	whileBelow("ctmk1", e, func() {
		in, up, dl, dr := YMM(), YMM(), YMM(), YMM()
		VPCMPGTQ(rv, b0, in) // b0 > r
		VPADDQ(betaI, rv, up)
		VPCMPGTQ(up, b0, up) // b0 > r + β
		VPANDN(in, up, in)   // r < b0 ≤ r + β
		VCVTPS2PD(Mem{Base: col, Index: r, Scale: 1}, dl)
		VSUBPD(dl, m, dl) // m − c[r]
		VCVTPS2PD(Mem{Base: colB, Index: r, Scale: 1}, dr)
		VSUBPD(m, dr, dr)            // c[r + β] − m
		VCMPPD(U8(0x12), dr, dl, dl) // dl ≤ dr (LE_OQ)
		VPAND(dl, in, in)
		VPSUBQ(in, kc, kc)
		VPADDQ(one, rv, rv)
	}, cursor{r, 64})
	CMPQ(r, kEnd)
	CMOVQLT(kEnd, r) // max(r, kEnd)
	CMPQ(r, hi)
	JGE(LabelRef("ctmk2done"))
	broadcastRank(r, rv)
	repeat("ctmk2", hi, func() {
		in, up := YMM(), YMM()
		VPCMPGTQ(rv, b0, in) // b0 > r
		VPADDQ(betaI, rv, up)
		VPCMPGTQ(up, b0, up) // b0 > r + β
		VPANDN(in, up, in)   // r < b0 ≤ r + β
		VPSUBQ(in, kc, kc)
		VPADDQ(one, rv, rv)
	}, cursor{r, 64})
	Label("ctmk2done")

	// The window starts at a = b0 − k; sum its ranks in ascending order,
	// over [amin, min(amax + β, sumEnd)).
	a := YMM()
	VPSUBQ(kc, b0, a)
	amin, amax := hMinMax(a)
	MOVQ(amin, r)
	SHLQ(U8(6), r)
	MOVQ(amax, e)
	SHLQ(U8(6), e)
	ADDQ(betaB, e)
	CMPQ(e, sumEnd)
	CMOVQGT(sumEnd, e)
	broadcastRank(r, rv)
	sum := YMM()
	VXORPD(sum, sum, sum)
	whileBelow("ctmsum", e, func() {
		in, below, v := YMM(), YMM(), YMM()
		VPCMPGTQ(rv, a, in) // a > r
		VPSUBQ(betaI, rv, below)
		VPCMPGTQ(below, a, below) // a > r − β
		VPANDN(below, in, in)     // a ≤ r < a + β
		VCVTPS2PD(Mem{Base: col, Index: r, Scale: 1}, v)
		VANDPD(in, v, v)
		VADDPD(v, sum, sum)
		VPADDQ(one, rv, rv)
	}, cursor{r, 64})

	VDIVPD(betaF, sum, sum)
	out := XMM()
	VCVTPD2PSY(sum, out)
	VMOVUPS(out, Mem{Base: dst, Index: grp, Scale: 1})
	ADDQ(U8(16), grp)
	CMPQ(grp, U8(64))
	JL(LabelRef("ctmgroup"))
	VZEROUPPER()
	RET()
}

// hMinMax returns the least and the greatest of the four int64 lanes of x.
func hMinMax(x VecVirtual) (GPVirtual, GPVirtual) {
	s, gt, lo, hi := YMM(), YMM(), YMM(), YMM()
	VPERMQ(U8(0x4e), x, s)  // the 128-bit halves swapped
	VPCMPGTQ(s, x, gt)      // x > s
	VBLENDVPD(gt, s, x, lo) // min
	VBLENDVPD(gt, x, s, hi) // max
	VPSHUFD(U8(0x4e), lo, s)
	VPCMPGTQ(s, lo, gt)
	VBLENDVPD(gt, s, lo, lo)
	VPSHUFD(U8(0x4e), hi, s)
	VPCMPGTQ(s, hi, gt)
	VBLENDVPD(gt, hi, s, hi)
	mn, mx := GP64(), GP64()
	VMOVQ(lo.AsX(), mn)
	VMOVQ(hi.AsX(), mx)
	return mn, mx
}

// broadcastRank sets the four int64 lanes of v to the rank of the byte
// offset r (r/64).
func broadcastRank(r GPVirtual, v VecVirtual) {
	k := GP64()
	MOVQ(r, k)
	SHRQ(U8(6), k)
	VMOVQ(k, v.AsX())
	VPBROADCASTQ(v.AsX(), v)
}
