package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/benchmark"
)

func runBenchRound(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench round")
	var o benchmark.RoundOptions
	fs.IntVar(&o.Participants, "participants", 10, "number of participants")
	fs.IntVar(&o.Params, "params", 10_000_000, "model size in float32 parameters")
	fs.IntVar(&o.Rounds, "rounds", 5, "timed rounds (after one warm-up round)")
	secure := fs.Bool("secure", false, "also run the same rounds with secure aggregation, after the plain ones, and compare (time per phase, bytes, coordinator memory)")
	fs.StringVar(&o.Aggregation.Rule, "rule", "", "with --secure: the secure round's aggregation rule (default fedavg)")
	fs.IntVar(&o.Aggregation.F, "f", 0, "with --secure: the rule's assumed number of Byzantine buckets")
	fs.IntVar(&o.Aggregation.Bucket, "bucket", 0, "with --secure: split the cohort into secure buckets of this size, the rule running over the bucket means (0: one bucket)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*secure && o.Aggregation != (aggregation.Config{}) {
		return usageError("bench round: -rule, -f and -bucket need --secure")
	}
	if !*asJSON {
		o.Progress = env.Stderr
	}
	if *secure {
		res, err := benchmark.SecureRound(ctx, o)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(env.Stdout).Encode(res)
		}
		printSecureRound(env.Stdout, res)
		return nil
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

// printSecureRound prints SecureRound's comparison as a table, the plain
// round's column first.
func printSecureRound(w io.Writer, c benchmark.SecureComparison) {
	p, s := c.Plain, c.Secure
	mb := float64(p.ModelBytes)
	fmt.Fprintf(w, "%d participants × %d params (%.1f MB); secure rule %s, bucket %d; medians over %d rounds\n\n",
		p.Participants, p.Params, mb/1e6, s.Rule, s.Bucket, len(s.Rounds))
	fmt.Fprintf(w, "%-28s %12s %12s %10s\n", "", "plain", "secure", "secure/plain")
	fmt.Fprintf(w, "%-28s %12.3f %12.3f %10.2f×\n", "round (s)", p.RoundSeconds, s.RoundSeconds, c.SecureOverPlain)
	for _, ph := range s.Phases {
		fmt.Fprintf(w, "%-28s %12s %12.3f\n", "  "+ph.Phase+" (s)", "", ph.Seconds)
	}
	if len(s.Phases) > 0 {
		fmt.Fprintf(w, "%-28s %12s %12.3f\n", "  download, train, rest (s)", "", s.OtherSeconds)
	}
	fmt.Fprintf(w, "%-28s %12.1f %12.1f %10.2f×\n", "sent per round (MB)", float64(p.BytesSent)/1e6, float64(s.BytesSent)/1e6, float64(s.BytesSent)/float64(p.BytesSent))
	fmt.Fprintf(w, "%-28s %12.1f %12.1f %10.2f×\n", "received per round (MB)", float64(p.BytesReceived)/1e6, float64(s.BytesReceived)/1e6, float64(s.BytesReceived)/float64(p.BytesReceived))
	fmt.Fprintf(w, "%-28s %12.1f %12.1f %10.2f×\n", "coordinator peak (MB)", float64(p.PeakRSSBytes)/1e6, float64(s.PeakRSSBytes)/1e6, c.PeakRSSSecureOverPlain)
	fmt.Fprintf(w, "%-28s %12.2f %12.2f\n", "coordinator peak (models)", p.PeakRSSModels, s.PeakRSSModels)
	fmt.Fprintf(w, "%-28s %12.3f %12.3f\n", "TLS floor of the bytes (s)", p.BaselineSeconds, s.BaselineSeconds)
}
