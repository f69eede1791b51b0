//go:build amd64 && !purego

#include "textflag.h"

// The mask loops: dst[i] ± ks[i] modulo 2^32 on 32-byte vectors (8 words),
// four vectors per iteration, then one vector at a time, then a scalar tail
// of at most 7 words. Loads and stores are unaligned (dst is any []uint32,
// ks any []byte), which costs nothing on data in cache.

// func addWordsAVX2(dst *uint32, ks *byte, n int)
TEXT ·addWordsAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ ks+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $32
	JB   add8
add32:
	VMOVDQU (DI), Y0
	VMOVDQU 32(DI), Y1
	VMOVDQU 64(DI), Y2
	VMOVDQU 96(DI), Y3
	VPADDD  (SI), Y0, Y0
	VPADDD  32(SI), Y1, Y1
	VPADDD  64(SI), Y2, Y2
	VPADDD  96(SI), Y3, Y3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JAE     add32
add8:
	CMPQ    CX, $8
	JB      add1
	VMOVDQU (DI), Y0
	VPADDD  (SI), Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     add8
add1:
	TESTQ CX, CX
	JZ    adddone
	MOVL  (SI), AX
	ADDL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	DECQ  CX
	JMP   add1
adddone:
	VZEROUPPER
	RET

// func subWordsAVX2(dst *uint32, ks *byte, n int)
// VPSUBD m, a, b computes b = a − m: dst is loaded, the keystream is the
// memory operand.
TEXT ·subWordsAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ ks+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $32
	JB   sub8
sub32:
	VMOVDQU (DI), Y0
	VMOVDQU 32(DI), Y1
	VMOVDQU 64(DI), Y2
	VMOVDQU 96(DI), Y3
	VPSUBD  (SI), Y0, Y0
	VPSUBD  32(SI), Y1, Y1
	VPSUBD  64(SI), Y2, Y2
	VPSUBD  96(SI), Y3, Y3
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, SI
	SUBQ    $32, CX
	CMPQ    CX, $32
	JAE     sub32
sub8:
	CMPQ    CX, $8
	JB      sub1
	VMOVDQU (DI), Y0
	VPSUBD  (SI), Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     sub8
sub1:
	TESTQ CX, CX
	JZ    subdone
	MOVL  (SI), AX
	SUBL  AX, (DI)
	ADDQ  $4, DI
	ADDQ  $4, SI
	DECQ  CX
	JMP   sub1
subdone:
	VZEROUPPER
	RET
