//go:build amd64 && !purego

#include "textflag.h"

// The mask loops: dst[i] ± ks[i] modulo 2^32 on 32-byte vectors (8 words),
// four vectors per iteration, then one vector at a time, then a scalar tail
// of at most 7 words. Loads and stores are unaligned (dst is any []uint32,
// ks any []byte), which costs nothing on data in cache.
//
// MASK_WORDS(VOP, SOP) is the loop of both, with dst in DI, ks in SI and n
// in CX: VOP (VPADDD or VPSUBD) combines the vectors and SOP (ADDL or
// SUBL) the tail's words. VPSUBD m, a, b computes b = a − m: dst is
// loaded, the keystream is the memory operand. Labels are local to a TEXT
// block, so each loop has its own.
#define MASK_WORDS(VOP, SOP) \
	CMPQ CX, $32            \
	JB   loop8              \
loop32:                         \
	VMOVDQU (DI), Y0        \
	VMOVDQU 32(DI), Y1      \
	VMOVDQU 64(DI), Y2      \
	VMOVDQU 96(DI), Y3      \
	VOP     (SI), Y0, Y0    \
	VOP     32(SI), Y1, Y1  \
	VOP     64(SI), Y2, Y2  \
	VOP     96(SI), Y3, Y3  \
	VMOVDQU Y0, (DI)        \
	VMOVDQU Y1, 32(DI)      \
	VMOVDQU Y2, 64(DI)      \
	VMOVDQU Y3, 96(DI)      \
	ADDQ    $128, DI        \
	ADDQ    $128, SI        \
	SUBQ    $32, CX         \
	CMPQ    CX, $32         \
	JAE     loop32          \
loop8:                          \
	CMPQ    CX, $8          \
	JB      loop1           \
	VMOVDQU (DI), Y0        \
	VOP     (SI), Y0, Y0    \
	VMOVDQU Y0, (DI)        \
	ADDQ    $32, DI         \
	ADDQ    $32, SI         \
	SUBQ    $8, CX          \
	JMP     loop8           \
loop1:                          \
	TESTQ CX, CX            \
	JZ    done              \
	MOVL  (SI), AX          \
	SOP   AX, (DI)          \
	ADDQ  $4, DI            \
	ADDQ  $4, SI            \
	DECQ  CX                \
	JMP   loop1             \
done:                           \
	VZEROUPPER              \
	RET

// func addWordsAVX2(dst *uint32, ks *byte, n int)
TEXT ·addWordsAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ ks+8(FP), SI
	MOVQ n+16(FP), CX
	MASK_WORDS(VPADDD, ADDL)

// func subWordsAVX2(dst *uint32, ks *byte, n int)
TEXT ·subWordsAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ ks+8(FP), SI
	MOVQ n+16(FP), CX
	MASK_WORDS(VPSUBD, SUBL)
