package privacy

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestBelowTotal checks the logarithm-free comparison the fractional series
// stops on against the log-sum it stands for, on random sums spanning many
// orders of magnitude, empty sums and infinite terms.
func TestBelowTotal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 2000 {
		var a, b logSum
		for range r.IntN(5) {
			a.add(r.NormFloat64() * 300)
		}
		for range r.IntN(5) {
			b.add(r.NormFloat64() * 300)
		}
		if n%97 == 0 {
			b.add(math.Inf(1))
		}
		total := logSumOf(a, b)
		for _, x := range []float64{total - 1, total - 1e-9, total + 1e-9, total + 1, r.NormFloat64() * 300} {
			if got, want := belowTotal(x, a, b), x < total; got != want {
				t.Fatalf("belowTotal(%v, %+v, %+v) = %v, want %v (total %v)", x, a, b, got, want, total)
			}
		}
	}
}
