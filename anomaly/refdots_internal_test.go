package anomaly

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// oneAtATime is refDots as Check computed it before the updates were
// taken four at a time: the reference for the bits refDots must keep.
func oneAtATime(updates []Update, w []float64, d int) ([]float64, float64) {
	dots := make([]float64, len(updates))
	refNorm := 0.0
	ref := make([]float64, min(refBlock, d))
	for lo := 0; lo < d; lo += refBlock {
		hi := min(lo+refBlock, d)
		r := ref[:hi-lo]
		clear(r)
		for i, u := range updates {
			if u.Norm == 0 {
				continue
			}
			for j, v := range u.Delta[lo:hi] {
				r[j] += w[i] * float64(v)
			}
		}
		for _, v := range r {
			refNorm += v * v
		}
		for i, u := range updates {
			if u.Norm == 0 || len(u.Delta) != d {
				continue
			}
			dot := dots[i]
			for j, v := range u.Delta[lo:hi] {
				dot += float64(v) * r[j]
			}
			dots[i] = dot
		}
	}
	return dots, refNorm
}

// refDotsOf is refDots over the updates' own vectors, as Check runs it,
// on one goroutine.
func refDotsOf(updates []Update, w []float64, d int) ([]float64, float64) {
	return refDotsParts(updates, w, d, 1)
}

// refDotsParts is refDots over the updates' own vectors on up to parts
// goroutines.
func refDotsParts(updates []Update, w []float64, d, parts int) ([]float64, float64) {
	_, full, block := deltaBlocks(updates)
	dots, refNorm, err := refDots(updates, w, d, full, parts, block)
	if err != nil {
		panic(err)
	}
	return dots, refNorm
}

// randomUpdates makes n updates of d parameters whose magnitudes span many
// binades, so that any change in the order of a sum changes its bits;
// every third has zero norm and every fifth is longer than d (neither is
// dotted with the reference, and a zero norm is not in it).
func randomUpdates(rng *rand.Rand, n, d int) ([]Update, []float64) {
	updates := make([]Update, n)
	w := make([]float64, n)
	for i := range updates {
		extra := 0
		if i%5 == 4 {
			extra = 3
		}
		delta := make([]float32, d+extra)
		for j := range delta {
			delta[j] = float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
		}
		updates[i] = Update{ID: fmt.Sprint(i), Delta: delta, Samples: uint64(1 + rng.IntN(100)), Norm: 1 + rng.Float64()}
		if i%3 == 2 {
			updates[i].Norm = 0
		}
		w[i] = rng.Float64() * 50
	}
	return updates, w
}

// TestRefDotsSameBits: taking the updates four at a time changes no bit
// of the dot products or of the reference's norm, for every count of
// updates around the groups of four and lengths around refBlock.
func TestRefDotsSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 5))
	for _, d := range []int{0, 1, 7, refBlock - 1, refBlock, refBlock + 5, 3*refBlock + 123} {
		for n := 0; n <= 13; n++ {
			updates, w := randomUpdates(rng, n, d)
			want, wantNorm := oneAtATime(updates, w, d)
			got, gotNorm := refDotsOf(updates, w, d)
			if math.Float64bits(gotNorm) != math.Float64bits(wantNorm) {
				t.Fatalf("n=%d d=%d: reference norm² %v, one at a time %v", n, d, gotNorm, wantNorm)
			}
			for i := range want {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Fatalf("n=%d d=%d: dot %d = %v, one at a time %v", n, d, i, got[i], want[i])
				}
			}
		}
	}
}

// TestRefDotsParallelSameBits: sharing each block out over goroutines
// changes no bit either, whatever their number (a range of the reference
// per goroutine, then a task per group of four dot products and one for
// the reference's norm).
func TestRefDotsParallelSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 6))
	for _, d := range []int{1, 7, refBlock - 1, refBlock + 5, 3*refBlock + 123} {
		for _, n := range []int{1, 2, 3, 4, 5, 6, 9, 10, 13} {
			updates, w := randomUpdates(rng, n, d)
			want, wantNorm := oneAtATime(updates, w, d)
			for _, parts := range []int{2, 3, 7} {
				got, gotNorm := refDotsParts(updates, w, d, parts)
				if math.Float64bits(gotNorm) != math.Float64bits(wantNorm) {
					t.Fatalf("parts=%d n=%d d=%d: reference norm² %v, one at a time %v", parts, n, d, gotNorm, wantNorm)
				}
				for i := range want {
					if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
						t.Fatalf("parts=%d n=%d d=%d: dot %d = %v, one at a time %v", parts, n, d, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkRefDots: Check's reference and dot products at 10 updates of
// 1 M parameters, one update at a time (before) and four at a time.
func BenchmarkRefDots(b *testing.B) {
	updates, w := randomUpdates(rand.New(rand.NewPCG(1, 2)), 10, 1<<20)
	for i := range updates {
		updates[i].Norm = 1
		updates[i].Delta = updates[i].Delta[:1<<20]
	}
	for _, c := range []struct {
		name string
		f    func([]Update, []float64, int) ([]float64, float64)
	}{
		{"one-at-a-time", oneAtATime},
		{"four-at-a-time", refDotsOf},
		{"two-goroutines", func(u []Update, w []float64, d int) ([]float64, float64) { return refDotsParts(u, w, d, 2) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.f(updates, w, 1<<20)
			}
		})
	}
}
