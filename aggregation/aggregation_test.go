package aggregation

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveFedAvg is the reference: the textbook weighted mean in float64.
func naiveFedAvg(updates []Update) []float64 {
	n := len(updates[0].Delta)
	out := make([]float64, n)
	var total float64
	for _, u := range updates {
		total += float64(u.Samples)
	}
	for i := range n {
		for _, u := range updates {
			out[i] += float64(u.Samples) * float64(u.Delta[i])
		}
		out[i] /= total
	}
	return out
}

func randomUpdates(rng *rand.Rand, k, n int) []Update {
	us := make([]Update, k)
	for j := range us {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		us[j] = Update{ID: string(rune('a' + j)), Delta: d, Samples: 1 + rng.Uint64N(1000)}
	}
	return us
}

func TestFedAvgMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ k, n int }{{1, 1}, {2, 7}, {5, 1 << 14}, {7, 1<<14 + 3}, {3, 40000}} {
		us := randomUpdates(rng, tc.k, tc.n)
		dst := make([]float32, tc.n)
		rep, err := FedAvg{}.Aggregate(dst, us)
		if err != nil {
			t.Fatalf("k=%d n=%d: %v", tc.k, tc.n, err)
		}
		want := naiveFedAvg(us)
		for i := range want {
			if math.Abs(float64(dst[i])-want[i]) > 1e-6*(1+math.Abs(want[i])) {
				t.Fatalf("k=%d n=%d: dst[%d] = %v, want %v", tc.k, tc.n, i, dst[i], want[i])
			}
		}
		var sum float64
		for _, e := range rep.Entries {
			sum += e.Weight
			if !e.Selected {
				t.Errorf("entry %q not selected", e.ID)
			}
		}
		if math.Abs(sum-1) > 1e-12 || len(rep.Entries) != tc.k {
			t.Errorf("report weights sum to %v over %d entries", sum, len(rep.Entries))
		}
	}
}

func TestFedAvgRefuses(t *testing.T) {
	good := func() []Update { return []Update{{ID: "a", Delta: []float32{1, 2}, Samples: 3}} }
	for _, tc := range []struct {
		name string
		n    int
		us   func() []Update
		want error
	}{
		{"empty", 2, func() []Update { return nil }, ErrNoUpdates},
		{"ragged", 3, good, ErrLength},
		{"nan", 2, func() []Update { u := good(); u[0].Delta[1] = float32(math.NaN()); return u }, ErrNonFinite},
		{"inf", 2, func() []Update { u := good(); u[0].Delta[0] = float32(math.Inf(-1)); return u }, ErrNonFinite},
		{"zero samples", 2, func() []Update { u := good(); u[0].Samples = 0; return u }, ErrZeroSamples},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []float32{7, 7, 7}[:tc.n]
			_, err := FedAvg{}.Aggregate(dst, tc.us())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Aggregate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	if r, err := New(Config{Rule: "fedavg"}); err != nil || r.Name() != "fedavg" {
		t.Fatalf(`New(fedavg) = %v, %v`, r, err)
	}
	if r, err := New(Config{}); err != nil || r != (FedAvg{}) {
		t.Fatalf(`New(Config{}) = %v, %v, want FedAvg{}`, r, err)
	}
	if _, err := New(Config{Rule: "krum-ish"}); !errors.Is(err, ErrUnknownRule) {
		t.Fatalf(`New(krum-ish) = %v, want %v`, err, ErrUnknownRule)
	}
}

func BenchmarkFedAvg(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	us := randomUpdates(rng, 10, 1<<20)
	dst := make([]float32, 1<<20)
	b.SetBytes(int64(10 * 4 << 20))
	for b.Loop() {
		if _, err := (FedAvg{}).Aggregate(dst, us); err != nil {
			b.Fatal(err)
		}
	}
}
