package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// avx512 declares the kernels of kernel_avx512gen_amd64.s: those of the
// AVX-512 path that are generated (the others, in kernel_amd64.s, are
// hand-written). They need AVX512F and AVX512VL, which the AVX-512 path
// requires with AVX512DQ.
func avx512() {
	gramTiles5x5()
	prefetchL2()
}

// gram5 is the side of gramTiles5x5AVX512's square tiles, and gramRow the
// distance in bytes between two rows of its block (gramBlock float32 in
// aggregation, which checks that the two agree).
const (
	gram5   = 5
	gramRow = 2048
)

// gramTiles5x5: the 25 dot products of each of a list of 5×5 tiles of the
// rows of one block, with exactly the arithmetic of gramTileAVX2 (and
// gramTileRect): each product summed in 8 float32 lanes by VFMADD231PS,
// lane l taking the coordinates ≡ l mod 8 in increasing order, then the
// lanes in float64 by the tree (l, l+4), (l, l+2), (0, 1), added to out.
//
// What AVX-512 adds is registers: with the EVEX encoding (AVX512VL)
// Y16-Y31 hold 8-lane float32 vectors too, so the 25 accumulators, the 5
// a values and one b value fit in 31 of the 32 (10 loads per 25 fused
// multiply-adds, against 7 per 12 for the 3×4 tile of 16 registers).
// Every instruction has an EVEX form (VEXTRACTF32X4, not VEXTRACTF128),
// since any register may be one of Y16-Y31. The loop over the tiles is
// here too: per tile, a call from Go and its slice headers cost about as
// much as the lane trees (the tile itself runs at the two FMA pipes'
// rate, from L1 or L2 alike). A tile's rows are gramRow bytes apart, so
// a tile is two row numbers.
func gramTiles5x5() {
	kernel("gramTiles5x5AVX512", "func(out *float64, y *float32, tiles *[2]int32, ntiles int, n int)",
		"gramTiles5x5AVX512 adds, for t < ntiles, to out[25t+5p+q] the float64",
		"lane tree of the 8 float32 FMA lanes of Σ a_p[i]·b_q[i] for i < n (as",
		"gramTileAVX2), where a_p is row tiles[t][0]+p and b_q row tiles[t][1]+q",
		"of y, rows 2048 bytes apart; n is a positive multiple of 8, at most 512.",
		"When tiles[t][0] = tiles[t][1] it does so for p ≤ q only (and adds +0",
		"to the other entries).")
	outp := Load(Param("out"), GP64())
	y := Load(Param("y"), GP64())
	tiles := Load(Param("tiles"), GP64())
	nt := Load(Param("ntiles"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), n)
	TESTQ(nt, nt)
	JZ(LabelRef("tilesdone"))
	Label("tile")
	pa, pb := GP64(), GP64()
	MOVLQSX(Mem{Base: tiles}, pa)
	MOVLQSX(Mem{Base: tiles, Disp: 4}, pb)
	SHLQ(U8(11), pa) // × gramRow
	SHLQ(U8(11), pb)
	ADDQ(y, pa)
	ADDQ(y, pb)
	var acc [gram5][gram5]VecVirtual
	for p := range gram5 {
		for q := range gram5 {
			acc[p][q] = YMM()
			VPXORD(acc[p][q], acc[p][q], acc[p][q])
		}
	}
	i := GP64()
	XORQ(i, i)
	// A tile of five rows with themselves (the first of each row of
	// tiles) needs only its 15 products p ≤ q: gramDistances reads no
	// other. Its loop loads the five rows once; the other ten
	// accumulators stay 0 and their sums go to entries nobody reads.
	CMPQ(pa, pb)
	JE(LabelRef("gram5diag"))
	repeat("gram5", n, func() {
		var x [gram5]VecVirtual
		for p := range gram5 {
			x[p] = YMM()
			VMOVUPS(Mem{Base: pa, Index: i, Scale: 1, Disp: gramRow * p}, x[p])
		}
		for q := range gram5 {
			v := YMM()
			VMOVUPS(Mem{Base: pb, Index: i, Scale: 1, Disp: gramRow * q}, v)
			for p := range gram5 {
				VFMADD231PS(v, x[p], acc[p][q])
			}
		}
	}, cursor{i, 32})
	JMP(LabelRef("gram5trees"))
	repeat("gram5diag", n, func() {
		var xd [gram5]VecVirtual
		for q := range gram5 {
			xd[q] = YMM()
			VMOVUPS(Mem{Base: pa, Index: i, Scale: 1, Disp: gramRow * q}, xd[q])
			for p := range q + 1 {
				VFMADD231PS(xd[q], xd[p], acc[p][q]) // as the b value b_q times a_p
			}
		}
	}, cursor{i, 32})
	Label("gram5trees")
	// The lane trees, four accumulators at a time where they can share
	// the horizontal steps, each step adding the lower lane to the upper
	// (as laneTree64's v[i] += v[i+w]).
	var flat []VecVirtual
	for p := range gram5 {
		flat = append(flat, acc[p][:]...)
	}
	k := 0
	for ; k+4 <= len(flat); k += 4 {
		laneTree4(flat[k:k+4], Mem{Base: outp, Disp: 8 * k})
	}
	for ; k < len(flat); k++ {
		laneTree1(flat[k], Mem{Base: outp, Disp: 8 * k}, vextractf32x4)
	}
	ADDQ(U8(8*gram5*gram5), outp)
	ADDQ(U8(8), tiles)
	DECQ(nt)
	JNZ(LabelRef("tile"))
	Label("tilesdone")
	VZEROUPPER()
	RET()
}

// An extract is the instruction that copies a 128-bit half of a YMM
// register: VEXTRACTF128 (VEX, Y0-Y15 only) for the AVX2 kernels,
// VEXTRACTF32X4 (EVEX, any of Y0-Y31) for the AVX-512 ones.
type extract func(i, y, x Op)

var (
	vextractf128  extract = func(i, y, x Op) { VEXTRACTF128(i, y, x) }
	vextractf32x4 extract = func(i, y, x Op) { VEXTRACTF32X4(i, y, x) }
)

// halves4 returns the float64 (l, l+4) sums of the 8 float32 lanes of a.
func halves4(a VecVirtual, ext extract) VecVirtual {
	lo, hi := YMM(), YMM()
	VCVTPS2PD(a.AsX(), lo)
	ext(U8(1), a, hi.AsX())
	VCVTPS2PD(hi.AsX(), hi)
	VADDPD(hi, lo, lo) // (l, l+4)
	return lo
}

// laneTree4 adds the lane trees of the accumulators a[0..3] to the four
// float64 at out: (l, l+4) in each, (l, l+2) of two accumulators in one
// register, (0, 1) of all four in one.
func laneTree4(a []VecVirtual, out Mem) {
	var u [2]VecVirtual
	for h := range 2 {
		s0, s1 := halves4(a[2*h], vextractf32x4), halves4(a[2*h+1], vextractf32x4)
		x, y := YMM(), YMM()
		VSHUFF64X2(U8(0), s1, s0, x) // s0 lanes 0, 1; s1 lanes 0, 1
		VSHUFF64X2(U8(3), s1, s0, y) // lanes 2, 3 of both
		VADDPD(y, x, x)              // (l, l+2)
		u[h] = x
	}
	lo, hi := YMM(), YMM()
	VUNPCKLPD(u[1], u[0], lo) // lane 0 of a0, a2, a1, a3
	VUNPCKHPD(u[1], u[0], hi) // lane 1
	VADDPD(hi, lo, lo)        // (0, 1)
	VPERMPD(U8(0xd8), lo, lo) // a0, a1, a2, a3
	VADDPD(out, lo, lo)
	VMOVUPD(lo, out)
}

// laneTree1 adds the lane tree of the accumulator a to the float64 at out:
// (l, l+4), (l, l+2), (0, 1), as gramTileAVX2 does for each of its
// accumulators.
func laneTree1(a VecVirtual, out Mem, ext extract) {
	lo := halves4(a, ext)
	hi := XMM()
	ext(U8(1), lo, hi)
	VADDPD(hi, lo.AsX(), lo.AsX()) // (l, l+2)
	VPERMILPD(U8(1), lo.AsX(), hi)
	VADDSD(hi, lo.AsX(), lo.AsX()) // (0, 1)
	VADDSD(out, lo.AsX(), lo.AsX())
	VMOVSD(lo.AsX(), out)
}

// prefetchL2: PREFETCHT1 over a range, so that the next block of the
// Gram distances' rows is on its way to L2 while the tiles of the current
// one compute (their loads come from L1 and L2, and the FMA pipes, not
// memory, bound them). Without it the centring of each block waits on
// memory: a block is n rows of 2 KB, too short for the hardware
// prefetcher to ramp up on each.
func prefetchL2() {
	kernel("prefetchL2", "func(p *float32, n int)",
		"prefetchL2 issues PREFETCHT1 for each 64-byte line that holds some",
		"of p[0:n], n ≥ 0. It reads nothing and changes nothing.")
	p := Load(Param("p"), GP64())
	n := Load(Param("n"), GP64())
	end := GP64()
	LEAQ(Mem{Base: p, Index: n, Scale: 4}, end)
	ANDQ(I32(-64), p) // the first line
	whileBelow("prefetch", end, func() {
		PREFETCHT1(Mem{Base: p})
	}, cursor{p, 64})
	RET()
}
