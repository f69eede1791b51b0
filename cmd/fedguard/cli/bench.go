package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fedguard/fedguard/benchmark"
)

func runBenchRound(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench round")
	var o benchmark.RoundOptions
	fs.IntVar(&o.Participants, "participants", 10, "number of participants")
	fs.IntVar(&o.Params, "params", 10_000_000, "model size in float32 parameters")
	fs.IntVar(&o.Rounds, "rounds", 5, "timed rounds (after one warm-up round)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*asJSON {
		o.Progress = env.Stderr
	}
	res, err := benchmark.Round(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	mb := float64(res.ModelBytes)
	fmt.Fprintf(env.Stdout, "participants       %d\n", res.Participants)
	fmt.Fprintf(env.Stdout, "params             %d (%.1f MB)\n", res.Params, mb/1e6)
	fmt.Fprintf(env.Stdout, "round (median)     %.3f s over %d rounds\n", res.RoundSeconds, len(res.Rounds))
	fmt.Fprintf(env.Stdout, "baseline           %.3f s to send the same bytes through one TLS 1.3 loopback connection\n", res.BaselineSeconds)
	fmt.Fprintf(env.Stdout, "ratio              %.2f × baseline\n", res.Ratio)
	fmt.Fprintf(env.Stdout, "bytes per round    %.1f MB (%.1f models)\n", float64(res.Bytes)/1e6, float64(res.Bytes)/mb)
	fmt.Fprintf(env.Stdout, "coordinator peak   %.1f MB = %.2f models (goal: participants + 3 = %d)\n",
		float64(res.PeakRSSBytes)/1e6, float64(res.PeakRSSBytes)/mb, res.Participants+3)
	return nil
}
