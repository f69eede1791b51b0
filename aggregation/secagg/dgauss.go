package secagg

// # Exact discrete Gaussian sampling
//
// The distributed discrete Gaussian mechanism (ddp.go) needs each
// participant to add noise drawn from N_Z(0, σ²), the distribution on the
// integers with P(x) ∝ exp(−x²/(2σ²)). Its privacy proof is about that
// exact distribution: a sampler that rounds a continuous Gaussian, or
// computes exp in floating point, leaks through the difference (Mironov,
// CCS 2012, showed how much for the Laplace mechanism). Samples come from
// a table built once per σ² (dgtable.go, "The table sampler"), one
// keystream word each, where σ² has one; the algorithm below draws them
// otherwise, and is the independent reference the table is tested
// against. It is Algorithm 1 to 3 of Canonne, Kamath and Steinke, "The Discrete
// Gaussian for Differential Privacy" (NeurIPS 2020), with exact integer
// arithmetic throughout: every acceptance test is a comparison of a
// uniform integer with an integer numerator, so the output distribution is
// exactly N_Z(0, σ²) for the integer σ² it is built with, given uniform
// draws.
//
//   - Bernoulli(exp(−γ)) for a rational γ = n/d: for γ ≤ 1, draw
//     Bernoulli(γ/k) for k = 1, 2, … until one fails and return whether
//     the k it failed at is odd; for γ > 1, ⌊γ⌋ draws of Bernoulli(exp(−1))
//     then one of Bernoulli(exp(−(γ − ⌊γ⌋))), all of which must succeed.
//   - The discrete Laplace with scale t (P(x) ∝ exp(−|x|/t)): U uniform in
//     [0, t) accepted with probability exp(−U/t), plus t times a geometric
//     count of Bernoulli(exp(−1)) successes, with a random sign (−0
//     rejected).
//   - The discrete Gaussian: Y from the discrete Laplace with t = ⌊σ⌋ + 1,
//     accepted with probability exp(−(|Y| − σ²/t)²/(2σ²)) =
//     exp(−(|Y|·t − σ²)² / (2σ²t²)).
//
// The numerators and denominators fit in 64 bits for the σ a federation
// uses (σ² below about 2^28 and |Y| within tens of σ); whenever a product
// would overflow, the same test is done in math/big, so the result stays
// exact whatever the draw. The uniform integers come from an AES-256-CTR
// keystream (a cryptographically strong generator, as in NIST's
// CTR_DRBG) keyed with 32 bytes from the caller's reader, crypto/rand in
// production. The noise must be secret from the coordinator, so its key
// must never be derived from anything the coordinator chooses or sees,
// such as the round's seed.
//
// # Cost
//
// A draw takes about 11 uniform integers (for σ ≥ 10: 1.3 discrete
// Laplace proposals of about 8.5 Bernoulli trials each), so the sampler's
// cost is the generator's cost per word plus a mispredicted branch per
// trial. The keystream is expanded 4 KiB at a time with the AES
// instructions (a few ns per 64-bit word, against about 10 for
// math/rand/v2's ChaCha8 one word at a time on the machines we measured),
// and each trial takes its integer with Lemire's multiply-and-reject
// method, inlined, rather than through an interface call.

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
)

// MaxSigma2 bounds DiscreteGaussian's σ²: 2^62, far beyond any noise a
// 32-bit ring can carry, and small enough that t = ⌊σ⌋+1 and the discrete
// Laplace's values stay within int64 but for a vanishing probability that
// the sampler still handles (by rejecting).
const MaxSigma2 = 1 << 62

// DiscreteGaussian draws exact samples of the discrete Gaussian N_Z(0, σ²)
// for an integer σ² ≥ 1. It is not safe for concurrent use.
type DiscreteGaussian struct {
	sigma2 uint64
	t      uint64 // ⌊σ⌋ + 1
	rng    *keystream
	// table, when σ² has one, draws the samples (dgtable.go); the CKS
	// methods below draw them otherwise.
	table *dgTable
	// next holds the unused half of the last keystream word a table
	// draw took, when pending.
	next    uint32
	pending bool
	// den is 2σ²t², the acceptance test's denominator, when it fits in 64
	// bits (denOK).
	den   uint64
	denOK bool
	// signs holds unused random bits for the Laplace's signs, nsigns
	// how many.
	signs  uint64
	nsigns int
}

// NewDiscreteGaussian returns a sampler of N_Z(0, sigma2) whose generator,
// an AES-256-CTR keystream, is keyed with 32 bytes read from seed: pass
// crypto/rand.Reader (tests pass a fixed stream to reproduce a run). It
// fails if sigma2 is 0 or above MaxSigma2, or if seed cannot be read.
//
// It draws from σ²'s table (see "The table sampler" in dgtable.go),
// built on the first call for that σ² and cached, when σ is below about
// 55 000, and with the CKS algorithm above that.
func NewDiscreteGaussian(sigma2 uint64, seed io.Reader) (*DiscreteGaussian, error) {
	g, err := newDiscreteGaussianCKS(sigma2, seed)
	if err != nil {
		return nil, err
	}
	if g.table, err = tableFor(sigma2); err != nil {
		return nil, err
	}
	return g, nil
}

// newDiscreteGaussianCKS is NewDiscreteGaussian with the CKS algorithm
// whatever σ²: the reference the table sampler is tested against.
func newDiscreteGaussianCKS(sigma2 uint64, seed io.Reader) (*DiscreteGaussian, error) {
	if sigma2 < 1 || sigma2 > MaxSigma2 {
		return nil, fmt.Errorf("%w: discrete Gaussian σ² = %d, want 1 to 2^62", ErrParams, sigma2)
	}
	rng, err := newKeystream(seed)
	if err != nil {
		return nil, fmt.Errorf("secagg: discrete Gaussian seed: %w", err)
	}
	g := &DiscreteGaussian{sigma2: sigma2, t: isqrt(sigma2) + 1, rng: rng}
	hi, lo := bits.Mul64(g.t, g.t)
	if hi == 0 {
		hi, lo = bits.Mul64(lo, 2*sigma2)
		g.den, g.denOK = lo, hi == 0 && sigma2 < 1<<63
	}
	return g, nil
}

// keystream is a cryptographically strong generator of uniform 64-bit
// words: the AES-256-CTR keystream of a secret key, from a zero counter,
// expanded keystreamWords words at a time. A key must never be used twice.
type keystream struct {
	ctr   cipher.Stream
	left  int // unused words, words[:left] in reverse order
	words [keystreamWords]uint64
	bytes [8 * keystreamWords]byte // the last expansion
}

// keystreamWords is how many words a keystream expands at once (4 KiB):
// enough for the AES code to run its widest loop, small enough to stay in
// L1. It is a power of two, so that word's index needs no bounds check.
const keystreamWords = 512

// newKeystream returns the keystream keyed with 32 bytes read from key.
func newKeystream(key io.Reader) (*keystream, error) {
	var k [32]byte
	if _, err := io.ReadFull(key, k[:]); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k[:])
	clear(k[:])
	if err != nil {
		return nil, err // 32-byte keys are always valid
	}
	return &keystream{ctr: cipher.NewCTR(block, make([]byte, aes.BlockSize))}, nil
}

// word returns the next 64 bits of the keystream.
func (k *keystream) word() uint64 {
	if k.left == 0 {
		k.refill()
	}
	k.left--
	return k.words[k.left&(keystreamWords-1)]
}

// refill expands the next keystreamWords words of keystream.
func (k *keystream) refill() {
	clear(k.bytes[:])
	k.ctr.XORKeyStream(k.bytes[:], k.bytes[:])
	for i := range k.words {
		k.words[i] = binary.LittleEndian.Uint64(k.bytes[8*i:])
	}
	k.left = keystreamWords
}

// uniform returns a uniform integer in [0, m), m ≥ 1, exactly: Lemire's
// method ("Fast random integer generation in an interval", 2019), the
// high word of w·m for a uniform word w, drawn again in the rare case
// (probability below m/2^64) that the low word falls among the 2^64 mod m
// values that would bias it. It is math/rand/v2's Uint64N without the
// interface call.
func (k *keystream) uniform(m uint64) uint64 {
	hi, lo := bits.Mul64(k.word(), m)
	if lo < m {
		hi = k.uniformSlow(m, hi, lo)
	}
	return hi
}

// uniformSlow finishes uniform when the low word is below m: it rejects
// it if it is also below 2^64 mod m, and draws again.
func (k *keystream) uniformSlow(m, hi, lo uint64) uint64 {
	thresh := -m % m
	for lo < thresh {
		hi, lo = bits.Mul64(k.word(), m)
	}
	return hi
}

// isqrt returns ⌊√n⌋.
func isqrt(n uint64) uint64 {
	r := uint64(math.Sqrt(float64(n)))
	for r > 0 && (r > math.MaxUint32 || r*r > n) {
		r--
	}
	for r+1 <= math.MaxUint32 && (r+1)*(r+1) <= n {
		r++
	}
	return r
}

// Sigma2 returns σ².
func (g *DiscreteGaussian) Sigma2() uint64 { return g.sigma2 }

// Sample returns one draw of N_Z(0, σ²).
func (g *DiscreteGaussian) Sample() int64 {
	if g.table == nil {
		return g.sampleCKS()
	}
	var h uint32
	if g.pending {
		h, g.pending = g.next, false
	} else {
		w := g.rng.word()
		h, g.next, g.pending = uint32(w), uint32(w>>32), true
	}
	return int64(g.table.sample(h, g.rng))
}

// sampleCKS returns one draw of N_Z(0, σ²) by the CKS algorithm.
func (g *DiscreteGaussian) sampleCKS() int64 {
	for {
		x, neg := g.laplace()
		if g.accept(x) {
			// −x if neg is 1, without a branch the processor would
			// mispredict half the time.
			s := int64(neg)
			return (int64(x) ^ -s) + s
		}
	}
}

// accept draws Bernoulli(exp(−(a·t − σ²)²/(2σ²t²))) for a = |y|.
func (g *DiscreteGaussian) accept(a uint64) bool {
	if g.denOK {
		if hi, at := bits.Mul64(a, g.t); hi == 0 {
			var diff uint64
			if at >= g.sigma2 {
				diff = at - g.sigma2
			} else {
				diff = g.sigma2 - at
			}
			if hi, num := bits.Mul64(diff, diff); hi == 0 {
				return g.bernExp(num, g.den)
			}
		}
	}
	// Exactly the same test in math/big.
	t := new(big.Int).SetUint64(g.t)
	s2 := new(big.Int).SetUint64(g.sigma2)
	num := new(big.Int).Mul(new(big.Int).SetUint64(a), t)
	num.Sub(num, s2)
	num.Mul(num, num)
	den := new(big.Int).Mul(t, t)
	den.Mul(den, s2)
	den.Lsh(den, 1)
	return g.bernExpBig(num, den)
}

// laplace draws from the discrete Laplace distribution with scale t,
// P(x) ∝ exp(−|x|/t) (Canonne, Kamath, Steinke 2020, Algorithm 2): it
// returns |x| ≤ MaxInt64 and the sign, 1 for negative (never with 0).
func (g *DiscreteGaussian) laplace() (uint64, uint64) {
	for {
		u, lo := bits.Mul64(g.rng.word(), g.t) // uniform(t), inlined
		if lo < g.t {
			u = g.rng.uniformSlow(g.t, u, lo)
		}
		if !g.bernExpFrac(u, g.t) {
			continue
		}
		var v uint64
		for g.bernExpMinusOne() {
			v++
		}
		hi, tv := bits.Mul64(g.t, v)
		x, carry := bits.Add64(u, tv, 0)
		if hi != 0 || carry != 0 || x > math.MaxInt64 {
			continue // beyond int64: probability far below 2^−60, rejecting keeps the rest exact
		}
		neg := g.bit()
		if x == 0 && neg == 1 {
			continue // −0: rejected, so that 0 is not drawn twice as often
		}
		return x, neg
	}
}

// bit returns a fair random bit from the pool of a word's bits.
func (g *DiscreteGaussian) bit() uint64 {
	if g.nsigns == 0 {
		g.signs, g.nsigns = g.rng.word(), 64
	}
	b := g.signs & 1
	g.signs >>= 1
	g.nsigns--
	return b
}

// coin returns a fair random bit (true: 1), from the pool of a word's
// bits.
func (g *DiscreteGaussian) coin() bool { return g.bit() == 1 }

// bernExpMinusOne draws Bernoulli(exp(−1)): bernExpFrac(1, 1), whose
// first trial, Bernoulli(1/2), takes a single bit.
func (g *DiscreteGaussian) bernExpMinusOne() bool {
	if !g.coin() {
		return false // failed at k = 2
	}
	for k := uint64(3); ; k++ {
		hi, lo := bits.Mul64(g.rng.word(), k) // uniform(k), inlined
		if lo < k {
			hi = g.rng.uniformSlow(k, hi, lo)
		}
		if hi != 0 { // Bernoulli(1/k) failed
			return k%2 == 1
		}
	}
}

// bernExp draws Bernoulli(exp(−n/d)) for d ≥ 1.
func (g *DiscreteGaussian) bernExp(n, d uint64) bool {
	for n > d {
		if !g.bernExpMinusOne() {
			return false
		}
		n -= d
	}
	return g.bernExpFrac(n, d)
}

// bernExpFrac draws Bernoulli(exp(−n/d)) for 0 ≤ n ≤ d, d ≥ 1
// (Canonne, Kamath, Steinke 2020, Algorithm 1, γ ≤ 1).
func (g *DiscreteGaussian) bernExpFrac(n, d uint64) bool {
	if n == 0 {
		return true // exp(0)
	}
	k := uint64(1)
	if n == d {
		k = 2 // Bernoulli(γ/1) = Bernoulli(1) succeeds without a draw
	}
	for ; ; k++ {
		hi, dk := bits.Mul64(d, k)
		if hi != 0 {
			return g.bernExpFracBig(new(big.Int).SetUint64(n), new(big.Int).SetUint64(d), k)
		}
		// Bernoulli(n/(d·k)): uniform(dk) < n, inlined.
		u, lo := bits.Mul64(g.rng.word(), dk)
		if lo < dk {
			u = g.rng.uniformSlow(dk, u, lo)
		}
		if u >= n {
			return k%2 == 1
		}
	}
}

// bernExpBig is bernExp in math/big.
func (g *DiscreteGaussian) bernExpBig(n, d *big.Int) bool {
	n = new(big.Int).Set(n)
	for n.Cmp(d) > 0 {
		if !g.bernExpFrac(1, 1) {
			return false
		}
		n.Sub(n, d)
	}
	return g.bernExpFracBig(n, d, 1)
}

// bernExpFracBig is bernExpFrac in math/big, from k on.
func (g *DiscreteGaussian) bernExpFracBig(n, d *big.Int, k uint64) bool {
	dk := new(big.Int)
	for ; ; k++ {
		dk.Mul(d, new(big.Int).SetUint64(k))
		if g.uniformBig(dk).Cmp(n) >= 0 {
			return k%2 == 1
		}
	}
}

// uniformBig returns a uniform integer in [0, m), m ≥ 1, by rejection.
func (g *DiscreteGaussian) uniformBig(m *big.Int) *big.Int {
	nbits := m.BitLen()
	words := make([]big.Word, (nbits+bits.UintSize-1)/bits.UintSize)
	r := new(big.Int)
	for {
		for i := range words {
			words[i] = big.Word(g.rng.word())
		}
		if extra := len(words)*bits.UintSize - nbits; extra > 0 {
			words[len(words)-1] &= big.Word(math.MaxUint64 >> extra)
		}
		r.SetBits(words)
		if r.Cmp(m) < 0 {
			return r
		}
	}
}

// DiscreteGaussianVariance returns the variance of N_Z(0, sigma2),
// Σ x²·exp(−x²/(2σ²)) / Σ exp(−x²/(2σ²)), summed in float64 over |x| up to
// 40σ (the rest is below 2^−1000 of the total). It is within
// exp(−2π²σ²)-ish of σ² for σ ≥ 1 (Canonne, Kamath, Steinke 2020,
// Proposition 19) and below σ² always.
func DiscreteGaussianVariance(sigma2 float64) float64 {
	limit := int64(40*math.Sqrt(sigma2)) + 2
	var num, den float64
	den = 1
	for x := int64(1); x <= limit; x++ {
		f := float64(x)
		w := math.Exp(-f * f / (2 * sigma2))
		num += 2 * f * f * w
		den += 2 * w
	}
	return num / den
}
