package secureround_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/secureround"
)

// dpPlan is plan with distributed DP.
func dpPlan(n, bucket int) secureround.Plan {
	p := plan(n, bucket)
	d := secagg.DefaultDDP(p.Dim, 1, [32]byte{})
	d.Sigma2 = 1000
	p.DP = &d
	return p
}

// TestPlanDP checks that the DP encoding travels, that every member
// derives the same rotation seed (a new one each attempt), that sessions
// add up the padded encoding, and that a foreign mechanism or a budget the
// ring cannot carry is refused.
func TestPlanDP(t *testing.T) {
	p := dpPlan(6, 0)
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	got, err := secureround.FromProto(p.Federation, p.Start, p.Round, p.Attempt, p.Dim, p.Proto())
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.DDP(), got.DDP()
	if a == nil || b == nil || *a != *b || a.Dim != p.Dim || a.Seed == ([32]byte{}) {
		t.Fatalf("DDP after the wire %+v, before %+v", b, a)
	}
	if s := got.Session(0); s.Dim != a.Words() || s.Dim != secagg.PaddedDim(p.Dim)+1 {
		t.Errorf("session adds %d words, want %d", s.Dim, a.Words())
	}
	next := p
	next.Attempt++
	if next.DDP().Seed == a.Seed {
		t.Error("the rotation seed does not change with the attempt")
	}
	if plain := plan(6, 0); plain.DDP() != nil || plain.Session(0).Dim != plain.Dim+1 {
		t.Error("a plan without DP has a DP encoding")
	}
	if m := dpPlan(7, 3).MinSurvivors(); m != 3 {
		t.Errorf("MinSurvivors of 7 in buckets of 3 (buckets of 3 and 4, both with threshold 3 at 67 %%) = %d, want 3", m)
	}

	pb := p.Proto()
	pb.Dp.Mechanism = "skellam"
	if _, err := secureround.FromProto(p.Federation, p.Start, p.Round, p.Attempt, p.Dim, pb); !errors.Is(err, secureround.ErrPlan) {
		t.Errorf("a plan with mechanism skellam: %v, want ErrPlan", err)
	}
	loud := dpPlan(6, 0)
	loud.DP.Sigma2 = 1 << 60
	if err := loud.Check(); !errors.Is(err, secureround.ErrPlan) || !errors.Is(err, secagg.ErrParams) {
		t.Errorf("a plan whose noise overflows the ring: %v, want ErrPlan and ErrParams", err)
	}
}

// TestPrepared checks the input prepared ahead: under distributed DP it
// encodes, noise included, and decodes near the update; it gives one
// input only; and without DP it is Input.
func TestPrepared(t *testing.T) {
	p := dpPlan(6, 0)
	d := p.DDP()
	delta := make([]float32, p.Dim)
	for i := range delta {
		delta[i] = 0.1 * float32(i%3)
	}
	pr := p.Prepare()
	in, err := pr.Input(delta, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != d.Words() || in[len(in)-1] != 1 {
		t.Fatalf("prepared input of %d words ending %d, want %d ending 1", len(in), in[len(in)-1], d.Words())
	}
	mean := make([]float32, p.Dim)
	if m, err := d.Decode(mean, in); err != nil || m != 1 {
		t.Fatalf("Decode = %d, %v", m, err)
	}
	// One member's noise: σ/γ per coordinate; 8 of those is a false alarm
	// of about 10^−15 per coordinate.
	tol := 8 * math.Sqrt(d.NoiseVariance(1))
	for i := range mean {
		if e := math.Abs(float64(mean[i] - delta[i])); e > tol {
			t.Errorf("coordinate %d decodes to %v, want %v ± %.3g", i, mean[i], delta[i], tol)
		}
	}
	if _, err := pr.Input(delta, 1, nil); !errors.Is(err, secureround.ErrPlan) {
		t.Errorf("a second input from one Prepared: %v, want ErrPlan", err)
	}
	nan := slices.Clone(delta)
	nan[0] = float32(math.NaN())
	if _, err := p.Prepare().Input(nan, 1, nil); !errors.Is(err, secagg.ErrInput) {
		t.Errorf("a prepared input of NaN: %v, want secagg.ErrInput", err)
	}

	plain := plan(6, 0)
	a, err := plain.Prepare().Input(delta, 3, rand.NewChaCha8([32]byte{4}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := plain.Input(delta, 3, rand.NewChaCha8([32]byte{4}))
	if err != nil || !slices.Equal(a, b) {
		t.Errorf("without DP a prepared input is %v, Input %v (%v)", a, b, err)
	}
}
