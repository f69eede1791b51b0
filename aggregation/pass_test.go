package aggregation

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPass checks the benchmarks' summing pass against a plain loop (the
// same float32 additions in row order), over sizes with SIMD tails and
// partial blocks.
func TestPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 3, 50} {
		for _, d := range []int{0, 1, 31, 32, 33, passBlock - 1, passBlock + 37, 3*passBlock + 100} {
			xs := kernelInputs(rng, "normal", n, d)
			want := make([]float32, d)
			for _, x := range xs {
				for i := range want {
					want[i] += x[i]
				}
			}
			got := make([]float32, d)
			for i := range got {
				got[i] = 7 // Pass overwrites dst
			}
			path := Pass(got, xs)
			if !slices.Contains(KernelPaths(), path) && path != "avx2" {
				t.Fatalf("Pass reported path %q", path)
			}
			if !sameBits(got, want) {
				t.Fatalf("n=%d d=%d: Pass differs from the plain sum", n, d)
			}
		}
	}
}
