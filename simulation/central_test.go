package simulation

import (
	"math"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/privacy"
)

// TestRunCentralDP runs a simulation with central DP, as a plain
// federation's coordinator adds it: the federation's ε is the budget's,
// with the σ privacy.SigmaFor gives for one Gaussian per round; the run is
// reproducible from the seed and differs from the plain run; and options
// the mechanism cannot serve are refused.
func TestRunCentralDP(t *testing.T) {
	o, res := runFederationDP(t, MechanismCentral)
	sigma, err := privacy.SigmaFor(1, int64(o.Rounds), 40, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.DP; d.SigmaMin != sigma || d.SigmaMax != sigma {
		t.Fatalf("DP result %+v, want σ = %v", res.DP, sigma)
	}
	t.Logf("WDBC, 10 clients, %d rounds, ε = %.3f: accuracy %.3f (σ = %.3f)", o.Rounds, res.DP.Epsilon, res.Accuracy, sigma)
	checkFederationDP(t, "central", o, res, []dpRefusal{
		{"no budget", func(o *Options) { o.DPEpsilon = 0 }, "central-gaussian needs dp_epsilon"},
		{"a robust rule", func(o *Options) { o.Aggregation = aggregation.Config{Rule: "median"} }, "must be fedavg"},
		{"secure mode", func(o *Options) { o.Secure = true }, "needs plain mode"},
	})
}

// TestCentralAggregate checks one round of central DP against its
// definition: with the noise taken out (σ = 0), the equal-weight mean of
// the updates clipped to C.
func TestCentralAggregate(t *testing.T) {
	d := &centralSim{sigma: 0, clip: 1}
	deltas := [][]float32{{3, 4}, {0.3, 0.4}, {0, -2}}
	dst := make([]float32, 2)
	d.aggregate(dst, deltas, 1, 1)
	want := []float64{(0.6 + 0.3 + 0) / 3, (0.8 + 0.4 - 1) / 3}
	for i := range want {
		if math.Abs(float64(dst[i])-want[i]) > 1e-6 {
			t.Errorf("coordinate %d = %v, want %v", i, dst[i], want[i])
		}
	}
}
