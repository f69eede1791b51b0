package dataset

import (
	"encoding/hex"
	"math"
	"testing"
)

func TestScalingDigest(t *testing.T) {
	base := Scaling{Mean: []float64{1, 2}, Std: []float64{3, 4}}
	// The golden value pins the encoding: participants and coordinators of
	// different versions must agree on it.
	const golden = "802864307d8dfaf394f1fa897aed02e5a43cde8f0f90d4cc12c5dee6edec4b44"
	got := base.Digest()
	if hex.EncodeToString(got[:]) != golden {
		t.Fatalf("digest %x, want %s", got, golden)
	}
	for _, tc := range []struct {
		name string
		s    Scaling
	}{
		{"last bit of a mean", Scaling{Mean: []float64{1, math.Nextafter(2, 3)}, Std: []float64{3, 4}}},
		{"a std", Scaling{Mean: []float64{1, 2}, Std: []float64{3, 5}}},
		{"value moved between lists", Scaling{Mean: []float64{1, 2, 3}, Std: []float64{4}}},
		{"negative zero", Scaling{Mean: []float64{1, 2, 0}, Std: []float64{3, 4, math.Copysign(0, -1)}}},
		{"empty", Scaling{}},
	} {
		if tc.s.Digest() == got {
			t.Errorf("%s: digest unchanged", tc.name)
		}
	}
}
