package cli

import (
	"context"
	"log/slog"

	"github.com/fedguard/fedguard/demo"
)

func init() {
	commands["demo"] = &command{
		summary: "run a whole federation on loopback with the shipped WDBC data",
		run:     runDemo,
	}
}

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "demo")
	var o demo.Options
	fs.StringVar(&o.Dir, "dir", "", "keep the federation's files (CA, keys, data, coordinator database) in this directory")
	fs.IntVar(&o.Rounds, "rounds", 20, "training rounds")
	fs.StringVar(&o.Model, "model", "logreg", "model: logreg or mlp")
	fs.StringVar(&o.Rule, "rule", "fedavg", "aggregation rule")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the data split and the initial model")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON object per round, then a summary object")
	verbose := fs.Bool("v", false, "show the federation's logs (coordinator and hospitals) on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.Rounds < 1 {
		return usageError("demo: -rounds %d must be at least 1", o.Rounds)
	}
	if *verbose {
		o.Log = env.Log
	} else {
		o.Log = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	_, err := demo.Run(ctx, o, env.Stdout)
	return err
}
