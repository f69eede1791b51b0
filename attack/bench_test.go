package attack_test

import (
	"math/rand/v2"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// BenchmarkCraft crafts the updates of f = 5 attackers among n = 25
// participants on an MLP 784-64-10 (d = 50,890).
func BenchmarkCraft(b *testing.B) {
	const n, f, d = 25, 5, 784*64 + 64 + 64*10 + 10
	rng := rand.New(rand.NewPCG(1, 1))
	gen := func(k int) [][]float32 {
		vs := make([][]float32, k)
		for i := range vs {
			vs[i] = make([]float32, d)
			for j := range vs[i] {
				vs[i][j] = float32(0.01 * rng.NormFloat64())
			}
		}
		return vs
	}
	honest, own := gen(n-f), gen(f)
	for _, name := range attack.Names {
		b.Run(name, func(b *testing.B) {
			a, err := attack.New(attack.Config{Name: name}, 784)
			if err != nil {
				b.Fatal(err)
			}
			r := attack.Round{Honest: honest, Own: own, N: n, F: f,
				Rule: aggregation.Config{Rule: aggregation.NameKrum, F: f}, Rng: rand.New(rand.NewPCG(2, 2))}
			for b.Loop() {
				if _, err := a.Craft(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
