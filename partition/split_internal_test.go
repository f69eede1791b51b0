package partition

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestApportion(t *testing.T) {
	for _, tc := range []struct {
		p    []float64
		n    int
		want []int
	}{
		{[]float64{0.5, 0.5}, 3, []int{2, 1}},               // tie: lower index first
		{[]float64{0.2, 0.3, 0.5}, 10, []int{2, 3, 5}},      // exact
		{[]float64{0.34, 0.33, 0.33}, 2, []int{1, 1, 0}},    // 0.68, 0.66, 0.66
		{[]float64{0.1, 0.15, 0.75}, 10, []int{1, 2, 7}},    // 1, 1.5, 7.5: first largest remainder
		{[]float64{1, 0, 0}, 7, []int{7, 0, 0}},             // one-hot
		{[]float64{0.5, 0.5 + 1e-15, 0}, 4, []int{2, 2, 0}}, // sums slightly above 1
		{[]float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, 0, []int{0, 0, 0}},
	} {
		got := make([]int, len(tc.p))
		apportion(got, tc.p, tc.n)
		if !slices.Equal(got, tc.want) {
			t.Errorf("apportion(%v, %d) = %v, want %v", tc.p, tc.n, got, tc.want)
		}
	}
}

func TestDrawDirichletExtremes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, alpha := range []float64{1e-300, 1e-5, 0.1, 1, 1e5, 1e300, math.MaxFloat64} {
		p := make([]float64, 8)
		for range 50 {
			drawDirichlet(p, alpha, rng)
			sum := 0.0
			for _, v := range p {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("alpha %g: proportion %v", alpha, v)
				}
				sum += v
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Fatalf("alpha %g: proportions %v sum to %v", alpha, p, sum)
			}
		}
	}
}

func TestDirichletFillsEmptyClients(t *testing.T) {
	// With a tiny alpha each class goes to one client, so most clients
	// would be empty without the fix.
	labels := []int{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}
	parts := dirichlet(labels, 2, 12, 1e-4, rand.New(rand.NewPCG(9, 9)))
	for c, p := range parts {
		if len(p) != 1 {
			t.Errorf("client %d has %d rows, want 1", c, len(p))
		}
	}
}
