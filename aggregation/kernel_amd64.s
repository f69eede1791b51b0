//go:build amd64 && !purego

#include "textflag.h"

// PAIR_STEP is one step of pairTileAVX512: the 16 squared differences of
// a0..a3 (Z16-Z19) and b0..b3 (Z20-Z23), each added to its accumulator
// (pair (p, q) in Z(4q+p)), half of the differences by VFMSUB with the
// 1.0s of Z24. The loop and the masked tail both run it.
#define PAIR_STEP \
	VSUBPS Z20, Z16, Z25      \
	VMULPS Z25, Z25, Z25      \
	VADDPS Z25, Z0, Z0        \
	VMOVAPS Z20, Z26          \
	VFMSUB231PS Z24, Z17, Z26 \
	VMULPS Z26, Z26, Z26      \
	VADDPS Z26, Z4, Z4        \
	VSUBPS Z20, Z18, Z27      \
	VMULPS Z27, Z27, Z27      \
	VADDPS Z27, Z8, Z8        \
	VMOVAPS Z20, Z28          \
	VFMSUB231PS Z24, Z19, Z28 \
	VMULPS Z28, Z28, Z28      \
	VADDPS Z28, Z12, Z12      \
	VSUBPS Z21, Z16, Z29      \
	VMULPS Z29, Z29, Z29      \
	VADDPS Z29, Z1, Z1        \
	VMOVAPS Z21, Z30          \
	VFMSUB231PS Z24, Z17, Z30 \
	VMULPS Z30, Z30, Z30      \
	VADDPS Z30, Z5, Z5        \
	VSUBPS Z21, Z18, Z31      \
	VMULPS Z31, Z31, Z31      \
	VADDPS Z31, Z9, Z9        \
	VMOVAPS Z21, Z25          \
	VFMSUB231PS Z24, Z19, Z25 \
	VMULPS Z25, Z25, Z25      \
	VADDPS Z25, Z13, Z13      \
	VSUBPS Z22, Z16, Z26      \
	VMULPS Z26, Z26, Z26      \
	VADDPS Z26, Z2, Z2        \
	VMOVAPS Z22, Z27          \
	VFMSUB231PS Z24, Z17, Z27 \
	VMULPS Z27, Z27, Z27      \
	VADDPS Z27, Z6, Z6        \
	VSUBPS Z22, Z18, Z28      \
	VMULPS Z28, Z28, Z28      \
	VADDPS Z28, Z10, Z10      \
	VMOVAPS Z22, Z29          \
	VFMSUB231PS Z24, Z19, Z29 \
	VMULPS Z29, Z29, Z29      \
	VADDPS Z29, Z14, Z14      \
	VSUBPS Z23, Z16, Z30      \
	VMULPS Z30, Z30, Z30      \
	VADDPS Z30, Z3, Z3        \
	VMOVAPS Z23, Z31          \
	VFMSUB231PS Z24, Z17, Z31 \
	VMULPS Z31, Z31, Z31      \
	VADDPS Z31, Z7, Z7        \
	VSUBPS Z23, Z18, Z25      \
	VMULPS Z25, Z25, Z25      \
	VADDPS Z25, Z11, Z11      \
	VMOVAPS Z23, Z26          \
	VFMSUB231PS Z24, Z19, Z26 \
	VMULPS Z26, Z26, Z26      \
	VADDPS Z26, Z15, Z15

// REDUCE16(z, y, x, ty, tx, off) stores at off(DI) the sum of the 16 float32
// lanes of z by the tree 8, 4, 2, 1; y and x are z's lower halves, ty and
// tx those of a scratch register.
#define REDUCE16(z, y, x, ty, tx, off) \
	VEXTRACTF32X8 $1, z, ty \
	VADDPS ty, y, y         \
	VEXTRACTF32X4 $1, y, tx \
	VADDPS tx, x, x         \
	VMOVHLPS x, x, tx       \
	VADDPS tx, x, x         \
	VMOVSHDUP x, tx         \
	VADDSS tx, x, x         \
	VMOVSS x, off(DI)

// func pairTileAVX512(s *[16]float32, rows *[8]*float32, n int)
// s[4p+q] = Σ (a_p[i] − b_q[i])² over i < n, summed in 16 float32 lanes by i mod 16
// (multiply and add, no FMA) and the lanes by the tree 8, 4, 2, 1. rows holds a0..a3, b0..b3.
// Half the differences are computed as a·1 − b by VFMSUB (exact product, one
// rounding: the same bits as VSUBPS) to balance the FMA and FADD pipes.
TEXT ·pairTileAVX512(SB), NOSPLIT, $0-24
	MOVQ s+0(FP), DI
	MOVQ rows+8(FP), AX
	MOVQ n+16(FP), CX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ 32(AX), R12
	MOVQ 40(AX), R13
	MOVQ 48(AX), BX
	MOVQ 56(AX), DX
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	VXORPS Z8, Z8, Z8
	VXORPS Z9, Z9, Z9
	VXORPS Z10, Z10, Z10
	VXORPS Z11, Z11, Z11
	VXORPS Z12, Z12, Z12
	VXORPS Z13, Z13, Z13
	VXORPS Z14, Z14, Z14
	VXORPS Z15, Z15, Z15
	MOVL $0x3f800000, AX
	VPBROADCASTD AX, Z24
	XORQ SI, SI
	MOVQ CX, AX
	ANDQ $-16, AX
	SHLQ $2, AX
loop:
	CMPQ SI, AX
	JGE tail
	VMOVUPS (R8)(SI*1), Z16
	VMOVUPS (R9)(SI*1), Z17
	VMOVUPS (R10)(SI*1), Z18
	VMOVUPS (R11)(SI*1), Z19
	VMOVUPS (R12)(SI*1), Z20
	VMOVUPS (R13)(SI*1), Z21
	VMOVUPS (BX)(SI*1), Z22
	VMOVUPS (DX)(SI*1), Z23
	PAIR_STEP
	ADDQ $64, SI
	JMP loop
tail:
	ANDQ $15, CX
	JZ reduce
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS.Z (R8)(SI*1), K1, Z16
	VMOVUPS.Z (R9)(SI*1), K1, Z17
	VMOVUPS.Z (R10)(SI*1), K1, Z18
	VMOVUPS.Z (R11)(SI*1), K1, Z19
	VMOVUPS.Z (R12)(SI*1), K1, Z20
	VMOVUPS.Z (R13)(SI*1), K1, Z21
	VMOVUPS.Z (BX)(SI*1), K1, Z22
	VMOVUPS.Z (DX)(SI*1), K1, Z23
	PAIR_STEP
reduce:
	REDUCE16(Z0, Y0, X0, Y16, X16, 0)
	REDUCE16(Z1, Y1, X1, Y17, X17, 4)
	REDUCE16(Z2, Y2, X2, Y18, X18, 8)
	REDUCE16(Z3, Y3, X3, Y19, X19, 12)
	REDUCE16(Z4, Y4, X4, Y20, X20, 16)
	REDUCE16(Z5, Y5, X5, Y21, X21, 20)
	REDUCE16(Z6, Y6, X6, Y22, X22, 24)
	REDUCE16(Z7, Y7, X7, Y23, X23, 28)
	REDUCE16(Z8, Y8, X8, Y16, X16, 32)
	REDUCE16(Z9, Y9, X9, Y17, X17, 36)
	REDUCE16(Z10, Y10, X10, Y18, X18, 40)
	REDUCE16(Z11, Y11, X11, Y19, X19, 44)
	REDUCE16(Z12, Y12, X12, Y20, X20, 48)
	REDUCE16(Z13, Y13, X13, Y21, X21, 52)
	REDUCE16(Z14, Y14, X14, Y22, X22, 56)
	REDUCE16(Z15, Y15, X15, Y23, X23, 60)
	VZEROUPPER
	RET

// GATHER16 copies xs[r][off:off+16] into row r (64 bytes) of buf for r < n,
// with buf in SI, xs in AX, n in CX (> 0) and off·4 in DX; it uses BX and
// R8. NETWORK16(done) applies the comparators of net (AX, nnet int32s in
// CX: pairs of byte offsets of rows) to the rows of buf in SI, lane by
// lane (the minimum to the first row, VMINPS/VMAXPS returning the second
// row's value on equal values), or jumps to done when nnet is 0; it uses
// R8, R9 and Z0-Z3. rankMean16AVX512 and sort16AVX512 both start with
// them (labels are local to a TEXT block, so each has its own).
#define GATHER16 \
	MOVQ SI, BX            \
gather:                        \
	MOVQ (AX), R8          \
	VMOVUPS (R8)(DX*1), Z0 \
	VMOVUPS Z0, (BX)       \
	ADDQ $24, AX           \
	ADDQ $64, BX           \
	DECQ CX                \
	JNZ gather

#define NETWORK16(done) \
	LEAQ (AX)(CX*4), CX    \
	CMPQ AX, CX            \
	JGE done               \
netloop:                       \
	MOVLQSX (AX), R8       \
	MOVLQSX 4(AX), R9      \
	VMOVUPS (SI)(R8*1), Z0 \
	VMOVUPS (SI)(R9*1), Z1 \
	VMINPS Z1, Z0, Z2      \
	VMAXPS Z1, Z0, Z3      \
	VMOVUPS Z2, (SI)(R8*1) \
	VMOVUPS Z3, (SI)(R9*1) \
	ADDQ $8, AX            \
	CMPQ AX, CX            \
	JLT netloop

// func rankMean16AVX512(dst *float32, buf *float32, xs *[]float32, n int, off int, net *int32, nnet int, lo, hi int)
// Gathers xs[r][off:off+16] into row r (64 bytes) of buf, applies the
// comparators net (byte-offset pairs; min to the first, max to the second),
// and writes the float64 mean of rows lo..hi-1, added in row order.
TEXT ·rankMean16AVX512(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ buf+8(FP), SI
	MOVQ xs+16(FP), AX
	MOVQ n+24(FP), CX
	MOVQ off+32(FP), DX
	SHLQ $2, DX
	GATHER16
	MOVQ net+40(FP), AX
	MOVQ nnet+48(FP), CX
	NETWORK16(mean)
mean:
	MOVQ lo+56(FP), R8
	MOVQ hi+64(FP), R9
	MOVQ R9, R10
	SUBQ R8, R10
	VCVTSI2SDQ R10, X6, X6
	VBROADCASTSD X6, Z6
	VXORPD Z4, Z4, Z4
	VXORPD Z5, Z5, Z5
	SHLQ $6, R8
	SHLQ $6, R9
meanloop:
	VCVTPS2PD (SI)(R8*1), Z0
	VCVTPS2PD 32(SI)(R8*1), Z1
	VADDPD Z0, Z4, Z4
	VADDPD Z1, Z5, Z5
	ADDQ $64, R8
	CMPQ R8, R9
	JLT meanloop
	VDIVPD Z6, Z4, Z4
	VDIVPD Z6, Z5, Z5
	VCVTPD2PS Z4, Y4
	VCVTPD2PS Z5, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	VZEROUPPER
	RET

// func add64AVX512(acc *float64, x *float32, n int)
// acc[i] += float64(x[i]) for i < n; n is a multiple of 16.
TEXT ·add64AVX512(SB), NOSPLIT, $0-24
	MOVQ acc+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ add64done
add64loop:
	VCVTPS2PD (SI), Z0
	VCVTPS2PD 32(SI), Z1
	VADDPD (DI), Z0, Z0
	VADDPD 64(DI), Z1, Z1
	VMOVUPD Z0, (DI)
	VMOVUPD Z1, 64(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	DECQ CX
	JNZ add64loop
add64done:
	VZEROUPPER
	RET

// func div32AVX512(dst *float32, acc *float64, n int, c float64)
// dst[i] = float32(acc[i] / c) for i < n; n is a multiple of 16.
TEXT ·div32AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ acc+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSD c+24(FP), Z2
	SHRQ $4, CX
	JZ div32done
div32loop:
	VMOVUPD (SI), Z0
	VMOVUPD 64(SI), Z1
	VDIVPD Z2, Z0, Z0
	VDIVPD Z2, Z1, Z1
	VCVTPD2PS Z0, Y0
	VCVTPD2PS Z1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $128, SI
	ADDQ $64, DI
	DECQ CX
	JNZ div32loop
div32done:
	VZEROUPPER
	RET

// func sort16AVX512(buf *float32, xs *[]float32, n int, off int, net *int32, nnet int)
// The gather and network of rankMean16AVX512, leaving the sorted rows in buf.
TEXT ·sort16AVX512(SB), NOSPLIT, $0-48
	MOVQ buf+0(FP), SI
	MOVQ xs+8(FP), AX
	MOVQ n+16(FP), CX
	MOVQ off+24(FP), DX
	SHLQ $2, DX
	GATHER16
	MOVQ net+32(FP), AX
	MOVQ nnet+40(FP), CX
	NETWORK16(sdone)
sdone:
	VZEROUPPER
	RET

// func axpy64AVX512(acc *float64, x *float32, n int, w float64)
// acc[i] += float64(w·float64(x[i])) for i < n (product rounded, then
// added: no FMA); n is a multiple of 16.
TEXT ·axpy64AVX512(SB), NOSPLIT, $0-32
	MOVQ acc+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSD w+24(FP), Z4
	SHRQ $4, CX
	JZ axpydone
axpyloop:
	VCVTPS2PD (SI), Z0
	VCVTPS2PD 32(SI), Z1
	VMULPD Z4, Z0, Z0
	VMULPD Z4, Z1, Z1
	VADDPD (DI), Z0, Z0
	VADDPD 64(DI), Z1, Z1
	VMOVUPD Z0, (DI)
	VMOVUPD Z1, 64(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	DECQ CX
	JNZ axpyloop
axpydone:
	VZEROUPPER
	RET

// func sqdist4x4AVX512(s *[4][4]float64, rows *[4]*float32, y *float32, n int)
// s[r][k%4] += float64(t·t) with t = float64(rows[r][k]) − float64(y[k]),
// k in increasing order, for k < n, for four rows at once against the same
// y: four independent 4-lane chains, the same operations in the same order
// as sqdist4Generic; n is a multiple of 4.
TEXT ·sqdist4x4AVX512(SB), NOSPLIT, $0-32
	MOVQ s+0(FP), DI
	MOVQ rows+8(FP), AX
	MOVQ 0(AX), R8
	MOVQ 8(AX), R9
	MOVQ 16(AX), R10
	MOVQ 24(AX), R11
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	VMOVUPD 0(DI), Y0
	VMOVUPD 32(DI), Y1
	VMOVUPD 64(DI), Y2
	VMOVUPD 96(DI), Y3
	XORQ BX, BX
	SHRQ $2, CX
	JZ sqx4done
sqx4loop:
	VCVTPS2PD (DX)(BX*1), Y8
	VCVTPS2PD (R8)(BX*1), Y4
	VCVTPS2PD (R9)(BX*1), Y5
	VCVTPS2PD (R10)(BX*1), Y6
	VCVTPS2PD (R11)(BX*1), Y7
	VSUBPD Y8, Y4, Y4
	VSUBPD Y8, Y5, Y5
	VSUBPD Y8, Y6, Y6
	VSUBPD Y8, Y7, Y7
	VMULPD Y4, Y4, Y4
	VMULPD Y5, Y5, Y5
	VMULPD Y6, Y6, Y6
	VMULPD Y7, Y7, Y7
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	ADDQ $16, BX
	DECQ CX
	JNZ sqx4loop
sqx4done:
	VMOVUPD Y0, 0(DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	VZEROUPPER
	RET
