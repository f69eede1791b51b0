package secagg

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fedguard/fedguard/privacy"
)

// falseAlarm is the false-alarm rate of every statistical test in this
// file: a correct sampler with a random seed fails one with probability
// 10^−6. The seeds are fixed, so each test's outcome is reproducible; the
// rate says how surprising a failure after a change of seed would be.
const falseAlarm = 1e-6

// seedStream returns a reproducible stand-in for crypto/rand.
func seedStream(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// chiSquare compares observed counts with expected probabilities (summing
// to 1 within rounding), merging bins from the ends until each expects at
// least 20 draws, and fails if the statistic is above the 1−falseAlarm
// quantile of the chi-square distribution with bins−1 degrees of freedom.
func chiSquare(t *testing.T, name string, counts []int, probs []float64, total int) {
	t.Helper()
	var obs, exp []float64
	var o, e float64
	for i := range counts {
		o += float64(counts[i])
		e += probs[i] * float64(total)
		if e >= 20 {
			obs, exp = append(obs, o), append(exp, e)
			o, e = 0, 0
		}
	}
	if len(exp) == 0 {
		t.Fatalf("%s: no bin expects 20 draws", name)
	}
	obs[len(obs)-1] += o
	exp[len(exp)-1] += e
	var stat float64
	for i := range obs {
		d := obs[i] - exp[i]
		stat += d * d / exp[i]
	}
	df := float64(len(obs) - 1)
	crit := distuv.ChiSquared{K: df}.Quantile(1 - falseAlarm)
	t.Logf("%s: χ² = %.1f over %d bins (critical value %.1f at false-alarm rate %g)", name, stat, len(obs), crit, falseAlarm)
	if stat > crit {
		t.Errorf("%s: χ² = %.1f > %.1f with %v degrees of freedom: the samples do not follow the distribution", name, stat, crit, df)
	}
}

// TestDiscreteGaussianPMF draws from N_Z(0, σ²) and compares the counts of
// each value with the exact pmf exp(−x²/2σ²)/Σ_y exp(−y²/2σ²), for σ²
// from 1 to 2^40, with both samplers: the table one (NewDiscreteGaussian,
// which uses the CKS algorithm for σ² = 2^40, beyond any table) and the
// CKS one (above about 2^28 every CKS acceptance test takes the math/big
// path). For large σ the values are binned, and a bin's probability is
// summed from the pmf in float64.
func TestDiscreteGaussianPMF(t *testing.T) {
	for _, sampler := range []struct {
		name string
		new  func(uint64, io.Reader) (*DiscreteGaussian, error)
	}{{"table", NewDiscreteGaussian}, {"cks", newDiscreteGaussianCKS}} {
		t.Run(sampler.name, func(t *testing.T) { testDiscreteGaussianPMF(t, sampler.new) })
	}
}

func testDiscreteGaussianPMF(t *testing.T, newSampler func(uint64, io.Reader) (*DiscreteGaussian, error)) {
	for _, tt := range []struct {
		name   string
		sigma2 uint64
		draws  int
		bin    int64 // values per bin
	}{
		{"σ²=1", 1, 200_000, 1},
		{"σ²=2", 2, 200_000, 1},
		{"σ²=30", 30, 200_000, 1},
		{"σ²=10^4", 10_000, 200_000, 10},
		{"σ²=163107740 (bench secagg's)", 163_107_740, 200_000, 1 << 10},
		{"σ²=2^40 (math/big)", 1 << 40, 20_000, 1 << 18},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g, err := newSampler(tt.sigma2, seedStream(tt.sigma2))
			if err != nil {
				t.Fatal(err)
			}
			sigma := math.Sqrt(float64(tt.sigma2))
			limit := int64(8*sigma) + 1
			nb := 2*(limit/tt.bin) + 3
			counts := make([]int, nb)
			index := func(x int64) int {
				b := floorDiv(x, tt.bin) + limit/tt.bin + 1
				return int(max(0, min(b, nb-1)))
			}
			for range tt.draws {
				counts[index(g.Sample())]++
			}
			// Exact probabilities, summed per bin over |x| ≤ 40σ.
			probs := make([]float64, nb)
			var z float64
			hi := int64(40*sigma) + 2
			step := max(int64(1), int64(sigma/64)) // for large σ, a Riemann sum over half-integers would do; keep it exact below 2^16
			if tt.sigma2 < 1<<32 {
				step = 1
			}
			for x := -hi; x <= hi; x += step {
				f := float64(x)
				w := math.Exp(-f*f/(2*float64(tt.sigma2))) * float64(step)
				probs[index(x)] += w
				z += w
			}
			for i := range probs {
				probs[i] /= z
			}
			chiSquare(t, tt.name, counts, probs, tt.draws)
		})
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// TestBernoulliExp checks the Bernoulli(exp(−n/d)) draws, on the 64-bit
// path and on the math/big one, with a binomial test at falseAlarm.
func TestBernoulliExp(t *testing.T) {
	g, err := NewDiscreteGaussian(1, seedStream(7))
	if err != nil {
		t.Fatal(err)
	}
	const draws = 100_000
	for _, tt := range []struct{ n, d uint64 }{{0, 1}, {1, 3}, {1, 1}, {5, 2}, {7, 3}, {1 << 62, 1 << 63}} {
		for _, path := range []string{"uint64", "big"} {
			var hits int
			for range draws {
				var ok bool
				if path == "uint64" {
					ok = g.bernExp(tt.n, tt.d)
				} else {
					ok = g.bernExpBig(new(big.Int).SetUint64(tt.n), new(big.Int).SetUint64(tt.d))
				}
				if ok {
					hits++
				}
			}
			p := math.Exp(-float64(tt.n) / float64(tt.d))
			sd := math.Sqrt(draws * p * (1 - p))
			z := distuv.UnitNormal.Quantile(1 - falseAlarm/2)
			if d := math.Abs(float64(hits) - draws*p); d > z*sd+1e-9 {
				t.Errorf("%s Bernoulli(exp(−%d/%d)): %d of %d, want %.0f ± %.0f", path, tt.n, tt.d, hits, draws, draws*p, z*sd)
			}
		}
	}
}

// TestKeystreamUniform checks uniform(m) with a chi-square test over its
// m values (or, for large m, over 64 equal ranges of them), for m whose
// rejection threshold 2^64 mod m is 0, small, or a quarter of the draws.
func TestKeystreamUniform(t *testing.T) {
	for _, m := range []uint64{1, 2, 3, 7, 12_772, 1 << 40, 3 << 62} {
		k, err := newKeystream(seedStream(m))
		if err != nil {
			t.Fatal(err)
		}
		const draws = 200_000
		bins := min(m, 64)
		counts := make([]int, bins)
		probs := make([]float64, bins)
		for i := range probs {
			probs[i] = 1 / float64(bins)
		}
		for range draws {
			u := k.uniform(m)
			if u >= m {
				t.Fatalf("uniform(%d) = %d", m, u)
			}
			hi, _ := bits.Mul64(u, bins)
			b, _ := bits.Div64(hi, u*bins, m) // ⌊u·bins/m⌋: ranges of equal size when bins divides m
			counts[b]++
		}
		if bins > 1 {
			chiSquare(t, fmt.Sprintf("uniform(%d)", m), counts, probs, draws)
		}
	}
}

// TestDDPNoiseAhead checks that drawing the noise ahead (DrawNoise) gives
// the same encoding as drawing it inside Encode, and that each drawing is
// used once: the next Encode draws afresh, in step with an encoder that
// never drew ahead.
func TestDDPNoiseAhead(t *testing.T) {
	p := DefaultDDP(3*ddpMinChunk+5, 1, [32]byte{2})
	p.Sigma2 = 1 << 16
	x := make([]float32, p.Dim)
	for i := range x {
		x[i] = float32(i%11) / 100
	}
	ahead, err := p.NewEncoderFrom(seedStream(9))
	if err != nil {
		t.Fatal(err)
	}
	inline, err := p.NewEncoderFrom(seedStream(9))
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]uint32, p.Words()), make([]uint32, p.Words())
	for round := range 3 {
		if round == 0 {
			ahead.DrawNoise()
		}
		if err := ahead.Encode(a, x); err != nil {
			t.Fatal(err)
		}
		if err := inline.Encode(b, x); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("round %d: the encoding with the noise drawn ahead differs from the one drawn inside Encode", round)
		}
	}
}

func TestNewDiscreteGaussianRefuses(t *testing.T) {
	for _, s2 := range []uint64{0, MaxSigma2 + 1} {
		if _, err := NewDiscreteGaussian(s2, seedStream(1)); !errors.Is(err, ErrParams) {
			t.Errorf("NewDiscreteGaussian(%d) error = %v, want ErrParams", s2, err)
		}
	}
	if _, err := NewDiscreteGaussian(4, strings.NewReader("short")); err == nil {
		t.Error("NewDiscreteGaussian with a 5-byte seed succeeded")
	}
}

// TestRotationRoundTrip checks that the inverse rotation undoes the
// rotation and that the rotation keeps the ℓ2 norm, for dimensions that
// are and are not powers of two.
func TestRotationRoundTrip(t *testing.T) {
	rng := rand.New(seedStream(3))
	for _, d := range []int{1, 2, 3, 7, 64, 1000, 4097} {
		x := make([]float32, d)
		var n2 float64
		for i := range x {
			x[i] = float32(rng.NormFloat64())
			n2 += float64(x[i]) * float64(x[i])
		}
		r := NewRotation([32]byte{byte(d)}, d)
		if r.Padded() != PaddedDim(d) || r.Padded() < d || r.Padded()&(r.Padded()-1) != 0 {
			t.Fatalf("d=%d: padded to %d", d, r.Padded())
		}
		y := make([]float64, r.Padded())
		r.Forward(y, x)
		var m2 float64
		for _, v := range y {
			m2 += v * v
		}
		if math.Abs(m2-n2) > 1e-9*n2 {
			t.Errorf("d=%d: ‖Rx‖² = %v, ‖x‖² = %v", d, m2, n2)
		}
		back := make([]float64, d)
		r.Inverse(back, y)
		for i := range x {
			if math.Abs(back[i]-float64(x[i])) > 1e-9 {
				t.Fatalf("d=%d: coordinate %d back as %v, was %v", d, i, back[i], x[i])
			}
		}
	}
}

// TestDDPVariance runs the whole mechanism — clip, scale, rotate, round
// conditionally, add noise, sum modulo 2^32, decode — over many trials and
// compares the decoded mean's squared error, pooled over coordinates and
// trials, with the analytical variance: the noise's
// n·Var(N_Z(0, σ²)) plus the rounding's Σ p(1−p) (exact for the given
// inputs), over (γ n)², and the same on every coordinate because every
// entry of the Hadamard matrix is ±1/√d'. The target is agreement
// within 10 %; with 3·10^5 pooled errors the estimate's own relative
// standard deviation is about 0.3 %.
func TestDDPVariance(t *testing.T) {
	const (
		d      = 1000
		n      = 5
		trials = 300
	)
	for _, tt := range []struct {
		name   string
		sigma2 uint64
	}{
		{"noise dominates", 400},
		{"rounding matters", 1},
		{"bench secagg's σ²", 163_107_740},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultDDP(d, 1.0, [32]byte{9})
			p.Sigma2 = tt.sigma2
			if err := p.Check(n); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(seedStream(11))
			inputs := make([][]float32, n)
			clipped := make([][]float64, n)
			want := make([]float64, d)
			rot := NewRotation(p.Seed, d)
			var roundVar float64
			buf := make([]float64, p.Padded())
			for c := range inputs {
				inputs[c] = make([]float32, d)
				var n2 float64
				for i := range inputs[c] {
					inputs[c][i] = float32(rng.NormFloat64() * 0.05 * float64(c+1)) // norms from 1.6 to 7.9: most are clipped
					n2 += float64(inputs[c][i]) * float64(inputs[c][i])
				}
				k := math.Min(1, p.ClipNorm/math.Sqrt(n2))
				clipped[c] = make([]float64, d)
				for i, v := range inputs[c] {
					clipped[c][i] = float64(v) * k
					want[i] += clipped[c][i] / n
				}
				rot.Forward(buf, inputs[c])
				for _, v := range buf {
					s := v * k * p.Scale
					f := s - math.Floor(s)
					roundVar += f * (1 - f)
				}
			}
			analytic := (n*DiscreteGaussianVariance(float64(tt.sigma2)) + roundVar/float64(p.Padded())) / (p.Scale * p.Scale * n * n)
			sum := make([]uint32, p.Words())
			enc := make([]uint32, p.Words())
			mean := make([]float32, d)
			var sq float64
			seeds := seedStream(12)
			for trial := range trials {
				clear(sum)
				for c := range inputs {
					e, err := p.NewEncoderFrom(seeds)
					if err != nil {
						t.Fatal(err)
					}
					if (trial+c)%2 == 1 {
						e.DrawNoise() // half the encodings with the noise drawn ahead
					}
					if err := e.Encode(enc, inputs[c]); err != nil {
						t.Fatal(err)
					}
					for i := range sum {
						sum[i] += enc[i]
					}
				}
				m, err := p.Decode(mean, sum)
				if err != nil || m != n {
					t.Fatalf("Decode = %d, %v; want %d survivors", m, err, n)
				}
				for i := range mean {
					e := float64(mean[i]) - want[i]
					sq += e * e
				}
			}
			empirical := sq / (trials * d)
			ratio := empirical / analytic
			t.Logf("%s: σ² = %d, γ = %.4g: empirical error variance %.6g, analytical %.6g (noise %.6g + rounding %.6g): ratio %.4f",
				tt.name, tt.sigma2, p.Scale, empirical, analytic, p.NoiseVariance(n),
				roundVar/float64(p.Padded())/(p.Scale*p.Scale*n*n), ratio)
			if math.Abs(ratio-1) > 0.10 {
				t.Errorf("empirical error variance %.6g is %.1f %% off the analytical %.6g (target: within 10 %%)", empirical, 100*(ratio-1), analytic)
			}
		})
	}
}

// TestDDPBudget checks that Check refuses a cohort whose sum could wrap,
// with the bound spelled out, and accepts one just below.
func TestDDPBudget(t *testing.T) {
	p := DefaultDDP(1<<16, 1, [32]byte{})
	p.Sigma2 = 1 << 44 // σ = 2^22
	if err := p.Check(10); err != nil {
		t.Fatalf("Check(10): %v", err)
	}
	err := p.Check(10_000)
	var be *DDPBudgetError
	if !errors.As(err, &be) || !errors.Is(err, ErrParams) {
		t.Fatalf("Check(10000) = %v, want a *DDPBudgetError matching ErrParams", err)
	}
	if be.Bound <= math.MaxInt32 || !strings.Contains(err.Error(), "2^31 − 1") || be.MaxSigma <= 0 {
		t.Errorf("budget error %+v: %v", be, err)
	}
	fits := p
	fits.Sigma2 = uint64(be.MaxSigma*be.MaxSigma) - 1
	if err := fits.Check(10_000); err != nil {
		t.Errorf("Check with the σ the error suggests: %v", err)
	}
	// A decode of a wrapped-around or foreign sum is refused when its
	// count is impossible.
	sum := make([]uint32, p.Words())
	if _, err := p.Decode(make([]float32, p.Dim), sum); !errors.Is(err, ErrSum) {
		t.Errorf("Decode of a zero count: %v, want ErrSum", err)
	}
}

// TestDDPCalibrate checks that Calibrate's σ² meets the budget and that a
// smaller noise would not.
func TestDDPCalibrate(t *testing.T) {
	p := DefaultDDP(10_000, 0.5, [32]byte{})
	p, m, err := p.Calibrate(5, 10, 20, 4, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	m.Steps = 20
	g, err := m.Epsilon(1e-5)
	if err != nil || g.Epsilon > 4 {
		t.Fatalf("calibrated mechanism %+v: ε = %v, %v; want ≤ 4", m, g.Epsilon, err)
	}
	m.Sigma = math.Sqrt(float64(p.Sigma2) * 0.99)
	if g, _ := m.Epsilon(1e-5); g.Epsilon <= 4 {
		t.Errorf("σ² 1 %% smaller still meets ε = 4 (ε = %v): calibration is not tight", g.Epsilon)
	}
	t.Logf("ε = 4 over 20 rounds, 5 survivors, d' = %d: σ² = %d per participant (σ = %.1f, Δ₂ = %.1f, z = %.3f)",
		p.Padded(), p.Sigma2, p.Sigma(), p.L2Bound(), p.Sigma()*math.Sqrt(5)/p.L2Bound())
	if _, _, err := p.Calibrate(5, 10_000, 1_000_000, 1e-3, 1e-9); !errors.Is(err, ErrParams) && !errors.Is(err, privacy.ErrUnreachable) {
		t.Errorf("Calibrate for ε = 0.001 over 10^6 rounds: %v, want a budget error", err)
	}
}

func BenchmarkDDPEncode(b *testing.B) {
	const d = 1 << 16
	p := DefaultDDP(d, 1, [32]byte{})
	p.Sigma2 = 1 << 22
	e, err := p.NewEncoderFrom(seedStream(2))
	if err != nil {
		b.Fatal(err)
	}
	x := make([]float32, d)
	for i := range x {
		x[i] = float32(i%7) / 1000
	}
	dst := make([]uint32, p.Words())
	for b.Loop() {
		if err := e.Encode(dst, x); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFWHTBlocked checks the blocked, radix-4, parallel transform against
// the textbook radix-2 loop, bit for bit, on lengths around the block size
// with even and odd numbers of passes across blocks, on 1 to 3 goroutines
// (3 splits the butterflies of a group unevenly).
func TestFWHTBlocked(t *testing.T) {
	rng := rand.New(seedStream(5))
	for _, procs := range []int{1, 2, 3} {
		for _, n := range []int{1, 2, 8, fwhtBlock / 2, fwhtBlock, 2 * fwhtBlock, 4 * fwhtBlock, 8 * fwhtBlock, 64 * fwhtBlock, 128 * fwhtBlock} {
			v := make([]float64, n)
			for i := range v {
				v[i] = rng.NormFloat64()
			}
			want := append([]float64(nil), v...)
			for h := 1; h < n; h <<= 1 {
				for i := 0; i < n; i += 2 * h {
					for j := i; j < i+h; j++ {
						x, y := want[j], want[j+h]
						want[j], want[j+h] = x+y, x-y
					}
				}
			}
			prev := runtime.GOMAXPROCS(procs)
			fwht(v)
			runtime.GOMAXPROCS(prev)
			for i := range v {
				if math.Float64bits(v[i]) != math.Float64bits(want[i]) {
					t.Fatalf("GOMAXPROCS=%d, n=%d: coordinate %d is %v, the textbook transform gives %v", procs, n, i, v[i], want[i])
				}
			}
		}
	}
}

// TestDDPEncodeReproducible checks that a seeded encoder gives the same
// encoding whatever GOMAXPROCS is: the chunks depend on d′ only.
func TestDDPEncodeReproducible(t *testing.T) {
	p := DefaultDDP(1<<17, 1, [32]byte{1})
	p.Sigma2 = 1 << 20
	x := make([]float32, p.Dim)
	for i := range x {
		x[i] = float32(i%13) / 100
	}
	encode := func(procs int) []uint32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		e, err := p.NewEncoderFrom(seedStream(8))
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]uint32, p.Words())
		if err := e.Encode(dst, x); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	if a, b := encode(1), encode(4); !slices.Equal(a, b) {
		t.Error("the encoding depends on GOMAXPROCS")
	}
}

// FuzzDDPDecode decodes arbitrary sums: Decode refuses or returns finite
// values, and never panics.
func FuzzDDPDecode(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, uint32(3))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, words []byte, count uint32) {
		p := DefaultDDP(5, 1, [32]byte{2})
		p.Sigma2 = 100
		sum := make([]uint32, p.Words())
		for i := range sum[:len(sum)-1] {
			if 4*i+3 < len(words) {
				sum[i] = uint32(words[4*i]) | uint32(words[4*i+1])<<8 | uint32(words[4*i+2])<<16 | uint32(words[4*i+3])<<24
			}
		}
		sum[len(sum)-1] = count
		mean := make([]float32, p.Dim)
		m, err := p.Decode(mean, sum)
		if err != nil {
			if !errors.Is(err, ErrSum) {
				t.Fatalf("Decode error %v, want ErrSum", err)
			}
			return
		}
		if m != uint64(count) {
			t.Fatalf("Decode count %d, want %d", m, count)
		}
		for i, v := range mean {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("mean[%d] = %v", i, v)
			}
		}
	})
}

// TestRotationSigns checks the rotation against its definition with the
// signs as ±1/√d' float64s drawn 64 to a ChaCha8 word, as they were kept
// before they were kept as bits: the rotated vectors must be the same bit
// for bit, or participants and coordinators of different versions would
// rotate differently.
func TestRotationSigns(t *testing.T) {
	const dim = 3*64 + 5
	seed := [32]byte{7}
	n := PaddedDim(dim)
	signs := make([]float64, n)
	rng := rand.NewChaCha8(seed)
	inv := 1 / math.Sqrt(float64(n))
	for i := 0; i < n; i += 64 {
		w := rng.Uint64()
		for j := 0; j < 64 && i+j < n; j++ {
			if w>>j&1 == 1 {
				signs[i+j] = -inv
			} else {
				signs[i+j] = inv
			}
		}
	}
	x := make([]float32, dim)
	src := rand.New(seedStream(4))
	for i := range x {
		x[i] = float32(src.NormFloat64())
	}
	want := make([]float64, n)
	for i, v := range x {
		want[i] = float64(v) * signs[i]
	}
	fwht(want)
	r := NewRotation(seed, dim)
	got := make([]float64, n)
	r.Forward(got, x)
	for i := range want {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			t.Fatalf("Forward: coordinate %d is %v, want %v", i, got[i], want[i])
		}
	}
	back := make([]float64, dim)
	r.Inverse(back, slices.Clone(want))
	fwht(want)
	for i := range back {
		if w := want[i] * signs[i]; math.Float64bits(back[i]) != math.Float64bits(w) {
			t.Fatalf("Inverse: coordinate %d is %v, want %v", i, back[i], w)
		}
	}
}
