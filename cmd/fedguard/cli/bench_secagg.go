package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fedguard/fedguard/benchmark"
)

func runBenchSecAgg(ctx context.Context, env *Env, args []string) (err error) {
	fs := newFlagSet(env, "bench secagg")
	var o benchmark.SecAggOptions
	fs.IntVar(&o.N, "n", 100, "number of participants")
	fs.IntVar(&o.D, "d", 1_000_000, "float32 coordinates per update")
	fs.Float64Var(&o.Dropout, "dropout", 0.1, "fraction of participants dropping out after ShareKeys, before MaskedInput")
	fs.IntVar(&o.Threshold, "threshold", 0, "shares that reconstruct a secret (0: ⌊2m/3⌋+1, m = n or degree+1)")
	fs.IntVar(&o.Degree, "degree", 0, "neighbours per participant (0: complete graph)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the inputs, weights, rounding and dropouts")
	fs.Float64Var(&o.DPEpsilon, "dp-epsilon", 0, "also run the session with distributed DP (distributed discrete Gaussian) for this ε, and compare (0: no DP run)")
	fs.Float64Var(&o.DPDelta, "dp-delta", 1e-5, "δ of the DP run")
	fs.IntVar(&o.DPRounds, "dp-rounds", 100, "rounds the DP run's budget is spread over")
	fs.Float64Var(&o.DPClipNorm, "dp-clip-norm", 0, "ℓ2 norm the DP run clips updates to (0: √d/2)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	profile := fs.String("cpuprofile", "", "write a pprof CPU profile of the server's replayed runs to this file")
	clientProfile := fs.String("client-cpuprofile", "", "write a pprof CPU profile of the live sessions to this file, samples labelled role=client|server and dp=off|on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, p := range []struct {
		path string
		to   *io.Writer
	}{{*profile, &o.ServerProfile}, {*clientProfile, &o.ClientProfile}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return fmt.Errorf("bench secagg: %w", err)
		}
		*p.to = f
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("bench secagg: %w", cerr)
			}
		}()
	}
	if !*asJSON {
		o.Progress = env.Stderr
	}
	res, err := benchmark.SecAgg(ctx, o)
	if errors.Is(err, benchmark.ErrSecAggOptions) {
		return usageError("bench secagg: %v", err)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	printSecAgg(env.Stdout, res)
	return nil
}

// ratio returns a/b, or 0 if b is not positive (not measured).
func ratio(a, b float64) float64 {
	if !(b > 0) {
		return 0
	}
	return a / b
}

// printSecAgg prints res as a table: each time in ms, over the keystream
// baseline and over its target where the issue sets one.
func printSecAgg(w io.Writer, res benchmark.SecAggResult) {
	graph := "complete graph"
	if res.Degree > 0 {
		graph = fmt.Sprintf("%d-regular graph", res.Degree)
	}
	fmt.Fprintf(w, "secagg n=%d, d=%d, dropout %g (%d dropped after ShareKeys), threshold %d, %s, %d cores\n",
		res.N, res.D, res.Dropout, res.Dropped, res.Threshold, graph, res.Cores)
	fmt.Fprintf(w, "%-32s %14s %12s %12s %10s\n", "", "measured", "× keystream", "target", "× target")
	row := func(name string, s, ratio float64, target string, ofTarget float64) {
		t := "-"
		if ofTarget > 0 {
			t = fmt.Sprintf("%.2f", ofTarget)
		}
		fmt.Fprintf(w, "%-32s %11.3f ms %12.1f %12s %10s\n", name, s*1e3, ratio, target, t)
	}
	row("client, all rounds (median)", res.ClientSeconds, res.ClientRatio, "", 0)
	row("  CPU", res.ClientCPUSeconds, ratio(res.ClientCPUSeconds, res.BaselineKeystreamSeconds), "", 0)
	row("client MaskedInput (median)", res.MaskingSeconds, res.MaskingRatio, "≤ 150 ms", res.MaskingSeconds/benchmark.SecAggMaskingTarget)
	row("server, all rounds + Decode", res.ServerSeconds, res.ServerRatio, "", 0)
	row("  CPU", res.ServerCPUSeconds, ratio(res.ServerCPUSeconds, res.BaselineKeystreamSeconds), "", 0)
	row("server Unmask", res.UnmaskSeconds, res.UnmaskRatio, "≤ 1 s", res.UnmaskSeconds/benchmark.SecAggUnmaskTarget)
	row("baseline: keystream of one mask", res.BaselineKeystreamSeconds, 1, "", 0)
	fmt.Fprintf(w, "%-32s %11.3f ms %12.1f   (%d masks on %d cores; server %.2f × this floor)\n", "keystream floor of the server",
		res.KeystreamFloorSeconds*1e3, res.KeystreamFloorSeconds/res.BaselineKeystreamSeconds, res.ServerMasks, res.Cores, res.ServerOverFloor)

	plain := float64(res.PlainBytesPerClient)
	fmt.Fprintf(w, "%-32s %14s %12s %12s %10s\n", "", "bytes", "× plain", "target", "× target")
	fmt.Fprintf(w, "%-32s %14d %12.6f %12s %10s\n", "sent per client", res.BytesPerClient, float64(res.BytesPerClient)/plain, "", "-")
	fmt.Fprintf(w, "%-32s %14d %12.6f %12s %10.4f\n", "  masked input", res.MaskedBytes, float64(res.MaskedBytes)/plain,
		fmt.Sprintf("≤ %.2f×plain", benchmark.SecAggBytesTarget), float64(res.MaskedBytes)/plain/benchmark.SecAggBytesTarget)
	fmt.Fprintf(w, "%-32s %14d %12.6f %12s %10s\n", "  key material", res.KeyMaterialBytes, float64(res.KeyMaterialBytes)/plain, "", "-")
	fmt.Fprintf(w, "%-32s %14d %12.6f %12s %10s\n", "plain float32 update", res.PlainBytesPerClient, 1.0, "", "-")
	fmt.Fprintf(w, "max error of the mean            %.3g (bound %.3g)\n", res.MaxError, res.ErrorBound)
	if dp := res.DP; dp != nil {
		fmt.Fprintf(w, "with distributed DP: ε = %g, δ = %g over %d rounds, clip %g, ≥ %d survivors, σ² = %d per participant, d' = %d\n",
			dp.Epsilon, dp.Delta, dp.Rounds, dp.ClipNorm, dp.MinSurvivors, dp.Sigma2, dp.PaddedD)
		fmt.Fprintf(w, "%-32s %14s %12s %12s %10s\n", "", "measured", "× no DP", "target", "× target")
		dpRow := func(name string, s, ratio float64, target string) {
			t, of := "", "-"
			if target != "" {
				t, of = target, fmt.Sprintf("%.2f", ratio/1.2)
			}
			fmt.Fprintf(w, "%-32s %11.3f ms %12.3f %12s %10s\n", name, s*1e3, ratio, t, of)
		}
		dpRow("client, all rounds (median)", dp.ClientSeconds, dp.ClientRatio, "≤ 1.2× no DP")
		dpRow("  CPU", dp.ClientCPUSeconds, dp.ClientCPURatio, "≤ 1.2× no DP")
		dpRow("  noise drawn ahead", dp.ClientSeconds-dp.NoiseSeconds, dp.ClientRatioNoiseAhead, "≤ 1.2× no DP")
		dpRow("  CPU, noise drawn ahead", dp.ClientCPUSeconds-dp.NoiseCPUSeconds, dp.ClientCPURatioNoiseAhead, "≤ 1.2× no DP")
		dpRow("client noise (median)", dp.NoiseSeconds, ratio(dp.NoiseSeconds, res.ClientSeconds), "")
		dpRow("  CPU", dp.NoiseCPUSeconds, ratio(dp.NoiseCPUSeconds, res.ClientCPUSeconds), "")
		dpRow("client MaskedInput (median)", dp.MaskingSeconds, dp.MaskingSeconds/res.MaskingSeconds, "")
		dpRow("server, all rounds + Decode", dp.ServerSeconds, dp.ServerRatio, "≤ 1.2× no DP")
		dpRow("  CPU", dp.ServerCPUSeconds, dp.ServerCPURatio, "≤ 1.2× no DP")
		dpRow("server Unmask", dp.UnmaskSeconds, dp.UnmaskSeconds/res.UnmaskSeconds, "")
		fmt.Fprintf(w, "masked input with DP             %d bytes (%.4f× plain)\n", dp.MaskedBytes, float64(dp.MaskedBytes)/plain)
		fmt.Fprintf(w, "mean's error variance with DP    %.4g per coordinate (noise %.4g, rounding at most %.4g)\n",
			dp.ErrorVariance, dp.NoiseVariance, dp.RoundingVariance)
	}
}
