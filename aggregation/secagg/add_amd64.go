//go:build amd64 && !purego

package secagg

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAVX2 selects the assembly loops of add_amd64.s. Tests turn it off to
// check that the portable loop gives the same words.
var haveAVX2 = cpu.X86.HasAVX2

// addWordsAVX2 sets dst[i] += ks[i] (ks read as little-endian 32-bit
// words) for i < n, modulo 2^32.
//
//go:noescape
func addWordsAVX2(dst *uint32, ks *byte, n int)

// subWordsAVX2 sets dst[i] -= ks[i] for i < n, modulo 2^32.
//
//go:noescape
func subWordsAVX2(dst *uint32, ks *byte, n int)

// addWords adds (or subtracts) the little-endian 32-bit words of ks to
// dst, modulo 2^32. x86 is little-endian, so the assembly adds the bytes
// of ks as they lie in memory.
func addWords(dst []uint32, ks []byte, negate bool) {
	if !haveAVX2 || len(dst) == 0 {
		addWordsGeneric(dst, ks, negate)
		return
	}
	// The assembly does no bounds checks: a short ks panics here, as it
	// would in the portable loop.
	ks = ks[:4*len(dst)]
	if negate {
		subWordsAVX2(&dst[0], &ks[0], len(dst))
	} else {
		addWordsAVX2(&dst[0], &ks[0], len(dst))
	}
}

// addVectors sets dst[i] += src[i] modulo 2^32, with the loop of addWords:
// on x86, src's words lie in memory as the little-endian keystream words
// addWordsAVX2 reads.
func addVectors(dst, src []uint32) {
	src = src[:len(dst)]
	if !haveAVX2 || len(dst) == 0 {
		addVectorsGeneric(dst, src)
		return
	}
	addWordsAVX2(&dst[0], (*byte)(unsafe.Pointer(&src[0])), len(dst))
}
