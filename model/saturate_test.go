package model

import (
	"math"
	"testing"
)

func TestSaturate(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, tt := range []struct {
		v, want float32
	}{
		{0, 0},
		{-1.5, -1.5},
		{math.MaxFloat32, math.MaxFloat32},
		{-math.MaxFloat32, -math.MaxFloat32},
		{inf, math.MaxFloat32},
		{-inf, -math.MaxFloat32},
	} {
		if got := Saturate(tt.v); got != tt.want {
			t.Errorf("Saturate(%v) = %v, want %v", tt.v, got, tt.want)
		}
	}
	big := float32(math.MaxFloat32)
	if got := Saturate(big * 2); got != math.MaxFloat32 { // an overflowed product
		t.Errorf("Saturate(MaxFloat32·2) = %v, want MaxFloat32", got)
	}
	if got := Saturate(float32(math.NaN())); !math.IsNaN(float64(got)) {
		t.Errorf("Saturate(NaN) = %v, want NaN (left for the caller's finiteness check)", got)
	}
}
