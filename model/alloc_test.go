package model

import (
	"math/rand/v2"
	"testing"
)

// TestTrainAllocs checks the SGD loop allocates nothing per sample or per batch:
// ten times the rows must not cost more allocations.
func TestTrainAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("long (trains at two data sizes to count allocations): skipped by -short; `make test` runs it")
	}
	s := Spec{Kind: MLP, Features: 8, Classes: 3, Hidden: []int{16, 8}}
	p := Plan{Epochs: 3, LearningRate: 0.01, BatchSize: 16}
	data := func(n int) ([][]float64, []int) {
		rng := rand.New(rand.NewPCG(1, 1))
		x := make([][]float64, n)
		y := make([]int, n)
		for i := range x {
			x[i] = make([]float64, s.Features)
			for j := range x[i] {
				x[i][j] = rng.NormFloat64()
			}
			y[i] = rng.IntN(s.Classes)
		}
		return x, y
	}
	params := Init(s, rand.New(rand.NewPCG(2, 2)))
	allocs := func(n int) float64 {
		x, y := data(n)
		return testing.AllocsPerRun(3, func() {
			if _, err := Train(s, params, x, y, p, rand.New(rand.NewPCG(3, 3))); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := allocs(64), allocs(640)
	t.Logf("allocations per Train: %v (64 rows), %v (640 rows)", small, large)
	if large > small {
		t.Errorf("Train allocates per batch: %v allocations for 64 rows, %v for 640", small, large)
	}
}
