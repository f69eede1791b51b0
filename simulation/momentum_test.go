package simulation

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// TestMomentumZeroReproduces checks that the momentum recursions with
// β = 0, worker and server, in both styles, give today's runs bit for bit.
func TestMomentumZeroReproduces(t *testing.T) {
	base := wdbcOptions()
	base.Model, base.Clients, base.Byzantine = "mlp", 8, 2
	base.Attack = attack.Config{Name: attack.NameALIE}
	base.Aggregation = aggregation.Config{Rule: aggregation.NameMedian, F: 2}
	want, err := Run(context.Background(), base, nil)
	if err != nil {
		t.Fatalf("Run without momentum: %v", err)
	}
	for _, style := range []string{MomentumEMA, MomentumHeavyBall} {
		o := base
		o.MomentumStyle = style
		got, err := Run(context.Background(), o, nil)
		if err != nil {
			t.Fatalf("Run %s β=0: %v", style, err)
		}
		if got.ModelSHA256 != want.ModelSHA256 {
			t.Errorf("%s with β = 0: model %s, want %s (no momentum)", style, got.ModelSHA256, want.ModelSHA256)
		}
		for i := range want.Rounds {
			if got.Rounds[i].Accuracy != want.Rounds[i].Accuracy || got.Rounds[i].Loss != want.Rounds[i].Loss {
				t.Errorf("%s with β = 0: round %d = %+v, want %+v", style, i+1, got.Rounds[i], want.Rounds[i])
			}
		}
	}
	o := base
	o.WorkerMomentum = 0.9
	got, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Run β=0.9: %v", err)
	}
	if got.ModelSHA256 == want.ModelSHA256 {
		t.Errorf("worker momentum 0.9 left the model unchanged: the momentum is not applied")
	}
	if got.Options.MomentumStyle != MomentumEMA {
		t.Errorf("momentum style = %q, want the default %q", got.Options.MomentumStyle, MomentumEMA)
	}
}

// TestMomentumPersistsPerClient checks each client's momentum is its own
// and carries over from round to round, in both conventions.
func TestMomentumPersistsPerClient(t *testing.T) {
	rounds := [][2][]float32{ // round → client → update
		{{1, -2}, {10, 0}},
		{{3, 4}, {0, 10}},
		{{-1, 0}, {5, 5}},
	}
	const beta = 0.5
	for _, c := range []struct {
		style string
		next  func(m, u float64) float64
	}{
		{MomentumEMA, func(m, u float64) float64 { return (1-beta)*u + beta*m }},
		{MomentumHeavyBall, func(m, u float64) float64 { return beta*m + u }},
	} {
		mo := newMomentum(c.style, beta, 2)
		want := [2][]float64{{0, 0}, {0, 0}}
		for r, ups := range rounds {
			for i, u := range ups {
				got := mo.step(i, u)
				for j := range u {
					want[i][j] = c.next(want[i][j], float64(u[j]))
					if float64(got[j]) != want[i][j] {
						t.Errorf("%s: round %d client %d coordinate %d: momentum %v, want %v", c.style, r+1, i, j, got[j], want[i][j])
					}
				}
				got[0] = 1e9 // the caller's copy: must not reach the state
			}
		}
	}
}

func TestPreviousClipping(t *testing.T) {
	u := func(v ...float32) aggregation.Update { return aggregation.Update{ID: "x", Delta: v, Samples: 1} }
	c := &previousClipping{tau: 1, iters: 1}
	dst := make([]float32, 2)
	// From the center 0: (3,4) is clipped to (0.6,0.8), (0,0.5) is kept.
	if _, err := c.Aggregate(dst, []aggregation.Update{u(3, 4), u(0, 0.5)}); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.3, 0.65}; !near(dst, want) {
		t.Fatalf("round 1 aggregate %v, want %v", dst, want)
	}
	// Round 2 starts from (0.3, 0.65): both updates lie within τ of it.
	if _, err := c.Aggregate(dst, []aggregation.Update{u(0.3, 1.65), u(0.3, 0.65)}); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.3, 1.15}; !near(dst, want) {
		t.Errorf("round 2 aggregate %v, want %v (the previous center kept)", dst, want)
	}
	if _, err := c.Aggregate(make([]float32, 3), []aggregation.Update{u(1, 2, 3)}); err == nil {
		t.Errorf("an update of another length was accepted")
	}
}

func near(got, want []float32) bool {
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			return false
		}
	}
	return len(got) == len(want)
}

// TestMomentumRun runs local steps with worker and server momentum and
// centered clipping from the previous aggregate: deterministic whatever
// the workers, evaluated every other round, and different from the
// stateless clipping.
func TestMomentumRun(t *testing.T) {
	o := wdbcOptions()
	o.Clients, o.Byzantine, o.Rounds = 8, 2, 5
	o.LocalSteps, o.BatchSize = 1, 16
	o.WorkerMomentum, o.ServerMomentum, o.MomentumStyle = 0.9, 0.5, MomentumHeavyBall
	o.Attack = attack.Config{Name: attack.NameIPM}
	o.Aggregation = aggregation.Config{Rule: aggregation.NameCenteredClipping, F: 1, Tau: 0.001, Bucket: 2}
	o.ClippingCenter = CenterPrevious
	o.EvalEvery = 2
	var res [2]Result
	for k, workers := range []int{1, 3} {
		o := o
		o.Workers = workers
		r, err := Run(context.Background(), o, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		res[k] = r
	}
	if res[0].ModelSHA256 != res[1].ModelSHA256 {
		t.Errorf("1 and 3 workers: models %s and %s", res[0].ModelSHA256, res[1].ModelSHA256)
	}
	var rounds []int
	for _, r := range res[0].Rounds {
		rounds = append(rounds, r.Round)
	}
	if len(rounds) != 3 || rounds[0] != 2 || rounds[1] != 4 || rounds[2] != 5 {
		t.Errorf("evaluated rounds %v, want [2 4 5]", rounds)
	}
	o.ClippingCenter = CenterMedian
	med, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if med.ModelSHA256 == res[0].ModelSHA256 {
		t.Errorf("clipping around the median and around the previous aggregate gave the same model")
	}
	for _, bad := range []Options{
		{Dataset: DatasetWDBC, WorkerMomentum: 1},
		{Dataset: DatasetWDBC, ServerMomentum: -0.1},
		{Dataset: DatasetWDBC, MomentumStyle: "nesterov"},
		{Dataset: DatasetWDBC, ClippingCenter: "mean"},
		{Dataset: DatasetWDBC, LocalSteps: -1},
		{Dataset: DatasetWDBC, EvalEvery: -1},
	} {
		if _, err := Run(context.Background(), bad, nil); !errors.Is(err, ErrOptions) {
			t.Errorf("Run(%+v) = %v, want ErrOptions", bad, err)
		}
	}
}
