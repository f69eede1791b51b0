package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/simulation"
)

// Default grid of `fedguard simulate grid`.
const (
	defaultGridAttacks = "none,sign-flip,gaussian,label-flip,alie,ipm,min-max"
	defaultGridRules   = "fedavg,median,trimmed-mean,krum,multi-krum,bulyan,centered-clipping,rfa"
)

// attackParams are the flags of each attack's parameters; an attack gets
// only its own (attack.New refuses the others).
var attackParams = map[string][]string{
	attack.NameGaussian: {"sigma"},
	attack.NameALIE:     {"z", "z-rule", "z-sign"},
	attack.NameIPM:      {"epsilon"},
	attack.NameMinMax:   {"perturbation", "z-sign"},
	attack.NameMinSum:   {"perturbation", "z-sign"},
	attack.NameBackdoor: {"scale", "target"},
}

// ruleParams are the flags of each rule's parameters besides f, which
// every rule but fedavg takes; norm-clip and bucket apply to every rule.
var ruleParams = map[string][]string{
	aggregation.NameMultiKrum:        {"m"},
	aggregation.NameTrimmedMean:      {"beta"},
	aggregation.NameCenteredClipping: {"tau", "iterations"},
	aggregation.NameRFA:              {"iterations", "nu", "start", "max-samples"},
	aggregation.NameFedAvg:           {"max-samples"},
}

// simFlags are the flags `simulate` and `simulate grid` share.
type simFlags struct {
	fs     *flag.FlagSet
	o      simulation.Options
	hidden string
	attack attack.Config
	rule   aggregation.Config
	out    string
	json   bool
	preset string
}

func newSimFlags(env *Env, name string) *simFlags {
	f := &simFlags{fs: newFlagSet(env, name)}
	fs := f.fs
	optionFlags(fs, &f.o)
	attackFlags(fs, &f.attack)
	aggregationFlags(fs, &f.rule)
	fs.StringVar(&f.hidden, "hidden", "", fmt.Sprintf("mlp hidden layer widths, comma-separated (default %d for mnist, %d for wdbc)",
		simulation.DefaultHiddenMNIST, simulation.DefaultHiddenWDBC))
	fs.StringVar(&f.preset, "preset", "", "start from a paper's set-up: "+strings.Join(simulation.PresetNames(), ", ")+" (flags given override it)")
	fs.StringVar(&f.out, "out", "", "write the results, CSV and PNG plots into this directory")
	fs.BoolVar(&f.json, "json", false, "print JSON objects instead of tables")
	return f
}

// optionFlags declares the flags of a simulation's options, bound to o.
func optionFlags(fs *flag.FlagSet, o *simulation.Options) {
	fs.StringVar(&o.Dataset, "dataset", simulation.DefaultDataset, "data set: mnist or wdbc")
	fs.StringVar(&o.Model, "model", simulation.DefaultModel, "model: logreg or mlp")
	fs.IntVar(&o.Clients, "clients", simulation.DefaultClients, "number of clients")
	fs.IntVar(&o.Byzantine, "byzantine", 0, "number of Byzantine clients among them")
	fs.StringVar(&o.Partition, "partition", simulation.DefaultPartition, "split of the rows: iid, dirichlet:ALPHA or sorted")
	fs.IntVar(&o.Rounds, "rounds", simulation.DefaultRounds, "federated rounds")
	fs.IntVar(&o.LocalEpochs, "local-epochs", simulation.DefaultLocalEpochs, "clients' passes over their rows per round")
	fs.Float64Var(&o.LearningRate, "lr", simulation.DefaultLearningRate, "clients' SGD learning rate")
	fs.IntVar(&o.BatchSize, "batch-size", simulation.DefaultBatchSize, "clients' SGD batch size")
	fs.Float64Var(&o.L2, "l2", 0, "clients' L2 weight decay")
	fs.StringVar(&o.Init, "init", "", "how an MLP starts: glorot (default: He and Glorot uniform, zero biases) or pytorch (nn.Linear's default, U(±1/√fan_in) for weights and biases)")
	fs.IntVar(&o.LocalSteps, "local-steps", 0, "clients' SGD steps per round on fresh mini-batches, instead of -local-epochs (0: epochs)")
	fs.StringVar(&o.BatchOrder, "batch-order", "", "with -local-steps, how batches follow each other: fresh (default: drawn anew each round) or epoch[:K] (a shuffled walk without replacement, reshuffled when spent or every K batches, as a PyTorch DataLoader)")
	fs.Float64Var(&o.WorkerMomentum, "worker-momentum", 0, "β of every client's momentum, kept across rounds (0: none)")
	fs.Float64Var(&o.ServerMomentum, "server-momentum", 0, "β of the server's momentum of the aggregates (0: none)")
	fs.StringVar(&o.MomentumStyle, "momentum-style", "", "momentum recursion: ema (m ← (1−β)u + βm, default) or heavy-ball (m ← βm + u)")
	fs.StringVar(&o.ClippingCenter, "clipping-center", "", "centered-clipping's start: median (stateless, default) or previous (the last aggregate)")
	fs.IntVar(&o.EvalEvery, "eval-every", 0, "evaluate every N rounds and after the last (0: every round)")
	fs.BoolVar(&o.PartitionHonest, "partition-honest", false, "split by -partition among the honest clients only; the Byzantine ones get IID shares")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of everything random: the same seed gives the same numbers")
	fs.StringVar(&o.MNISTDir, "mnist-dir", "", "folder of the MNIST IDX files (default: the GoMNIST module's)")
	fs.Float64Var(&o.DPEpsilon, "dp-epsilon", 0, "clients train with DP-SGD at the noise multiplier that gives each this record-level ε over the run (0: no DP)")
	fs.Float64Var(&o.DPDelta, "dp-delta", 0, "δ of -dp-epsilon (0: 1e-05)")
	fs.Float64Var(&o.DPNoiseMultiplier, "dp-sigma", 0, "clients train with DP-SGD at this noise multiplier σ, instead of -dp-epsilon")
	fs.Float64Var(&o.DPClipNorm, "dp-clip", 0, "DP-SGD per-record clipping norm C, or the update's with -dp-mechanism (0: 1)")
	fs.StringVar(&o.DPMechanism, "dp-mechanism", "", "distributed-discrete-gaussian: -dp-epsilon is the federation's budget, spent by noise the clients add inside secure aggregation; central-gaussian: spent by noise the coordinator adds to the mean of the clipped updates (both fedavg only, instead of each client's DP-SGD)")
	fs.IntVar(&o.Workers, "workers", 0, "clients trained at once (0: all cores); does not change the results")
	fs.BoolVar(&o.Secure, "secure", false, "secure + robust mode: -bucket S buckets as the coordinator splits them, SecAgg's quantization, the rule over bucket means")
	fs.Float64Var(&o.SecureClip, "secure-clip", 0, fmt.Sprintf("with -secure, SecAgg's per-coordinate clip (0: %g)", simulation.DefaultSecureClip))
}

// attackFlags declares the flags of the attacks' parameters, bound to c.
func attackFlags(fs *flag.FlagSet, c *attack.Config) {
	fs.Float64Var(&c.Sigma, "sigma", 0, "gaussian: standard deviation (0: the attack's default)")
	fs.Float64Var(&c.Z, "z", 0, "alie: z (0: the z of -z-rule for n and f); negative sends μ + |z|σ of the updates, the papers' code's μ − |z|σ of gradients")
	fs.Float64Var(&c.Epsilon, "epsilon", 0, "ipm: epsilon (0: the attack's default)")
	fs.StringVar(&c.Perturbation, "perturbation", "", "min-max, min-sum: deviation std, unit or sign (default std)")
	fs.Float64Var(&c.Scale, "scale", 0, "backdoor: boost of the attackers' update (0: n/f)")
	fs.IntVar(&c.Target, "target", 0, "backdoor: target class")
	fs.BoolVar(&c.OwnOnly, "own-only", false, "the attackers see only their own updates, not the honest ones")
	fs.StringVar(&c.ZRule, "z-rule", "", "alie: formula of the default z: baruch (Φ⁻¹((n−s)/n), default) or bucketing (Φ⁻¹((n−f−s)/(n−f)))")
	fs.StringVar(&c.ZSign, "z-sign", "", "alie: where μ − zσ is taken: updates (default: of the updates sent) or gradients (of gradients, as the papers' code: μ + zσ of the updates); min-max, min-sum: gradients takes the std perturbation as their authors' code does, +σ of the updates")
	fs.BoolVar(&c.HonestStats, "honest-stats", false, "statistics-based attacks: μ and σ over the honest updates only")
}

// mustOverlay is overlay for flags parsed once already, into configs of
// the same declarations: setting them again cannot fail.
func mustOverlay[C any](parsed *flag.FlagSet, declare func(*flag.FlagSet, *C), base C, keep func(name string) bool) C {
	c, err := overlay(parsed, declare, base, keep, nil)
	if err != nil {
		panic(fmt.Sprintf("cli: a parsed flag does not parse again: %v", err))
	}
	return c
}

// parse parses args and fills o.Hidden; with -preset, the options start
// from the preset's and the flags given override them.
func (f *simFlags) parse(args []string) error {
	if err := parseFlags(f.fs, args); err != nil {
		return err
	}
	if f.preset != "" {
		p, err := simulation.LookupPreset(f.preset)
		if err != nil {
			return usageError("%s: %v", f.fs.Name(), err)
		}
		f.applyPreset(p.Options)
	}
	if f.hidden != "" {
		for _, s := range strings.Split(f.hidden, ",") {
			h, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || h < 1 {
				return usageError("%s: -hidden %q: want positive widths separated by commas", f.fs.Name(), f.hidden)
			}
			f.o.Hidden = append(f.o.Hidden, h)
		}
	}
	return nil
}

// applyPreset sets f.o to p, but for the options whose flags the command
// line set. A model given on the command line drops the preset's hidden
// layers.
func (f *simFlags) applyPreset(p simulation.Options) {
	if f.set()["model"] {
		p.Hidden = nil
	}
	f.o = mustOverlay(f.fs, optionFlags, p, nil)
}

// set reports which flags the command line set.
func (f *simFlags) set() map[string]bool {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// attackConfig is attack name with the parameters set on the command line:
// all of them for a single run (attack.New refuses those the attack does
// not take), only its own in a grid.
func (f *simFlags) attackConfig(name string, all bool) attack.Config {
	return f.overlayAttack(attack.Config{Name: name}, all)
}

// overlayAttack is base with the attack parameters set on the command line
// (all of them, or only base's own): a preset's attack under the flags
// given.
func (f *simFlags) overlayAttack(base attack.Config, all bool) attack.Config {
	return mustOverlay(f.fs, attackFlags, base, func(p string) bool {
		// own-only and honest-stats are not parameters: they apply to every attack.
		return p == "own-only" || p == "honest-stats" || all || slices.Contains(attackParams[base.Name], p)
	})
}

// ruleConfig is aggregation.Defaults for rule, n clients (their buckets
// with -bucket, as the coordinator splits them with -secure) and f = -f or else the number of Byzantine clients, then
// the parameters set on the command line: all of them for a single run
// (aggregation.Config.Validate refuses those the rule does not take), only
// its own in a grid.
func (f *simFlags) ruleConfig(rule string, all bool) aggregation.Config {
	set := f.set()
	n := f.o.Clients
	switch {
	case f.o.Secure:
		n = simulation.SecureBuckets(n, f.rule.Bucket)
	case f.rule.Bucket > 1:
		n = (n + f.rule.Bucket - 1) / f.rule.Bucket
	}
	byz := f.o.Byzantine
	if set["f"] {
		byz = f.rule.F
	}
	c := f.overlayRule(aggregation.Defaults(rule, n, byz), all)
	// The pre-steps apply to every rule, set or not.
	c.NormClip, c.Bucket = f.rule.NormClip, f.rule.Bucket
	return c
}

// overlayRule is base with the rule parameters and pre-steps set on the
// command line (all of them, or only base's own and the pre-steps): a
// preset's rule under the flags given.
func (f *simFlags) overlayRule(base aggregation.Config, all bool) aggregation.Config {
	rule := base.Rule
	known := !errors.Is(aggregation.Config{Rule: rule}.Validate(), aggregation.ErrUnknownRule)
	return mustOverlay(f.fs, aggregationFlags, base, func(p string) bool {
		switch {
		case p == "rule":
			return false
		case all || !known || p == "norm-clip" || p == "bucket":
			return true
		}
		return p == "f" && rule != aggregation.NameFedAvg || slices.Contains(ruleParams[rule], p)
	})
}

// single is the options of one run: the flags', or with -preset the
// preset's with the flags given over them, its attack and rule too: the
// first of its grid, or the grid's own of the attack and rule that -attack
// and -rule name (its first of that name), so that a single run repeats
// the grid's cell; an attack or rule the grid lacks starts from its
// defaults.
func (f *simFlags) single() simulation.Options {
	o := f.o
	o.Attack = f.attackConfig(f.attack.Name, true)
	o.Aggregation = f.ruleConfig(f.rule.Rule, true)
	if f.preset != "" {
		p, _ := simulation.LookupPreset(f.preset) // parse checked the name
		set := f.set()
		a := 0
		if set["attack"] {
			a = slices.IndexFunc(p.Attacks, func(c attack.Config) bool { return c.Name == f.attack.Name })
		}
		if a >= 0 {
			o.Attack = f.overlayAttack(p.Attacks[a], true)
		}
		r := 0
		if set["rule"] {
			r = slices.IndexFunc(p.Rules, func(c aggregation.Config) bool { return c.Rule == f.rule.Rule })
		}
		if r >= 0 {
			o.Aggregation = f.overlayRule(p.Rules[r], true)
		}
	}
	return o
}

// grid is the attacks and rules of a grid: those listed, or with -preset
// and without -attacks or -rules the preset's, each under the parameter
// flags given that are its own. With -preset, a listed attack or rule the
// preset's grid has is every cell of the preset's of that name, as in a
// single run; one it lacks starts from its defaults.
func (f *simFlags) grid(attacks, rules string) ([]attack.Config, []aggregation.Config) {
	var p simulation.Preset
	if f.preset != "" {
		p, _ = simulation.LookupPreset(f.preset) // parse checked the name
	}
	set := f.set()
	acs := gridCells(p.Attacks, f.preset != "" && !set["attacks"], splitList(attacks),
		func(c attack.Config) string { return c.Name },
		func(c attack.Config) attack.Config { return f.overlayAttack(c, false) },
		func(name string) attack.Config { return f.attackConfig(name, false) })
	rcs := gridCells(p.Rules, f.preset != "" && !set["rules"], splitList(rules),
		func(c aggregation.Config) string { return c.Rule },
		func(c aggregation.Config) aggregation.Config { return f.overlayRule(c, false) },
		func(name string) aggregation.Config { return f.ruleConfig(name, false) })
	return acs, rcs
}

// gridCells is one axis of a grid (its attacks or its rules): the preset's
// cells, all of them (whole) or those of each listed name, each under the
// flags (own); a listed name the preset lacks starts from its defaults
// (fresh).
func gridCells[T any](preset []T, whole bool, names []string, name func(T) string, own func(T) T, fresh func(string) T) []T {
	var cells []T
	if whole {
		for _, c := range preset {
			cells = append(cells, own(c))
		}
		return cells
	}
	for _, n := range names {
		k := len(cells)
		for _, c := range preset {
			if name(c) == n {
				cells = append(cells, own(c))
			}
		}
		if len(cells) == k {
			cells = append(cells, fresh(n))
		}
	}
	return cells
}

func runSimulate(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "grid" {
		return runSimulateGrid(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "merge" {
		return runSimulateMerge(env, args[1:])
	}
	f := newSimFlags(env, "simulate")
	f.fs.StringVar(&f.attack.Name, "attack", attack.NameNone, "attack: "+strings.Join(attack.Names, ", "))
	f.fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: fedguard simulate [flags]\n       fedguard simulate grid [-attacks A,B] [-rules X,Y] [-shard K/N] [flags]\n       fedguard simulate merge -out DIR SHARD_DIR...\n\nflags:\n")
		f.fs.PrintDefaults()
	}
	if err := f.parse(args); err != nil {
		return err
	}
	o := f.single()
	if f.out != "" {
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return err
		}
	}
	tty := isTerminal(env.Stderr)
	start := time.Now()
	header := false
	res, err := simulation.Run(ctx, o, func(r simulation.RoundResult) {
		if f.json {
			b, _ := json.Marshal(r)
			fmt.Fprintln(env.Stdout, string(b))
			return
		}
		if !header {
			mode := ""
			if o.Secure {
				mode = ", secure"
			}
			fmt.Fprintf(env.Stderr, "simulate: %s, %s, %d clients (%d Byzantine, attack %s), rule %s%s, %d rounds\n",
				o.Dataset, o.Model, o.Clients, o.Byzantine, simulation.AttackLabel(o.Attack), simulation.RuleLabel(o.Aggregation), mode, o.Rounds)
			fmt.Fprintf(env.Stdout, "%5s  %8s  %10s  %8s  %8s\n", "round", "accuracy", "loss", "asr", "seconds")
			header = true
		}
		asr := "-"
		if r.AttackSuccess != nil {
			asr = fmt.Sprintf("%.4f", *r.AttackSuccess)
		}
		fmt.Fprintf(env.Stdout, "%5d  %8.4f  %10.4g  %8s  %8.2f\n", r.Round, r.Accuracy, r.Loss, asr, r.Seconds)
		if tty {
			progress(env.Stderr, tty, "round", r.Round, o.Rounds, start)
		}
	})
	if err != nil {
		return simulateError(err)
	}
	if f.out != "" {
		if err := writeRun(f.out, res); err != nil {
			return err
		}
	}
	if f.json {
		sum := res
		sum.Rounds = nil
		b, err := json.Marshal(map[string]any{"summary": sum})
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	}
	fmt.Fprintf(env.Stdout, "\nfinal: accuracy %.4f", res.Accuracy)
	if res.AttackSuccess != nil {
		fmt.Fprintf(env.Stdout, ", attack success %.4f", *res.AttackSuccess)
	}
	fmt.Fprintf(env.Stdout, " after %d rounds (%.1f s); model sha256 %s\n", res.Options.Rounds, res.Seconds, res.ModelSHA256)
	fmt.Fprintln(env.Stdout, detectionLine(res.Detection))
	if sc := res.Secure; sc != nil {
		fmt.Fprintf(env.Stdout, "secure: %d buckets (size %d), coordinate clip %g, %d quantization bits, %d weight bits, weight unit %d rows\n",
			sc.Buckets, sc.BucketSize, sc.Clip, sc.QuantBits, sc.WeightBits, sc.WeightUnit)
	}
	if dp := res.DP; dp != nil {
		switch dp.Mechanism {
		case "":
			fmt.Fprintf(env.Stdout, "record-level DP-SGD: ε = %.4g at δ = %g per client (σ %.4g–%.4g, C = %g)\n", dp.Epsilon, dp.Delta, dp.SigmaMin, dp.SigmaMax, dp.ClipNorm)
		case simulation.MechanismDDP:
			fmt.Fprintf(env.Stdout, "distributed DP (%s): the federation's ε = %.4g at δ = %g (σ %.4g grid units per client, C = %g)\n", dp.Mechanism, dp.Epsilon, dp.Delta, dp.SigmaMin, dp.ClipNorm)
		default:
			fmt.Fprintf(env.Stdout, "central DP (%s): the federation's ε = %.4g at δ = %g (noise multiplier σ %.4g, C = %g)\n", dp.Mechanism, dp.Epsilon, dp.Delta, dp.SigmaMin, dp.ClipNorm)
		}
	}
	if f.out != "" {
		fmt.Fprintf(env.Stdout, "wrote %s\n", f.out)
	}
	return nil
}

// writeRun writes result.json, rounds.csv and the accuracy plot of a run.
func writeRun(dir string, res simulation.Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "rounds.csv"), func(w io.Writer) error { return simulation.WriteRoundsCSV(w, res) }); err != nil {
		return err
	}
	_, err = simulation.WriteAccuracyPlots(dir, []simulation.Result{res})
	return err
}

func writeFile(path string, write func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(fh); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fh.Close()
}

// simulateError turns refused options into a usage error (exit code 2).
func simulateError(err error) error {
	if errors.Is(err, simulation.ErrOptions) {
		return usageError("%v", err)
	}
	return err
}

func runSimulateGrid(ctx context.Context, env *Env, args []string) error {
	f := newSimFlags(env, "simulate grid")
	attacks := f.fs.String("attacks", defaultGridAttacks, "attacks, comma-separated: "+strings.Join(attack.Names, ", "))
	rules := f.fs.String("rules", defaultGridRules, "aggregation rules, comma-separated (-rule is ignored)")
	shardFlag := f.fs.String("shard", "", "run only share K of N of the cells (K/N, from 1/N to N/N) and write grid.json into -out; join the shards with simulate merge")
	if err := f.parse(args); err != nil {
		return err
	}
	shard := simulation.Shard{K: 1, N: 1}
	if *shardFlag != "" {
		sh, err := simulation.ParseShard(*shardFlag)
		if err != nil {
			return usageError("simulate grid: %v", err)
		}
		if f.out == "" {
			return usageError("simulate grid: -shard needs -out, where the shard's grid.json goes")
		}
		shard = sh
	}
	if f.set()["rule"] {
		return usageError("simulate grid: use -rules, not -rule")
	}
	acs, rcs := f.grid(*attacks, *rules)
	if f.out != "" {
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return err
		}
	}
	tty := isTerminal(env.Stderr)
	start := time.Now()
	if !f.json {
		fmt.Fprintf(env.Stderr, "simulate grid: %d attacks × %d rules on %s, %s, %d clients (%d Byzantine), %d rounds",
			len(acs), len(rcs), f.o.Dataset, f.o.Model, f.o.Clients, f.o.Byzantine, f.o.Rounds)
		if shard.N > 1 {
			fmt.Fprintf(env.Stderr, ", shard %s", shard)
		}
		fmt.Fprintln(env.Stderr)
	}
	results, err := simulation.GridShard(ctx, f.o, acs, rcs, shard, func(done, total int, last simulation.Result) {
		if f.json {
			sum := last
			sum.Rounds = nil
			b, _ := json.Marshal(map[string]any{"attack": simulation.AttackLabel(last.Options.Attack),
				"rule": simulation.RuleLabel(last.Options.Aggregation), "result": sum, "done": done, "total": total})
			fmt.Fprintln(env.Stdout, string(b))
			return
		}
		progress(env.Stderr, tty, "run", done, total, start)
	})
	if err != nil {
		return simulateError(err)
	}
	if f.out != "" {
		gf := simulation.NewGridFile(f.o, acs, rcs, shard, results)
		if err := writeGrid(f.out, gf, results, shard.N == 1); err != nil {
			return err
		}
	}
	elapsed := time.Since(start).Seconds()
	if f.json {
		b, err := json.Marshal(map[string]any{"summary": gridSummary(results, elapsed)})
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	}
	writeGridTable(env.Stdout, results)
	fmt.Fprintf(env.Stdout, "\n%d runs in %.1f s", len(results), elapsed)
	switch {
	case f.out != "" && shard.N > 1:
		fmt.Fprintf(env.Stdout, "; wrote shard %s's grid.json and timing.csv in %s", shard, f.out)
	case f.out != "":
		fmt.Fprintf(env.Stdout, "; wrote grid.csv, grid.json, timing.csv, heatmap.png and accuracy-*.png in %s", f.out)
	}
	fmt.Fprintln(env.Stdout)
	return nil
}

// writeGrid writes a grid run's grid.json and timing.csv into dir and,
// for a whole grid, grid.csv, heatmap.png and accuracy-*.png.
func writeGrid(dir string, gf simulation.GridFile, results []simulation.Result, whole bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "grid.json"), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(gf)
	}); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "timing.csv"), func(w io.Writer) error { return simulation.WriteTimingCSV(w, results) }); err != nil {
		return err
	}
	if !whole {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "grid.csv"), func(w io.Writer) error { return simulation.WriteCSV(w, results) }); err != nil {
		return err
	}
	if err := simulation.WriteHeatmap(filepath.Join(dir, "heatmap.png"), results); err != nil {
		return err
	}
	_, err := simulation.WriteAccuracyPlots(dir, results)
	return err
}

// runSimulateMerge joins the grid.json files of a grid's shards into the
// outputs and the table one whole run gives.
func runSimulateMerge(env *Env, args []string) error {
	fs := newFlagSet(env, "simulate merge")
	out := fs.String("out", "", "write grid.csv, grid.json, timing.csv, heatmap.png and accuracy-*.png here (required)")
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: fedguard simulate merge -out DIR SHARD...\n\nSHARD is a shard's -out directory or its grid.json.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return usageError("simulate merge: want -out DIR and the shards' directories or grid.json files")
	}
	var files []simulation.GridFile
	for _, p := range fs.Args() {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, "grid.json")
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		gf, err := simulation.ReadGridFile(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		files = append(files, gf)
	}
	results, err := simulation.MergeGrid(files)
	if err != nil {
		return err
	}
	g := files[0]
	whole := simulation.NewGridFile(g.Base, g.Attacks, g.Rules, simulation.Shard{K: 1, N: 1}, results)
	if err := writeGrid(*out, whole, results, true); err != nil {
		return err
	}
	writeGridTable(env.Stdout, results)
	fmt.Fprintf(env.Stdout, "\nmerged %d shards, %d runs; wrote grid.csv, grid.json, timing.csv, heatmap.png and accuracy-*.png in %s\n", len(files), len(results), *out)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// gridCell is one cell of the grid's JSON summary.
type gridCell struct {
	Attack        string   `json:"attack"`
	Rule          string   `json:"rule"`
	Accuracy      float64  `json:"final_accuracy"`
	AttackSuccess *float64 `json:"attack_success,omitempty"`
	// DetectionRate and FalsePositiveRate are those of any of the anomaly
	// heuristics (simulation.DetectAny); absent when undefined.
	DetectionRate     *float64             `json:"detection_rate,omitempty"`
	FalsePositiveRate *float64             `json:"false_positive_rate,omitempty"`
	Detection         simulation.Detection `json:"detection"`
	Seconds           float64              `json:"seconds"`
}

func gridSummary(results []simulation.Result, seconds float64) map[string]any {
	cells := make([]gridCell, len(results))
	for i, r := range results {
		cells[i] = gridCell{Attack: simulation.AttackLabel(r.Options.Attack), Rule: simulation.RuleLabel(r.Options.Aggregation),
			Accuracy: r.Accuracy, AttackSuccess: r.AttackSuccess, Detection: r.Detection, Seconds: r.Seconds}
		if v, ok := r.Detection.DetectionRate(simulation.DetectAny); ok {
			cells[i].DetectionRate = &v
		}
		if v, ok := r.Detection.FalsePositiveRate(simulation.DetectAny); ok {
			cells[i].FalsePositiveRate = &v
		}
	}
	return map[string]any{"runs": cells, "seconds": seconds}
}

// detectionLine summarizes a run's Detection: the detection and
// false-positive rates of any heuristic, then of each.
func detectionLine(d simulation.Detection) string {
	rate := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	var parts []string
	for _, k := range simulation.DetectionKinds[1:] {
		parts = append(parts, fmt.Sprintf("%s %s/%s", k, rate(d.DetectionRate(k)), rate(d.FalsePositiveRate(k))))
	}
	return fmt.Sprintf("anomaly flags (detection/false positives): any %s/%s; %s",
		rate(d.DetectionRate(simulation.DetectAny)), rate(d.FalsePositiveRate(simulation.DetectAny)), strings.Join(parts, ", "))
}

// writeGridTable prints attacks down and rules across: the final accuracy,
// and the attack success rate in parentheses where defined; then, in the
// same layout, the anomaly heuristics' detection and false-positive
// rates.
func writeGridTable(w io.Writer, results []simulation.Result) {
	writeTable(w, results, func(r simulation.Result) string {
		s := fmt.Sprintf("%.4f", r.Accuracy)
		if r.AttackSuccess != nil {
			s += fmt.Sprintf(" (%.2f)", *r.AttackSuccess)
		}
		return s
	})
	fmt.Fprintln(w, "\nanomaly flags: detection rate / false-positive rate (norm, cosine or drift)")
	writeTable(w, results, func(r simulation.Result) string {
		rate := func(v float64, ok bool) string {
			if !ok {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		return rate(r.Detection.DetectionRate(simulation.DetectAny)) + " / " + rate(r.Detection.FalsePositiveRate(simulation.DetectAny))
	})
}

// writeTable prints one cell per result, attacks down and rules across.
func writeTable(w io.Writer, results []simulation.Result, format func(simulation.Result) string) {
	var attacks, rules []string
	cell := map[[2]string]string{}
	for _, r := range results {
		a, ru := simulation.AttackLabel(r.Options.Attack), simulation.RuleLabel(r.Options.Aggregation)
		if !slices.Contains(attacks, a) {
			attacks = append(attacks, a)
		}
		if !slices.Contains(rules, ru) {
			rules = append(rules, ru)
		}
		cell[[2]string{a, ru}] = format(r)
	}
	aw := len("attack \\ rule")
	for _, a := range attacks {
		aw = max(aw, len(a))
	}
	widths := make([]int, len(rules))
	for j, ru := range rules {
		widths[j] = len(ru)
		for _, a := range attacks {
			widths[j] = max(widths[j], len(cell[[2]string{a, ru}]))
		}
	}
	fmt.Fprintf(w, "%-*s", aw, "attack \\ rule")
	for j, ru := range rules {
		fmt.Fprintf(w, "  %*s", widths[j], ru)
	}
	fmt.Fprintln(w)
	for _, a := range attacks {
		fmt.Fprintf(w, "%-*s", aw, a)
		for j, ru := range rules {
			fmt.Fprintf(w, "  %*s", widths[j], cell[[2]string{a, ru}])
		}
		fmt.Fprintln(w)
	}
}

// progress reports done of total with the elapsed time and an estimate of
// the time left: on one line rewritten in place on a terminal, else one
// line each time.
func progress(w io.Writer, tty bool, what string, done, total int, start time.Time) {
	elapsed := time.Since(start)
	eta := time.Duration(float64(elapsed) / float64(done) * float64(total-done))
	line := fmt.Sprintf("%s %d/%d, elapsed %s, ETA %s", what, done, total, elapsed.Round(time.Second), eta.Round(time.Second))
	switch {
	case !tty:
		fmt.Fprintln(w, line)
	case done == total:
		fmt.Fprintf(w, "\r%-70s\n", line)
	default:
		fmt.Fprintf(w, "\r%-70s", line)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	fh, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := fh.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
