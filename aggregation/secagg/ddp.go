package secagg

// # Distributed discrete Gaussian encoding
//
// With differential privacy, a participant's update is encoded by the
// distributed discrete Gaussian mechanism of Kairouz, Liu and Steinke
// (ICML 2021, Algorithm 1) instead of Params' fixed-point encoding, so
// that the sum the coordinator unmasks is differentially private by itself
// and nobody has to trust the coordinator with the noise. For an update x
// of d float32 coordinates:
//
//  1. clip: x ← x · min(1, C/‖x‖₂), C = ClipNorm;
//  2. scale to the integer grid: x ← γ·x, γ = Scale, so ‖x‖₂ ≤ c = γC;
//  3. rotate: x ← R·x with the randomized Walsh–Hadamard transform of
//     rotate.go (padding to d' = PaddedDim(d); R is the same for every
//     participant of the round, from Seed);
//  4. round conditionally: z = randomized rounding of each coordinate
//     (⌊v⌋+1 with probability v−⌊v⌋), drawn again until ‖z‖₂ ≤ Δ₂ =
//     privacy.ConditionalRoundingL2Bound(c, Beta, d'), which one attempt
//     fails with probability at most Beta;
//  5. add noise: z_i ← z_i + N_Z(0, σ²) with σ² = Sigma2, each coordinate
//     independently (dgauss.go; the generator is seeded from crypto/rand,
//     never from the round);
//  6. write z_i in two's complement modulo 2^32, then one more word, 1, so
//     that the sum carries the number of survivors.
//
// Weights are always 1: a weighted sum would let one participant's
// contribution, and so the sensitivity, grow with its weight.
//
// The coordinator unmasks Σ z over the m survivors, reads each word as a
// signed 32-bit integer, applies R⁻¹ and divides by γ·m: the mean of the
// clipped updates plus the mean of the rounding errors plus noise of
// variance Var(N_Z(0, σ²))/(γ²m) on every coordinate (NoiseVariance).
//
// Privacy. One participant's z differs from zero by at most Δ₂ in ℓ2
// norm, and the sum carries the noise of all m survivors: that is the
// mechanism privacy.DistributedDiscreteGaussian accounts for (Mechanism),
// with Clients = m. Fewer survivors mean less noise, so the account must be
// taken with the fewest survivors a round may be unmasked with.
//
// Bit budget. The ring has 32 bits and the words are read as signed, so
// every coordinate of the true integer sum must stay within ±(2^31 − 1).
// Each survivor's rounded coordinate is at most ‖z‖₂ ≤ Δ₂ in absolute
// value (deterministically), and the sum of n discrete Gaussians is
// nσ²-subgaussian (Canonne, Kamath, Steinke 2020, Corollary 9), so with n
// survivors at most, a coordinate of the sum exceeds
//
//	n·Δ₂ + √(2nσ² · ln(2d'/p))
//
// on any of the d' coordinates with probability at most p = WrapProbability.
// Check(n) refuses parameters for which that exceeds 2^31 − 1 (a
// *DDPBudgetError). A wrapped sum would decode to garbage, not leak: the
// bound protects utility, not privacy.

import (
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"runtime"

	"github.com/fedguard/fedguard/internal/workers"
	"github.com/fedguard/fedguard/privacy"
)

// DDPMechanism is the name of the mechanism, as the manifest's Privacy
// record and the configuration spell it.
const DDPMechanism = "distributed-discrete-gaussian"

// WrapProbability is the most Check allows for the probability that one
// round's sum wraps around the ring on some coordinate: 2^−40.
const WrapProbability = 0x1p-40

// DDPGridFactor sets the grid the updates are rounded to: DefaultDDP
// scales the clipping norm to c = DDPGridFactor·√d' grid units, so that
// the rounding's growth of the norm, √(c² + d'/4 + …) instead of c, costs
// under 0.1 % of the sensitivity while the sum still uses a small part of
// the 32 bits.
const DDPGridFactor = 16

// DefaultDDPBeta is the conditional rounding's β, exp(−1/2) as in Kairouz,
// Liu, Steinke 2021, Section 6: a rounding attempt fails the norm test with
// probability at most β.
var DefaultDDPBeta = math.Exp(-0.5)

// maxRoundingAttempts bounds the conditional rounding's redraws; each
// fails with probability at most β < 1, so β^1000 is nothing a run sees.
const maxRoundingAttempts = 1000

// DDP fixes the distributed discrete Gaussian encoding of one secure
// aggregation (see the section "Distributed discrete Gaussian encoding" in
// ddp.go). Every participant and the coordinator must use the same DDP.
type DDP struct {
	Dim      int      // coordinates of an update, before padding
	ClipNorm float64  // C: updates are clipped to this ℓ2 norm
	Scale    float64  // γ: grid units per unit of the update
	Sigma2   uint64   // σ²: each participant's discrete Gaussian, in grid units squared
	Beta     float64  // conditional rounding's β, in [0, 1)
	Seed     [32]byte // the rotation's signs, shared by the round
}

// DDPBudgetError reports parameters whose sum could wrap around the ring:
// N·L2 + √(2Nσ²·ln(2d'/p)) > 2^31 − 1. It matches ErrParams.
type DDPBudgetError struct {
	N        int     // most survivors
	L2       float64 // Δ₂, a participant's ℓ2 bound on the grid
	Sigma2   uint64
	Padded   int     // d'
	Bound    float64 // the left-hand side
	MaxSigma float64 // the largest σ that would fit with this N and L2 (0: none)
}

// Error spells the bound out.
func (e *DDPBudgetError) Error() string {
	msg := fmt.Sprintf("secagg: distributed DP bit budget exceeded: %d survivors × ℓ2 bound %.6g + noise tail √(2·%d·%d·ln(2·%d/2^−40)) = %.6g > 2^31 − 1, so the sum could wrap around the 32-bit ring",
		e.N, e.L2, e.N, e.Sigma2, e.Padded, e.Bound)
	if e.MaxSigma > 0 {
		msg += fmt.Sprintf("; the noise must stay below σ = %.6g per participant: raise the privacy budget (dp_epsilon) or lower the rounds", e.MaxSigma)
	} else {
		msg += "; use smaller buckets"
	}
	return msg
}

// Is makes a *DDPBudgetError match ErrParams.
func (e *DDPBudgetError) Is(target error) bool { return target == ErrParams }

// DefaultDDP returns the DDP for updates of dim coordinates clipped to
// clipNorm, with the grid of DDPGridFactor, β = DefaultDDPBeta and the
// given rotation seed; Sigma2 is left 0 for Calibrate (or the caller) to set.
func DefaultDDP(dim int, clipNorm float64, seed [32]byte) DDP {
	return DDP{
		Dim: dim, ClipNorm: clipNorm, Beta: DefaultDDPBeta, Seed: seed,
		Scale: DDPGridFactor * math.Sqrt(float64(PaddedDim(dim))) / clipNorm,
	}
}

// Calibrate sets p.Sigma2 to the least integer σ² whose mechanism, with
// minSurvivors clients and steps releases, is (epsilon, delta)-DP, and
// checks the bit budget for maxSurvivors (Check). It returns the
// mechanism of one release as privacy accounts it.
func (p DDP) Calibrate(minSurvivors, maxSurvivors int, steps int64, epsilon, delta float64) (DDP, privacy.DistributedDiscreteGaussian, error) {
	p.Sigma2 = 1
	if err := p.validate(); err != nil {
		return p, privacy.DistributedDiscreteGaussian{}, err
	}
	m := p.Mechanism(minSurvivors)
	m.Steps = steps
	sigma, err := privacy.DistributedSigmaFor(m, epsilon, delta)
	if err != nil {
		return p, m, fmt.Errorf("secagg: distributed DP: %w", err)
	}
	s2 := math.Ceil(sigma * sigma)
	if s2 > MaxSigma2 {
		return p, m, fmt.Errorf("%w: distributed DP needs σ² = %g, above 2^62", ErrParams, s2)
	}
	p.Sigma2 = uint64(s2)
	if err := p.Check(maxSurvivors); err != nil {
		return p, m, err
	}
	return p, p.Mechanism(minSurvivors), nil
}

// Padded returns d' = PaddedDim(Dim).
func (p DDP) Padded() int { return PaddedDim(p.Dim) }

// Words returns the length of an encoded update: d' + 1.
func (p DDP) Words() int { return p.Padded() + 1 }

// Sigma returns σ = √Sigma2, rounded down, as the accountant takes it
// (so that float rounding never makes the account optimistic).
func (p DDP) Sigma() float64 {
	s := math.Sqrt(float64(p.Sigma2))
	if s*s > float64(p.Sigma2) {
		s = math.Nextafter(s, 0)
	}
	return s
}

// L2Bound returns Δ₂, the ℓ2 bound of a participant's rounded update on
// the grid: privacy.ConditionalRoundingL2Bound(γC, β, d').
func (p DDP) L2Bound() float64 {
	b, err := privacy.ConditionalRoundingL2Bound(p.Scale*p.ClipNorm, p.Beta, p.Padded())
	if err != nil {
		return math.Inf(1)
	}
	return b
}

// Mechanism returns one release of the sum of clients participants as the
// accountant reads it (Steps: 1).
func (p DDP) Mechanism(clients int) privacy.DistributedDiscreteGaussian {
	return privacy.DistributedDiscreteGaussian{Sigma: p.Sigma(), Clients: clients, Dim: p.Padded(), L2: p.L2Bound(), Steps: 1}
}

// NoiseVariance returns the variance of the noise on each coordinate of
// the decoded mean of m survivors: Var(N_Z(0, σ²))/(γ²m). The rounding
// adds at most 1/(4γ²m) more (its exact share depends on the updates).
func (p DDP) NoiseVariance(m int) float64 {
	return DiscreteGaussianVariance(float64(p.Sigma2)) / (p.Scale * p.Scale * float64(m))
}

// validate checks the ranges that do not depend on the cohort.
func (p DDP) validate() error {
	switch {
	case p.Dim < 1 || p.Dim >= MaxDim/2:
		return fmt.Errorf("%w: distributed DP dimension %d, want 1 to %d", ErrParams, p.Dim, MaxDim/2-1)
	case !(p.ClipNorm > 0) || math.IsInf(p.ClipNorm, 1):
		return fmt.Errorf("%w: distributed DP clip norm %v, want a positive finite number", ErrParams, p.ClipNorm)
	case !(p.Scale > 0) || math.IsInf(p.Scale*p.ClipNorm, 1):
		return fmt.Errorf("%w: distributed DP scale %v, want a positive finite number", ErrParams, p.Scale)
	case p.Sigma2 < 1 || p.Sigma2 > MaxSigma2:
		return fmt.Errorf("%w: distributed DP σ² = %d, want 1 to 2^62", ErrParams, p.Sigma2)
	case !(p.Beta >= 0 && p.Beta < 1):
		return fmt.Errorf("%w: distributed DP β = %v, want 0 ≤ β < 1", ErrParams, p.Beta)
	}
	return nil
}

// Check reports whether p can encode the updates of up to n survivors:
// the ranges, and the bit budget (a *DDPBudgetError otherwise; see the
// section "Distributed discrete Gaussian encoding" in ddp.go).
func (p DDP) Check(n int) error {
	if err := p.validate(); err != nil {
		return err
	}
	if n < 1 || n > MaxParticipants {
		return fmt.Errorf("%w: %d survivors, want 1 to %d", ErrParams, n, MaxParticipants)
	}
	l2 := p.L2Bound()
	k := 2 * math.Log(2*float64(p.Padded())/WrapProbability)
	bound := float64(n)*l2 + math.Sqrt(k*float64(n)*float64(p.Sigma2))
	if !(bound <= math.MaxInt32) {
		e := &DDPBudgetError{N: n, L2: l2, Sigma2: p.Sigma2, Padded: p.Padded(), Bound: bound}
		if room := math.MaxInt32 - float64(n)*l2; room > 0 {
			e.MaxSigma = room / math.Sqrt(k*float64(n))
		}
		return e
	}
	return nil
}

// DDPEncoder encodes one participant's updates under a DDP. It holds the
// noise and rounding generators and scratch space; it is not safe for
// concurrent use.
type DDPEncoder struct {
	p   DDP
	rot *Rotation
	// noise has one sampler per chunk of the padded coordinates, and
	// round one rounding generator per chunk, each with its own key read
	// from the seed: chunk w's noise comes from noise[w] and its
	// rounding from round[w]. The chunks depend on d′ only, not on the
	// machine, so that a seeded encoder (NewEncoderFrom) gives the same
	// encoding everywhere; they run on up to GOMAXPROCS goroutines. The
	// noise has generators of its own so that drawing it ahead
	// (DrawNoise) or inside Encode gives the same encoding.
	noise []*DiscreteGaussian
	round []*keystream
	buf   []float64
	l2    float64
	// drawn holds the noise DrawNoise drew for the next Encode, in two's
	// complement modulo 2^32, when ready.
	drawn []uint32
	ready bool
}

// ddpMinChunk is the fewest coordinates a chunk of Encode holds (below
// that, a goroutine costs more than it saves), and ddpMaxChunks the most
// chunks: NewEncoderFrom reads 64 bytes of seed for each.
const (
	ddpMinChunk  = 1 << 14
	ddpMaxChunks = 64
)

// chunks splits n coordinates among k workers: worker w takes
// [w·n/k, (w+1)·n/k).
func chunk(n, k, w int) (int, int) { return w * n / k, (w + 1) * n / k }

// NewEncoder returns an encoder whose noise and rounding generators are
// keyed from crypto/rand.
func (p DDP) NewEncoder() (*DDPEncoder, error) { return p.NewEncoderFrom(rand.Reader) }

// NewEncoderFrom is NewEncoder with the generators' keys read from seed:
// for tests that must reproduce a run. Production code uses NewEncoder.
func (p DDP) NewEncoderFrom(seed io.Reader) (*DDPEncoder, error) {
	if err := p.Check(1); err != nil {
		return nil, err
	}
	workers := max(1, min(ddpMaxChunks, p.Padded()/ddpMinChunk))
	e := &DDPEncoder{p: p, rot: NewRotation(p.Seed, p.Dim), buf: make([]float64, p.Padded()), l2: p.L2Bound()}
	for range workers {
		g, err := NewDiscreteGaussian(p.Sigma2, seed)
		if err != nil {
			return nil, err
		}
		r, err := newKeystream(seed)
		if err != nil {
			return nil, fmt.Errorf("secagg: rounding seed: %w", err)
		}
		e.noise, e.round = append(e.noise, g), append(e.round, r)
	}
	return e, nil
}

// DrawNoise draws the noise the next Encode adds, now. The noise does not
// depend on the update, so a participant can draw it before it has one,
// while it trains, and Encode then only clips, rotates, rounds and adds
// it: the same encoding as without DrawNoise, for the same generators,
// and the same work, moved off the round's critical path. Each drawing
// is used by one Encode only; calling DrawNoise again before Encode draws
// afresh.
func (e *DDPEncoder) DrawNoise() {
	if len(e.drawn) != len(e.buf) {
		e.drawn = make([]uint32, len(e.buf))
	}
	clear(e.drawn)
	e.parallel(func(w, lo, hi int) { e.noise[w].addTo(e.drawn[lo:hi]) })
	e.ready = true
}

// addTo adds a sample of N_Z(0, σ²) to each word of dst, modulo 2^32.
func (g *DiscreteGaussian) addTo(dst []uint32) {
	if g.table == nil {
		for i := range dst {
			dst[i] += uint32(g.sampleCKS())
		}
		return
	}
	g.table.addTo(dst, g)
}

// Encode writes the encoding of x to dst: len(x) must be Dim and len(dst)
// Words. A NaN or infinite coordinate or mismatched lengths are errors
// wrapping ErrInput, and dst is then untouched.
func (e *DDPEncoder) Encode(dst []uint32, x []float32) error {
	p := e.p
	if len(x) != p.Dim || len(dst) != p.Words() {
		return fmt.Errorf("%w: encode %d coordinates into %d words, want %d into %d", ErrInput, len(x), len(dst), p.Dim, p.Words())
	}
	var norm2 float64
	for i, v := range x {
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
			return fmt.Errorf("%w: coordinate %d is %v", ErrInput, i, v)
		}
		norm2 += float64(v) * float64(v)
	}
	k := p.Scale
	if n := math.Sqrt(norm2); n > p.ClipNorm {
		k *= p.ClipNorm / n
	}
	e.rot.Forward(e.buf, x)
	limit := e.l2 * e.l2
	workers := len(e.noise)
	sums := make([]float64, workers)
	for attempt := 0; ; attempt++ {
		if attempt == maxRoundingAttempts {
			return fmt.Errorf("secagg: conditional rounding failed %d times in a row (β = %v)", maxRoundingAttempts, p.Beta)
		}
		e.parallel(func(w, lo, hi int) { sums[w] = roundChunk(dst[lo:hi], e.buf[lo:hi], k, e.round[w]) })
		var sum float64
		for _, v := range sums {
			sum += v
		}
		if sum <= limit {
			break
		}
	}
	if e.ready {
		addVectors(dst[:len(e.buf)], e.drawn)
		clear(e.drawn) // used once
		e.ready = false
	} else {
		e.parallel(func(w, lo, hi int) { e.noise[w].addTo(dst[lo:hi]) })
	}
	dst[len(e.buf)] = 1
	return nil
}

// parallel runs f(w, lo, hi) for every chunk w of the padded
// coordinates, [lo, hi), on up to GOMAXPROCS goroutines, and waits for
// them. Chunk w uses only the generators of chunk w, so the result does
// not depend on which goroutine runs it.
func (e *DDPEncoder) parallel(f func(w, lo, hi int)) {
	n, k := len(e.buf), len(e.noise)
	workers.Indexed(runtime.GOMAXPROCS(0), k, func(_, w int) {
		lo, hi := chunk(n, k, w)
		f(w, lo, hi)
	})
}

// roundChunk writes the randomized rounding of k·v for each v of src to
// dst in two's complement, and returns the sum of the squares of the
// rounded values (exact in float64 below 2^53).
func roundChunk(dst []uint32, src []float64, k float64, rng *keystream) float64 {
	var sum float64
	for i, v := range src {
		s := v * k
		f := math.Floor(s)
		z := int64(f)
		if float64(rng.word()>>11)*0x1p-53 < s-f {
			z++
		}
		dst[i] = uint32(z)
		sum += float64(z) * float64(z)
	}
	return sum
}

// Decode writes to dst the mean of the clipped updates encoded by sum, the
// sum modulo 2^32 of the survivors' encodings (masks removed), plus the
// mechanism's noise, and returns the number of survivors its last word
// carries. len(sum) must be Words and len(dst) Dim; a sum whose count is 0
// or above MaxParticipants is refused with ErrSum.
func (p DDP) Decode(dst []float32, sum []uint32) (survivors uint64, err error) {
	if err := p.Check(1); err != nil {
		return 0, err
	}
	if len(sum) != p.Words() || len(dst) != p.Dim {
		return 0, fmt.Errorf("%w: decode %d words into %d coordinates, want %d into %d", ErrInput, len(sum), len(dst), p.Words(), p.Dim)
	}
	m := uint64(sum[len(sum)-1])
	if m == 0 || m > MaxParticipants {
		return 0, fmt.Errorf("%w: survivor count %d outside [1, %d]", ErrSum, m, MaxParticipants)
	}
	y := make([]float64, p.Padded())
	for i := range y {
		y[i] = float64(int32(sum[i]))
	}
	out := make([]float64, p.Dim)
	NewRotation(p.Seed, p.Dim).Inverse(out, y)
	g := 1 / (p.Scale * float64(m))
	for i, v := range out {
		dst[i] = float32(v * g)
	}
	return m, nil
}
