package attack

import (
	"math"
	"testing"
)

// TestTo32 pins to32's saturation, including float64 values just past the
// float32 range (which float32() rounds down or to an infinity).
func TestTo32(t *testing.T) {
	above := math.Nextafter(math.MaxFloat32, math.Inf(1))
	for _, tt := range []struct {
		x    float64
		want float32
	}{
		{0, 0},
		{-2.5, -2.5},
		{math.MaxFloat32, math.MaxFloat32},
		{above, math.MaxFloat32},
		{-above, -math.MaxFloat32},
		{1e300, math.MaxFloat32},
		{-1e300, -math.MaxFloat32},
		{math.Inf(1), math.MaxFloat32},
		{math.Inf(-1), -math.MaxFloat32},
		{math.NaN(), 0},
	} {
		if got := to32(tt.x); got != tt.want {
			t.Errorf("to32(%v) = %v, want %v", tt.x, got, tt.want)
		}
	}
}
