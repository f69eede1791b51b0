package aggregation

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/internal/cputime"
)

// The kernel benchmarks run at the size of issue 3's targets, n = 50 updates
// of d = 1,000,000 float32, and report "x-pass": the time per operation over
// the time of one summing pass over the same inputs (sumPass), measured in
// the same benchmark, because this machine is shared and only ratios compare.

const benchN, benchD = 50, 1_000_000

var benchInputs = sync.OnceValue(func() [][]float32 { return benchVectors(benchN, benchD) })

// benchInputs100 are n = 100 updates of d = 100,000, issue 16's size for
// Krum, Multi-Krum and Bulyan on the AVX-512 path, where the n² distance
// work dominates the reading of the inputs.
var benchInputs100 = sync.OnceValue(func() [][]float32 { return benchVectors(100, 100_000) })

// benchVectors returns n reproducible standard normal vectors of d float32.
func benchVectors(n, d int) [][]float32 {
	rng := rand.New(rand.NewPCG(1, 1))
	xs := make([][]float32, n)
	for i := range xs {
		xs[i] = make([]float32, d)
		for c := range xs[i] {
			xs[i][c] = float32(rng.NormFloat64())
		}
	}
	return xs
}

// sumPass is the baseline, the memory floor of any aggregation: dst = Σ xs
// in float32, every input read once (Pass).
func sumPass(dst []float32, xs [][]float32) { Pass(dst, xs) }

// passSeconds is the median of five timed passes after a warm-up, and
// the mean CPU time of the five (all cores together).
func passSeconds(xs [][]float32) (wall, cpu float64) {
	dst := make([]float32, len(xs[0]))
	sumPass(dst, xs)
	ts := make([]float64, 5)
	c := cputime.Process()
	for i := range ts {
		start := time.Now()
		sumPass(dst, xs)
		ts[i] = time.Since(start).Seconds()
	}
	cpu = (cputime.Process() - c).Seconds() / float64(len(ts))
	slices.Sort(ts)
	return ts[len(ts)/2], cpu
}

// benchKernel times op on the benchmark inputs and reports its ratio to one
// pass measured just before, and the CPU time per operation (cpu-ms, all
// cores together), which other processes on a loaded machine do not
// inflate as they do wall times.
func benchKernel(b *testing.B, op func(xs [][]float32, dst []float32)) {
	benchKernelOn(b, benchInputs(), op)
}

// benchKernelOn is benchKernel on the inputs xs.
func benchKernelOn(b *testing.B, xs [][]float32, op func(xs [][]float32, dst []float32)) {
	dst := make([]float32, len(xs[0]))
	pass, passCPU := passSeconds(xs)
	b.SetBytes(int64(len(xs)) * int64(len(xs[0])) * 4)
	cpu := cputime.Process()
	for b.Loop() {
		op(xs, dst)
	}
	cpu = cputime.Process() - cpu
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)/pass, "x-pass")
	b.ReportMetric(pass*1e3, "pass-ms")
	b.ReportMetric(cpu.Seconds()/float64(b.N)*1e3, "cpu-ms")
	// The same ratio in CPU time: what a loaded machine distorts least.
	b.ReportMetric(cpu.Seconds()/float64(b.N)/passCPU, "x-pass-cpu")
}

func BenchmarkPass(b *testing.B) {
	benchKernel(b, func(xs [][]float32, dst []float32) { sumPass(dst, xs) })
}

func BenchmarkPairwise(b *testing.B) {
	benchKernel(b, func(xs [][]float32, _ []float32) { pairwiseSquaredDistances(xs) })
}

func BenchmarkMedian(b *testing.B) {
	benchKernel(b, func(xs [][]float32, dst []float32) { coordinateMedian(dst, xs) })
}

func BenchmarkTrimmedMean(b *testing.B) {
	// k = 12: the largest f with n ≥ 4f + 3 (Bulyan's bound) at n = 50.
	benchKernel(b, func(xs [][]float32, dst []float32) { coordinateTrimmedMean(dst, xs, 12) })
}

func BenchmarkMeanOf(b *testing.B) {
	idx := make([]int, benchN)
	for i := range idx {
		idx[i] = i
	}
	benchKernel(b, func(xs [][]float32, dst []float32) { meanOf(dst, xs, idx) })
}

func BenchmarkWeightedSum(b *testing.B) {
	w := make([]float64, benchN)
	for i := range w {
		w[i] = 1 / float64(benchN)
	}
	benchKernel(b, func(xs [][]float32, dst []float32) { weightedSum(dst, xs, w) })
}

func BenchmarkClosestToMedianMean(b *testing.B) {
	// Bulyan at n = 50, f = 11: θ = n − 2f = 28 selected, β = θ − 2f = 6.
	sel := make([]int, 28)
	for i := range sel {
		sel[i] = 2 * i % benchN
	}
	benchKernel(b, func(xs [][]float32, dst []float32) { coordinateClosestToMedianMean(dst, xs, sel, 6, true) })
}

func BenchmarkSquaredDistancesTo(b *testing.B) {
	benchKernel(b, func(xs [][]float32, dst []float32) { squaredDistancesTo(xs, xs[0]) })
}

// benchRule times rule r on the benchmark inputs, as `fedguard bench
// aggregate` does, with f the largest the rule accepts at n = 50.
func benchRule(b *testing.B, r Rule) { benchRuleOn(b, benchInputs(), r) }

// benchRuleOn is benchRule on the inputs xs.
func benchRuleOn(b *testing.B, xs [][]float32, r Rule) {
	updates := make([]Update, len(xs))
	for i, x := range xs {
		updates[i] = Update{ID: "p" + string(rune('A'+i/26)) + string(rune('a'+i%26)), Delta: x, Samples: 1}
	}
	benchKernelOn(b, xs, func(_ [][]float32, dst []float32) {
		if _, err := r.Aggregate(dst, updates); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkKrum(b *testing.B)      { benchRule(b, Krum{F: 23}) }
func BenchmarkMultiKrum(b *testing.B) { benchRule(b, MultiKrum{F: 23, M: 27}) }
func BenchmarkBulyan(b *testing.B)    { benchRule(b, Bulyan{F: 11}) }

// The three at n = 100, d = 100,000 with the largest f each accepts, as
// `fedguard bench aggregate -n 100 -d 100000` runs them.
func BenchmarkKrum100(b *testing.B)      { benchRuleOn(b, benchInputs100(), Krum{F: 48}) }
func BenchmarkMultiKrum100(b *testing.B) { benchRuleOn(b, benchInputs100(), MultiKrum{F: 48, M: 52}) }
func BenchmarkBulyan100(b *testing.B)    { benchRuleOn(b, benchInputs100(), Bulyan{F: 24}) }
func BenchmarkCenteredClipping(b *testing.B) {
	benchRule(b, CenteredClipping{Tau: 1, F: 24})
}
