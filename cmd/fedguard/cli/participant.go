package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/fedguard/fedguard/internal/buildinfo"
	"os"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/validation"
)

// agentVersion is what `participant run` reports in Join.
const agentVersion = "fedguard-participant/1"

// stringList is a repeatable flag that also accepts comma-separated values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// participantFlags registers the flags of `participant run` that mirror
// the fields of a participant configuration file, bound to c.
func participantFlags(fs *flag.FlagSet, c *participant.FileConfig) {
	fs.StringVar(&c.Coordinator, "coordinator", c.Coordinator, "coordinator address, HOST:PORT")
	fs.StringVar(&c.Federation, "federation", c.Federation, "federation name")
	fs.StringVar(&c.CA, "ca", c.CA, "federation CA certificate (ca.crt)")
	fs.StringVar(&c.Cert, "cert", c.Cert, "this hospital's certificate (NAME.crt)")
	fs.StringVar(&c.Key, "key", c.Key, "this hospital's private key (NAME.key)")
	fs.StringVar(&c.Data, "data", c.Data, "local training data, CSV with a header row")
	fs.Var((*stringList)(&c.Ignore), "ignore", "CSV column to skip, e.g. a record id (repeatable, or comma-separated; replaces the file's list)")
	fs.Float64Var(&c.Holdout, "holdout", c.Holdout, "fraction of local rows kept for evaluation, in [0, 1)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the holdout split and local shuffling")
	fs.StringVar(&c.ServerName, "server-name", c.ServerName, "name expected in the coordinator's certificate (default: host of -coordinator)")
	fs.StringVar(&c.CoordinatorKey, "coordinator-key", c.CoordinatorKey, "the coordinator's manifest-signing public keys (its signing.pub), pinned at enrolment")
	fs.BoolVar(&c.RequireSecure, "require-secure", c.RequireSecure, "take part in secure-aggregation rounds only: stop if the coordinator asks for a plain update")
	fs.IntVar(&c.MinSecureBucket, "min-secure-bucket", c.MinSecureBucket, "decline secure rounds that put this hospital in a sum of fewer members")
	fs.Float64Var(&c.DPSecureRoundEpsilon, "dp-secure-round-epsilon", c.DPSecureRoundEpsilon, "decline secure rounds without distributed DP, or whose noise costs this hospital more than this ε per round (0: any)")
	fs.Float64Var(&c.DPSecureEpsilon, "dp-secure-epsilon", c.DPSecureEpsilon, "federation-level budget ε over all the secure rounds with distributed DP this hospital sends an input to, by its own ledger (0: none)")
	fs.StringVar(&c.State, "state", c.State, "file keeping the last round manifest accepted (default: beside -key, NAME.accepted.json)")
	fs.StringVar(&c.Expect, "expect", c.Expect, "expectations file: check -data against it before every round and report the findings (counts only) to the coordinator")
	fs.StringVar(&c.Validation, "validation", c.Validation, "with -expect: warn (report and train, the default) or enforce (sit out rounds whose data has errors)")
	fs.StringVar(&c.Trainer, "trainer", c.Trainer, "how to train: local (the built-in models on -data, the default) or exec (the hospital's own program, -trainer-command; see docs/trainer.md)")
	fs.StringVar(&c.TrainerCommand, "trainer-command", c.TrainerCommand, `with -trainer exec: the trainer's command line, e.g. "python3 train.py", split into words without a shell`)
	fs.StringVar(&c.TrainerTimeout, "trainer-timeout", c.TrainerTimeout, "with -trainer exec: bound on one training run, e.g. 45m (default 30m)")
	fs.StringVar(&c.GiveUpAfter, "give-up-after", c.GiveUpAfter, "how long to keep retrying an unreachable coordinator before exiting, e.g. 6h, or never (default 1h)")
	fs.StringVar(&c.TrainerDir, "trainer-dir", c.TrainerDir, "with -trainer exec: directory for the private round directories (default: a new temporary directory)")
	fs.StringVar(&c.TrainerCode, "trainer-code", c.TrainerCode, "with -trainer exec: the trainer's code, a file or directory, whose digest is logged and approved (default: the program of -trainer-command)")
	fs.Var((*stringList)(&c.ApproveTrainer), "approve-trainer", "with -trainer exec: an approved trainer digest, sha256:HEX (repeatable, or comma-separated); other code is refused")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "HOST:PORT of an HTTP listener serving Prometheus metrics at /metrics and /healthz (default: none)")
	fs.BoolVar(&c.NoDataVersion, "no-data-version", c.NoDataVersion, "do not report this hospital's data version (see docs/lineage.md, the small-data case)")
	fs.Float64Var(&c.DPEpsilon, "dp-epsilon", c.DPEpsilon, "record-level privacy budget ε: sit out rounds that would exceed it (needs -dp-noise-multiplier and -dp-clip-norm; see docs/privacy.md)")
	fs.Float64Var(&c.DPDelta, "dp-delta", c.DPDelta, "δ of the -dp-epsilon, -dp-secure-epsilon and -dp-secure-round-epsilon budgets (default 1e-05)")
	fs.Float64Var(&c.DPNoiseMultiplier, "dp-noise-multiplier", c.DPNoiseMultiplier, "train the built-in models with DP-SGD at this noise multiplier σ (with -dp-clip-norm)")
	fs.Float64Var(&c.DPClipNorm, "dp-clip-norm", c.DPClipNorm, "DP-SGD's per-record gradient clipping norm C (with -dp-noise-multiplier)")
	fs.Float64Var(&c.Momentum, "momentum", c.Momentum, "built-in trainer: worker momentum β in [0, 1), kept in memory across rounds (0: none)")
	fs.StringVar(&c.MomentumStyle, "momentum-style", c.MomentumStyle, "with -momentum: ema (m ← (1−β)u + βm, default) or heavy-ball (m ← βm + u)")
}

// fieldFlag returns the flag of a participant configuration field.
func fieldFlag(field string) string { return strings.ReplaceAll(field, "_", "-") }

// participantRun is the parsed command line of `participant run`.
type participantRun struct {
	cfg        participant.FileConfig // the file's values, overridden by the flags given
	configPath string                 // "" without -config
	check      bool
}

// parseParticipantRun parses the command line of `participant run`, loads
// the configuration file if there is one, lets the flags given explicitly
// override it (flags > file > defaults) and validates the result. Problems
// with a flag are usage errors naming the flag; problems with the file name
// the file and the field.
func parseParticipantRun(env *Env, args []string) (participantRun, error) {
	fs := newFlagSet(env, "participant run")
	configPath := fs.String("config", "", "participant configuration file (JSON; see examples/participant.json); flags given override it")
	check := fs.Bool("check-config", false, "validate the configuration and the files it names (CA, certificate, key, coordinator key, data, expectations) without connecting, and exit")
	flags := participant.DefaultFileConfig()
	participantFlags(fs, &flags)
	if err := parseFlags(fs, args); err != nil {
		return participantRun{}, err
	}
	r := participantRun{cfg: flags, configPath: *configPath, check: *check}
	given := map[string]bool{}
	if r.configPath != "" {
		cfg, err := participant.LoadFileConfig(r.configPath)
		if err != nil {
			return participantRun{}, fmt.Errorf("participant run: %w", err)
		}
		if r.cfg, err = overlay(fs, participantFlags, cfg, nil, given); err != nil {
			return participantRun{}, usageError("participant run: %v", err)
		}
	}
	if err := r.cfg.Validate(); err != nil {
		var fe *participant.FieldError
		switch {
		case !errors.As(err, &fe):
			return participantRun{}, fmt.Errorf("participant run: %w", err)
		case r.configPath == "" || given[fieldFlag(fe.Field)]:
			return participantRun{}, usageError("participant run: %s", fe.Describe(func(f string) string { return "-" + fieldFlag(f) }))
		default:
			return participantRun{}, fmt.Errorf("participant run: %s: %s", r.configPath, fe.Describe(func(f string) string {
				if given[fieldFlag(f)] {
					return "-" + fieldFlag(f)
				}
				return f
			}))
		}
	}
	return r, nil
}

// overlay returns base with the flags given explicitly on parsed's command
// line (found with Visit, so a flag left at its default does not override)
// set on top, with their command-line values: a configuration file's
// values under the flags given, or a simulation's parameters from the
// flags that concern it. declare declares the flags bound to a config
// (participantFlags, attackFlags, …), so the declarations are the one place
// that says which flag fills which field. Flags declare does not know, and
// those keep (if not nil) refuses, are skipped; a list flag replaces
// base's list. The names of the flags set go into given, if not nil.
func overlay[C any](parsed *flag.FlagSet, declare func(*flag.FlagSet, *C), base C, keep func(name string) bool, given map[string]bool) (C, error) {
	dst := new(C)
	target := flag.NewFlagSet("", flag.ContinueOnError)
	declare(target, dst)
	*dst = base
	var err error
	parsed.Visit(func(f *flag.Flag) {
		t := target.Lookup(f.Name)
		if t == nil || err != nil || keep != nil && !keep(f.Name) {
			return
		}
		if given != nil {
			given[f.Name] = true
		}
		if l, ok := t.Value.(*stringList); ok {
			*l = nil
		}
		err = t.Value.Set(f.Value.String())
	})
	return *dst, err
}

func runParticipant(ctx context.Context, env *Env, args []string) error {
	r, err := parseParticipantRun(env, args)
	if err != nil {
		return err
	}
	name := cmp.Or(r.configPath, "participant run")
	if r.check {
		id, err := r.cfg.Check()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(env.Stdout, "%s: OK: %s of federation %s, coordinator %s; certificate, key, CA, coordinator key and data file load\n",
			name, id.Name, id.Federation, r.cfg.Coordinator)
		return nil
	}
	cfg, err := r.cfg.Config()
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	cfg.Log = env.Log
	cfg.AgentVersion = agentVersion + " " + buildinfo.Read().Short()
	agent, err := participant.New(cfg)
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	if err := agent.Run(ctx); err != nil {
		if ctx.Err() != nil {
			env.Log.Info("participant stopped", "reason", ctx.Err())
			return nil // SIGTERM or Ctrl-C: a clean stop
		}
		return fmt.Errorf("participant run: %w", err)
	}
	return nil
}

// The validation modes of `participant validate` and `participant run`.
const (
	modeWarn    = participant.ValidationWarn
	modeEnforce = participant.ValidationEnforce
)

// runValidate is `participant validate`: with --expect it checks --data and
// prints the findings (exit 1 when --mode enforce finds errors); with --init
// it proposes an expectations file for --data.
func runValidate(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "participant validate")
	data := fs.String("data", "", "data file, CSV with a header row")
	expect := fs.String("expect", "", "expectations file (JSON) to check -data against")
	mode := fs.String("mode", modeEnforce, "warn: report and exit 0; enforce: exit 1 when a finding is an error")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	initExp := fs.Bool("init", false, "propose an expectations file from -data instead of checking it")
	label := fs.String("label", "diagnosis", "label column (with -init)")
	out := fs.String("out", "", "file to write the proposed expectations to, refusing to overwrite (with -init; default stdout)")
	var ignore stringList
	fs.Var(&ignore, "ignore", "column to list as ignored, e.g. a record id (with -init; repeatable, or comma-separated)")
	if err := parseFlags(fs, args, "data"); err != nil {
		return err
	}
	if *initExp {
		if *expect != "" || *asJSON {
			return usageError("participant validate: -init cannot be combined with -expect or -json")
		}
		return proposeExpectations(env, *data, *label, *out, ignore)
	}
	if *expect == "" {
		return usageError("participant validate: one of -expect or -init is required")
	}
	if *out != "" || len(ignore) > 0 {
		return usageError("participant validate: -out and -ignore go with -init")
	}
	if *mode != modeWarn && *mode != modeEnforce {
		return usageError("participant validate: -mode %q, want %s or %s", *mode, modeWarn, modeEnforce)
	}
	exp, err := validation.LoadExpectations(*expect)
	if err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	f, err := os.Open(*data)
	if err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	defer f.Close()
	rep, err := validation.Check(f, exp)
	if err != nil {
		return fmt.Errorf("participant validate: %s: %w", *data, err)
	}
	failed := *mode == modeEnforce && rep.Errors() > 0
	if *asJSON {
		b, err := json.MarshalIndent(struct {
			Mode   string `json:"mode"`
			Passed bool   `json:"passed"`
			validation.Report
		}{*mode, !failed, rep}, "", "  ")
		if err != nil {
			return fmt.Errorf("participant validate: %w", err)
		}
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else if err := rep.WriteTable(env.Stdout); err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	if failed {
		return fmt.Errorf("participant validate: %s does not meet %s: %d errors (mode enforce)", *data, *expect, rep.Errors())
	}
	return nil
}

func proposeExpectations(env *Env, data, label, out string, ignore []string) error {
	f, err := os.Open(data)
	if err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	defer f.Close()
	exp, err := validation.Propose(f, label, validation.IgnoreColumns(ignore...))
	if err != nil {
		return fmt.Errorf("participant validate: %s: %w", data, err)
	}
	b, err := exp.Marshal()
	if err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	if out == "" {
		_, err := env.Stdout.Write(b)
		return err
	}
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		if err == nil {
			return fmt.Errorf("participant validate: refusing to overwrite %s", out)
		}
		return fmt.Errorf("participant validate: %w", err)
	}
	if err := certs.WriteFileAtomic(out, b, 0o644); err != nil {
		return fmt.Errorf("participant validate: %w", err)
	}
	fmt.Fprintf(env.Stdout, "wrote %s: %d columns, label %q with %d classes, %d ignored\n",
		out, len(exp.Columns), exp.Label.Column, len(exp.Label.Classes), len(exp.Ignore))
	return nil
}
