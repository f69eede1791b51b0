package secagg_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
)

// chacha returns a rounding generator seeded with a and b.
func chacha(a, b uint64) *rand.ChaCha8 {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], a)
	binary.LittleEndian.PutUint64(seed[8:], b)
	return rand.NewChaCha8(seed)
}

// scaleOf is S = 2^(QuantBits−1) − 1, recomputed here.
func scaleOf(p secagg.Params) float64 { return math.Exp2(float64(p.QuantBits-1)) - 1 }

// tightBound is the bound of quant.go's error analysis for n participants
// of total weight w: Clip·(n/(S·w) + 2^−23) + 2^−149. ErrorBound is its
// value at w = n.
func tightBound(p secagg.Params, n int, w uint64) float64 {
	return p.Clip*(float64(n)/(scaleOf(p)*float64(w))+0x1p-23) + 0x1p-149
}

// exactMeans returns Σ w_i·clip(x_i) / Σ w_i per coordinate, computed in
// 512-bit floating point and rounded once to float64.
func exactMeans(xs [][]float32, ws []uint64, clip float64) []float64 {
	out := make([]float64, len(xs[0]))
	total := new(big.Float).SetPrec(512)
	for _, w := range ws {
		total.Add(total, new(big.Float).SetUint64(w))
	}
	for j := range out {
		acc := new(big.Float).SetPrec(512)
		for i, x := range xs {
			c := max(-clip, min(clip, float64(x[j])))
			t := new(big.Float).SetPrec(512).SetFloat64(c)
			acc.Add(acc, t.Mul(t, new(big.Float).SetUint64(ws[i])))
		}
		out[j], _ = acc.Quo(acc, total).Float64()
	}
	return out
}

// maskedSum encodes every update, masks the encodings with cancelling
// pairwise AES-CTR masks as the protocol does (participant i adds the mask
// it shares with j > i, j subtracts it) when masks is set, and returns
// their sum modulo 2^32.
func maskedSum(t *testing.T, p secagg.Params, xs [][]float32, ws []uint64, seed uint64, masks bool) []uint32 {
	t.Helper()
	n, d := len(xs), len(xs[0])
	encs := make([][]uint32, n)
	for i := range xs {
		encs[i] = make([]uint32, d+1)
		if err := p.Encode(encs[i], xs[i], ws[i], chacha(seed, uint64(i))); err != nil {
			t.Fatalf("Encode(participant %d, weight %d) = %v", i, ws[i], err)
		}
	}
	if masks {
		mrng := rand.New(rand.NewPCG(seed, 99))
		for i := range n {
			for j := i + 1; j < n; j++ {
				var s [secagg.SeedSize]byte
				for k := range s {
					s[k] = byte(mrng.Uint32())
				}
				secagg.AddMask(encs[i], &s, false)
				secagg.AddMask(encs[j], &s, true)
			}
		}
	}
	sum := make([]uint32, d+1)
	for _, e := range encs {
		for k := range sum {
			sum[k] += e[k]
		}
	}
	return sum
}

// TestEncodeDecodeBound sums the encodings of random cohorts (clipped and
// unclipped values, all kinds of weights, tiny to huge Clip, coarse to
// fine quantization) through cancelling masks, and checks every decoded
// coordinate against the exact weighted mean of the clipped inputs: within
// the bound for the actual total weight, hence within ErrorBound(n).
func TestEncodeDecodeBound(t *testing.T) {
	type weights int
	const (
		ones weights = iota
		random
		maximal
	)
	tests := []struct {
		name       string
		n, d       int
		clip       float64
		quantBits  uint // 0: DefaultParams
		weightBits uint
		weights    weights
		spread     float64 // inputs are uniform in ±spread·Clip
		masks      bool
	}{
		{"one participant", 1, 2000, 1, 0, 0, ones, 1, false},
		{"small clip random weights", 3, 500, 0.01, 0, 0, random, 2, true},
		{"heavy clipping max weights", 10, 500, 5, 0, 0, maximal, 4, true},
		{"hundred participants", 100, 100, 1, 0, 0, random, 1.5, true},
		{"coarse quantization", 20, 500, 1, 4, 6, ones, 1, true},
		{"coarse quantization max weights", 20, 500, 1, 3, 6, maximal, 1, true},
		{"huge clip", 7, 300, 1e30, 0, 0, random, 1.2, true},
		{"smallest clip", 2, 300, 0x1p-126, 0, 0, random, 3, true},
		{"largest clip", 2, 300, math.MaxFloat32, 0, 0, random, 1, true},
		{"32 quantization bits", 1, 1000, 1, 32, 0, ones, 1, false},
		{"no weight bits", 64, 100, 2, 26, 0, ones, 1, true},
		{"thousand participants", 1000, 40, 1, 0, 0, random, 1.5, false},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := secagg.DefaultParams(tt.n, tt.clip)
			if tt.quantBits != 0 {
				p = secagg.Params{Clip: tt.clip, QuantBits: tt.quantBits, WeightBits: tt.weightBits}
				err = p.Check(tt.n)
			}
			if err != nil {
				t.Fatalf("Params %+v for %d participants: %v", p, tt.n, err)
			}
			rng := rand.New(rand.NewPCG(uint64(ti), 1))
			xs := make([][]float32, tt.n)
			ws := make([]uint64, tt.n)
			var total uint64
			for i := range xs {
				xs[i] = make([]float32, tt.d)
				for j := range xs[i] {
					switch rng.IntN(20) {
					case 0:
						xs[i][j] = float32(tt.clip) // exactly at the clip (rounded to float32)
					case 1:
						xs[i][j] = 0
					default:
						xs[i][j] = float32((2*rng.Float64() - 1) * tt.spread * tt.clip)
					}
				}
				switch tt.weights {
				case ones:
					ws[i] = 1
				case random:
					ws[i] = 1 + rng.Uint64N(1<<p.WeightBits)
				case maximal:
					ws[i] = 1 << p.WeightBits
				}
				total += ws[i]
			}
			sum := maskedSum(t, p, xs, ws, uint64(ti), tt.masks && tt.n <= 100)
			got := make([]float32, tt.d)
			gotW, err := p.Decode(got, sum)
			if err != nil {
				t.Fatalf("Decode = %v", err)
			}
			if gotW != total {
				t.Errorf("Decode total weight = %d, want %d", gotW, total)
			}
			want := exactMeans(xs, ws, tt.clip)
			tight, worst := tightBound(p, tt.n, total), p.ErrorBound(tt.n)
			if tight > worst {
				t.Fatalf("bound for total weight %d = %g > ErrorBound(%d) = %g", total, tight, tt.n, worst)
			}
			maxErr := 0.0
			for j := range got {
				e := math.Abs(float64(got[j]) - want[j])
				if e > tight {
					t.Fatalf("coordinate %d: decoded %v, exact %v: error %g > bound %g (ErrorBound %g)", j, got[j], want[j], e, tight, worst)
				}
				maxErr = max(maxErr, e)
			}
			t.Logf("%+v: max error %.3g, bound for W=%d %.3g, ErrorBound %.3g", p, maxErr, total, tight, worst)
		})
	}
}

// TestErrorBoundTight checks that the rounding part of the bound is nearly
// reached: with one participant of weight 1, some coordinate's error comes
// within 10 % of one quantization unit Clip/S, the bound's main term. A
// bound that was loose by a large factor, or an encoder that rounded to
// nearest (error at most half a unit), would fail.
func TestErrorBoundTight(t *testing.T) {
	p := secagg.Params{Clip: 1, QuantBits: 8, WeightBits: 0}
	const d = 20000
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, d)
	for j := range x {
		x[j] = float32(2*rng.Float64() - 1)
	}
	sum := maskedSum(t, p, [][]float32{x}, []uint64{1}, 5, false)
	got := make([]float32, d)
	if _, err := p.Decode(got, sum); err != nil {
		t.Fatal(err)
	}
	unit := p.Clip / scaleOf(p)
	maxErr := 0.0
	for j := range got {
		maxErr = max(maxErr, math.Abs(float64(got[j])-float64(x[j])))
	}
	if bound := p.ErrorBound(1); maxErr > bound || maxErr < 0.9*unit {
		t.Errorf("max error over %d coordinates = %g, want in [0.9·unit, ErrorBound] = [%g, %g]", d, maxErr, 0.9*unit, bound)
	}
}

// TestStochasticRounding checks that each coordinate is encoded as ⌊v⌋ or
// ⌊v⌋+1 and is rounded up with probability v − ⌊v⌋ (so the encoding is
// unbiased), for fractions across (0, 1), over many draws. Rounding to
// nearest or down fails it by tens of standard deviations.
func TestStochasticRounding(t *testing.T) {
	p := secagg.Params{Clip: 1, QuantBits: 8, WeightBits: 2}
	const (
		d      = 64
		trials = 4000
		weight = 3
	)
	x := make([]float32, d)
	v := make([]float64, d) // the exact scaled values weight·x·S
	for j := range x {
		x[j] = float32((10 + (float64(j)+0.5)/d) / (weight * 127))
		v[j] = weight * 127 * float64(x[j])
	}
	ups := make([]int, d)
	rng := chacha(7, 8)
	enc := make([]uint32, d+1)
	var biasSum float64
	for range trials {
		if err := p.Encode(enc, x, weight, rng); err != nil {
			t.Fatal(err)
		}
		for j, e := range enc[:d] {
			fl := math.Floor(v[j])
			switch int32(e) {
			case int32(fl):
			case int32(fl) + 1:
				ups[j]++
			default:
				t.Fatalf("coordinate %d (v = %v) encoded as %d, want %v or %v", j, v[j], int32(e), fl, fl+1)
			}
			biasSum += float64(int32(e)) - v[j]
		}
	}
	for j, u := range ups {
		r := v[j] - math.Floor(v[j])
		freq := float64(u) / trials
		if sd := math.Sqrt(r * (1 - r) / trials); math.Abs(freq-r) > 6*sd+1.0/trials {
			t.Errorf("coordinate %d: rounded up %d of %d times (%.4f), want probability %.4f ± %.4f", j, u, trials, freq, r, 6*sd)
		}
	}
	// The mean error over all draws: each has variance at most 1/4.
	if mean, sd := biasSum/(d*trials), 0.5/math.Sqrt(d*trials); math.Abs(mean) > 6*sd {
		t.Errorf("mean rounding error = %.5f units, want 0 ± %.5f", mean, 6*sd)
	}
}

// TestEncodeLayout pins the wire layout: two's complement coordinates,
// weight·clip(x)/Clip·S, weight in the last word.
func TestEncodeLayout(t *testing.T) {
	p := secagg.Params{Clip: 2, QuantBits: 4, WeightBits: 2} // S = 7
	x := []float32{2, -2, 0, 5, -1e9, 0.5, float32(math.Copysign(0, -1))}
	enc := make([]uint32, len(x)+1)
	if err := p.Encode(enc, x, 3, chacha(1, 1)); err != nil {
		t.Fatal(err)
	}
	// 3·7·c/2 = 10.5·c: ±21 at the clip, 5.25 for 0.5 (rounded to 5 or 6).
	want := []uint32{21, 0xffffffeb, 0, 21, 0xffffffeb, 0, 0, 3}
	if enc[5] == 6 {
		want[5] = 6
	} else {
		want[5] = 5
	}
	for i := range want {
		if enc[i] != want[i] {
			t.Errorf("Encode(%v, weight 3) word %d = %#x, want %#x", x, i, enc[i], want[i])
		}
	}
}

// TestWrapAround fills the budget exactly: n = 2^L participants at ±Clip
// with weight 2^WeightBits sum to ±(2^31 − 2^(L+WeightBits)), next to the
// ends of the signed 32-bit range, through masks whose words wrap many
// times, and decode to ±Clip. One more weight bit breaks the budget: Check
// refuses it, and indeed the sum of positive inputs then wraps to a
// negative word, which Decode refuses.
func TestWrapAround(t *testing.T) {
	tests := []struct{ l, w, q uint }{
		{0, 0, 32},
		{1, 0, 31},
		{3, 0, 29},
		{7, 10, 15},
		{4, 16, 12},
		{10, 20, 2},
	}
	for _, tt := range tests {
		for _, sign := range []float32{1, -1} {
			n := 1 << tt.l
			t.Run(fmt.Sprintf("L=%d/W=%d/Q=%d/sign=%v", tt.l, tt.w, tt.q, sign), func(t *testing.T) {
				p := secagg.Params{Clip: 1.5, QuantBits: tt.q, WeightBits: tt.w}
				if err := p.Check(n); err != nil {
					t.Fatalf("Check(%d) = %v, want nil (%d+%d+%d = 32)", n, err, tt.l, tt.w, tt.q)
				}
				xs := make([][]float32, n)
				ws := make([]uint64, n)
				for i := range xs {
					xs[i] = []float32{sign * 1e6, sign * 1.5, 0}
					ws[i] = 1 << tt.w
				}
				sum := maskedSum(t, p, xs, ws, uint64(n), n <= 128)
				wantWord := int64(sign) * (1<<31 - 1<<(tt.l+tt.w))
				for k := range 2 {
					if got := int64(int32(sum[k])); got != wantWord {
						t.Errorf("sum word %d = %d, want %d", k, got, wantWord)
					}
				}
				got := make([]float32, 3)
				if _, err := p.Decode(got, sum); err != nil {
					t.Fatalf("Decode = %v", err)
				}
				if want := []float32{sign * 1.5, sign * 1.5, 0}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
					t.Errorf("Decode = %v, want %v", got, want)
				}

				over := p
				over.WeightBits++
				var be *secagg.BudgetError
				if err := over.Check(n); !errors.As(err, &be) || be.QuantBits+be.WeightBits+be.ParticipantBits != 33 {
					t.Fatalf("Check(%d) with %+v = %v, want a *BudgetError of 33 bits", n, over, err)
				}
				if over.Check(1) != nil {
					return // not even one participant fits: Encode refuses, nothing can wrap
				}
				for i := range ws {
					ws[i] = 1 << over.WeightBits
				}
				wrapped := maskedSum(t, over, xs, ws, uint64(n), false)
				// The true sum is 2·wantWord = ±(2^32 − 2^(L+W+1)), which
				// wraps to the word of ∓2^(L+W+1): the sign flips.
				if s, w := wrapped[0], uint32(-int64(sign)*(1<<(tt.l+tt.w+1))); s != w {
					t.Errorf("over budget: sum word = %d, want %d (the true sum %d wrapped around)", int32(s), int32(w), 2*wantWord)
				}
				if _, err := over.Decode(got, wrapped); !errors.Is(err, secagg.ErrSum) {
					t.Errorf("over budget: Decode = %v, want ErrSum", err)
				}
			})
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		p       secagg.Params
		n       int
		wantErr string // "" for nil; otherwise a substring
		budget  bool   // the error is a *BudgetError
	}{
		{"one participant full ring", secagg.Params{Clip: 1, QuantBits: 32}, 1, "", false},
		{"hundred", secagg.Params{Clip: 1, QuantBits: 15, WeightBits: 10}, 100, "", false},
		{"128 is 7 bits", secagg.Params{Clip: 1, QuantBits: 15, WeightBits: 10}, 128, "", false},
		{"129 is 8 bits", secagg.Params{Clip: 1, QuantBits: 15, WeightBits: 10}, 129, "15 bits of quantization + 10 of weight + 8 for 129 participants = 33 > 32 ring bits; lower QuantBits or WeightBits by 1 in total, or split the cohort into buckets of at most 128 participants", true},
		{"2 is 1 bit", secagg.Params{Clip: 1, QuantBits: 31}, 2, "", false},
		{"3 is 2 bits", secagg.Params{Clip: 1, QuantBits: 31}, 3, "= 33 > 32", true},
		{"no bucket helps", secagg.Params{Clip: 1, QuantBits: 30, WeightBits: 3}, 1, "+ 0 for 1 participants = 33 > 32 ring bits; lower QuantBits or WeightBits by 1 in total", true},
		{"smallest quantization", secagg.Params{Clip: 1, QuantBits: 2, WeightBits: 10}, 1 << 20, "", false},
		{"zero participants", secagg.Params{Clip: 1, QuantBits: 8}, 0, "0 participants, want at least 1", false},
		{"negative participants", secagg.Params{Clip: 1, QuantBits: 8}, -5, "-5 participants", false},
		{"zero clip", secagg.Params{QuantBits: 8}, 1, "Clip 0", false},
		{"negative clip", secagg.Params{Clip: -1, QuantBits: 8}, 1, "Clip -1", false},
		{"NaN clip", secagg.Params{Clip: math.NaN(), QuantBits: 8}, 1, "Clip NaN", false},
		{"infinite clip", secagg.Params{Clip: math.Inf(1), QuantBits: 8}, 1, "Clip +Inf", false},
		{"clip above float32", secagg.Params{Clip: 1e39, QuantBits: 8}, 1, "Clip 1e+39", false},
		{"subnormal clip", secagg.Params{Clip: 1e-39, QuantBits: 8}, 1, "Clip 1e-39", false},
		{"largest clip", secagg.Params{Clip: math.MaxFloat32, QuantBits: 8}, 1, "", false},
		{"one quantization bit", secagg.Params{Clip: 1, QuantBits: 1}, 1, "QuantBits 1, want 2 to 32", false},
		{"33 quantization bits", secagg.Params{Clip: 1, QuantBits: 33}, 1, "QuantBits 33", false},
		{"huge quantization bits", secagg.Params{Clip: 1, QuantBits: 1 << 31}, 1, "QuantBits 2147483648", false},
		{"huge weight bits", secagg.Params{Clip: 1, QuantBits: 8, WeightBits: math.MaxUint32}, 1, "WeightBits 4294967295", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check(tt.n)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%+v.Check(%d) = %v, want nil", tt.p, tt.n, err)
				}
				if b := tt.p.ErrorBound(tt.n); math.IsInf(b, 0) || b <= 0 {
					t.Errorf("%+v.ErrorBound(%d) = %v, want finite and positive", tt.p, tt.n, b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "secagg: ") {
				t.Fatalf("%+v.Check(%d) = %v, want an error containing %q", tt.p, tt.n, err, tt.wantErr)
			}
			if !errors.Is(err, secagg.ErrParams) {
				t.Errorf("%+v.Check(%d) = %v, want it to match ErrParams", tt.p, tt.n, err)
			}
			var be *secagg.BudgetError
			if errors.As(err, &be) != tt.budget {
				t.Errorf("%+v.Check(%d) = %v (%T), *BudgetError %v, want %v", tt.p, tt.n, err, err, !tt.budget, tt.budget)
			}
			if b := tt.p.ErrorBound(tt.n); !math.IsInf(b, 1) {
				t.Errorf("%+v.ErrorBound(%d) = %v, want +Inf when Check fails", tt.p, tt.n, b)
			}
		})
	}
}

func TestDefaultParams(t *testing.T) {
	tests := []struct {
		n         int
		clip      float64
		wantQuant uint
		wantErr   bool
	}{
		{1, 1, 22, false},
		{2, 1, 21, false},
		{3, 0.5, 20, false},
		{100, 1, 15, false},
		{128, 1, 15, false},
		{129, 1, 14, false},
		{1 << 20, 1, 2, false},
		{1<<20 + 1, 1, 2, true},
		{0, 1, 2, true},
		{10, 0, 18, true},
		{10, math.NaN(), 18, true},
	}
	for _, tt := range tests {
		p, err := secagg.DefaultParams(tt.n, tt.clip)
		if (err != nil) != tt.wantErr || p.QuantBits != tt.wantQuant || p.WeightBits != secagg.DefaultWeightBits || !(p.Clip == tt.clip || math.IsNaN(tt.clip)) {
			t.Errorf("DefaultParams(%d, %v) = %+v, %v; want QuantBits %d, WeightBits %d, error %v", tt.n, tt.clip, p, err, tt.wantQuant, secagg.DefaultWeightBits, tt.wantErr)
		}
		if err != nil && !errors.Is(err, secagg.ErrParams) {
			t.Errorf("DefaultParams(%d, %v) error %v does not match ErrParams", tt.n, tt.clip, err)
		}
	}
}

// TestEncodeErrors checks every refusal of Encode, and that a refused call
// leaves dst and the generator untouched.
func TestEncodeErrors(t *testing.T) {
	good := secagg.Params{Clip: 1, QuantBits: 8, WeightBits: 4}
	x := []float32{0.5, -0.25, 1}
	tests := []struct {
		name    string
		p       secagg.Params
		dstLen  int
		x       []float32
		weight  uint64
		nilRNG  bool
		want    error
		wantMsg string
	}{
		{"invalid clip", secagg.Params{Clip: 0, QuantBits: 8}, 4, x, 1, false, secagg.ErrParams, "Clip 0"},
		{"one quantization bit", secagg.Params{Clip: 1, QuantBits: 1}, 4, x, 1, false, secagg.ErrParams, "QuantBits 1"},
		{"no room for one participant", secagg.Params{Clip: 1, QuantBits: 20, WeightBits: 13}, 4, x, 1, false, secagg.ErrParams, "20 bits of quantization + 13 of weight"},
		{"dst too short", good, 3, x, 1, false, secagg.ErrInput, "encode 3 coordinates into 3 words, want 4"},
		{"dst too long", good, 5, x, 1, false, secagg.ErrInput, "into 5 words, want 4"},
		{"empty dst", good, 0, nil, 1, false, secagg.ErrInput, "encode 0 coordinates into 0 words, want 1"},
		{"zero weight", good, 4, x, 0, false, secagg.ErrInput, "weight 0 outside [1, 16] (WeightBits 4)"},
		{"weight above 2^WeightBits", good, 4, x, 17, false, secagg.ErrInput, "weight 17 outside [1, 16]"},
		{"huge weight", good, 4, x, 1 << 63, false, secagg.ErrInput, "weight 9223372036854775808"},
		{"nil generator", good, 4, x, 1, true, secagg.ErrInput, "nil rounding generator"},
		{"NaN", good, 4, []float32{0, 1, float32(math.NaN())}, 1, false, secagg.ErrInput, "coordinate 2 is NaN"},
		{"+Inf", good, 4, []float32{float32(math.Inf(1)), 1, 0}, 1, false, secagg.ErrInput, "coordinate 0 is +Inf"},
		{"-Inf", good, 4, []float32{0, float32(math.Inf(-1)), 0}, 1, false, secagg.ErrInput, "coordinate 1 is -Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]uint32, tt.dstLen)
			for i := range dst {
				dst[i] = 0xdeadbeef
			}
			rng, twin := chacha(1, 2), chacha(1, 2)
			if tt.nilRNG {
				rng = nil
			}
			err := tt.p.Encode(dst, tt.x, tt.weight, rng)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Encode(%d words, %v, weight %d) = %v, want %v containing %q", tt.dstLen, tt.x, tt.weight, err, tt.want, tt.wantMsg)
			}
			for i, w := range dst {
				if w != 0xdeadbeef {
					t.Errorf("refused Encode wrote dst[%d] = %#x", i, w)
				}
			}
			if rng != nil && rng.Uint64() != twin.Uint64() {
				t.Error("refused Encode drew from the generator")
			}
		})
	}
	// The limits themselves are accepted.
	for _, w := range []uint64{1, 16} {
		if err := good.Encode(make([]uint32, 4), x, w, chacha(1, 2)); err != nil {
			t.Errorf("Encode(weight %d) = %v, want nil", w, err)
		}
	}
	if err := good.Encode(make([]uint32, 1), nil, 1, chacha(1, 2)); err != nil {
		t.Errorf("Encode(empty update) = %v, want nil", err)
	}
}

// TestDecodeErrors checks every refusal of Decode, the limits it accepts,
// and that a refused call leaves dst untouched.
func TestDecodeErrors(t *testing.T) {
	p := secagg.Params{Clip: 1, QuantBits: 8, WeightBits: 4} // S = 127; total weight ≤ 2^24
	neg := func(v int32) uint32 { return uint32(v) }
	tests := []struct {
		name    string
		p       secagg.Params
		dstLen  int
		sum     []uint32
		want    error // nil: accepted
		wantMsg string
	}{
		{"invalid params", secagg.Params{Clip: 1, QuantBits: 40}, 1, []uint32{0, 1}, secagg.ErrParams, "QuantBits 40"},
		{"empty sum", p, 0, nil, secagg.ErrInput, "empty sum"},
		{"dst too short", p, 1, []uint32{0, 0, 1}, secagg.ErrInput, "decode 3 words into 1 coordinates, want 2"},
		{"dst too long", p, 3, []uint32{0, 0, 1}, secagg.ErrInput, "into 3 coordinates, want 2"},
		{"zero total weight", p, 1, []uint32{0, 0}, secagg.ErrSum, "total weight 0 outside [1, 16777216]"},
		{"total weight above the budget", p, 1, []uint32{0, 1<<24 + 1}, secagg.ErrSum, "total weight 16777217"},
		{"total weight at the limit", p, 1, []uint32{127 << 24, 1 << 24}, nil, ""},
		{"coordinate above S·W", p, 2, []uint32{0, 2*127 + 1, 2}, secagg.ErrSum, "coordinate 1 is 255, outside ±254"},
		{"coordinate below −S·W", p, 2, []uint32{neg(-255), 0, 2}, secagg.ErrSum, "coordinate 0 is -255, outside ±254"},
		{"coordinate at ±S·W", p, 2, []uint32{254, neg(-254), 2}, nil, ""},
		{"unremoved mask", p, 2, []uint32{0x9e3779b9, 3, 2}, secagg.ErrSum, "coordinate 0 is -1640531527"},
		{"weight only", p, 0, []uint32{5}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]float32, tt.dstLen)
			for i := range dst {
				dst[i] = 42
			}
			total, err := tt.p.Decode(dst, tt.sum)
			if tt.want == nil {
				if err != nil || total != uint64(tt.sum[len(tt.sum)-1]) {
					t.Fatalf("Decode(%#x) = %d, %v, want %d, nil", tt.sum, total, err, tt.sum[len(tt.sum)-1])
				}
				for i, v := range dst {
					if math.Abs(float64(v)) > tt.p.Clip {
						t.Errorf("Decode(%#x): dst[%d] = %v beyond the clip", tt.sum, i, v)
					}
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) || total != 0 {
				t.Fatalf("Decode(%#x) = %d, %v, want 0, %v containing %q", tt.sum, total, err, tt.want, tt.wantMsg)
			}
			for i, v := range dst {
				if v != 42 {
					t.Errorf("refused Decode wrote dst[%d] = %v", i, v)
				}
			}
		})
	}
}

// FuzzEncode: for any update, Params and weight, Encode fails exactly when
// the Params, the weight or a coordinate is invalid (writing nothing), and
// otherwise Decode gives back the weight and the clipped update within the
// bound. Decode of arbitrary words never panics and, when it accepts them,
// gives finite values within ±Clip (rounded to float32).
func FuzzEncode(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 191}, 1.0, uint8(15), uint8(10), uint64(7), uint64(1))
	f.Add([]byte{0, 0, 192, 127, 1, 2, 3, 4}, 0.5, uint8(8), uint8(2), uint64(1), uint64(2))
	f.Add([]byte{255, 255, 127, 127, 1, 0, 0, 0}, 3e38, uint8(32), uint8(0), uint64(1), uint64(3))
	f.Add([]byte{0, 0, 128, 127}, 1e-3, uint8(2), uint8(30), uint64(1<<30), uint64(4))
	f.Add([]byte{9, 9, 9}, 1.0, uint8(1), uint8(0), uint64(0), uint64(5))
	// Decoded ±Clip is float32(Clip), which can exceed Clip.
	f.Add([]byte("00000000"), 0.001, uint8(2), uint8(30), uint64(1<<30), uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, clip float64, qb, wb uint8, weight, seed uint64) {
		p := secagg.Params{Clip: clip, QuantBits: uint(qb), WeightBits: uint(wb)}
		x := make([]float32, len(data)/4)
		finite := true
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			finite = finite && !math.IsNaN(float64(x[i])) && !math.IsInf(float64(x[i]), 0)
		}
		var want error
		switch {
		case p.Check(1) != nil:
			want = secagg.ErrParams
		case weight < 1 || weight > 1<<p.WeightBits || !finite:
			want = secagg.ErrInput
		}
		enc := make([]uint32, len(x)+1)
		for i := range enc {
			enc[i] = 0xdeadbeef
		}
		err := p.Encode(enc, x, weight, chacha(seed, 0))
		if want != nil {
			if !errors.Is(err, want) {
				t.Fatalf("%+v.Encode(%v, weight %d) = %v, want %v", p, x, weight, err, want)
			}
			for i, w := range enc {
				if w != 0xdeadbeef {
					t.Fatalf("refused Encode wrote word %d", i)
				}
			}
		} else {
			if err != nil {
				t.Fatalf("%+v.Encode(%v, weight %d) = %v", p, x, weight, err)
			}
			got := make([]float32, len(x))
			total, err := p.Decode(got, enc)
			if err != nil || total != weight {
				t.Fatalf("%+v.Decode(Encode(%v, weight %d)) = %d, %v", p, x, weight, total, err)
			}
			bound := tightBound(p, 1, weight)
			for i := range x {
				c := max(-p.Clip, min(p.Clip, float64(x[i])))
				if e := math.Abs(float64(got[i]) - c); !(e <= bound) {
					t.Fatalf("%+v: coordinate %d = %v decoded as %v, error %g > bound %g", p, i, x[i], got[i], e, bound)
				}
			}
		}
		// The raw bytes as a sum.
		if p.Check(1) != nil || len(data) < 4 {
			return
		}
		sum := make([]uint32, len(data)/4)
		for i := range sum {
			sum[i] = binary.LittleEndian.Uint32(data[4*i:])
		}
		got := make([]float32, len(sum)-1)
		if _, err := p.Decode(got, sum); err != nil {
			if !errors.Is(err, secagg.ErrSum) {
				t.Fatalf("Decode(%#x) = %v, want nil or ErrSum", sum, err)
			}
			return
		}
		for i, v := range got {
			if !(math.Abs(float64(v)) <= float64(float32(p.Clip))) { // Clip rounded to float32
				t.Fatalf("Decode(%#x)[%d] = %v, beyond ±%v", sum, i, v, float32(p.Clip))
			}
		}
	})
}

// BenchmarkEncode and BenchmarkDecode measure one update of a million
// coordinates with the default Params for 100 participants.
func BenchmarkEncode(b *testing.B) {
	const d = 1_000_000
	p, _ := secagg.DefaultParams(100, 1)
	x := make([]float32, d)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range x {
		x[i] = float32(r.NormFloat64() / 4)
	}
	dst := make([]uint32, d+1)
	rng := chacha(1, 1)
	b.SetBytes(4 * d)
	for b.Loop() {
		if err := p.Encode(dst, x, 1000, rng); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	const d = 1_000_000
	p, _ := secagg.DefaultParams(100, 1)
	sum := make([]uint32, d+1)
	sum[d] = 100 * 1000
	dst := make([]float32, d)
	b.SetBytes(4 * d)
	for b.Loop() {
		if _, err := p.Decode(dst, sum); err != nil {
			b.Fatal(err)
		}
	}
}

// Three hospitals send masked encodings of their updates; the pairwise
// masks cancel in the sum, which decodes to the weighted mean of the
// clipped updates (the 3 is clipped to 1) and the total weight.
func ExampleParams_Encode() {
	p, err := secagg.DefaultParams(3, 1.0)
	if err != nil {
		fmt.Println(err)
		return
	}
	updates := [][]float32{{0.5, -0.25, 3}, {0.1, 0.2, 0.3}, {-0.4, 0, 0.9}}
	weights := []uint64{1, 2, 1}
	rng := rand.NewChaCha8([32]byte{1}) // rounding randomness: need not be secret
	encs := make([][]uint32, len(updates))
	for i, x := range updates {
		encs[i] = make([]uint32, len(x)+1)
		if err := p.Encode(encs[i], x, weights[i], rng); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Hospitals 0 and 1 share a mask seed (in the protocol, agreed with
	// X25519): 0 adds the mask, 1 subtracts it.
	seed := [secagg.SeedSize]byte{42}
	secagg.AddMask(encs[0], &seed, false)
	secagg.AddMask(encs[1], &seed, true)

	sum := make([]uint32, 4)
	for _, e := range encs {
		for k := range sum {
			sum[k] += e[k]
		}
	}
	mean := make([]float32, 3)
	total, err := p.Decode(mean, sum)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", p)
	fmt.Printf("mean %.4f, total weight %d\n", mean, total)
	// Output:
	// {Clip:1 QuantBits:20 WeightBits:10}
	// mean [0.0750 0.0375 0.6250], total weight 4
}

// A cohort too large for the chosen bits is refused at set-up, with the
// numbers.
func ExampleParams_Check() {
	p := secagg.Params{Clip: 1, QuantBits: 16, WeightBits: 10}
	fmt.Println(p.Check(64))
	fmt.Println(p.Check(100))
	// Output:
	// <nil>
	// secagg: bit budget exceeded: 16 bits of quantization + 10 of weight + 7 for 100 participants = 33 > 32 ring bits; lower QuantBits or WeightBits by 1 in total, or split the cohort into buckets of at most 64 participants
}

// The default encoding for 100 participants: 15 bits of quantization, so
// the decoded mean is within about Clip/16383 of the exact weighted mean.
func ExampleParams_ErrorBound() {
	p, err := secagg.DefaultParams(100, 0.1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("QuantBits %d, WeightBits %d, error bound %.3g\n", p.QuantBits, p.WeightBits, p.ErrorBound(100))
	fmt.Println(p.ErrorBound(200)) // 8 participant bits: over budget
	// Output:
	// QuantBits 15, WeightBits 10, error bound 6.12e-06
	// +Inf
}
