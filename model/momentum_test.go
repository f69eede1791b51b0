package model

import (
	"math"
	"slices"
	"testing"
)

func TestMomentumStep(t *testing.T) {
	for _, tt := range []struct {
		style string
		want  [][]float32 // the momentum after each of the updates below
	}{
		{MomentumEMA, [][]float32{{0.5, -1}, {1.25, -0.5}, {0.625, -0.25}}},
		{MomentumHeavyBall, [][]float32{{1, -2}, {2.5, -1}, {1.25, -0.5}}},
	} {
		m := Momentum{Beta: 0.5, Style: tt.style}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		for r, u := range [][]float32{{1, -2}, {2, 0}, {0, 0}} {
			u = slices.Clone(u)
			m.Step(u)
			if !slices.Equal(u, tt.want[r]) {
				t.Errorf("%s step %d: %v, want %v", tt.style, r+1, u, tt.want[r])
			}
		}
		// A new model length starts again from zero.
		u := []float32{4, 4, 4}
		m.Step(u)
		if want := map[string]float32{MomentumEMA: 2, MomentumHeavyBall: 4}[tt.style]; u[0] != want {
			t.Errorf("%s after a length change: %v, want %v as from zero", tt.style, u, want)
		}
	}
}

func TestMomentumEdges(t *testing.T) {
	// β = 0 changes nothing, not even -0.
	m := Momentum{}
	u := []float32{float32(math.Copysign(0, -1)), 3}
	m.Step(u)
	if math.Float32bits(u[0]) != 1<<31 || u[1] != 3 {
		t.Errorf("β = 0: %v", u)
	}
	// Saturation instead of infinities.
	m = Momentum{Beta: 0.9, Style: MomentumHeavyBall}
	big := []float32{math.MaxFloat32, -math.MaxFloat32}
	m.Step(slices.Clone(big))
	u = slices.Clone(big)
	m.Step(u)
	if u[0] != math.MaxFloat32 || u[1] != -math.MaxFloat32 {
		t.Errorf("saturation: %v", u)
	}
	// A NaN goes out (for the caller to refuse) and resets the state.
	u = []float32{float32(math.NaN()), 1}
	m.Step(u)
	if !math.IsNaN(float64(u[0])) {
		t.Errorf("NaN update: %v", u)
	}
	u = []float32{1, 1}
	m.Step(u)
	if u[0] != 1 || u[1] != 1 {
		t.Errorf("after a NaN the state should restart from 0: %v", u)
	}
	for _, bad := range []Momentum{{Beta: 1}, {Beta: -0.1}, {Beta: math.NaN()}, {Beta: 0.5, Style: "nesterov"}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}
