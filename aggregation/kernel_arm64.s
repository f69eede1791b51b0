//go:build arm64 && !purego

#include "textflag.h"

// The NEON kernels of the arm64 path (see kernel_arm64.go), written by hand:
// avo, which generates the AVX2 kernels from Go (internal/asm), emits amd64
// only. Go's arm64 assembler has no mnemonics for most NEON floating-point
// instructions (vector FADD, FSUB, FMUL, FDIV, FCMGT, FCVTL, FCVTN), so
// those are WORD directives, each commented with its instruction;
// internal/asm/neonwords checks every word against LLVM's encoding of the
// comment (`make asm-check`, when llvm-mc is installed), and the bit-for-bit
// tests run under qemu-user (`make test-arm64`).
//
// Every kernel performs, lane by lane, the very float32/float64 operations
// of its portable loop in kernel.go or gram.go, in the same order and with
// the same operand order, without fused multiply-add except where the
// portable loop emulates one (gramTile), so the bits are the portable
// path's. Go runs with FPCR at its default (round to nearest, no flush to
// zero, no default NaN) for scalar and vector code alike.

// func pairTileNEON(acc *[16][16]float32, rows *[8]*float32, n int)
//
// For p = 0..3 in turn: the 16 lanes (4 vectors) of the 4 pairs (p, q)
// are loaded from acc, (a_p[i] − b_q[i])² (float32 subtract, multiply,
// add) added for i < n in steps of 16, and stored back. n > 0 is a
// multiple of 16.
TEXT ·pairTileNEON(SB), NOSPLIT, $0-24
	MOVD	acc+0(FP), R0
	MOVD	rows+8(FP), R1
	MOVD	n+16(FP), R2
	MOVD	32(R1), R4
	MOVD	40(R1), R5
	MOVD	48(R1), R6
	MOVD	56(R1), R7
	MOVD	$0, R3

pairP:
	MOVD	(R1)(R3<<3), R8
	ADD	R3<<8, R0, R9
	MOVD	R9, R10
	VLD1.P	64(R10), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P	64(R10), [V20.S4, V21.S4, V22.S4, V23.S4]
	VLD1.P	64(R10), [V24.S4, V25.S4, V26.S4, V27.S4]
	VLD1.P	64(R10), [V28.S4, V29.S4, V30.S4, V31.S4]
	MOVD	R8, R11
	MOVD	R4, R12
	MOVD	R5, R13
	MOVD	R6, R14
	MOVD	R7, R15
	MOVD	R2, R16

pairI:
	VLD1.P	64(R11), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P	64(R12), [V4.S4, V5.S4, V6.S4, V7.S4]
	WORD $0x4ea4d404 // fsub v4.4s, v0.4s, v4.4s
	WORD $0x4ea5d425 // fsub v5.4s, v1.4s, v5.4s
	WORD $0x4ea6d446 // fsub v6.4s, v2.4s, v6.4s
	WORD $0x4ea7d467 // fsub v7.4s, v3.4s, v7.4s
	WORD $0x6e24dc84 // fmul v4.4s, v4.4s, v4.4s
	WORD $0x6e25dca5 // fmul v5.4s, v5.4s, v5.4s
	WORD $0x6e26dcc6 // fmul v6.4s, v6.4s, v6.4s
	WORD $0x6e27dce7 // fmul v7.4s, v7.4s, v7.4s
	WORD $0x4e24d610 // fadd v16.4s, v16.4s, v4.4s
	WORD $0x4e25d631 // fadd v17.4s, v17.4s, v5.4s
	WORD $0x4e26d652 // fadd v18.4s, v18.4s, v6.4s
	WORD $0x4e27d673 // fadd v19.4s, v19.4s, v7.4s
	VLD1.P	64(R13), [V8.S4, V9.S4, V10.S4, V11.S4]
	WORD $0x4ea8d408 // fsub v8.4s, v0.4s, v8.4s
	WORD $0x4ea9d429 // fsub v9.4s, v1.4s, v9.4s
	WORD $0x4eaad44a // fsub v10.4s, v2.4s, v10.4s
	WORD $0x4eabd46b // fsub v11.4s, v3.4s, v11.4s
	WORD $0x6e28dd08 // fmul v8.4s, v8.4s, v8.4s
	WORD $0x6e29dd29 // fmul v9.4s, v9.4s, v9.4s
	WORD $0x6e2add4a // fmul v10.4s, v10.4s, v10.4s
	WORD $0x6e2bdd6b // fmul v11.4s, v11.4s, v11.4s
	WORD $0x4e28d694 // fadd v20.4s, v20.4s, v8.4s
	WORD $0x4e29d6b5 // fadd v21.4s, v21.4s, v9.4s
	WORD $0x4e2ad6d6 // fadd v22.4s, v22.4s, v10.4s
	WORD $0x4e2bd6f7 // fadd v23.4s, v23.4s, v11.4s
	VLD1.P	64(R14), [V4.S4, V5.S4, V6.S4, V7.S4]
	WORD $0x4ea4d404 // fsub v4.4s, v0.4s, v4.4s
	WORD $0x4ea5d425 // fsub v5.4s, v1.4s, v5.4s
	WORD $0x4ea6d446 // fsub v6.4s, v2.4s, v6.4s
	WORD $0x4ea7d467 // fsub v7.4s, v3.4s, v7.4s
	WORD $0x6e24dc84 // fmul v4.4s, v4.4s, v4.4s
	WORD $0x6e25dca5 // fmul v5.4s, v5.4s, v5.4s
	WORD $0x6e26dcc6 // fmul v6.4s, v6.4s, v6.4s
	WORD $0x6e27dce7 // fmul v7.4s, v7.4s, v7.4s
	WORD $0x4e24d718 // fadd v24.4s, v24.4s, v4.4s
	WORD $0x4e25d739 // fadd v25.4s, v25.4s, v5.4s
	WORD $0x4e26d75a // fadd v26.4s, v26.4s, v6.4s
	WORD $0x4e27d77b // fadd v27.4s, v27.4s, v7.4s
	VLD1.P	64(R15), [V8.S4, V9.S4, V10.S4, V11.S4]
	WORD $0x4ea8d408 // fsub v8.4s, v0.4s, v8.4s
	WORD $0x4ea9d429 // fsub v9.4s, v1.4s, v9.4s
	WORD $0x4eaad44a // fsub v10.4s, v2.4s, v10.4s
	WORD $0x4eabd46b // fsub v11.4s, v3.4s, v11.4s
	WORD $0x6e28dd08 // fmul v8.4s, v8.4s, v8.4s
	WORD $0x6e29dd29 // fmul v9.4s, v9.4s, v9.4s
	WORD $0x6e2add4a // fmul v10.4s, v10.4s, v10.4s
	WORD $0x6e2bdd6b // fmul v11.4s, v11.4s, v11.4s
	WORD $0x4e28d79c // fadd v28.4s, v28.4s, v8.4s
	WORD $0x4e29d7bd // fadd v29.4s, v29.4s, v9.4s
	WORD $0x4e2ad7de // fadd v30.4s, v30.4s, v10.4s
	WORD $0x4e2bd7ff // fadd v31.4s, v31.4s, v11.4s
	SUBS	$16, R16, R16
	BNE	pairI

	VST1.P	[V16.S4, V17.S4, V18.S4, V19.S4], 64(R9)
	VST1.P	[V20.S4, V21.S4, V22.S4, V23.S4], 64(R9)
	VST1.P	[V24.S4, V25.S4, V26.S4, V27.S4], 64(R9)
	VST1.P	[V28.S4, V29.S4, V30.S4, V31.S4], 64(R9)
	ADD	$1, R3, R3
	CMP	$4, R3
	BLT	pairP
	RET

// SORT8_STORE(off) sorts 8 rows of 8 lanes, row w in V(2w) and V(2w+1),
// lane by lane with Batcher's 8-sorter (the 19 comparators sortNetwork
// puts first on each full block of 8 wires), each comparator as
// sort16NEON's (FCMGT and BSL, below), and stores the sorted rows' lanes
// at off(R6), off+64(R6), ..., off+448(R6): sort16NEON's sortBlock runs it
// on lanes 0-7 (off 0) and 8-15 (off 32) of a block. The wires'
// registers are renamed at each comparator, so nothing is moved; it uses
// V0-V23 and R7. The words' comments are /* */, as a // comment would
// swallow the line's continuation.
#define SORT8_STORE(off) \
	WORD $0x6ea0e450 /* fcmgt v16.4s, v2.4s, v0.4s */   \
	WORD $0x6ea2e412 /* fcmgt v18.4s, v0.4s, v2.4s */   \
	WORD $0x6ea1e471 /* fcmgt v17.4s, v3.4s, v1.4s */   \
	WORD $0x6ea3e433 /* fcmgt v19.4s, v1.4s, v3.4s */   \
	VBSL	V2.B16, V0.B16, V16.B16                     \
	VBSL	V2.B16, V0.B16, V18.B16                     \
	VBSL	V3.B16, V1.B16, V17.B16                     \
	VBSL	V3.B16, V1.B16, V19.B16                     \
	WORD $0x6ea4e4d4 /* fcmgt v20.4s, v6.4s, v4.4s */   \
	WORD $0x6ea6e496 /* fcmgt v22.4s, v4.4s, v6.4s */   \
	WORD $0x6ea5e4f5 /* fcmgt v21.4s, v7.4s, v5.4s */   \
	WORD $0x6ea7e4b7 /* fcmgt v23.4s, v5.4s, v7.4s */   \
	VBSL	V6.B16, V4.B16, V20.B16                     \
	VBSL	V6.B16, V4.B16, V22.B16                     \
	VBSL	V7.B16, V5.B16, V21.B16                     \
	VBSL	V7.B16, V5.B16, V23.B16                     \
	WORD $0x6ea8e540 /* fcmgt v0.4s, v10.4s, v8.4s */   \
	WORD $0x6eaae502 /* fcmgt v2.4s, v8.4s, v10.4s */   \
	WORD $0x6ea9e561 /* fcmgt v1.4s, v11.4s, v9.4s */   \
	WORD $0x6eabe523 /* fcmgt v3.4s, v9.4s, v11.4s */   \
	VBSL	V10.B16, V8.B16, V0.B16                     \
	VBSL	V10.B16, V8.B16, V2.B16                     \
	VBSL	V11.B16, V9.B16, V1.B16                     \
	VBSL	V11.B16, V9.B16, V3.B16                     \
	WORD $0x6eace5c4 /* fcmgt v4.4s, v14.4s, v12.4s */  \
	WORD $0x6eaee586 /* fcmgt v6.4s, v12.4s, v14.4s */  \
	WORD $0x6eade5e5 /* fcmgt v5.4s, v15.4s, v13.4s */  \
	WORD $0x6eafe5a7 /* fcmgt v7.4s, v13.4s, v15.4s */  \
	VBSL	V14.B16, V12.B16, V4.B16                    \
	VBSL	V14.B16, V12.B16, V6.B16                    \
	VBSL	V15.B16, V13.B16, V5.B16                    \
	VBSL	V15.B16, V13.B16, V7.B16                    \
	WORD $0x6eb0e688 /* fcmgt v8.4s, v20.4s, v16.4s */  \
	WORD $0x6eb4e60a /* fcmgt v10.4s, v16.4s, v20.4s */ \
	WORD $0x6eb1e6a9 /* fcmgt v9.4s, v21.4s, v17.4s */  \
	WORD $0x6eb5e62b /* fcmgt v11.4s, v17.4s, v21.4s */ \
	VBSL	V20.B16, V16.B16, V8.B16                    \
	VBSL	V20.B16, V16.B16, V10.B16                   \
	VBSL	V21.B16, V17.B16, V9.B16                    \
	VBSL	V21.B16, V17.B16, V11.B16                   \
	WORD $0x6eb2e6cc /* fcmgt v12.4s, v22.4s, v18.4s */ \
	WORD $0x6eb6e64e /* fcmgt v14.4s, v18.4s, v22.4s */ \
	WORD $0x6eb3e6ed /* fcmgt v13.4s, v23.4s, v19.4s */ \
	WORD $0x6eb7e66f /* fcmgt v15.4s, v19.4s, v23.4s */ \
	VBSL	V22.B16, V18.B16, V12.B16                   \
	VBSL	V22.B16, V18.B16, V14.B16                   \
	VBSL	V23.B16, V19.B16, V13.B16                   \
	VBSL	V23.B16, V19.B16, V15.B16                   \
	WORD $0x6ea0e490 /* fcmgt v16.4s, v4.4s, v0.4s */   \
	WORD $0x6ea4e414 /* fcmgt v20.4s, v0.4s, v4.4s */   \
	WORD $0x6ea1e4b1 /* fcmgt v17.4s, v5.4s, v1.4s */   \
	WORD $0x6ea5e435 /* fcmgt v21.4s, v1.4s, v5.4s */   \
	VBSL	V4.B16, V0.B16, V16.B16                     \
	VBSL	V4.B16, V0.B16, V20.B16                     \
	VBSL	V5.B16, V1.B16, V17.B16                     \
	VBSL	V5.B16, V1.B16, V21.B16                     \
	WORD $0x6ea2e4d2 /* fcmgt v18.4s, v6.4s, v2.4s */   \
	WORD $0x6ea6e456 /* fcmgt v22.4s, v2.4s, v6.4s */   \
	WORD $0x6ea3e4f3 /* fcmgt v19.4s, v7.4s, v3.4s */   \
	WORD $0x6ea7e477 /* fcmgt v23.4s, v3.4s, v7.4s */   \
	VBSL	V6.B16, V2.B16, V18.B16                     \
	VBSL	V6.B16, V2.B16, V22.B16                     \
	VBSL	V7.B16, V3.B16, V19.B16                     \
	VBSL	V7.B16, V3.B16, V23.B16                     \
	WORD $0x6eace540 /* fcmgt v0.4s, v10.4s, v12.4s */  \
	WORD $0x6eaae584 /* fcmgt v4.4s, v12.4s, v10.4s */  \
	WORD $0x6eade561 /* fcmgt v1.4s, v11.4s, v13.4s */  \
	WORD $0x6eabe5a5 /* fcmgt v5.4s, v13.4s, v11.4s */  \
	VBSL	V10.B16, V12.B16, V0.B16                    \
	VBSL	V10.B16, V12.B16, V4.B16                    \
	VBSL	V11.B16, V13.B16, V1.B16                    \
	VBSL	V11.B16, V13.B16, V5.B16                    \
	WORD $0x6eb2e682 /* fcmgt v2.4s, v20.4s, v18.4s */  \
	WORD $0x6eb4e646 /* fcmgt v6.4s, v18.4s, v20.4s */  \
	WORD $0x6eb3e6a3 /* fcmgt v3.4s, v21.4s, v19.4s */  \
	WORD $0x6eb5e667 /* fcmgt v7.4s, v19.4s, v21.4s */  \
	VBSL	V20.B16, V18.B16, V2.B16                    \
	VBSL	V20.B16, V18.B16, V6.B16                    \
	VBSL	V21.B16, V19.B16, V3.B16                    \
	VBSL	V21.B16, V19.B16, V7.B16                    \
	WORD $0x6ea8e60c /* fcmgt v12.4s, v16.4s, v8.4s */  \
	WORD $0x6eb0e50a /* fcmgt v10.4s, v8.4s, v16.4s */  \
	WORD $0x6ea9e62d /* fcmgt v13.4s, v17.4s, v9.4s */  \
	WORD $0x6eb1e52b /* fcmgt v11.4s, v9.4s, v17.4s */  \
	VBSL	V16.B16, V8.B16, V12.B16                    \
	VBSL	V16.B16, V8.B16, V10.B16                    \
	VBSL	V17.B16, V9.B16, V13.B16                    \
	VBSL	V17.B16, V9.B16, V11.B16                    \
	WORD $0x6ea0e452 /* fcmgt v18.4s, v2.4s, v0.4s */   \
	WORD $0x6ea2e414 /* fcmgt v20.4s, v0.4s, v2.4s */   \
	WORD $0x6ea1e473 /* fcmgt v19.4s, v3.4s, v1.4s */   \
	WORD $0x6ea3e435 /* fcmgt v21.4s, v1.4s, v3.4s */   \
	VBSL	V2.B16, V0.B16, V18.B16                     \
	VBSL	V2.B16, V0.B16, V20.B16                     \
	VBSL	V3.B16, V1.B16, V19.B16                     \
	VBSL	V3.B16, V1.B16, V21.B16                     \
	WORD $0x6ea4e4c8 /* fcmgt v8.4s, v6.4s, v4.4s */    \
	WORD $0x6ea6e490 /* fcmgt v16.4s, v4.4s, v6.4s */   \
	WORD $0x6ea5e4e9 /* fcmgt v9.4s, v7.4s, v5.4s */    \
	WORD $0x6ea7e4b1 /* fcmgt v17.4s, v5.4s, v7.4s */   \
	VBSL	V6.B16, V4.B16, V8.B16                      \
	VBSL	V6.B16, V4.B16, V16.B16                     \
	VBSL	V7.B16, V5.B16, V9.B16                      \
	VBSL	V7.B16, V5.B16, V17.B16                     \
	WORD $0x6eaee6c0 /* fcmgt v0.4s, v22.4s, v14.4s */  \
	WORD $0x6eb6e5c2 /* fcmgt v2.4s, v14.4s, v22.4s */  \
	WORD $0x6eafe6e1 /* fcmgt v1.4s, v23.4s, v15.4s */  \
	WORD $0x6eb7e5e3 /* fcmgt v3.4s, v15.4s, v23.4s */  \
	VBSL	V22.B16, V14.B16, V0.B16                    \
	VBSL	V22.B16, V14.B16, V2.B16                    \
	VBSL	V23.B16, V15.B16, V1.B16                    \
	VBSL	V23.B16, V15.B16, V3.B16                    \
	WORD $0x6ea8e544 /* fcmgt v4.4s, v10.4s, v8.4s */   \
	WORD $0x6eaae506 /* fcmgt v6.4s, v8.4s, v10.4s */   \
	WORD $0x6ea9e565 /* fcmgt v5.4s, v11.4s, v9.4s */   \
	WORD $0x6eabe527 /* fcmgt v7.4s, v9.4s, v11.4s */   \
	VBSL	V10.B16, V8.B16, V4.B16                     \
	VBSL	V10.B16, V8.B16, V6.B16                     \
	VBSL	V11.B16, V9.B16, V5.B16                     \
	VBSL	V11.B16, V9.B16, V7.B16                     \
	WORD $0x6ea0e68e /* fcmgt v14.4s, v20.4s, v0.4s */  \
	WORD $0x6eb4e416 /* fcmgt v22.4s, v0.4s, v20.4s */  \
	WORD $0x6ea1e6af /* fcmgt v15.4s, v21.4s, v1.4s */  \
	WORD $0x6eb5e437 /* fcmgt v23.4s, v1.4s, v21.4s */  \
	VBSL	V20.B16, V0.B16, V14.B16                    \
	VBSL	V20.B16, V0.B16, V22.B16                    \
	VBSL	V21.B16, V1.B16, V15.B16                    \
	VBSL	V21.B16, V1.B16, V23.B16                    \
	WORD $0x6eb2e488 /* fcmgt v8.4s, v4.4s, v18.4s */   \
	WORD $0x6ea4e64a /* fcmgt v10.4s, v18.4s, v4.4s */  \
	WORD $0x6eb3e4a9 /* fcmgt v9.4s, v5.4s, v19.4s */   \
	WORD $0x6ea5e66b /* fcmgt v11.4s, v19.4s, v5.4s */  \
	VBSL	V4.B16, V18.B16, V8.B16                     \
	VBSL	V4.B16, V18.B16, V10.B16                    \
	VBSL	V5.B16, V19.B16, V9.B16                     \
	VBSL	V5.B16, V19.B16, V11.B16                    \
	WORD $0x6eaee4c0 /* fcmgt v0.4s, v6.4s, v14.4s */   \
	WORD $0x6ea6e5d4 /* fcmgt v20.4s, v14.4s, v6.4s */  \
	WORD $0x6eafe4e1 /* fcmgt v1.4s, v7.4s, v15.4s */   \
	WORD $0x6ea7e5f5 /* fcmgt v21.4s, v15.4s, v7.4s */  \
	VBSL	V6.B16, V14.B16, V0.B16                     \
	VBSL	V6.B16, V14.B16, V20.B16                    \
	VBSL	V7.B16, V15.B16, V1.B16                     \
	VBSL	V7.B16, V15.B16, V21.B16                    \
	WORD $0x6eb6e612 /* fcmgt v18.4s, v16.4s, v22.4s */ \
	WORD $0x6eb0e6c4 /* fcmgt v4.4s, v22.4s, v16.4s */  \
	WORD $0x6eb7e633 /* fcmgt v19.4s, v17.4s, v23.4s */ \
	WORD $0x6eb1e6e5 /* fcmgt v5.4s, v23.4s, v17.4s */  \
	VBSL	V16.B16, V22.B16, V18.B16                   \
	VBSL	V16.B16, V22.B16, V4.B16                    \
	VBSL	V17.B16, V23.B16, V19.B16                   \
	VBSL	V17.B16, V23.B16, V5.B16                    \
	ADD	$off, R6, R7                                \
	VST1	[V12.S4, V13.S4], (R7)                      \
	ADD	$64, R7, R7                                 \
	VST1	[V8.S4, V9.S4], (R7)                        \
	ADD	$64, R7, R7                                 \
	VST1	[V10.S4, V11.S4], (R7)                      \
	ADD	$64, R7, R7                                 \
	VST1	[V0.S4, V1.S4], (R7)                        \
	ADD	$64, R7, R7                                 \
	VST1	[V20.S4, V21.S4], (R7)                      \
	ADD	$64, R7, R7                                 \
	VST1	[V18.S4, V19.S4], (R7)                      \
	ADD	$64, R7, R7                                 \
	VST1	[V4.S4, V5.S4], (R7)                        \
	ADD	$64, R7, R7                                 \
	VST1	[V2.S4, V3.S4], (R7)

// func sort16NEON(buf *float32, xs *[]float32, n int, off int, net *int32, nnet int)
//
// Copies xs[r][off:off+16] into row r (64 bytes) of buf for r < n and
// applies the comparators net (nnet int32s: pairs of byte offsets of rows)
// with, lane by lane, lo = a < b ? a : b and hi = a > b ? a : b (FCMGT and
// BSL): b on equal values, −0 and +0 included, and on NaNs, the choices
// of networkRowsGeneric and of VMINPS/VMAXPS. n > 0.
//
// net starts, as sortNetwork makes it, with Batcher's 8-sorter (19
// comparators) on each full block of 8 rows: those are applied in
// registers, 8 lanes at a time, between the loads from xs and the stores
// to buf (the wires' registers are renamed at each comparator, so nothing
// is moved), and the rest of net from buf.
TEXT ·sort16NEON(SB), NOSPLIT, $0-48
	MOVD	buf+0(FP), R0
	MOVD	xs+8(FP), R1
	MOVD	n+16(FP), R2
	MOVD	off+24(FP), R3
	MOVD	net+32(FP), R4
	MOVD	nnet+40(FP), R5
	LSL	$2, R3, R3
	MOVD	R0, R6
	LSR	$3, R2, R9
	CBZ	R9, sortRest
	MOVD	R9, R8

sortBlock:
	MOVD	0(R1), R10
	ADD	R3, R10, R10
	MOVD	24(R1), R11
	ADD	R3, R11, R11
	MOVD	48(R1), R12
	ADD	R3, R12, R12
	MOVD	72(R1), R13
	ADD	R3, R13, R13
	MOVD	96(R1), R14
	ADD	R3, R14, R14
	MOVD	120(R1), R15
	ADD	R3, R15, R15
	MOVD	144(R1), R19
	ADD	R3, R19, R19
	MOVD	168(R1), R20
	ADD	R3, R20, R20
	VLD1.P	32(R10), [V0.S4, V1.S4]
	VLD1.P	32(R11), [V2.S4, V3.S4]
	VLD1.P	32(R12), [V4.S4, V5.S4]
	VLD1.P	32(R13), [V6.S4, V7.S4]
	VLD1.P	32(R14), [V8.S4, V9.S4]
	VLD1.P	32(R15), [V10.S4, V11.S4]
	VLD1.P	32(R19), [V12.S4, V13.S4]
	VLD1.P	32(R20), [V14.S4, V15.S4]
	SORT8_STORE(0)
	VLD1	(R10), [V0.S4, V1.S4]
	VLD1	(R11), [V2.S4, V3.S4]
	VLD1	(R12), [V4.S4, V5.S4]
	VLD1	(R13), [V6.S4, V7.S4]
	VLD1	(R14), [V8.S4, V9.S4]
	VLD1	(R15), [V10.S4, V11.S4]
	VLD1	(R19), [V12.S4, V13.S4]
	VLD1	(R20), [V14.S4, V15.S4]
	SORT8_STORE(32)
	ADD	$192, R1, R1
	ADD	$512, R6, R6
	SUBS	$1, R9, R9
	BNE	sortBlock
	MOVD	$152, R7
	MUL	R8, R7, R7
	ADD	R7, R4, R4
	MOVD	$38, R7
	MUL	R8, R7, R7
	SUB	R7, R5, R5

sortRest:
	ANDS	$7, R2, R2
	BEQ	sortNetStart

sortCopy:
	MOVD	(R1), R7
	ADD	R3, R7, R7
	VLD1	(R7), [V0.S4, V1.S4, V2.S4, V3.S4]
	VST1.P	[V0.S4, V1.S4, V2.S4, V3.S4], 64(R6)
	ADD	$24, R1, R1
	SUBS	$1, R2, R2
	BNE	sortCopy

sortNetStart:
	CMP	$0, R5
	BLE	sortDone

sortNet:
	MOVWU	(R4), R7
	MOVWU	4(R4), R8
	ADD	R0, R7, R7
	ADD	R0, R8, R8
	VLD1	(R7), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1	(R8), [V4.S4, V5.S4, V6.S4, V7.S4]
	WORD $0x6ea0e490 // fcmgt v16.4s, v4.4s, v0.4s
	WORD $0x6ea4e414 // fcmgt v20.4s, v0.4s, v4.4s
	WORD $0x6ea1e4b1 // fcmgt v17.4s, v5.4s, v1.4s
	WORD $0x6ea5e435 // fcmgt v21.4s, v1.4s, v5.4s
	WORD $0x6ea2e4d2 // fcmgt v18.4s, v6.4s, v2.4s
	WORD $0x6ea6e456 // fcmgt v22.4s, v2.4s, v6.4s
	WORD $0x6ea3e4f3 // fcmgt v19.4s, v7.4s, v3.4s
	WORD $0x6ea7e477 // fcmgt v23.4s, v3.4s, v7.4s
	VBSL	V4.B16, V0.B16, V16.B16
	VBSL	V4.B16, V0.B16, V20.B16
	VBSL	V5.B16, V1.B16, V17.B16
	VBSL	V5.B16, V1.B16, V21.B16
	VBSL	V6.B16, V2.B16, V18.B16
	VBSL	V6.B16, V2.B16, V22.B16
	VBSL	V7.B16, V3.B16, V19.B16
	VBSL	V7.B16, V3.B16, V23.B16
	VST1	[V16.S4, V17.S4, V18.S4, V19.S4], (R7)
	VST1	[V20.S4, V21.S4, V22.S4, V23.S4], (R8)
	ADD	$8, R4, R4
	SUBS	$2, R5, R5
	BGT	sortNet

sortDone:
	RET

// func meanRowsNEON(dst *[16]float32, buf *float32, lo int, hi int, cnt float64)
//
// dst[l] = float32(s_l / cnt), s_l the float64 sum of lane l of the 64-byte
// rows lo..hi-1 of buf added in row order from +0; lo < hi.
TEXT ·meanRowsNEON(SB), NOSPLIT, $0-40
	MOVD	dst+0(FP), R0
	MOVD	buf+8(FP), R1
	MOVD	lo+16(FP), R2
	MOVD	hi+24(FP), R3
	FMOVD	cnt+32(FP), F31
	VDUP	V31.D[0], V31.D2
	ADD	R2<<6, R1, R4
	SUB	R2, R3, R5
	VEOR	V16.B16, V16.B16, V16.B16
	VEOR	V17.B16, V17.B16, V17.B16
	VEOR	V18.B16, V18.B16, V18.B16
	VEOR	V19.B16, V19.B16, V19.B16
	VEOR	V20.B16, V20.B16, V20.B16
	VEOR	V21.B16, V21.B16, V21.B16
	VEOR	V22.B16, V22.B16, V22.B16
	VEOR	V23.B16, V23.B16, V23.B16

meanRow:
	VLD1.P	64(R4), [V0.S4, V1.S4, V2.S4, V3.S4]
	WORD $0x0e617804 // fcvtl v4.2d, v0.2s
	WORD $0x4e617805 // fcvtl2 v5.2d, v0.4s
	WORD $0x0e617826 // fcvtl v6.2d, v1.2s
	WORD $0x4e617827 // fcvtl2 v7.2d, v1.4s
	WORD $0x0e617848 // fcvtl v8.2d, v2.2s
	WORD $0x4e617849 // fcvtl2 v9.2d, v2.4s
	WORD $0x0e61786a // fcvtl v10.2d, v3.2s
	WORD $0x4e61786b // fcvtl2 v11.2d, v3.4s
	WORD $0x4e64d610 // fadd v16.2d, v16.2d, v4.2d
	WORD $0x4e65d631 // fadd v17.2d, v17.2d, v5.2d
	WORD $0x4e66d652 // fadd v18.2d, v18.2d, v6.2d
	WORD $0x4e67d673 // fadd v19.2d, v19.2d, v7.2d
	WORD $0x4e68d694 // fadd v20.2d, v20.2d, v8.2d
	WORD $0x4e69d6b5 // fadd v21.2d, v21.2d, v9.2d
	WORD $0x4e6ad6d6 // fadd v22.2d, v22.2d, v10.2d
	WORD $0x4e6bd6f7 // fadd v23.2d, v23.2d, v11.2d
	SUBS	$1, R5, R5
	BNE	meanRow

	WORD $0x6e7ffe10 // fdiv v16.2d, v16.2d, v31.2d
	WORD $0x6e7ffe31 // fdiv v17.2d, v17.2d, v31.2d
	WORD $0x6e7ffe52 // fdiv v18.2d, v18.2d, v31.2d
	WORD $0x6e7ffe73 // fdiv v19.2d, v19.2d, v31.2d
	WORD $0x6e7ffe94 // fdiv v20.2d, v20.2d, v31.2d
	WORD $0x6e7ffeb5 // fdiv v21.2d, v21.2d, v31.2d
	WORD $0x6e7ffed6 // fdiv v22.2d, v22.2d, v31.2d
	WORD $0x6e7ffef7 // fdiv v23.2d, v23.2d, v31.2d
	WORD $0x0e616a00 // fcvtn v0.2s, v16.2d
	WORD $0x4e616a20 // fcvtn2 v0.4s, v17.2d
	WORD $0x0e616a41 // fcvtn v1.2s, v18.2d
	WORD $0x4e616a61 // fcvtn2 v1.4s, v19.2d
	WORD $0x0e616a82 // fcvtn v2.2s, v20.2d
	WORD $0x4e616aa2 // fcvtn2 v2.4s, v21.2d
	WORD $0x0e616ac3 // fcvtn v3.2s, v22.2d
	WORD $0x4e616ae3 // fcvtn2 v3.4s, v23.2d
	VST1	[V0.S4, V1.S4, V2.S4, V3.S4], (R0)
	RET

// func add64NEON(acc *float64, x *float32, n int)
//
// acc[i] += float64(x[i]) for i < n; n > 0 is a multiple of 8.
TEXT ·add64NEON(SB), NOSPLIT, $0-24
	MOVD	acc+0(FP), R0
	MOVD	x+8(FP), R1
	MOVD	n+16(FP), R2

add64Loop:
	VLD1.P	32(R1), [V0.S4, V1.S4]
	VLD1	(R0), [V2.D2, V3.D2, V4.D2, V5.D2]
	WORD $0x0e617806 // fcvtl v6.2d, v0.2s
	WORD $0x4e617807 // fcvtl2 v7.2d, v0.4s
	WORD $0x0e617830 // fcvtl v16.2d, v1.2s
	WORD $0x4e617831 // fcvtl2 v17.2d, v1.4s
	WORD $0x4e66d442 // fadd v2.2d, v2.2d, v6.2d
	WORD $0x4e67d463 // fadd v3.2d, v3.2d, v7.2d
	WORD $0x4e70d484 // fadd v4.2d, v4.2d, v16.2d
	WORD $0x4e71d4a5 // fadd v5.2d, v5.2d, v17.2d
	VST1.P	[V2.D2, V3.D2, V4.D2, V5.D2], 64(R0)
	SUBS	$8, R2, R2
	BNE	add64Loop
	RET

// func axpy64NEON(acc *float64, x *float32, n int, w float64)
//
// acc[i] += float64(w·float64(x[i])) for i < n, the product rounded before
// the addition (FMUL then FADD, no FMLA); n > 0 is a multiple of 8.
TEXT ·axpy64NEON(SB), NOSPLIT, $0-32
	MOVD	acc+0(FP), R0
	MOVD	x+8(FP), R1
	MOVD	n+16(FP), R2
	FMOVD	w+24(FP), F31
	VDUP	V31.D[0], V31.D2

axpy64Loop:
	VLD1.P	32(R1), [V0.S4, V1.S4]
	VLD1	(R0), [V2.D2, V3.D2, V4.D2, V5.D2]
	WORD $0x0e617806 // fcvtl v6.2d, v0.2s
	WORD $0x4e617807 // fcvtl2 v7.2d, v0.4s
	WORD $0x0e617830 // fcvtl v16.2d, v1.2s
	WORD $0x4e617831 // fcvtl2 v17.2d, v1.4s
	WORD $0x6e66dfe6 // fmul v6.2d, v31.2d, v6.2d
	WORD $0x6e67dfe7 // fmul v7.2d, v31.2d, v7.2d
	WORD $0x6e70dff0 // fmul v16.2d, v31.2d, v16.2d
	WORD $0x6e71dff1 // fmul v17.2d, v31.2d, v17.2d
	WORD $0x4e66d442 // fadd v2.2d, v2.2d, v6.2d
	WORD $0x4e67d463 // fadd v3.2d, v3.2d, v7.2d
	WORD $0x4e70d484 // fadd v4.2d, v4.2d, v16.2d
	WORD $0x4e71d4a5 // fadd v5.2d, v5.2d, v17.2d
	VST1.P	[V2.D2, V3.D2, V4.D2, V5.D2], 64(R0)
	SUBS	$8, R2, R2
	BNE	axpy64Loop
	RET

// func div32NEON(dst *float32, acc *float64, n int, c float64)
//
// dst[i] = float32(acc[i] / c) for i < n; n > 0 is a multiple of 8.
TEXT ·div32NEON(SB), NOSPLIT, $0-32
	MOVD	dst+0(FP), R0
	MOVD	acc+8(FP), R1
	MOVD	n+16(FP), R2
	FMOVD	c+24(FP), F31
	VDUP	V31.D[0], V31.D2

div32Loop:
	VLD1.P	64(R1), [V0.D2, V1.D2, V2.D2, V3.D2]
	WORD $0x6e7ffc00 // fdiv v0.2d, v0.2d, v31.2d
	WORD $0x6e7ffc21 // fdiv v1.2d, v1.2d, v31.2d
	WORD $0x6e7ffc42 // fdiv v2.2d, v2.2d, v31.2d
	WORD $0x6e7ffc63 // fdiv v3.2d, v3.2d, v31.2d
	WORD $0x0e616804 // fcvtn v4.2s, v0.2d
	WORD $0x4e616824 // fcvtn2 v4.4s, v1.2d
	WORD $0x0e616845 // fcvtn v5.2s, v2.2d
	WORD $0x4e616865 // fcvtn2 v5.4s, v3.2d
	VST1.P	[V4.S4, V5.S4], 32(R0)
	SUBS	$8, R2, R2
	BNE	div32Loop
	RET

// func sqdist4x4NEON(s *[4][4]float64, rows *[4]*float32, y *float32, n int)
//
// s[r][k mod 4] += float64(t·t), t = float64(rows[r][k]) − float64(y[k]),
// for k < n, k increasing, for the four rows (one chain per lane of each
// row, lanes k mod 4 = 0,1 in one vector and 2,3 in the next); n > 0 is a
// multiple of 4.
TEXT ·sqdist4x4NEON(SB), NOSPLIT, $0-32
	MOVD	s+0(FP), R0
	MOVD	rows+8(FP), R1
	MOVD	y+16(FP), R2
	MOVD	n+24(FP), R3
	MOVD	(R1), R4
	MOVD	8(R1), R5
	MOVD	16(R1), R6
	MOVD	24(R1), R7
	MOVD	R0, R8
	VLD1.P	64(R8), [V16.D2, V17.D2, V18.D2, V19.D2]
	VLD1	(R8), [V20.D2, V21.D2, V22.D2, V23.D2]

sqdistLoop:
	VLD1.P	16(R2), [V0.S4]
	WORD $0x0e617801 // fcvtl v1.2d, v0.2s
	WORD $0x4e617802 // fcvtl2 v2.2d, v0.4s
	VLD1.P	16(R4), [V3.S4]
	VLD1.P	16(R5), [V6.S4]
	VLD1.P	16(R6), [V24.S4]
	VLD1.P	16(R7), [V27.S4]
	WORD $0x0e617864 // fcvtl v4.2d, v3.2s
	WORD $0x4e617865 // fcvtl2 v5.2d, v3.4s
	WORD $0x0e6178c7 // fcvtl v7.2d, v6.2s
	WORD $0x4e6178c8 // fcvtl2 v8.2d, v6.4s
	WORD $0x0e617b19 // fcvtl v25.2d, v24.2s
	WORD $0x4e617b1a // fcvtl2 v26.2d, v24.4s
	WORD $0x0e617b7c // fcvtl v28.2d, v27.2s
	WORD $0x4e617b7d // fcvtl2 v29.2d, v27.4s
	WORD $0x4ee1d484 // fsub v4.2d, v4.2d, v1.2d
	WORD $0x4ee2d4a5 // fsub v5.2d, v5.2d, v2.2d
	WORD $0x4ee1d4e7 // fsub v7.2d, v7.2d, v1.2d
	WORD $0x4ee2d508 // fsub v8.2d, v8.2d, v2.2d
	WORD $0x4ee1d739 // fsub v25.2d, v25.2d, v1.2d
	WORD $0x4ee2d75a // fsub v26.2d, v26.2d, v2.2d
	WORD $0x4ee1d79c // fsub v28.2d, v28.2d, v1.2d
	WORD $0x4ee2d7bd // fsub v29.2d, v29.2d, v2.2d
	WORD $0x6e64dc84 // fmul v4.2d, v4.2d, v4.2d
	WORD $0x6e65dca5 // fmul v5.2d, v5.2d, v5.2d
	WORD $0x6e67dce7 // fmul v7.2d, v7.2d, v7.2d
	WORD $0x6e68dd08 // fmul v8.2d, v8.2d, v8.2d
	WORD $0x6e79df39 // fmul v25.2d, v25.2d, v25.2d
	WORD $0x6e7adf5a // fmul v26.2d, v26.2d, v26.2d
	WORD $0x6e7cdf9c // fmul v28.2d, v28.2d, v28.2d
	WORD $0x6e7ddfbd // fmul v29.2d, v29.2d, v29.2d
	WORD $0x4e64d610 // fadd v16.2d, v16.2d, v4.2d
	WORD $0x4e65d631 // fadd v17.2d, v17.2d, v5.2d
	WORD $0x4e67d652 // fadd v18.2d, v18.2d, v7.2d
	WORD $0x4e68d673 // fadd v19.2d, v19.2d, v8.2d
	WORD $0x4e79d694 // fadd v20.2d, v20.2d, v25.2d
	WORD $0x4e7ad6b5 // fadd v21.2d, v21.2d, v26.2d
	WORD $0x4e7cd6d6 // fadd v22.2d, v22.2d, v28.2d
	WORD $0x4e7dd6f7 // fadd v23.2d, v23.2d, v29.2d
	SUBS	$4, R3, R3
	BNE	sqdistLoop
	VST1.P	[V16.D2, V17.D2, V18.D2, V19.D2], 64(R0)
	VST1	[V20.D2, V21.D2, V22.D2, V23.D2], (R0)
	RET

// func add32NEON(acc *float32, x *float32, n int)
//
// acc[i] += x[i] in float32 for i < n; n > 0 is a multiple of 16. It is
// the summing pass benchmarks divide by, not a rule's kernel.
TEXT ·add32NEON(SB), NOSPLIT, $0-24
	MOVD	acc+0(FP), R0
	MOVD	x+8(FP), R1
	MOVD	n+16(FP), R2

add32Loop:
	VLD1	(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P	64(R1), [V4.S4, V5.S4, V6.S4, V7.S4]
	WORD $0x4e24d400 // fadd v0.4s, v0.4s, v4.4s
	WORD $0x4e25d421 // fadd v1.4s, v1.4s, v5.4s
	WORD $0x4e26d442 // fadd v2.4s, v2.4s, v6.4s
	WORD $0x4e27d463 // fadd v3.4s, v3.4s, v7.4s
	VST1.P	[V0.S4, V1.S4, V2.S4, V3.S4], 64(R0)
	SUBS	$16, R2, R2
	BNE	add32Loop
	RET

// LANETREE_ADD(off) adds to the float64 at off(R0) the tree of the four
// float64 pairs V0-V3 (gramTileNEON's lanes 0-1, 2-3, 4-5, 6-7 of one
// accumulator after FCVTL): (l, l+4), then (l, l+2), then (0, 1).
#define LANETREE_ADD(off) \
	WORD $0x4e62d400 /* fadd v0.2d, v0.2d, v2.2d */ \
	WORD $0x4e63d421 /* fadd v1.2d, v1.2d, v3.2d */ \
	WORD $0x4e61d400 /* fadd v0.2d, v0.2d, v1.2d */ \
	WORD $0x7e70d800 /* faddp d0, v0.2d */          \
	FMOVD	off(R0), F1                             \
	FADDD	F0, F1, F1                              \
	FMOVD	F1, off(R0)

// func gramTileNEON(out *[12]float64, rows *[7]*float32, n int)
//
// out[4p+q] += the lane tree of l, l[k] = Σ a_p[i]·b_q[i] over i < n,
// i ≡ k mod 8, summed from +0 with fused multiply-adds (FMLA, one rounding
// each: fma32 of gram.go), i increasing; the tree is laneTree64's: the
// lanes to float64, (l_k + l_k+4) for k < 4, then (k, k+2), then (0, 1).
// rows holds a0..a2, b0..b3; n > 0 is a multiple of 8. The 24
// accumulators (V8–V31) take all the vector registers the loads leave.
TEXT ·gramTileNEON(SB), NOSPLIT, $0-24
	MOVD	out+0(FP), R0
	MOVD	rows+8(FP), R1
	MOVD	n+16(FP), R2
	MOVD	(R1), R3
	MOVD	8(R1), R4
	MOVD	16(R1), R5
	MOVD	24(R1), R6
	MOVD	32(R1), R7
	MOVD	40(R1), R8
	MOVD	48(R1), R9
	VEOR	V8.B16, V8.B16, V8.B16
	VEOR	V9.B16, V9.B16, V9.B16
	VEOR	V10.B16, V10.B16, V10.B16
	VEOR	V11.B16, V11.B16, V11.B16
	VEOR	V12.B16, V12.B16, V12.B16
	VEOR	V13.B16, V13.B16, V13.B16
	VEOR	V14.B16, V14.B16, V14.B16
	VEOR	V15.B16, V15.B16, V15.B16
	VEOR	V16.B16, V16.B16, V16.B16
	VEOR	V17.B16, V17.B16, V17.B16
	VEOR	V18.B16, V18.B16, V18.B16
	VEOR	V19.B16, V19.B16, V19.B16
	VEOR	V20.B16, V20.B16, V20.B16
	VEOR	V21.B16, V21.B16, V21.B16
	VEOR	V22.B16, V22.B16, V22.B16
	VEOR	V23.B16, V23.B16, V23.B16
	VEOR	V24.B16, V24.B16, V24.B16
	VEOR	V25.B16, V25.B16, V25.B16
	VEOR	V26.B16, V26.B16, V26.B16
	VEOR	V27.B16, V27.B16, V27.B16
	VEOR	V28.B16, V28.B16, V28.B16
	VEOR	V29.B16, V29.B16, V29.B16
	VEOR	V30.B16, V30.B16, V30.B16
	VEOR	V31.B16, V31.B16, V31.B16

gramLoop:
	VLD1.P	32(R3), [V0.S4, V1.S4]
	VLD1.P	32(R4), [V2.S4, V3.S4]
	VLD1.P	32(R5), [V4.S4, V5.S4]
	VLD1.P	32(R6), [V6.S4, V7.S4]
	VFMLA	V6.S4, V0.S4, V8.S4
	VFMLA	V7.S4, V1.S4, V9.S4
	VFMLA	V6.S4, V2.S4, V16.S4
	VFMLA	V7.S4, V3.S4, V17.S4
	VFMLA	V6.S4, V4.S4, V24.S4
	VFMLA	V7.S4, V5.S4, V25.S4
	VLD1.P	32(R7), [V6.S4, V7.S4]
	VFMLA	V6.S4, V0.S4, V10.S4
	VFMLA	V7.S4, V1.S4, V11.S4
	VFMLA	V6.S4, V2.S4, V18.S4
	VFMLA	V7.S4, V3.S4, V19.S4
	VFMLA	V6.S4, V4.S4, V26.S4
	VFMLA	V7.S4, V5.S4, V27.S4
	VLD1.P	32(R8), [V6.S4, V7.S4]
	VFMLA	V6.S4, V0.S4, V12.S4
	VFMLA	V7.S4, V1.S4, V13.S4
	VFMLA	V6.S4, V2.S4, V20.S4
	VFMLA	V7.S4, V3.S4, V21.S4
	VFMLA	V6.S4, V4.S4, V28.S4
	VFMLA	V7.S4, V5.S4, V29.S4
	VLD1.P	32(R9), [V6.S4, V7.S4]
	VFMLA	V6.S4, V0.S4, V14.S4
	VFMLA	V7.S4, V1.S4, V15.S4
	VFMLA	V6.S4, V2.S4, V22.S4
	VFMLA	V7.S4, V3.S4, V23.S4
	VFMLA	V6.S4, V4.S4, V30.S4
	VFMLA	V7.S4, V5.S4, V31.S4
	SUBS	$8, R2, R2
	BNE	gramLoop

	WORD $0x0e617900 // fcvtl v0.2d, v8.2s
	WORD $0x4e617901 // fcvtl2 v1.2d, v8.4s
	WORD $0x0e617922 // fcvtl v2.2d, v9.2s
	WORD $0x4e617923 // fcvtl2 v3.2d, v9.4s
	LANETREE_ADD(0)
	WORD $0x0e617940 // fcvtl v0.2d, v10.2s
	WORD $0x4e617941 // fcvtl2 v1.2d, v10.4s
	WORD $0x0e617962 // fcvtl v2.2d, v11.2s
	WORD $0x4e617963 // fcvtl2 v3.2d, v11.4s
	LANETREE_ADD(8)
	WORD $0x0e617980 // fcvtl v0.2d, v12.2s
	WORD $0x4e617981 // fcvtl2 v1.2d, v12.4s
	WORD $0x0e6179a2 // fcvtl v2.2d, v13.2s
	WORD $0x4e6179a3 // fcvtl2 v3.2d, v13.4s
	LANETREE_ADD(16)
	WORD $0x0e6179c0 // fcvtl v0.2d, v14.2s
	WORD $0x4e6179c1 // fcvtl2 v1.2d, v14.4s
	WORD $0x0e6179e2 // fcvtl v2.2d, v15.2s
	WORD $0x4e6179e3 // fcvtl2 v3.2d, v15.4s
	LANETREE_ADD(24)
	WORD $0x0e617a00 // fcvtl v0.2d, v16.2s
	WORD $0x4e617a01 // fcvtl2 v1.2d, v16.4s
	WORD $0x0e617a22 // fcvtl v2.2d, v17.2s
	WORD $0x4e617a23 // fcvtl2 v3.2d, v17.4s
	LANETREE_ADD(32)
	WORD $0x0e617a40 // fcvtl v0.2d, v18.2s
	WORD $0x4e617a41 // fcvtl2 v1.2d, v18.4s
	WORD $0x0e617a62 // fcvtl v2.2d, v19.2s
	WORD $0x4e617a63 // fcvtl2 v3.2d, v19.4s
	LANETREE_ADD(40)
	WORD $0x0e617a80 // fcvtl v0.2d, v20.2s
	WORD $0x4e617a81 // fcvtl2 v1.2d, v20.4s
	WORD $0x0e617aa2 // fcvtl v2.2d, v21.2s
	WORD $0x4e617aa3 // fcvtl2 v3.2d, v21.4s
	LANETREE_ADD(48)
	WORD $0x0e617ac0 // fcvtl v0.2d, v22.2s
	WORD $0x4e617ac1 // fcvtl2 v1.2d, v22.4s
	WORD $0x0e617ae2 // fcvtl v2.2d, v23.2s
	WORD $0x4e617ae3 // fcvtl2 v3.2d, v23.4s
	LANETREE_ADD(56)
	WORD $0x0e617b00 // fcvtl v0.2d, v24.2s
	WORD $0x4e617b01 // fcvtl2 v1.2d, v24.4s
	WORD $0x0e617b22 // fcvtl v2.2d, v25.2s
	WORD $0x4e617b23 // fcvtl2 v3.2d, v25.4s
	LANETREE_ADD(64)
	WORD $0x0e617b40 // fcvtl v0.2d, v26.2s
	WORD $0x4e617b41 // fcvtl2 v1.2d, v26.4s
	WORD $0x0e617b62 // fcvtl v2.2d, v27.2s
	WORD $0x4e617b63 // fcvtl2 v3.2d, v27.4s
	LANETREE_ADD(72)
	WORD $0x0e617b80 // fcvtl v0.2d, v28.2s
	WORD $0x4e617b81 // fcvtl2 v1.2d, v28.4s
	WORD $0x0e617ba2 // fcvtl v2.2d, v29.2s
	WORD $0x4e617ba3 // fcvtl2 v3.2d, v29.4s
	LANETREE_ADD(80)
	WORD $0x0e617bc0 // fcvtl v0.2d, v30.2s
	WORD $0x4e617bc1 // fcvtl2 v1.2d, v30.4s
	WORD $0x0e617be2 // fcvtl v2.2d, v31.2s
	WORD $0x4e617be3 // fcvtl2 v3.2d, v31.4s
	LANETREE_ADD(88)
	RET

// func sub32NEON(dst *float32, x *float32, c *float32, n int)
//
// dst[i] = x[i] − c[i] in float32 for i < n; n > 0 is a multiple of 8.
TEXT ·sub32NEON(SB), NOSPLIT, $0-32
	MOVD	dst+0(FP), R0
	MOVD	x+8(FP), R1
	MOVD	c+16(FP), R2
	MOVD	n+24(FP), R3

sub32Loop:
	VLD1.P	32(R1), [V0.S4, V1.S4]
	VLD1.P	32(R2), [V2.S4, V3.S4]
	WORD $0x4ea2d400 // fsub v0.4s, v0.4s, v2.4s
	WORD $0x4ea3d421 // fsub v1.4s, v1.4s, v3.4s
	VST1.P	[V0.S4, V1.S4], 32(R0)
	SUBS	$8, R3, R3
	BNE	sub32Loop
	RET
