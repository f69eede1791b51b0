package secagg

// # The table sampler
//
// The CKS sampler (dgauss.go) is exact but spends about 11 uniform words
// and as many unpredictable branches on each sample: about 140 ns, so that
// the noise of a million coordinates costs a hospital about as much CPU as
// the rest of its secure round. The noise's σ² is fixed by the plan, so
// the sampler can instead be prepared once per σ² and then draw each
// sample from 32 uniform bits, with the same distribution, exactly:
//
//  1. The masses. Let q_0 = p(0) and q_k = 2·p(k) for k ≥ 1 be the law of
//     |X| for X ~ N_Z(0, σ²), p(k) = exp(−k²/(2σ²))/Z. Each q_k is
//     enclosed in an interval with directed rounding (every lower bound
//     rounded down, every upper bound up): exp(−1/(2σ²)) by its Taylor
//     series with a proven remainder (math/big.Float), exp(−k²/(2σ²)) by
//     the recurrence w_{k+1} = w_k·exp(−(2k+1)/(2σ²)) in 128-bit fixed
//     point, and Z = Σ_k exp(−k²/(2σ²)) by a partial sum plus a geometric
//     bound on its tail. The table holds the dyadic mass
//     m_k = ⌊lo(q_k)·2^63⌋ (in units of 2^−63) for every k whose upper
//     bound is at least one unit; m_k ≤ q_k·2^63 whatever the rounding,
//     which is all exactness needs.
//  2. The draw. The integer masses, plus one "residual" outcome of mass
//     D = 2^63 − Σ m_k, are arranged in an alias table (Walker 1977, in
//     Vose's O(n) construction) over N = 2^b bins of capacity 2^(63−b):
//     with integer masses the alias method is exact, not approximate.
//     32 uniform bits (half a keystream word) give the bin (the top b
//     bits), the top 31−b bits of the coin that chooses between the bin's
//     own outcome and its alias, and the sign (the last bit; −0 is 0,
//     which keeps P(0) = q_0). The coin is compared with the top bits of
//     the bin's integer threshold, kept with the alias in 32 bits per bin
//     so that the table stays in cache; on a tie (probability 2^−(31−b))
//     the coin's other 32 bits come from a fresh word and the full
//     threshold decides. So |X| = k with probability exactly m_k·2^−63,
//     and the residual outcome comes up with probability D·2^−63.
//  3. The residual. Given the residual outcome, |X| must be drawn from
//     r_k/R with r_k = q_k − m_k·2^−63 ≥ 0 and R = D·2^−63 (for k beyond
//     the table, m_k = 0 and r_k = q_k: the infinite tail lives here).
//     This is done by inversion with a lazily revealed uniform U: the
//     answer is the least j with U·R < S_j = Σ_{k≤j} r_k. S_j is
//     enclosed in big.Float intervals; while U's revealed bits do not
//     decide the comparison, more bits of U are drawn, and when the
//     interval of S_j is the wider, the precision is doubled and the
//     scan restarts with the same U. Every decision is then a proven
//     one, so the output is exactly r_j/R.
//
// Over the production table (masses of 63 bits), R ≈ K·2^−64 for K
// tabulated values: about 2^−47 at σ ≈ 12 800. A residual draw costs the
// scan of about K big.Float intervals (0.13 to 0.16 s of CPU there), so
// its expected cost is about 10^−15 s per sample, whatever the seed.
// Tests force masses of 4 or 8 bits so that the residual path runs often,
// and check it by itself.
//
// Why a table and not a faster rejection sampler: any sampler built on
// Bernoulli(exp(−γ)) trials (CKS, or Karney's) spends several uniform
// draws and unpredictable branches per sample; with σ fixed per plan, the
// table turns all of that into one load and a comparison, and its
// exactness rests on integer arithmetic and proven interval bounds, not
// on a floating-point exp.
//
// The cost per sample is half a keystream word, one load from the table
// (4 bytes per bin, 512 KiB at σ ≈ 12 800, shared by every sampler of
// that σ²) and a few integer operations. The tables are built once per σ²
// and cached (the plan's σ² is the same from round to round); a table of
// more than maxTableBins bins (σ above about 55 000) is not built, and
// the CKS sampler draws instead.
//
// Timing: like the CKS sampler, this one's running time depends on the
// draw (the table load's cache behaviour, and the residual path). The
// noise is drawn by the participant alone and its timing is not observable
// by the coordinator beyond the round's total duration.

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"sync"
)

const (
	// tablePrec is the big.Float precision the table's bounds are
	// computed with. The recurrence loses about one bit per doubling of
	// the number of steps, so 128 bits leave the bounds good to about
	// 2^−105 relative for the largest tables: the masses are the exact
	// floors but for about one in 2^40.
	tablePrec = 128
	// maxTableBins bounds a table: 2^19 bins (6 MiB with the full
	// thresholds), enough for σ up to about 55 000 (the masses vanish
	// beyond about 9.4σ).
	maxTableBins = 1 << 19
	// maxCachedTables bounds the tables kept for reuse.
	maxCachedTables = 4
)

// dgTable is the alias table of |X| for X ~ N_Z(0, σ²) (see the section
// "The table sampler"). It is immutable once built and shared by every
// sampler of that σ².
type dgTable struct {
	sigma2  uint64
	binBits uint     // b: N = 2^b bins
	thrBits uint     // 63 − b: each bin's capacity is 2^thrBits
	bins    []uint64 // threshold<<binBits | alias, threshold ≤ 2^thrBits
	// top is bins packed in 31 bits, for the cache: the threshold's top
	// 31 − binBits bits (capped at all ones: a full bin's alias is
	// itself, so the cap changes no outcome) above the alias. A draw
	// whose coin ties with the threshold's top bits looks at bins.
	top    []uint32
	masses []uint64 // m_k for k < K = len(masses), in units of 2^−63
	resid  uint64   // D = 2^63 − Σ m_k
	// zLo and zHi enclose Z, and a exp(−1/(2σ²)), at 192 bits, for the
	// residual path.
	zLo, zHi *big.Float
	a        interval
}

// dgTables caches the production tables by σ².
var dgTables struct {
	sync.Mutex
	byS2  map[uint64]*dgTableOnce
	order []uint64 // insertion order, for eviction
}

type dgTableOnce struct {
	once sync.Once
	t    *dgTable
	err  error
}

// tableFor returns the cached table of σ², building it on first use, or
// nil when σ² is too large for a table.
func tableFor(sigma2 uint64) (*dgTable, error) {
	if !tableFits(sigma2) {
		return nil, nil
	}
	dgTables.Lock()
	if dgTables.byS2 == nil {
		dgTables.byS2 = make(map[uint64]*dgTableOnce)
	}
	e := dgTables.byS2[sigma2]
	if e == nil {
		e = &dgTableOnce{}
		dgTables.byS2[sigma2] = e
		dgTables.order = append(dgTables.order, sigma2)
		if len(dgTables.order) > maxCachedTables {
			delete(dgTables.byS2, dgTables.order[0])
			dgTables.order = dgTables.order[1:]
		}
	}
	dgTables.Unlock()
	e.once.Do(func() { e.t, e.err = newDGTable(sigma2, 63) })
	return e.t, e.err
}

// tableFits reports whether σ²'s table would have at most maxTableBins
// bins: the masses vanish beyond |k| = √(2·ln 2·64)·σ ≈ 9.42σ, and the
// table needs one more bin for the residual.
func tableFits(sigma2 uint64) bool {
	// (9.5σ)² = 90.25σ² < (maxTableBins − 1)², without floating point.
	hi, lo := bits.Mul64(sigma2, 361) // 4·90.25 = 361
	if hi != 0 {
		return false
	}
	const m = maxTableBins - 1
	return lo < 4*m*m
}

// interval is a pair of big.Float bounds: lo rounds towards −∞, hi
// towards +∞.
type interval struct{ lo, hi *big.Float }

func newInterval(prec uint) interval {
	return interval{
		lo: new(big.Float).SetPrec(prec).SetMode(big.ToNegativeInf),
		hi: new(big.Float).SetPrec(prec).SetMode(big.ToPositiveInf),
	}
}

// mulPos sets z to x·y for non-negative x and y.
func (z interval) mulPos(x, y interval) {
	z.lo.Mul(x.lo, y.lo)
	z.hi.Mul(x.hi, y.hi)
}

// expNegHalfInv encloses exp(−1/(2σ²)) at prec bits: exp(z) for
// z = 1/(2σ²) ≤ 1/2 by its Taylor series, the remainder after the term
// t_n bounded by 2·t_{n+1} (each further term is at most half the
// previous one), and the reciprocal rounded the other way.
func expNegHalfInv(sigma2 uint64, prec uint) interval {
	den := new(big.Float).SetPrec(prec).SetUint64(sigma2)
	den.SetMantExp(den, 1) // 2σ², exact
	z := newInterval(prec)
	one := new(big.Float).SetPrec(prec).SetInt64(1)
	z.lo.Quo(one, den)
	z.hi.Quo(one, den)
	// e encloses exp(z): sum the terms with lo and hi separately.
	e := newInterval(prec)
	e.lo.SetInt64(1)
	e.hi.SetInt64(1)
	t := newInterval(prec)
	t.lo.SetInt64(1)
	t.hi.SetInt64(1)
	eps := new(big.Float).SetMantExp(big.NewFloat(1), -int(prec)-4)
	k := new(big.Float).SetPrec(prec)
	for i := int64(1); ; i++ {
		k.SetInt64(i)
		t.lo.Mul(t.lo, z.lo)
		t.lo.Quo(t.lo, k)
		t.hi.Mul(t.hi, z.hi)
		t.hi.Quo(t.hi, k)
		e.lo.Add(e.lo, t.lo)
		e.hi.Add(e.hi, t.hi)
		if t.hi.Cmp(eps) < 0 {
			// The remainder after t_i: at most 2·t_{i+1} ≤ t_i (z ≤ 1/2,
			// i ≥ 1), so adding t_i again bounds it.
			e.hi.Add(e.hi, t.hi)
			break
		}
	}
	r := newInterval(prec)
	r.lo.Quo(one, e.hi)
	r.hi.Quo(one, e.lo)
	return r
}

// gaussWeights iterates w_k = exp(−k²/(2σ²)) for k = 0, 1, 2, …, in
// intervals at prec bits, by w_{k+1} = w_k·ρ_k and ρ_{k+1} = ρ_k·b with
// ρ_0 = a = exp(−1/(2σ²)) and b = a².
type gaussWeights struct {
	w, rho, b interval
}

func newGaussWeights(sigma2 uint64, prec uint) *gaussWeights {
	return newGaussWeightsFrom(expNegHalfInv(sigma2, prec), prec)
}

// newGaussWeightsFrom is newGaussWeights from an interval a of
// exp(−1/(2σ²)) (of any precision).
func newGaussWeightsFrom(a interval, prec uint) *gaussWeights {
	g := &gaussWeights{w: newInterval(prec), rho: newInterval(prec), b: newInterval(prec)}
	g.w.lo.SetInt64(1)
	g.w.hi.SetInt64(1)
	g.rho.lo.Set(a.lo)
	g.rho.hi.Set(a.hi)
	g.b.mulPos(a, a)
	return g
}

// next advances w from w_k to w_{k+1}.
func (g *gaussWeights) next() {
	g.w.mulPos(g.w, g.rho)
	g.rho.mulPos(g.rho, g.b)
}

// normaliser encloses Z = Σ_{k∈ℤ} exp(−k²/(2σ²)) at prec bits: the
// partial sum up to the first k whose w_k is below 2^−(prec+8), plus, for
// the upper bound, the tail Σ_{j>k} w_j ≤ w_{k+1}/(1 − ρ_{k+1}) (the ratio
// of successive terms only decreases), both sides counted twice.
func normaliser(sigma2 uint64, prec uint) interval {
	g := newGaussWeights(sigma2, prec)
	s := newInterval(prec) // Σ_{k≥1} w_k
	eps := new(big.Float).SetMantExp(big.NewFloat(1), -int(prec)-8)
	for {
		g.next()
		if g.w.hi.Cmp(eps) < 0 {
			break
		}
		s.lo.Add(s.lo, g.w.lo)
		s.hi.Add(s.hi, g.w.hi)
	}
	// g.w is w_{k+1}, g.rho is ρ_{k+1} = w_{k+2}/w_{k+1}.
	oneMinus := new(big.Float).SetPrec(prec).SetMode(big.ToNegativeInf)
	oneMinus.Sub(big.NewFloat(1), g.rho.hi)
	tail := new(big.Float).SetPrec(prec).SetMode(big.ToPositiveInf)
	tail.Quo(g.w.hi, oneMinus)
	s.hi.Add(s.hi, tail)
	z := newInterval(prec)
	z.lo.SetMantExp(s.lo, 1) // 2Σ, exact
	z.hi.SetMantExp(s.hi, 1)
	z.lo.Add(z.lo, big.NewFloat(1))
	z.hi.Add(z.hi, big.NewFloat(1))
	return z
}

// newDGTable builds σ²'s table with masses of massBits ≤ 63 bits:
// m_k = ⌊lo(q_k)·2^massBits⌋·2^(63−massBits). Production tables have
// 63; tests pass fewer to make the residual path run often.
//
// The bounds of the w_k and of Z are computed in 128-bit fixed point
// (fix128) with directed rounding, about fifty times faster than
// big.Float and as rigorous: only exp(−1/(2σ²)) and the constant
// 2^massBits/Z, computed once, go through big.Float.
func newDGTable(sigma2 uint64, massBits uint) (*dgTable, error) {
	if sigma2 < 1 || massBits < 1 || massBits > 63 {
		return nil, fmt.Errorf("%w: table for σ² = %d with %d-bit masses", ErrParams, sigma2, massBits)
	}
	const prec = 192
	a := expNegHalfInv(sigma2, prec)
	aLo, aHi := fixDown(a.lo), fixUp(a.hi)
	if aHi == (fix128{}) { // a rounded up to 1: σ² far beyond any table
		return nil, fmt.Errorf("%w: σ² = %d is too large for a table", ErrParams, sigma2)
	}
	bLo, bHi := aLo.mulDown(aLo), aHi.mulUp(aHi)
	// The normaliser: Z = 1 + 2·Σ_{k≥1} w_k, the sum in fixed point with
	// an integer word, until w_k < 2^−100, plus the tail bound
	// w_k/(1 − ρ_k) on the upper side (see normaliser).
	var sLo, sHi fixSum
	wLo, wHi, rLo, rHi := aLo, aHi, aLo.mulDown(bLo), aHi.mulUp(bHi)
	for wHi.hi != 0 || wHi.lo >= 1<<28 {
		sLo.add(wLo)
		sHi.add(wHi)
		wLo, wHi = wLo.mulDown(rLo), wHi.mulUp(rHi)
		rLo, rHi = rLo.mulDown(bLo), rHi.mulUp(bHi)
	}
	z := newInterval(prec)
	z.lo.Set(sLo.float())
	oneMinus := new(big.Float).SetPrec(prec).SetMode(big.ToNegativeInf)
	oneMinus.Sub(big.NewFloat(1), rHi.float())
	tail := new(big.Float).SetPrec(prec).SetMode(big.ToPositiveInf)
	tail.Quo(wHi.float(), oneMinus)
	z.hi.Add(sHi.float(), tail)
	z.lo.SetMantExp(z.lo, 1)
	z.hi.SetMantExp(z.hi, 1)
	z.lo.Add(z.lo, big.NewFloat(1))
	z.hi.Add(z.hi, big.NewFloat(1))
	// c encloses 2·2^massBits/Z, the factor from w_k (k ≥ 1) to q_k in
	// units of 2^−massBits, kept as c·2^64 in fixed point (c < 2^63).
	c := newInterval(prec)
	scale := new(big.Float).SetMantExp(big.NewFloat(1), int(massBits)+1)
	c.lo.Quo(scale, z.hi)
	c.hi.Quo(scale, z.lo)
	cLo, cHi := fixDown(new(big.Float).SetMantExp(c.lo, -64)), fixUp(new(big.Float).SetMantExp(c.hi, -64))
	shift := 63 - massBits
	t := &dgTable{sigma2: sigma2, zLo: z.lo, zHi: z.hi, a: a}
	// k = 0: q_0 = 1/Z, half of c.
	m0, _ := new(big.Float).SetMantExp(c.lo, -1).Uint64() // truncation: the floor
	t.masses = append(t.masses, m0<<shift)
	sum := m0 << shift
	wLo, wHi, rLo, rHi = aLo, aHi, aLo.mulDown(bLo), aHi.mulUp(bHi)
	for {
		// m_k = ⌊w_k·c⌋ = the top word of the 256-bit product of w_k·2^128
		// and c·2^64; its upper bound is below one unit when that word is 0.
		if hi, _, _, _ := mul256(wHi, cHi); hi == 0 {
			break // this and every later upper bound is below one unit
		}
		if len(t.masses)+1 >= maxTableBins {
			return nil, fmt.Errorf("%w: σ² = %d needs a table of more than %d bins", ErrParams, sigma2, maxTableBins)
		}
		mk, _, _, _ := mul256(wLo, cLo)
		t.masses = append(t.masses, mk<<shift)
		sum += mk << shift
		wLo, wHi = wLo.mulDown(rLo), wHi.mulUp(rHi)
		rLo, rHi = rLo.mulDown(bLo), rHi.mulUp(bHi)
	}
	if sum >= 1<<63 {
		// Impossible with correct bounds (the masses are below the q_k,
		// which sum to less than 1 over a finite range): refuse rather
		// than sample from a wrong law.
		return nil, fmt.Errorf("secagg: discrete Gaussian table for σ² = %d: masses sum to %d ≥ 2^63", sigma2, sum)
	}
	t.resid = 1<<63 - sum
	n := len(t.masses) + 1
	t.binBits = uint(max(1, bits.Len(uint(n-1))))
	t.thrBits = 63 - t.binBits
	weights := make([]uint64, 1<<t.binBits)
	copy(weights, t.masses)
	weights[len(t.masses)] = t.resid
	bins, err := aliasTable(weights, t.thrBits)
	if err != nil {
		return nil, err
	}
	t.bins = bins
	t.top = make([]uint32, len(bins))
	hiBits := 31 - t.binBits // thrBits − hiBits = 32
	for i, e := range bins {
		thr := min(e>>t.binBits>>32, 1<<hiBits-1)
		t.top[i] = uint32(thr<<t.binBits | e&(1<<t.binBits-1))
	}
	return t, nil
}

// fix128 is a number in [0, 1) in 128-bit fixed point: (hi·2^64 + lo)·2^−128.
type fix128 struct{ hi, lo uint64 }

// mul256 returns the 256-bit product of x and y, most significant word
// first.
func mul256(x, y fix128) (w3, w2, w1, w0 uint64) {
	h11, l11 := bits.Mul64(x.hi, y.hi)
	h10, l10 := bits.Mul64(x.hi, y.lo)
	h01, l01 := bits.Mul64(x.lo, y.hi)
	h00, l00 := bits.Mul64(x.lo, y.lo)
	var c1, c2 uint64
	w0 = l00
	w1, c1 = bits.Add64(h00, l10, 0)
	w1, c2 = bits.Add64(w1, l01, 0)
	w2, c1 = bits.Add64(l11, h10, c1)
	w3 = h11 + c1
	w2, c1 = bits.Add64(w2, h01, c2)
	w3 += c1
	return w3, w2, w1, w0
}

// mulDown returns x·y rounded down.
func (x fix128) mulDown(y fix128) fix128 {
	w3, w2, _, _ := mul256(x, y)
	return fix128{w3, w2}
}

// mulUp returns x·y rounded up (x·y < 1 − 2^−128 for x, y < 1, so the
// rounding cannot overflow).
func (x fix128) mulUp(y fix128) fix128 {
	w3, w2, w1, w0 := mul256(x, y)
	if w1|w0 != 0 {
		var c uint64
		w2, c = bits.Add64(w2, 1, 0)
		w3 += c
	}
	return fix128{w3, w2}
}

// float returns x as a big.Float, exactly.
func (x fix128) float() *big.Float {
	i := new(big.Int).SetUint64(x.hi)
	i.Lsh(i, 64)
	i.Or(i, new(big.Int).SetUint64(x.lo))
	f := new(big.Float).SetPrec(192).SetInt(i)
	return f.SetMantExp(f, -128)
}

// fixDown returns x in [0, 1) rounded down to fix128.
func fixDown(x *big.Float) fix128 {
	i, _ := new(big.Float).SetPrec(0).SetMantExp(x, 128).Int(nil) // truncation
	return fixFromInt(i)
}

// fixUp returns x in [0, 1) rounded up to fix128, or the zero fix128
// when that is 1.
func fixUp(x *big.Float) fix128 {
	f := new(big.Float).SetPrec(0).SetMantExp(x, 128)
	i, acc := f.Int(nil)
	if acc == big.Below {
		i.Add(i, big.NewInt(1))
	}
	if i.BitLen() > 128 {
		return fix128{}
	}
	return fixFromInt(i)
}

func fixFromInt(i *big.Int) fix128 {
	lo := new(big.Int).And(i, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	return fix128{new(big.Int).Rsh(i, 64).Uint64(), lo}
}

// fixSum is a sum of fix128 values: whole + (hi·2^64 + lo)·2^−128.
type fixSum struct{ whole, hi, lo uint64 }

func (s *fixSum) add(x fix128) {
	var c uint64
	s.lo, c = bits.Add64(s.lo, x.lo, 0)
	s.hi, c = bits.Add64(s.hi, x.hi, c)
	s.whole += c
}

// float returns s as a big.Float, exactly.
func (s *fixSum) float() *big.Float {
	f := fix128{s.hi, s.lo}.float()
	f.SetPrec(256)
	return f.Add(f, new(big.Float).SetUint64(s.whole))
}

// aliasTable arranges integer weights over len(weights) = 2^b bins of
// capacity 2^thrBits, b + thrBits ≤ 63, summing to exactly 2^(b+thrBits),
// by Vose's method in integers: bin i holds threshold<<b | alias, and a
// draw of bin i and u uniform in [0, 2^thrBits) gives i if u < threshold
// and alias otherwise, so that outcome j comes up with probability exactly
// weights[j]/2^(b+thrBits).
func aliasTable(weights []uint64, thrBits uint) ([]uint64, error) {
	n := len(weights)
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("secagg: alias table of %d bins, want a power of two", n)
	}
	b := uint(bits.TrailingZeros(uint(n)))
	if b+thrBits > 63 {
		return nil, fmt.Errorf("secagg: alias table of 2^%d bins of 2^%d", b, thrBits)
	}
	capacity := uint64(1) << thrBits
	var sum, carry uint64
	for _, w := range weights {
		sum, carry = bits.Add64(sum, w, carry)
	}
	if carry != 0 || sum != capacity<<b {
		return nil, fmt.Errorf("secagg: alias table weights sum to %d, want 2^%d", sum, b+thrBits)
	}
	left := make([]uint64, n) // weight not yet placed
	copy(left, weights)
	small, large := make([]uint32, 0, n), make([]uint32, 0, n)
	for i, w := range left {
		if w < capacity {
			small = append(small, uint32(i))
		} else {
			large = append(large, uint32(i))
		}
	}
	bins := make([]uint64, n)
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		bins[s] = left[s]<<b | uint64(l)
		left[l] -= capacity - left[s]
		if left[l] < capacity {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left fills its own bin exactly (the weights sum to n bins'
	// capacity, so a small one cannot be left without a large one).
	if len(small) > 0 {
		return nil, fmt.Errorf("secagg: alias table: %d bins left under capacity", len(small))
	}
	for _, l := range large {
		if left[l] != capacity {
			return nil, fmt.Errorf("secagg: alias table: bin %d left with %d, want %d", l, left[l], capacity)
		}
		bins[l] = capacity<<b | uint64(l)
	}
	return bins, nil
}

// drawHalf returns |X| from h, 32 uniform bits (the sign is h's last
// bit), or resid = true for the residual outcome: h's top binBits bits
// pick the bin and its next 31 − binBits bits are the top of the coin,
// compared with the threshold's top bits in t.top; on a tie (probability
// 2^−(31−binBits)) the coin's other 32 bits come from a fresh word and
// the full threshold in t.bins decides.
func (t *dgTable) drawHalf(h uint32, rng *keystream) (a uint64, resid bool) {
	binBits := t.binBits
	bin := uint64(h) >> (32 - binBits)
	e := uint64(t.top[bin&uint64(len(t.top)-1)])
	uTop := uint64(h>>1) & (1<<(31-binBits) - 1)
	a = bin
	if uTop > e>>binBits {
		a = e & (1<<binBits - 1)
	}
	if uTop == e>>binBits {
		u := uTop<<32 | uint64(uint32(rng.word()))
		if full := t.bins[bin]; u >= full>>binBits {
			a = full & (1<<binBits - 1)
		} else {
			a = bin
		}
	}
	return a, a >= uint64(len(t.masses))
}

// sample returns X from h (see drawHalf), drawing the residual outcome's
// value from rng.
func (t *dgTable) sample(h uint32, rng *keystream) uint64 {
	a, resid := t.drawHalf(h, rng)
	if resid {
		a = t.residual(rng)
	}
	s := uint64(h & 1)
	return (a ^ -s) + s
}

// addTo adds a sample to each word of dst, modulo 2^32, two samples per
// keystream word (the low half first), as Sample draws them: drawHalf
// inlined in the loop, the rare cases (a coin tied with the threshold's
// top bits, or the residual outcome) sent to sample. A half word left
// over is kept in g for the next draw.
func (t *dgTable) addTo(dst []uint32, g *DiscreteGaussian) {
	rng := g.rng
	if len(dst) > 0 && g.pending {
		g.pending = false
		dst[0] += uint32(t.sample(g.next, rng))
		dst = dst[1:]
	}
	top := t.top
	binBits := t.binBits
	mask := uint64(len(top) - 1)
	binMask := uint64(1)<<binBits - 1
	topMask := uint64(1)<<(31-binBits) - 1
	k := uint64(len(t.masses))
	for i := 0; i < len(dst); i += 2 {
		w := rng.word()
		if i+1 == len(dst) {
			g.next, g.pending = uint32(w>>32), true
		}
		for j := 0; j < 2 && i+j < len(dst); j++ {
			h := uint64(uint32(w >> (32 * j)))
			bin := h >> (32 - binBits)
			e := uint64(top[bin&mask])
			uTop := (h >> 1) & topMask
			thr := e >> binBits
			a := bin
			if uTop > thr {
				a = e & binMask
			}
			if uTop == thr || a >= k {
				a = t.sample(uint32(h), rng)
			} else {
				s := h & 1
				a = (a ^ -s) + s
			}
			dst[i+j] += uint32(a)
		}
	}
}

// residual draws |X| from the residual law r_k/R (see the section "The
// table sampler"), exactly, from rng.
func (t *dgTable) residual(rng *keystream) uint64 { return t.residualFrom(rng, tablePrec) }

// residualFrom is residual with the first scan at prec bits (tests start
// low to exercise the doubling).
func (t *dgTable) residualFrom(rng *keystream, prec uint) uint64 {
	u := &lazyUniform{rng: rng, u: new(big.Int)}
	u.more()
	for ; ; prec *= 2 {
		if j, ok := t.residualScan(u, prec); ok {
			return j
		}
	}
}

// lazyUniform is a uniform U in [0, 1) of which the first bits bits are
// revealed: U ∈ [u·2^−bits, (u+1)·2^−bits).
type lazyUniform struct {
	rng  *keystream
	u    *big.Int
	bits uint
}

// more reveals 64 more bits of U.
func (l *lazyUniform) more() {
	l.u.Lsh(l.u, 64)
	l.u.Or(l.u, new(big.Int).SetUint64(l.rng.word()))
	l.bits += 64
}

// times returns the interval of U·r from U's revealed bits, exactly (r
// has at most 64 significant bits).
func (l *lazyUniform) times(r *big.Float) (lo, hi *big.Float) {
	prec := l.bits + 130
	lo = new(big.Float).SetPrec(prec).SetInt(l.u)
	lo.SetMantExp(lo, -int(l.bits))
	lo.Mul(lo, r)
	hi = new(big.Float).SetPrec(prec).SetInt(new(big.Int).Add(l.u, big.NewInt(1)))
	hi.SetMantExp(hi, -int(l.bits))
	hi.Mul(hi, r)
	return lo, hi
}

// residualScan is one pass of the residual inversion at prec bits: it
// returns the least j with U·R < S_j, or false when the bounds at prec
// bits cannot decide it (it reveals more of U when U's interval is the
// wider).
func (t *dgTable) residualScan(u *lazyUniform, prec uint) (uint64, bool) {
	z, a := interval{t.zLo, t.zHi}, t.a // at 192 bits
	if prec > t.a.lo.Prec() {
		z, a = normaliser(t.sigma2, prec), expNegHalfInv(t.sigma2, prec)
	}
	// c encloses 2/Z; q_k ∈ w_k·c for k ≥ 1, and q_0 ∈ c/2.
	c := newInterval(prec)
	two := big.NewFloat(2)
	c.lo.Quo(two, z.hi)
	c.hi.Quo(two, z.lo)
	// R = D·2^−63 exactly.
	r := new(big.Float).SetUint64(t.resid)
	r.SetMantExp(r, -63)
	uLo, uHi := u.times(r)
	g := newGaussWeightsFrom(a, prec)
	s := newInterval(prec)
	q := newInterval(prec)
	mk := new(big.Float)
	width := new(big.Float).SetPrec(prec).SetMode(big.ToNegativeInf)
	uWidth := new(big.Float).SetPrec(prec).SetMode(big.ToPositiveInf)
	for j := uint64(0); ; j++ {
		if j == 0 {
			q.lo.SetMantExp(c.lo, -1)
			q.hi.SetMantExp(c.hi, -1)
		} else {
			g.next()
			q.mulPos(g.w, c)
		}
		// r_j = q_j − m_j·2^−63 (m_j·2^−63 is exact in 64 bits).
		if j < uint64(len(t.masses)) {
			mk.SetUint64(t.masses[j])
			mk.SetMantExp(mk, -63)
			q.lo.Sub(q.lo, mk)
			q.hi.Sub(q.hi, mk)
		}
		s.lo.Add(s.lo, q.lo)
		s.hi.Add(s.hi, q.hi)
		for {
			if uHi.Cmp(s.lo) <= 0 {
				return j, true // U·R < S_j; U·R ≥ S_{j−1} was decided before
			}
			if uLo.Cmp(s.hi) >= 0 {
				break // U·R ≥ S_j: on to j+1
			}
			width.Sub(s.hi, s.lo)
			uWidth.Sub(uHi, uLo)
			if uWidth.Cmp(width) <= 0 {
				return 0, false // the bounds are the wider: more precision
			}
			u.more()
			uLo, uHi = u.times(r)
		}
	}
}
