package secagg

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// withAddPaths runs f with the assembly loops (when this build and CPU have
// them) and with the portable loop.
func withAddPaths(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := haveAVX2
	defer func() { haveAVX2 = saved }()
	if saved {
		t.Run("asm", f)
	} else {
		t.Log("no AVX2 loops in this build or on this CPU: testing the portable loop only")
	}
	haveAVX2 = false
	t.Run("go", f)
}

// TestAddWords checks addWords against a word-by-word reference for every
// length up to 100 and some long ones (the 32-word loop, the 8-word loop
// and the scalar tail in all combinations), at unaligned offsets of dst and
// ks, in both directions, and that no word outside dst is written.
func TestAddWords(t *testing.T) {
	lengths := []int{}
	for n := range 101 {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 127, 128, 129, 255, 1000, 4099, maskChunk/4, 100_003)
	const guard = 9
	withAddPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, n := range lengths {
			for _, negate := range []bool{false, true} {
				dOff, kOff := rng.IntN(4), rng.IntN(4)
				t.Run(fmt.Sprintf("n=%d/negate=%v/off=%d,%d", n, negate, dOff, kOff), func(t *testing.T) {
					words := make([]uint32, n+dOff+2*guard)
					for i := range words {
						words[i] = rng.Uint32()
					}
					orig := append([]uint32(nil), words...)
					ksAll := make([]byte, 4*n+kOff+7)
					for i := range ksAll {
						ksAll[i] = byte(rng.Uint32())
					}
					dst := words[guard+dOff : guard+dOff+n]
					ks := ksAll[kOff:]
					addWords(dst, ks, negate)
					for i := range words {
						want := orig[i]
						if j := i - guard - dOff; j >= 0 && j < n {
							k := binary.LittleEndian.Uint32(ks[4*j:])
							if negate {
								want -= k
							} else {
								want += k
							}
						}
						if words[i] != want {
							t.Fatalf("word %d (dst[%d]) = %#x, want %#x", i, i-guard-dOff, words[i], want)
						}
					}
				})
			}
		}
	})
}

// TestAddWordsShortKeystream checks that a keystream shorter than 4·len(dst)
// bytes panics in both paths rather than being read past its end.
func TestAddWordsShortKeystream(t *testing.T) {
	withAddPaths(t, func(t *testing.T) {
		for _, n := range []int{1, 8, 40} {
			for _, negate := range []bool{false, true} {
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("addWords(%d words, %d keystream bytes, negate %v) did not panic", n, 4*n-1, negate)
						}
					}()
					addWords(make([]uint32, n), make([]byte, 4*n-1), negate)
				}()
			}
		}
	})
}

// TestAddVectors checks addVectors, and sumVectors over blocks of
// sumBlock words, against word-by-word sums for lengths around the loops'
// and the blocks' edges, and that no word outside dst is written.
func TestAddVectors(t *testing.T) {
	const guard = 9
	withAddPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{0, 1, 7, 8, 31, 32, 33, 100, sumBlock - 1, sumBlock, sumBlock + 1, 3*sumBlock + 5, 100_001} {
			words := make([]uint32, n+2*guard)
			for i := range words {
				words[i] = rng.Uint32()
			}
			orig := append([]uint32(nil), words...)
			vecs := make([][]uint32, 5)
			for k := range vecs {
				vecs[k] = make([]uint32, n+rng.IntN(3)) // longer is allowed
				for i := range vecs[k] {
					vecs[k][i] = rng.Uint32()
				}
			}
			dst := words[guard : guard+n]
			addVectors(dst, vecs[0])
			sumVectors(dst, vecs[1:])
			for i := range words {
				want := orig[i]
				if j := i - guard; j >= 0 && j < n {
					for _, v := range vecs {
						want += v[j]
					}
				}
				if words[i] != want {
					t.Fatalf("n=%d: word %d (dst[%d]) = %#x, want %#x", n, i, i-guard, words[i], want)
				}
			}
		}
	})
}
