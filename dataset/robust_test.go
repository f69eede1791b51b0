package dataset

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// statsOfValues is the Stats of one feature holding vs.
func statsOfValues(vs ...float64) Stats {
	s := Stats{Count: uint64(len(vs)), Sum: []float64{0}, SumSquares: []float64{0}}
	for _, v := range vs {
		s.Sum[0] += v
		s.SumSquares[0] += v * v
	}
	return s
}

// honestParties are three hospitals whose feature has mean about 10 and
// standard deviation about 2.
func honestParties(rng *rand.Rand) []Party {
	var ps []Party
	for _, name := range []string{"a", "b", "c"} {
		vs := make([]float64, 100)
		for i := range vs {
			vs[i] = 10 + 2*rng.NormFloat64()
		}
		ps = append(ps, Party{Name: name, Stats: statsOfValues(vs...)})
	}
	return ps
}

func TestCheckStats(t *testing.T) {
	tests := []struct {
		name string
		s    Stats
		ok   bool
	}{
		{"real data", statsOfValues(1, 2, 3), true},
		{"constant", statsOfValues(7, 7, 7), true},
		{"the 1e300 attack", Stats{Count: 1, Sum: []float64{1e300}, SumSquares: []float64{1e300}}, false},
		{"mean above root of mean square", Stats{Count: 2, Sum: []float64{4}, SumSquares: []float64{1}}, false},
		{"huge but consistent", Stats{Count: 1, Sum: []float64{1e150}, SumSquares: []float64{1e300}}, true},
		{"zero rows", Stats{Sum: []float64{0}, SumSquares: []float64{0}}, false},
		{"mean square overflows", Stats{Count: 1, Sum: []float64{1e200}, SumSquares: []float64{1e300}}, false},
	}
	for _, tt := range tests {
		err := CheckStats(tt.s)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInconsistentStats)) {
			t.Errorf("%s: CheckStats = %v, want ok %t", tt.name, err, tt.ok)
		}
	}
}

// TestRobustScaling: one party, whatever consistent statistics it sends,
// moves the scaling of three honest parties by a bounded amount, and is
// named; honest parties alone get their pooled scaling.
func TestRobustScaling(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	honest := honestParties(rng)
	var pooled Stats
	for _, p := range honest {
		if err := pooled.Merge(p.Stats); err != nil {
			t.Fatal(err)
		}
	}
	want, err := ScalingFrom(pooled)
	if err != nil {
		t.Fatal(err)
	}
	got, clipped, err := RobustScaling(honest)
	if err != nil || len(clipped) != 0 {
		t.Fatalf("RobustScaling(honest) = %v, clipped %v", err, clipped)
	}
	if math.Abs(got.Mean[0]-want.Mean[0]) > 1e-9 || math.Abs(got.Std[0]-want.Std[0]) > 1e-9 {
		t.Errorf("honest scaling = %v, want the pooled %v", got, want)
	}

	attacks := []struct {
		name string
		s    Stats
	}{
		{"huge mean", Stats{Count: 1, Sum: []float64{1e150}, SumSquares: []float64{1e300}}},
		{"huge negative mean, many rows", Stats{Count: 1 << 40, Sum: []float64{-1e140 * (1 << 40)}, SumSquares: []float64{1e280 * (1 << 40)}}},
		{"huge variance", Stats{Count: 100, Sum: []float64{1000}, SumSquares: []float64{1e250}}},
		{"zero variance far away", statsOfValues(slices.Repeat([]float64{1e6}, 1000)...)},
	}
	for _, a := range attacks {
		ps := append(slices.Clone(honest), Party{Name: "mallory", Stats: a.s})
		got, clipped, err := RobustScaling(ps)
		if err != nil {
			t.Errorf("%s: RobustScaling = %v", a.name, err)
			continue
		}
		// The bound of the doc comment, with the honest spread about 2.
		if d := math.Abs(got.Mean[0] - want.Mean[0]); d > ClipBand*3 {
			t.Errorf("%s: mean moved by %g to %g", a.name, d, got.Mean[0])
		}
		if got.Std[0] > ClipBand*3*math.Sqrt2 || got.Std[0] < 1 {
			t.Errorf("%s: std %g, want within a few honest spreads of 2", a.name, got.Std[0])
		}
		if len(clipped) != 1 || clipped[0].Name != "mallory" {
			t.Errorf("%s: clipped = %v, want mallory alone", a.name, clipped)
		}
		// Order does not matter.
		slices.Reverse(ps)
		again, _, err := RobustScaling(ps)
		if err != nil || again.Digest() != got.Digest() {
			t.Errorf("%s: reversed input gives %v, %v; want %v", a.name, again, err, got)
		}
	}
	if _, _, err := RobustScaling(nil); err == nil {
		t.Error("RobustScaling(nil) = nil error")
	}
	bad := append(slices.Clone(honest), Party{Name: "x", Stats: Stats{Count: 1, Sum: []float64{1e300}, SumSquares: []float64{1e300}}})
	if _, _, err := RobustScaling(bad); !errors.Is(err, ErrInconsistentStats) {
		t.Errorf("RobustScaling(with the 1e300 attack) = %v, want ErrInconsistentStats", err)
	}
}

func TestStatsDigest(t *testing.T) {
	a := statsOfValues(1, 2, 3)
	b := statsOfValues(1, 2, 4)
	if a.Digest() == b.Digest() || a.Digest() != statsOfValues(1, 2, 3).Digest() {
		t.Error("Stats.Digest does not tell different statistics apart, or is not deterministic")
	}
}

func FuzzRobustScaling(f *testing.F) {
	f.Add(uint64(3), 6.0, 14.0, uint64(1), 1e150, 1e300)
	f.Fuzz(func(t *testing.T, n1 uint64, s1, q1 float64, n2 uint64, s2, q2 float64) {
		ps := []Party{
			{Name: "a", Stats: statsOfValues(1, 2, 3)},
			{Name: "b", Stats: statsOfValues(2, 3, 4, 5)},
			{Name: "c", Stats: Stats{Count: n1, Sum: []float64{s1}, SumSquares: []float64{q1}}},
			{Name: "d", Stats: Stats{Count: n2, Sum: []float64{s2}, SumSquares: []float64{q2}}},
		}
		sc, _, err := RobustScaling(ps)
		if err != nil {
			return
		}
		if !finite(sc.Mean[0]) || !finite(sc.Std[0]) || sc.Std[0] <= 0 {
			t.Fatalf("scaling %v is not finite and positive", sc)
		}
	})
}
