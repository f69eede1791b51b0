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
	dim, padded int
	inv         float64  // 1/√d'
	neg         []uint64 // bit j of neg[i/64] set: coordinate i's sign is −1
}

// NewRotation returns the rotation of vectors of dim ≥ 1 coordinates whose
// signs are drawn from a ChaCha8 seeded with seed: coordinate i's sign is
// bit i mod 64 of the generator's (i/64)-th word, 1 for −1. The signs are
// kept as those bits, d'/8 bytes, and applied by setting the sign bit of
// 1/√d' (what multiplying by ±1/√d' gives, bit for bit), rather than as
// d' float64s: 8 MiB less to allocate and stream per rotation at d' = 2^20.
func NewRotation(seed [32]byte, dim int) *Rotation {
	n := PaddedDim(dim)
	r := &Rotation{dim: dim, padded: n, inv: 1 / math.Sqrt(float64(n)), neg: make([]uint64, (n+63)/64)}
	rng := rand.NewChaCha8(seed)
	for i := range r.neg {
		r.neg[i] = rng.Uint64()
	}
	return r
}

// sign returns coordinate i's ±1/√d'.
func (r *Rotation) sign(i int) float64 {
	return math.Float64frombits(math.Float64bits(r.inv) | (r.neg[i>>6]>>(uint(i)&63)&1)<<63)
}

// Padded returns d', the length of a rotated vector.
func (r *Rotation) Padded() int { return r.padded }

// Forward writes R·x to dst: len(x) must be Dim and len(dst) Padded.
func (r *Rotation) Forward(dst []float64, x []float32) {
	dst = dst[:r.padded]
	for i, v := range x[:len(x):len(x)] {
		dst[i] = float64(v) * r.sign(i)
	}
	clear(dst[len(x):])
	fwht(dst)
}

// Inverse writes the first Dim coordinates of R⁻¹·y to dst, overwriting y
// with scratch values: len(y) must be Padded and len(dst) Dim.
func (r *Rotation) Inverse(dst []float64, y []float64) {
	fwht(y)
	for i := range dst {
		dst[i] = y[i] * r.sign(i)
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
// across blocks over the whole vector, two at a time and split among the
// same goroutines; the result is the same, pass for pass and bit for
// bit, as the textbook loop.
func fwht(v []float64) {
	n := len(v)
	b := min(n, fwhtBlock)
	blocks := n / b
	workers := max(1, min(runtime.GOMAXPROCS(0), blocks/4))
	if workers == 1 {
		for i := 0; i < n; i += b {
			fwhtPasses(v[i:i+b], 1, b, 0, 1)
		}
		fwhtPasses(v, b, n, 0, 1)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*blocks/workers*b, (w+1)*blocks/workers*b
		wg.Go(func() {
			for i := lo; i < hi; i += b {
				fwhtPasses(v[i:i+b], 1, b, 0, 1)
			}
		})
	}
	wg.Wait()
	// The passes across blocks: goroutine w takes the butterflies whose
	// offset within their group is in its share of [0, h), for every
	// group, so the goroutines touch disjoint coordinates; they wait for
	// one another between two pairs of passes.
	for h := b; h < n; h <<= 2 {
		for w := range workers {
			wg.Go(func() { fwhtPasses(v, h, min(4*h, n), w, workers) })
		}
		wg.Wait()
	}
}

// fwhtPasses runs the butterfly passes of half-width h from h0 up to n/2
// over v, two at a time (radix 4: each coordinate read and written once
// per two passes, with the same additions in the same order as two radix-2
// passes) and the last alone if their number is odd. Of the butterflies of
// each group it does those whose offset j within the group's first
// quarter (or half, alone) satisfies w·h/k ≤ j < (w+1)·h/k: worker w of k.
func fwhtPasses(v []float64, h0, n, w, k int) {
	h := h0
	for ; 4*h <= n; h <<= 2 {
		lo, hi := w*h/k, (w+1)*h/k
		for i := 0; i < len(v); i += 4 * h {
			a := v[i+lo : i+hi]
			b := v[i+h+lo : i+h+hi]
			c := v[i+2*h+lo : i+2*h+hi]
			d := v[i+3*h+lo : i+3*h+hi]
			b, c, d = b[:len(a)], c[:len(a)], d[:len(a)]
			for j := range a {
				ab, amb := a[j]+b[j], a[j]-b[j]
				cd, cmd := c[j]+d[j], c[j]-d[j]
				a[j], c[j] = ab+cd, ab-cd
				b[j], d[j] = amb+cmd, amb-cmd
			}
		}
	}
	if h < n {
		lo, hi := w*h/k, (w+1)*h/k
		for i := 0; i < len(v); i += 2 * h {
			a, b := v[i+lo:i+hi], v[i+h+lo:i+h+hi]
			b = b[:len(a)]
			for j := range a {
				x, y := a[j], b[j]
				a[j], b[j] = x+y, x-y
			}
		}
	}
}
