package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/benchmark"
)

func runBenchAggregate(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench aggregate")
	var o benchmark.AggregateOptions
	fs.StringVar(&o.Rule, "rule", "fedavg", "rule: fedavg, median, trimmed-mean, krum, multi-krum, bulyan, centered-clipping, rfa")
	fs.IntVar(&o.N, "n", 50, "number of updates")
	fs.IntVar(&o.D, "d", 1_000_000, "float32 coordinates per update")
	fs.IntVar(&o.F, "f", -1, "assumed Byzantine updates (-1: the largest the rule accepts for n)")
	fs.IntVar(&o.M, "m", 0, "multi-krum's averaged updates (0: n - f)")
	fs.Float64Var(&o.Beta, "beta", 0, "trimmed-mean's trimmed fraction (0: f/n)")
	fs.Float64Var(&o.Tau, "tau", 0, fmt.Sprintf("centered-clipping's radius (0: %v)", aggregation.DefaultTau))
	fs.IntVar(&o.Iterations, "iterations", 0, "centered-clipping's iterations (0: the rule's default)")
	fs.IntVar(&o.Runs, "runs", benchmark.DefaultAggregateRuns, "timed runs (after one warm-up run)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the random updates")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.N < 1 || o.D < 1 || o.Runs < 1 {
		return usageError("bench aggregate: -n, -d and -runs must be positive")
	}
	res, err := benchmark.Aggregate(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	c := res.Config
	fmt.Fprintf(env.Stdout, "rule %s, kernel %s, n=%d, d=%d, f=%d", res.Rule, res.Kernel, res.N, res.D, c.F)
	if c.M > 0 {
		fmt.Fprintf(env.Stdout, ", m=%d", c.M)
	}
	if c.Beta > 0 {
		fmt.Fprintf(env.Stdout, ", beta=%.4g", c.Beta)
	}
	if c.Tau > 0 {
		fmt.Fprintf(env.Stdout, ", tau=%g", c.Tau)
	}
	fmt.Fprintf(env.Stdout, "; medians of %d runs\n", o.Runs)
	fmt.Fprintf(env.Stdout, "%-20s %10s %8s\n", "", "ms", "ratio")
	fmt.Fprintf(env.Stdout, "%-20s %10.2f %8.2f\n", res.Rule, res.Seconds*1e3, res.Ratio)
	fmt.Fprintf(env.Stdout, "%-20s %10.2f %8.2f\n", "pass (sum once, "+res.PassKernel+")", res.PassSeconds*1e3, 1.0)
	return nil
}
