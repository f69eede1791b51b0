package attack

import (
	"math"
	"math/rand/v2"
)

// backdoor is Bagdasaryan et al.'s model replacement with a trigger.
type backdoor struct {
	base
	scale    float64 // 0: N/F
	target   int
	features int
}

var _ Backdoor = (*backdoor)(nil)

// Target implements Backdoor.
func (a *backdoor) Target() int { return a.target }

// Trigger implements Backdoor: for rows of 784 features (28×28 images) a
// 4×4 square of 1s in the bottom-right corner, otherwise the last min(3,
// len(x)) features set to TriggerValue.
func (a *backdoor) Trigger(x []float64) []float64 {
	out := append([]float64(nil), x...)
	if a.features == mnistFeatures && len(out) == mnistFeatures {
		for r := 24; r < 28; r++ {
			for c := 24; c < 28; c++ {
				out[r*28+c] = 1
			}
		}
		return out
	}
	for j := max(len(out)-3, 0); j < len(out); j++ {
		out[j] = TriggerValue
	}
	return out
}

// Poison implements Attack: ⌈DefaultPoisonFraction·len(x)⌉ rows, chosen by
// rng (the first ones when rng is nil), are replaced by triggered copies
// labelled Target; the other rows are shared with x. When Target is not a
// class (Target ≥ classes) nothing is changed.
func (a *backdoor) Poison(x [][]float64, y []int, classes int, rng *rand.Rand) ([][]float64, []int) {
	n := min(len(x), len(y))
	if a.target >= classes || n == 0 {
		return x, y
	}
	k := int(math.Ceil(DefaultPoisonFraction * float64(n)))
	var pick []int
	if rng != nil {
		pick = rng.Perm(n)[:k]
	} else {
		pick = make([]int, k)
		for i := range pick {
			pick[i] = i
		}
	}
	px := append([][]float64(nil), x...)
	py := append([]int(nil), y...)
	for _, i := range pick {
		px[i] = a.Trigger(x[i])
		py[i] = a.target
	}
	return px, py
}

// Craft implements Attack: Scale·Own[i], Scale = N/F by default.
func (a *backdoor) Craft(r Round) ([][]float32, error) {
	if v, err := a.prepare(r, false); v == nil {
		return nothing(err)
	}
	scale := a.scale
	if scale == 0 {
		scale = float64(r.N) / float64(r.F)
	}
	return scaled(r.Own, scale), nil
}
