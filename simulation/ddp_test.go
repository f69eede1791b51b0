package simulation

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
)

// TestRunDDP runs a simulation with distributed DP inside secure
// aggregation: the federation's ε is within the budget, the run is
// reproducible from the seed, it differs from the plain run, and options
// the mechanism cannot serve are refused.
func TestRunDDP(t *testing.T) {
	o, res := runFederationDP(t, MechanismDDP)
	if !(res.DP.SigmaMin >= 1) {
		t.Fatalf("DP result %+v, want σ of at least one grid unit per client", res.DP)
	}
	t.Logf("WDBC, 10 clients, 3 rounds, ε = %.3f: accuracy %.3f (σ = %.1f grid units per client)", res.DP.Epsilon, res.Accuracy, res.DP.SigmaMin)
	checkFederationDP(t, "distributed", o, res, []dpRefusal{
		{"unknown mechanism", func(o *Options) { o.DPMechanism = "skellam" }, `dp mechanism "skellam"`},
		{"no budget", func(o *Options) { o.DPEpsilon = 0 }, "needs dp_epsilon"},
		{"a robust rule", func(o *Options) { o.Aggregation = aggregation.Config{Rule: "median"} }, "must be fedavg"},
		{"sigma instead", func(o *Options) { o.DPNoiseMultiplier = 1 }, "not both"},
	})
}

// runFederationDP runs WDBC with 10 clients and the federation-level DP
// mechanism at ε = 40, and checks the DP result every such mechanism
// gives: the mechanism's name, the federation's ε just below 40, δ = 1e-5
// and the clip norm 1.
func runFederationDP(t *testing.T, mechanism string) (Options, Result) {
	t.Helper()
	o := wdbcOptions()
	o.Clients, o.DPMechanism, o.DPEpsilon = 10, mechanism, 40
	res, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.DP; d == nil || d.Mechanism != mechanism || d.Epsilon > 40 || d.Epsilon < 39 || d.Delta != 1e-5 || d.ClipNorm != 1 {
		t.Fatalf("DP result %+v, want %s with the federation's ε just below 40", res.DP, mechanism)
	}
	return o, res
}

// dpRefusal is an option change a federation-level DP run refuses, and
// the words its ErrOptions names.
type dpRefusal struct {
	name   string
	mutate func(*Options)
	want   string
}

// checkFederationDP checks what every federation-level DP mechanism (name)
// promises of a run res of o on WDBC with 10 clients at ε = 40: it still
// learns, the seed repeats the model, the noise changes it against a plain
// run, and each refusal is ErrOptions naming its words.
func checkFederationDP(t *testing.T, name string, o Options, res Result, refusals []dpRefusal) {
	t.Helper()
	if res.Accuracy < 0.8 {
		t.Errorf("accuracy %v with %s DP at ε = 40, want >= 0.8", res.Accuracy, name)
	}
	again, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ModelSHA256 != res.ModelSHA256 {
		t.Error("two runs with the same seed give different models")
	}
	plain := wdbcOptions()
	plain.Clients = 10
	if p, err := Run(context.Background(), plain, nil); err != nil || p.ModelSHA256 == res.ModelSHA256 {
		t.Errorf("plain run: %v, same model as with DP: %v", err, p.ModelSHA256 == res.ModelSHA256)
	}
	for _, tt := range refusals {
		bad := o
		tt.mutate(&bad)
		if _, err := Run(context.Background(), bad, nil); !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrOptions naming %q", tt.name, err, tt.want)
		}
	}
}
