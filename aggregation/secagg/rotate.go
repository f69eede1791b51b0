package secagg

// # Random rotation
//
// Before rounding and noising, the distributed discrete Gaussian mechanism
// (ddp.go) rotates each participant's update with the randomized
// Walsh–Hadamard transform R = H·D/√d' (Kairouz, Liu, Steinke 2021,
// Section 4; Suresh et al. 2017): the update is padded with zeros to the
// next power of two d', D flips the sign of each coordinate by a random
// sign, and H is the d'×d' Hadamard matrix, applied in O(d' log d') with
// the fast transform. R is orthogonal, so it keeps the ℓ2 norm the
// privacy guarantee is stated in, and it spreads a vector's mass evenly
// over the coordinates, so that no coordinate of the rotated update is
// much larger than ‖x‖₂/√d' with high probability: that keeps the sum
// within the 32-bit ring with fewer bits than the worst case would need.
// The inverse is D·H/√d' (H is symmetric and H² = d'·I).
//
// The signs must be the same for every participant of a sum and for the
// coordinator that inverts it, so they come from a seed they all share for
// the round; they need not be secret (the privacy proof holds for any
// fixed rotation, the randomness only helps the modular clipping).

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
)

// PaddedDim returns d', the power of two the rotation pads a vector of d
// coordinates to: the least power of two ≥ d (1 for d ≤ 1).
func PaddedDim(d int) int {
	if d <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(d-1))
}

// Rotation is the randomized Walsh–Hadamard transform for vectors of Dim
// coordinates padded to PaddedDim(Dim).
type Rotation struct {
	dim   int
	signs []float64 // ±1/√d', the sign and the normalisation at once
}

// NewRotation returns the rotation of vectors of dim ≥ 1 coordinates whose
// signs are drawn from a ChaCha8 seeded with seed.
func NewRotation(seed [32]byte, dim int) *Rotation {
	n := PaddedDim(dim)
	r := &Rotation{dim: dim, signs: make([]float64, n)}
	rng := rand.NewChaCha8(seed)
	inv := 1 / math.Sqrt(float64(n))
	for i := 0; i < n; i += 64 {
		w := rng.Uint64()
		for j := 0; j < 64 && i+j < n; j++ {
			if w>>j&1 == 1 {
				r.signs[i+j] = -inv
			} else {
				r.signs[i+j] = inv
			}
		}
	}
	return r
}

// Padded returns d', the length of a rotated vector.
func (r *Rotation) Padded() int { return len(r.signs) }

// Forward writes R·x to dst: len(x) must be Dim and len(dst) Padded.
func (r *Rotation) Forward(dst []float64, x []float32) {
	for i, v := range x {
		dst[i] = float64(v) * r.signs[i]
	}
	clear(dst[len(x):])
	fwht(dst)
}

// Inverse writes the first Dim coordinates of R⁻¹·y to dst, overwriting y
// with scratch values: len(y) must be Padded and len(dst) Dim.
func (r *Rotation) Inverse(dst []float64, y []float64) {
	fwht(y)
	for i := range dst {
		dst[i] = y[i] * r.signs[i]
	}
}

// fwhtBlock is the size of the blocks fwht transforms one at a time
// before the passes that span blocks: 2^12 float64s, 32 KiB, stay in a
// core's L1 or L2 cache through the first 12 passes instead of streaming
// the whole vector through memory for each.
const fwhtBlock = 1 << 12

// fwht applies the unnormalised fast Walsh–Hadamard transform in place;
// len(v) is a power of two. The passes within a block run block by block
// (on up to GOMAXPROCS goroutines for long vectors), then the passes
// across blocks over the whole vector; the result is the same, pass for
// pass, as the textbook loop.
func fwht(v []float64) {
	n := len(v)
	b := min(n, fwhtBlock)
	blocks := n / b
	workers := max(1, min(runtime.GOMAXPROCS(0), blocks/4))
	if workers == 1 {
		for i := 0; i < n; i += b {
			fwhtPasses(v[i:i+b], 1, b)
		}
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			lo, hi := w*blocks/workers*b, (w+1)*blocks/workers*b
			wg.Go(func() {
				for i := lo; i < hi; i += b {
					fwhtPasses(v[i:i+b], 1, b)
				}
			})
		}
		wg.Wait()
	}
	fwhtPasses(v, b, n)
}

// fwhtPasses runs the butterfly passes of half-width h from h0 up to n/2
// over v.
func fwhtPasses(v []float64, h0, n int) {
	for h := h0; h < n; h <<= 1 {
		for i := 0; i < len(v); i += 2 * h {
			a, b := v[i:i+h], v[i+h:i+2*h]
			for j := range a {
				x, y := a[j], b[j]
				a[j], b[j] = x+y, x-y
			}
		}
	}
}
