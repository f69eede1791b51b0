//go:build !amd64 || purego

package secagg

// haveAVX2 is false: this build has no assembly loops.
var haveAVX2 = false

func addWords(dst []uint32, ks []byte, negate bool) { addWordsGeneric(dst, ks, negate) }

func addVectors(dst, src []uint32) { addVectorsGeneric(dst, src) }
