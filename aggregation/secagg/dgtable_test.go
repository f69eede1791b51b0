package secagg

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"sync"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/fedguard/fedguard/internal/cputime"
)

// refPrec is the precision of the independent reference below: far
// beyond the table's 128-bit bounds, so that a reference value sits
// strictly inside a correct interval.
const refPrec = 400

// refExpNeg returns exp(−x) for x ≥ 0 at refPrec bits, by a route
// independent of the table's: halve x until it is below 2^−10, sum the
// alternating Taylor series of exp(−y) with guard bits, and square back.
func refExpNeg(x *big.Float) *big.Float {
	const prec = refPrec + 64
	y := new(big.Float).SetPrec(prec).Set(x)
	s := 0
	limit := new(big.Float).SetMantExp(big.NewFloat(1), -10)
	for y.Cmp(limit) > 0 {
		y.SetMantExp(y, -1)
		s++
	}
	sum := new(big.Float).SetPrec(prec).SetInt64(1)
	term := new(big.Float).SetPrec(prec).SetInt64(1)
	eps := new(big.Float).SetMantExp(big.NewFloat(1), -prec-8)
	for i := int64(1); term.Sign() != 0 && new(big.Float).Abs(term).Cmp(eps) > 0; i++ {
		term.Mul(term, y)
		term.Quo(term, new(big.Float).SetInt64(-i))
		sum.Add(sum, term)
	}
	for range s {
		sum.Mul(sum, sum)
	}
	return sum
}

// refPi returns π at refPrec bits by Machin's formula,
// 16·atan(1/5) − 4·atan(1/239).
func refPi() *big.Float {
	const prec = refPrec + 64
	atanInv := func(n int64) *big.Float {
		x := new(big.Float).SetPrec(prec).Quo(big.NewFloat(1), new(big.Float).SetInt64(n))
		x2 := new(big.Float).SetPrec(prec).Mul(x, x)
		sum := new(big.Float).SetPrec(prec).Set(x)
		pow := new(big.Float).SetPrec(prec).Set(x)
		eps := new(big.Float).SetMantExp(big.NewFloat(1), -prec-8)
		for i := int64(1); pow.Cmp(eps) > 0; i++ {
			pow.Mul(pow, x2)
			term := new(big.Float).SetPrec(prec).Quo(pow, new(big.Float).SetInt64(2*i+1))
			if i%2 == 1 {
				sum.Sub(sum, term)
			} else {
				sum.Add(sum, term)
			}
		}
		return sum
	}
	a := atanInv(5)
	a.Mul(a, big.NewFloat(16))
	b := atanInv(239)
	b.Mul(b, big.NewFloat(4))
	return a.Sub(a, b)
}

// refHalfSq returns k²/(2σ²) at refPrec bits.
func refHalfSq(k int64, sigma2 uint64) *big.Float {
	num := new(big.Float).SetPrec(refPrec + 64).SetInt64(k)
	num.Mul(num, num)
	den := new(big.Float).SetPrec(refPrec + 64).SetUint64(2 * sigma2)
	return num.Quo(num, den)
}

// refZ returns Z = Σ_k exp(−k²/(2σ²)): by direct summation for small σ,
// and by Poisson summation, Z = σ√(2π)·(1 + 2Σ_{n≥1} exp(−2π²σ²n²)),
// for large σ, where the correction is below 2^−800 (σ² ≥ 30).
func refZ(sigma2 uint64, direct bool) *big.Float {
	const prec = refPrec + 64
	if direct {
		z := new(big.Float).SetPrec(prec).SetInt64(1)
		limit := int64(40*math.Sqrt(float64(sigma2))) + 2
		for k := int64(1); k <= limit; k++ {
			w := refExpNeg(refHalfSq(k, sigma2))
			z.Add(z, w.Add(w, w))
		}
		return z
	}
	if sigma2 < 30 {
		panic("refZ: Poisson summation without its correction needs σ² ≥ 30")
	}
	z := new(big.Float).SetPrec(prec).SetUint64(2 * sigma2)
	z.Mul(z, refPi())
	return z.Sqrt(z)
}

// TestDGTableBounds checks the table against the independent reference:
// the normaliser's interval encloses Z, every mass is ⌊q_k·2^63⌋ or one
// below it (never above q_k·2^63, which exactness needs), and the first
// value left out of the table has q_k·2^63 < 1.
func TestDGTableBounds(t *testing.T) {
	// The reference Z by both routes agrees at σ² = 30.
	direct, poisson := refZ(30, true), refZ(30, false)
	diff := new(big.Float).Sub(direct, poisson)
	if diff.Abs(diff).Cmp(new(big.Float).SetMantExp(big.NewFloat(1), -refPrec+20)) > 0 {
		t.Fatalf("reference Z at σ² = 30: direct %v, Poisson %v", direct.Text('g', 40), poisson.Text('g', 40))
	}
	for _, tt := range []struct {
		sigma2 uint64
		direct bool
	}{{1, true}, {2, true}, {30, true}, {10_000, false}, {1 << 22, false}, {163_107_740, false}} {
		t.Run(fmt.Sprintf("σ²=%d", tt.sigma2), func(t *testing.T) {
			tb, err := newDGTable(tt.sigma2, 63)
			if err != nil {
				t.Fatal(err)
			}
			z := refZ(tt.sigma2, tt.direct)
			if tb.zLo.Cmp(z) > 0 || tb.zHi.Cmp(z) < 0 {
				t.Fatalf("Z = %s outside [%s, %s]", z.Text('g', 40), tb.zLo.Text('g', 40), tb.zHi.Text('g', 40))
			}
			width := new(big.Float).Sub(tb.zHi, tb.zLo)
			width.Quo(width, z)
			if rel, _ := width.Float64(); rel > 0x1p-90 {
				t.Errorf("Z's interval has relative width %g, want below 2^−90", rel)
			}
			K := int64(len(tb.masses))
			ks := map[int64]bool{K: true}
			for k := int64(0); k < K; k++ {
				if k < 300 || k%997 == 0 || k > K-300 {
					ks[k] = true
				}
			}
			var floors int
			for k := range ks {
				q := refExpNeg(refHalfSq(k, tt.sigma2))
				if k > 0 {
					q.Add(q, q)
				}
				q.Quo(q, z)
				q.SetMantExp(q, 63) // q_k in units of 2^−63
				if k == K {
					if q.Cmp(big.NewFloat(1)) >= 0 {
						t.Errorf("k = %d left out of the table, but q_k·2^63 = %s ≥ 1", k, q.Text('g', 20))
					}
					continue
				}
				f, _ := q.Uint64() // ⌊q_k·2^63⌋
				m := tb.masses[k]
				if m > f || m+1 < f {
					t.Errorf("m_%d = %d, want ⌊q_k·2^63⌋ = %d or one below", k, m, f)
				}
				if m == f {
					floors++
				}
			}
			t.Logf("K = %d values, %d bins; %d of %d masses checked are the exact floor; residual 2^%.1f", K, len(tb.bins), floors, len(ks)-1, math.Log2(float64(tb.resid))-63)
			var sum uint64
			for _, m := range tb.masses {
				sum += m
			}
			if sum+tb.resid != 1<<63 {
				t.Errorf("masses %d + residual %d ≠ 2^63", sum, tb.resid)
			}
		})
	}
}

// coarse returns a sampler of σ² from a table with massBits-bit masses,
// so that its residual path runs often.
func coarse(t *testing.T, sigma2 uint64, massBits uint, seed uint64) *DiscreteGaussian {
	t.Helper()
	g, err := newDiscreteGaussianCKS(sigma2, seedStream(seed))
	if err != nil {
		t.Fatal(err)
	}
	if g.table, err = newDGTable(sigma2, massBits); err != nil {
		t.Fatal(err)
	}
	return g
}

// pmf returns the law of X ~ N_Z(0, σ²) over [−limit, limit] in float64,
// indexed by x + limit.
func pmf(sigma2 float64, limit int64) []float64 {
	p := make([]float64, 2*limit+1)
	var z float64
	hi := max(limit, int64(40*math.Sqrt(sigma2))+2)
	for x := -hi; x <= hi; x++ {
		w := math.Exp(-float64(x*x) / (2 * sigma2))
		z += w
		if x >= -limit && x <= limit {
			p[x+limit] = w
		}
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

// TestDGTableCoarse draws from tables with 4- or 8-bit masses, where the
// residual path answers a large share of the draws (logged and checked
// against R with a binomial test), and compares the samples with the
// exact pmf (chi-square): the table and its residual together are exact
// however coarse the masses.
func TestDGTableCoarse(t *testing.T) {
	for _, tt := range []struct {
		sigma2   uint64
		massBits uint
	}{{1, 4}, {2, 4}, {30, 8}} {
		t.Run(fmt.Sprintf("σ²=%d,%d-bit", tt.sigma2, tt.massBits), func(t *testing.T) {
			g := coarse(t, tt.sigma2, tt.massBits, tt.sigma2+100)
			const draws = 200_000
			limit := int64(8*math.Sqrt(float64(tt.sigma2))) + 1
			probs := pmf(float64(tt.sigma2), limit)
			counts := make([]int, len(probs))
			var resid int
			for range draws {
				h := uint32(g.rng.word())
				a, r := g.table.drawHalf(h, g.rng)
				if r {
					resid++
					a = g.table.residual(g.rng)
				}
				s := int64(h & 1)
				x := (int64(a) ^ -s) + s
				counts[max(0, min(x+limit, 2*limit))]++
			}
			chiSquare(t, "coarse table", counts, probs, draws)
			R := float64(g.table.resid) / (1 << 63)
			sd := math.Sqrt(draws * R * (1 - R))
			zq := distuv.UnitNormal.Quantile(1 - falseAlarm/2)
			t.Logf("%d of %d draws took the residual path (R = %.4f)", resid, draws, R)
			if math.Abs(float64(resid)-draws*R) > zq*sd {
				t.Errorf("%d residual draws, want %.0f ± %.0f", resid, draws*R, zq*sd)
			}
			if resid < draws/100 {
				t.Errorf("only %d residual draws: the test does not exercise the residual path", resid)
			}
		})
	}
}

// TestDGTableResidualLaw draws from the residual path alone and compares
// the values with r_k/R = (q_k − m_k·2^−63)/R (chi-square), also starting
// the scan at 12 bits so that the precision doubling runs.
func TestDGTableResidualLaw(t *testing.T) {
	for _, tt := range []struct {
		sigma2   uint64
		massBits uint
		prec     uint
		draws    int
	}{
		{1, 8, tablePrec, 20_000},
		{30, 8, tablePrec, 20_000},
		{30, 8, 12, 20_000},
		{10_000, 12, tablePrec, 3_000},
	} {
		t.Run(fmt.Sprintf("σ²=%d,%d-bit,prec %d", tt.sigma2, tt.massBits, tt.prec), func(t *testing.T) {
			g := coarse(t, tt.sigma2, tt.massBits, tt.sigma2+200)
			sigma := math.Sqrt(float64(tt.sigma2))
			limit := int64(10*sigma) + 1
			p := pmf(float64(tt.sigma2), limit)
			probs := make([]float64, limit+1) // of |X|
			R := float64(g.table.resid) / (1 << 63)
			for k := range probs {
				q := p[int64(k)+limit]
				if k > 0 {
					q *= 2
				}
				if k < len(g.table.masses) {
					q -= float64(g.table.masses[k]) / (1 << 63)
				}
				probs[k] = q / R
			}
			counts := make([]int, len(probs))
			for range tt.draws {
				counts[min(g.table.residualFrom(g.rng, tt.prec), uint64(limit))]++
			}
			chiSquare(t, "residual law", counts, probs, tt.draws)
		})
	}
}

func TestAliasTable(t *testing.T) {
	for _, tt := range []struct {
		name    string
		weights []uint64
		thrBits uint
		wantErr bool
	}{
		{"one bin", []uint64{8}, 3, false},
		{"uniform", []uint64{4, 4, 4, 4}, 2, false},
		{"skewed", []uint64{13, 1, 0, 2}, 2, false},
		{"all in one", []uint64{0, 0, 0, 0, 0, 0, 0, 1 << 10}, 7, false},
		{"not a power of two", []uint64{1, 1, 1}, 1, true},
		{"sum too small", []uint64{1, 2}, 1, true},
		{"sum too large", []uint64{3, 2}, 1, true},
		{"sum wraps", []uint64{1 << 63, 1 << 63, 0, 0}, 61, true},
		{"too many bits", []uint64{1 << 63, 0}, 63, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bins, err := aliasTable(tt.weights, tt.thrBits)
			if (err != nil) != tt.wantErr {
				t.Fatalf("aliasTable(%v, %d) error = %v, want error %v", tt.weights, tt.thrBits, err, tt.wantErr)
			}
			if err == nil {
				checkAlias(t, tt.weights, tt.thrBits, bins)
			}
		})
	}
}

// checkAlias checks that bins give each outcome exactly its weight: the
// bins' thresholds for their own outcome plus the rest of every bin that
// names it as the alias.
func checkAlias(t *testing.T, weights []uint64, thrBits uint, bins []uint64) {
	t.Helper()
	b := uint(bits.TrailingZeros(uint(len(weights))))
	capacity := uint64(1) << thrBits
	got := make([]uint64, len(weights))
	for i, e := range bins {
		thr, alias := e>>b, e&(1<<b-1)
		if thr > capacity || alias >= uint64(len(weights)) {
			t.Fatalf("bin %d: threshold %d alias %d out of range", i, thr, alias)
		}
		got[i] += thr
		got[alias] += capacity - thr
	}
	for i := range weights {
		if got[i] != weights[i] {
			t.Fatalf("outcome %d has mass %d in the table, want %d (weights %v)", i, got[i], weights[i], weights)
		}
	}
}

// FuzzAliasTable builds alias tables from arbitrary weights (the last
// one absorbing what the others leave of 2^(b+thrBits), as the residual
// does) and checks that each outcome keeps exactly its weight.
func FuzzAliasTable(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint8(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, uint8(61))
	f.Fuzz(func(t *testing.T, data []byte, thr uint8) {
		n := 1
		for n < len(data)/8+1 && n < 1<<10 {
			n *= 2
		}
		b := uint(bits.TrailingZeros(uint(n)))
		thrBits := uint(thr) % (64 - b)
		total := uint64(1) << (b + thrBits)
		weights := make([]uint64, n)
		var sum uint64
		for i := 0; i < n-1 && 8*(i+1) <= len(data); i++ {
			w := binary.LittleEndian.Uint64(data[8*i:]) % (total - sum + 1)
			weights[i] = w
			sum += w
		}
		weights[n-1] = total - sum
		bins, err := aliasTable(weights, thrBits)
		if err != nil {
			t.Fatalf("aliasTable(%v, %d): %v", weights, thrBits, err)
		}
		checkAlias(t, weights, thrBits, bins)
	})
}

// TestTableForShared checks that concurrent samplers of one σ² build its
// table once and share it (run with -race), and that the cache stays
// bounded.
func TestTableForShared(t *testing.T) {
	const s2 = 12_345
	var wg sync.WaitGroup
	tables := make([]*dgTable, 8)
	for i := range tables {
		wg.Go(func() {
			g, err := NewDiscreteGaussian(s2, seedStream(uint64(i)))
			if err != nil {
				t.Error(err)
				return
			}
			g.Sample()
			tables[i] = g.table
		})
	}
	wg.Wait()
	for i, tb := range tables {
		if tb == nil || tb != tables[0] {
			t.Fatalf("sampler %d has table %p, want the shared %p", i, tb, tables[0])
		}
	}
	for s := uint64(1); s <= 2*maxCachedTables; s++ {
		if _, err := tableFor(s); err != nil {
			t.Fatal(err)
		}
	}
	dgTables.Lock()
	n := len(dgTables.byS2)
	dgTables.Unlock()
	if n > maxCachedTables {
		t.Errorf("%d tables cached, want at most %d", n, maxCachedTables)
	}
	if tb, err := tableFor(MaxSigma2); tb != nil || err != nil {
		t.Errorf("tableFor(2^62) = %v, %v: want no table (the CKS sampler draws)", tb, err)
	}
}

// BenchmarkDiscreteGaussian compares the CKS sampler and the table one
// per coordinate of the encoder's addTo, at σ² = 2^22 and at bench
// secagg's σ², in one run: wall and CPU time per sample (the CPU time
// grows less with the machine's load).
func BenchmarkDiscreteGaussian(b *testing.B) {
	for _, s2 := range []uint64{1 << 22, 163_107_740} {
		for _, sampler := range []struct {
			name string
			new  func(uint64, io.Reader) (*DiscreteGaussian, error)
		}{{"cks", newDiscreteGaussianCKS}, {"table", NewDiscreteGaussian}} {
			g, err := sampler.new(s2, seedStream(1))
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("σ²=%d/%s", s2, sampler.name), func(b *testing.B) {
				dst := make([]uint32, 1<<12)
				cpu := cputime.Process()
				for b.Loop() {
					g.addTo(dst)
				}
				samples := float64(b.N * len(dst))
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
				b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/samples, "cpu-ns/sample")
			})
		}
	}
}

// BenchmarkDGTableBuild measures building a table (done once per σ²).
func BenchmarkDGTableBuild(b *testing.B) {
	for _, s2 := range []uint64{1 << 22, 163_107_740} {
		b.Run(fmt.Sprintf("σ²=%d", s2), func(b *testing.B) {
			for b.Loop() {
				if _, err := newDGTable(s2, 63); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDGTableAddToIsSample checks that the encoder's loop (addTo, with
// draw inlined) gives exactly Sample's draws for the same keystream: on a
// production table, where the rare full-threshold comparison runs a few
// times, and on a coarse one, where the residual path runs often.
func TestDGTableAddToIsSample(t *testing.T) {
	for _, tt := range []struct {
		name   string
		sigma2 uint64
		bits   uint
		n      int
	}{{"production σ²=163107740", 163_107_740, 63, 300_000}, {"coarse σ²=1", 1, 4, 20_000}} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := coarse(t, tt.sigma2, tt.bits, 5), coarse(t, tt.sigma2, tt.bits, 5)
			dst := make([]uint32, tt.n)
			// Chunks of odd and even sizes, so that a half word is left
			// over and picked up by the next call.
			for lo, c := 0, 0; lo < len(dst); c++ {
				hi := min(len(dst), lo+[]int{1, 7, 2, 0, 1000, 3, 4096}[c%7])
				a.addTo(dst[lo:hi])
				lo = hi
			}
			for i := range dst {
				if want := uint32(b.Sample()); dst[i] != want {
					t.Fatalf("sample %d: addTo drew %d, Sample %d", i, int32(dst[i]), int32(want))
				}
			}
		})
	}
}

// TestDGTableTies checks drawHalf's rare path: for coins whose top bits tie
// with a bin's threshold, the outcome is what the full threshold and the
// coin's other 32 bits (the next keystream word) decide.
func TestDGTableTies(t *testing.T) {
	tb, err := newDGTable(163_107_740, 63)
	if err != nil {
		t.Fatal(err)
	}
	rng, err := newKeystream(seedStream(3))
	if err != nil {
		t.Fatal(err)
	}
	peek, err := newKeystream(seedStream(3)) // the same words as rng
	if err != nil {
		t.Fatal(err)
	}
	pick := rand.New(seedStream(4))
	b := tb.binBits
	var aliased int
	for range 20_000 {
		bin := pick.Uint64N(uint64(len(tb.bins)))
		thrTop := uint64(tb.top[bin]) >> b
		h := uint32(bin<<(32-b) | thrTop<<1 | pick.Uint64N(2))
		got, _ := tb.drawHalf(h, rng)
		u := thrTop<<32 | uint64(uint32(peek.word()))
		want := bin
		if full := tb.bins[bin]; u >= full>>b {
			want = full & (1<<b - 1)
		}
		if got != want {
			t.Fatalf("bin %d, coin %#x: drawHalf gave %d, want %d", bin, u, got, want)
		}
		if want != bin {
			aliased++
		}
	}
	t.Logf("%d of 20000 ties went to the alias", aliased)
}
