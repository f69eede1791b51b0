package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/demo"
)

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "demo")
	var o demo.Options
	fs.StringVar(&o.Dir, "dir", "", "keep the federation's files (CA, keys, data, coordinator database) in this directory")
	fs.IntVar(&o.Rounds, "rounds", 0, fmt.Sprintf("training rounds (0: 20, or %d with -trainer pytorch)", demo.DefaultPyTorchRounds))
	fs.StringVar(&o.Trainer, "trainer", demo.TrainerBuiltin, "who trains: builtin (fedguard's models on WDBC, in process) or pytorch (a small CNN on MNIST, any tensor layout, trained by examples/pytorch/train.py in python processes through the exec contract, its code approved by digest)")
	fs.StringVar(&o.Python, "python", demo.DefaultPython, "-trainer pytorch: the python that runs train.py (with torch and numpy)")
	fs.StringVar(&o.Partition, "partition", demo.DefaultPartition, "-trainer pytorch: how MNIST is dealt among the hospitals: iid, sorted or dirichlet:ALPHA")
	fs.StringVar(&o.Model, "model", "logreg", "model: logreg or mlp (-trainer pytorch: ignored, the CNN of train.py)")
	aggregationFlags(fs, &o.Aggregation)
	fs.BoolVar(&o.Secure, "secure", false, "secure aggregation (SecAgg+): the coordinator learns only sums, per bucket with -bucket")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the data split and the initial model")
	fs.IntVar(&o.Hospitals, "hospitals", 0, fmt.Sprintf("number of hospitals, %d to %d (0: %d, or the fewest more the rule can aggregate)",
		demo.MinHospitals, demo.MaxHospitals, demo.DefaultHospitals))
	fs.BoolVar(&o.JSON, "json", false, "print one JSON object per round, then a summary object")
	fs.StringVar(&o.Poison, "poison", "", fmt.Sprintf("poison this hospital (hospital-a, …): it sends its update multiplied by %d, and the coordinator flags it", demo.PoisonFactor))
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", "serve the coordinator's /metrics and status page (/status) on this host:port, such as 127.0.0.1:9464 (port 0: any); the URL is printed first")
	verbose := fs.Bool("v", false, "show the federation's logs (coordinator and hospitals) on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.Rounds < 0 {
		return usageError("demo: -rounds %d must be at least 1", o.Rounds)
	}
	if o.Trainer != demo.TrainerBuiltin && o.Trainer != demo.TrainerPyTorch {
		return usageError("demo: -trainer %q: want %s or %s", o.Trainer, demo.TrainerBuiltin, demo.TrainerPyTorch)
	}
	if o.Hospitals != 0 && (o.Hospitals < demo.MinHospitals || o.Hospitals > demo.MaxHospitals) {
		return usageError("demo: -hospitals %d must be 0 (automatic) or between %d and %d", o.Hospitals, demo.MinHospitals, demo.MaxHospitals)
	}
	if *verbose {
		o.Log = env.Log
	} else {
		o.Log = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	_, err := demo.Run(ctx, o, env.Stdout)
	return err
}

// aggregationFlags defines the flags that choose an aggregation rule and its
// parameters.
func aggregationFlags(fs *flag.FlagSet, c *aggregation.Config) {
	fs.StringVar(&c.Rule, "rule", aggregation.NameFedAvg, "aggregation rule: fedavg, median, trimmed-mean, krum, multi-krum, bulyan, centered-clipping, rfa")
	fs.IntVar(&c.F, "f", 0, "number of Byzantine participants the rule assumes")
	fs.IntVar(&c.M, "m", 0, "multi-krum: number of updates averaged")
	fs.Float64Var(&c.Beta, "beta", 0, "trimmed-mean: fraction trimmed at each end")
	fs.Float64Var(&c.Tau, "tau", 0, "centered-clipping: clipping radius")
	fs.IntVar(&c.Iterations, "iterations", 0, "centered-clipping: iterations (default 3); rfa: Weiszfeld iterations (default 4, at most 100)")
	fs.Float64Var(&c.Nu, "nu", 0, "rfa: smoothing ν, a distance in update units (default 1e-5)")
	fs.StringVar(&c.Start, "start", "", "rfa: starting point, mean (default) or zero")
	fs.Uint64Var(&c.MaxSamples, "max-samples", 0, "fedavg, rfa: cap on each claimed sample count (0: none; rfa with 1: equal weights)")
	fs.Float64Var(&c.NormClip, "norm-clip", 0, "pre-step: clip every update to this L2 norm (0: off)")
	fs.IntVar(&c.Bucket, "bucket", 0, "pre-step: average random buckets of this size before the rule (0: off)")
}
