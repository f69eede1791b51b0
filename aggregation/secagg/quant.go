package secagg

// # Fixed-point encoding
//
// Masks are added modulo 2^RingBits, so updates are turned into integers
// before masking and back into floats after the coordinator has removed the
// masks. Params fix that encoding for one aggregation; every participant and
// the coordinator must use the same Params (they belong in the round's
// configuration), and any change to the layout below is a protocol change.
//
// Layout. An update x of d float32 coordinates with integer weight w becomes
// d+1 words of Z_2^32 (a uint32 each, so a masked update is exactly as large
// as the plain float32 update plus one word):
//
//	word i < d: e_i = SR(w · clip(x_i)/Clip · S), in two's complement
//	word d:     w
//
// with clip(v) = max(−Clip, min(Clip, v)), S = 2^(QuantBits−1) − 1 and SR
// stochastic rounding (below). The weight rides along as an extra coordinate
// so that the coordinator learns Σw, the denominator of the weighted mean,
// from the same masked sum and learns no individual weight.
//
// Bit budget. |w·clip(x)/Clip·S| ≤ w·S, an integer, and stochastic rounding
// never leaves the integer interval around its argument, so |e_i| ≤ w·S.
// For n participants with weights in [1, 2^WeightBits] and
// L = ⌈log2 n⌉ (n ≤ 2^L):
//
//	|Σ e_i| ≤ S · Σw ≤ (2^(QuantBits−1) − 1) · 2^(L+WeightBits)
//	        = 2^(QuantBits−1+L+WeightBits) − 2^(L+WeightBits),
//
// which is below 2^(RingBits−1) exactly when
//
//	L + WeightBits + QuantBits ≤ RingBits,
//
// the rule Check enforces. Then the sum modulo 2^32, read as a signed 32-bit
// integer, is the true integer sum: masks cancel, and the intermediate wrap
// arounds of masked words do not matter. The weight word holds
// Σw ≤ 2^(L+WeightBits) ≤ 2^(RingBits−QuantBits), far from wrapping. The
// rule is tight: with one bit more, inputs at +Clip with maximal weights
// can sum to a negative word (TestWrapAround shows it for one more weight
// bit).
//
// Stochastic rounding. SR(v) = ⌊v⌋ + 1 with probability v − ⌊v⌋, else ⌊v⌋:
// the fraction v − ⌊v⌋ (exact in float64) is compared with a uniform 32-bit
// number from the caller's ChaCha8, so E[SR(v)] = v up to 2^−32 units (far
// below the float32 rounding of the result) and |SR(v) − v| < 1. Unbiased
// rounding matters because federated averaging adds up many rounds of small
// updates: rounding to nearest would pull every coordinate whose update is
// below half a quantization step to 0, round after round. The rounding
// randomness need not be secret: the masks hide each e_i, and the sum
// reveals only the sum of the rounding errors.
//
// Error bound. Rounding happens after weighting, so each participant's
// error is below one unit of the integer encoding whatever its weight. Let
// v*_i = w_i·c_i·S/Clip (c_i the clipped input) and W = Σw_i ≥ n. The exact
// weighted mean of the clipped inputs is Clip/(S·W) · Σ v*_i and the decoded
// one is Clip/(S·W) · Σ e_i, so
//
//	|decoded − exact| ≤ Clip/(S·W) · Σ |e_i − v*_i| < Clip/S · n/W ≤ Clip/S,
//
// plus floating-point slack (u = 2^−53). Encoding rounds twice (k =
// w·S/Clip, then c_i·k) and clamps to ±w·S, which only moves the value
// towards v*_i, so |v_i − v*_i| ≤ 2.0001·u·w_i·S: at most 2^−51.9·Clip
// once summed and scaled. Decoding rounds Clip/(S·W) and the product, both
// relative, on a value of at most Clip: 2^−51.9·Clip again. The final
// rounding to float32 adds at most 2^−24·Clip for a normal result and
// 2^−150 for a subnormal one. Altogether, for every coordinate,
//
//	|decoded − exact| < Clip · (n/(S·W) + 2^−24 + 2^−50) + 2^−150
//	                  < Clip · (n/(S·W) + 2^−23) + 2^−149,
//
// and ErrorBound reports the worst case over the admissible weights,
// W = n: Clip·(1/S + 2^−23) + 2^−149. The bound on the rounding part is
// nearly reached (one participant, a fraction just below 1 rounded down),
// while the typical error is smaller: the n rounding errors are independent
// with mean 0 and variance at most 1/4, so their sum is usually within a
// few √n/2 units, not n.
//
// Weights. Sample counts are usually larger than 2^WeightBits; the
// coordinator scales them into [1, 2^WeightBits] (for example
// max(1, round(2^WeightBits · samples_i / max_j samples_j))) before the
// round. Weight bits cost quantization bits one for one, which is why
// DefaultWeightBits is small.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
)

// RingBits is the width of the ring Z_2^RingBits that encoded and masked
// updates live in: one uint32 word per coordinate, so a masked update is as
// large as a plain float32 one.
const RingBits = 32

// DefaultWeightBits is the weight budget DefaultParams leaves: weights up to
// 2^10 = 1024, a relative resolution of 0.1 % for scaled sample counts, which
// leaves 15 quantization bits (a step of Clip/16383) for 100 participants.
const DefaultWeightBits = 10

// Errors of the fixed-point encoding. Every error Check, DefaultParams,
// Encode and Decode return wraps one of them (a *BudgetError matches
// ErrParams).
var (
	// ErrParams means the Params cannot be used: a range is wrong, or
	// (see *BudgetError) the bit budget does not hold for the cohort.
	ErrParams = errors.New("secagg: invalid quantization parameters")
	// ErrInput means Encode or Decode was given arguments that cannot be
	// encoded or decoded: lengths that do not match, a NaN or infinite
	// coordinate, a weight outside [1, 2^WeightBits], a nil generator.
	ErrInput = errors.New("secagg: invalid input")
	// ErrSum means the vector given to Decode is not the sum of encodings
	// under these Params within the bit budget: a mask was not removed,
	// the sum wrapped around (the budget was broken), or the participants
	// used other Params. Decode's checks catch most but not all such sums:
	// they are a consistency check, not an integrity check.
	ErrSum = errors.New("secagg: not a sum of encoded updates")
)

// BudgetError reports that L + WeightBits + QuantBits > RingBits, with
// L = ⌈log2 N⌉ the bits the sum of N participants needs: the sum of the
// encoded updates could wrap around the ring. It matches ErrParams.
type BudgetError struct {
	N               int  // participants
	ParticipantBits uint // ⌈log2 N⌉
	WeightBits      uint
	QuantBits       uint
}

// Error says the numbers and what to lower.
func (e *BudgetError) Error() string {
	total := e.QuantBits + e.WeightBits + e.ParticipantBits
	msg := fmt.Sprintf("secagg: bit budget exceeded: %d bits of quantization + %d of weight + %d for %d participants = %d > %d ring bits; lower QuantBits or WeightBits by %d in total",
		e.QuantBits, e.WeightBits, e.ParticipantBits, e.N, total, RingBits, total-RingBits)
	if e.QuantBits+e.WeightBits <= RingBits {
		msg += fmt.Sprintf(", or split the cohort into buckets of at most %d participants", uint64(1)<<(RingBits-e.QuantBits-e.WeightBits))
	}
	return msg
}

// Is makes a *BudgetError match ErrParams.
func (e *BudgetError) Is(target error) bool { return target == ErrParams }

// Params fix the fixed-point encoding of one secure aggregation (see the
// section "Fixed-point encoding" in quant.go).
type Params struct {
	Clip       float64 // every coordinate is clipped to [-Clip, Clip] before quantization
	QuantBits  uint    // bits of one quantized value, sign included
	WeightBits uint    // participant weights are integers in [1, 2^WeightBits]
}

// minClip is the smallest normal float32, 2^−126: the smallest Clip.
const minClip = 0x1p-126

// participantBits returns ⌈log2 n⌉ for n ≥ 1: the bits a sum of n values
// needs beyond the bits of one value.
func participantBits(n int) uint { return uint(bits.Len(uint(n - 1))) }

// scale is S = 2^(QuantBits−1) − 1, the integer an input at +Clip with
// weight 1 is encoded as. It needs the ranges checkRanges checks.
func (p Params) scale() int64 { return int64(1)<<(p.QuantBits-1) - 1 }

// checkRanges checks what does not depend on the cohort's size.
func (p Params) checkRanges() error {
	switch {
	case !(p.Clip >= minClip && p.Clip <= math.MaxFloat32):
		// Above MaxFloat32 decoded means could overflow float32; below
		// minClip they would be subnormal, and Encode's scale factor
		// could overflow float64.
		return fmt.Errorf("%w: Clip %v, want %v ≤ Clip ≤ %v (normal float32)", ErrParams, p.Clip, minClip, math.MaxFloat32)
	case p.QuantBits < 2 || p.QuantBits > RingBits:
		return fmt.Errorf("%w: QuantBits %d, want 2 to %d (a sign bit and at least one magnitude bit)", ErrParams, p.QuantBits, RingBits)
	case p.WeightBits > RingBits:
		return fmt.Errorf("%w: WeightBits %d, want at most %d", ErrParams, p.WeightBits, RingBits)
	}
	return nil
}

// Check reports whether p can encode the updates of n participants: Clip
// is a normal float32 (2^−126 ≤ Clip ≤ math.MaxFloat32), QuantBits is at
// least 2, and the bit budget holds, ⌈log2 n⌉ + WeightBits + QuantBits ≤
// RingBits (a *BudgetError otherwise). Run it when a round is set up, with
// the number of participants whose inputs can end up in one sum.
func (p Params) Check(n int) error {
	if err := p.checkRanges(); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%w: %d participants, want at least 1", ErrParams, n)
	}
	if l := participantBits(n); l+p.WeightBits+p.QuantBits > RingBits {
		return &BudgetError{N: n, ParticipantBits: l, WeightBits: p.WeightBits, QuantBits: p.QuantBits}
	}
	return nil
}

// DefaultParams returns the Params for n participants with the given clip:
// DefaultWeightBits of weight and all the remaining bits of the budget for
// quantization, RingBits − ⌈log2 n⌉ − DefaultWeightBits (15 for 100
// participants). It fails, with the Params it tried, when clip is invalid
// or fewer than 2 quantization bits would be left (n > 2^20).
func DefaultParams(n int, clip float64) (Params, error) {
	p := Params{Clip: clip, QuantBits: 2, WeightBits: DefaultWeightBits}
	if n >= 1 {
		if q := RingBits - int(participantBits(n)) - DefaultWeightBits; q > 2 {
			p.QuantBits = uint(q)
		}
	}
	return p, p.Check(n)
}

// Encode writes the encoding of update x with the given weight to dst:
// len(dst) must be len(x)+1, dst[i] = SR(weight·clip(x[i])/Clip·S) in two's
// complement for i < len(x) and dst[len(x)] = weight, with S =
// 2^(QuantBits−1) − 1 and SR stochastic rounding driven by rng (see the
// section "Fixed-point encoding" in quant.go). Rounding is unbiased (to
// 2^−32 of a unit), and a coordinate's encoding is within one unit of the
// exact scaled value.
//
// Encode checks p as for a single participant (Check(1)); the cohort's
// budget is Check(n)'s business. A NaN or infinite coordinate, a weight
// outside [1, 2^WeightBits], mismatched lengths or a nil rng are errors
// wrapping ErrInput; on any error neither dst nor rng has been touched.
func (p Params) Encode(dst []uint32, x []float32, weight uint64, rng *rand.ChaCha8) error {
	if err := p.Check(1); err != nil {
		return err
	}
	if len(dst) != len(x)+1 {
		return fmt.Errorf("%w: encode %d coordinates into %d words, want %d (one more for the weight)", ErrInput, len(x), len(dst), len(x)+1)
	}
	if maxW := uint64(1) << p.WeightBits; weight < 1 || weight > maxW {
		return fmt.Errorf("%w: weight %d outside [1, %d] (WeightBits %d)", ErrInput, weight, maxW, p.WeightBits)
	}
	if rng == nil {
		return fmt.Errorf("%w: nil rounding generator", ErrInput)
	}
	for i, v := range x {
		// All exponent bits set: NaN or ±Inf (cheaper than testing the
		// float64 for both).
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
			return fmt.Errorf("%w: coordinate %d is %v", ErrInput, i, v)
		}
	}
	// ws = weight·S ≤ 2^(WeightBits+QuantBits−1) − 2^WeightBits < 2^31 is
	// exact in float64.
	ws := float64(weight) * float64(p.scale())
	k := ws / p.Clip
	// One 64-bit draw rounds two coordinates, 32 bits each.
	i := 0
	for ; i+1 < len(x); i += 2 {
		u := rng.Uint64()
		dst[i] = roundScaled(x[i], p.Clip, ws, k, uint32(u))
		dst[i+1] = roundScaled(x[i+1], p.Clip, ws, k, uint32(u>>32))
	}
	if i < len(x) {
		dst[i] = roundScaled(x[i], p.Clip, ws, k, uint32(rng.Uint64()))
	}
	dst[len(x)] = uint32(weight)
	return nil
}

// roundScaled returns SR(clip(v)·k) in two's complement, with k =
// weight·S/Clip, ws = weight·S and u the rounding draw: the fraction is
// rounded up when u < fraction·2^32, which has probability within 2^−32 of
// the fraction. The clamp to ±ws keeps rounding errors in k and c·k from
// pushing |c·k| past ws, where rounding up would break the budget; it only
// ever moves the value towards the exact one, which lies in [−ws, ws].
func roundScaled(v float32, clip, ws, k float64, u uint32) uint32 {
	c := max(-clip, min(clip, float64(v)))
	s := max(-ws, min(ws, c*k))
	f := math.Floor(s)
	e := int64(f)
	// s − f is exact (f holds s's integer bits); scaling by 2^32 is exact.
	if float64(u) < (s-f)*(1<<32) {
		e++
	}
	return uint32(e) // two's complement: |e| < 2^31
}

// Decode writes to dst the weighted mean Σ w_i·clip(x_i) / Σ w_i encoded
// by sum, the sum modulo 2^32 of the participants' encodings (with the
// masks removed), and returns the total weight Σ w_i carried by its last
// word. len(dst) must be len(sum)−1. Each coordinate is within
// ErrorBound(n) of the exact weighted mean of the clipped inputs when the
// budget Check(n) holds.
//
// Decode refuses (with ErrSum) a sum whose total weight is 0 or above
// 2^(RingBits−QuantBits), or with a coordinate beyond ±S·Σw: no sum of
// encodings within the budget has them. On error dst has not been touched.
func (p Params) Decode(dst []float32, sum []uint32) (totalWeight uint64, err error) {
	if err := p.Check(1); err != nil {
		return 0, err
	}
	if len(sum) == 0 {
		return 0, fmt.Errorf("%w: empty sum, want at least the weight word", ErrInput)
	}
	if len(dst) != len(sum)-1 {
		return 0, fmt.Errorf("%w: decode %d words into %d coordinates, want %d (one word is the weight)", ErrInput, len(sum), len(dst), len(sum)-1)
	}
	total := uint64(sum[len(sum)-1])
	if maxTotal := uint64(1) << (RingBits - p.QuantBits); total == 0 || total > maxTotal {
		return 0, fmt.Errorf("%w: total weight %d outside [1, %d] (2^(%d−QuantBits))", ErrSum, total, maxTotal, RingBits)
	}
	// Under the budget S·total < 2^31, so any int32 beyond it is garbage.
	bound := p.scale() * int64(total)
	for i, s := range sum[:len(dst)] {
		if v := int64(int32(s)); v > bound || v < -bound {
			return 0, fmt.Errorf("%w: coordinate %d is %d, outside ±%d (QuantBits %d, total weight %d)", ErrSum, i, v, bound, p.QuantBits, total)
		}
	}
	// S·total < 2^31 is exact; g and each product are rounded once. The
	// clamp can only bring a result closer to the exact mean, which lies in
	// [−Clip, Clip].
	g := p.Clip / float64(bound)
	for i, s := range sum[:len(dst)] {
		dst[i] = float32(max(-p.Clip, min(p.Clip, float64(int32(s))*g)))
	}
	return total, nil
}

// ErrorBound returns a bound, valid for every coordinate, on the distance
// between what Decode returns for n participants and the exact weighted
// mean of their clipped inputs: Clip·(1/S + 2^−23) + 2^−149, the worst case
// over all admissible weights (see the section "Fixed-point encoding" in
// quant.go; with total weight W the rounding part shrinks to n/W units). It
// does not grow with n, because the mean divides by Σw ≥ n. When the budget
// Check(n) does not hold, sums can wrap around and ErrorBound returns +Inf.
func (p Params) ErrorBound(n int) float64 {
	if p.Check(n) != nil {
		return math.Inf(1)
	}
	return p.Clip*(1/float64(p.scale())+0x1p-23) + 0x1p-149
}
