package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/validation"
)

// agentVersion is what `participant run` reports in Join.
const agentVersion = "fedguard-participant/1"

func init() {
	if commands["participant"] == nil {
		commands["participant"] = &command{summary: "the hospital agent: init, run", sub: map[string]*command{}}
	}
	commands["participant"].sub["run"] = &command{
		summary: "take part in a federation's training until it finishes",
		run:     runParticipant,
	}
	commands["participant"].summary = "the hospital agent: init, run, validate"
	commands["participant"].sub["validate"] = &command{
		summary: "check a data file against an expectations file, or propose one (--init)",
		run:     runValidate,
	}
}

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

func runParticipant(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "participant run")
	coordinator := fs.String("coordinator", "", "coordinator address, HOST:PORT")
	federation := fs.String("federation", "", "federation name")
	caFile := fs.String("ca", "", "federation CA certificate (ca.crt)")
	certFile := fs.String("cert", "", "this hospital's certificate (NAME.crt)")
	keyFile := fs.String("key", "", "this hospital's private key (NAME.key)")
	data := fs.String("data", "", "local training data, CSV with a header row")
	var ignore stringList
	fs.Var(&ignore, "ignore", "CSV column to skip, e.g. a record id (repeatable, or comma-separated)")
	holdout := fs.Float64("holdout", participant.DefaultHoldout, "fraction of local rows kept for evaluation, in [0, 1)")
	seed := fs.Uint64("seed", 1, "seed of the holdout split and local shuffling")
	serverName := fs.String("server-name", "", "name expected in the coordinator's certificate (default: host of -coordinator)")
	coordKey := fs.String("coordinator-key", "", "the coordinator's manifest-signing public keys (its signing.pub), pinned at enrolment")
	requireSecure := fs.Bool("require-secure", false, "take part in secure-aggregation rounds only: stop if the coordinator asks for a plain update")
	minBucket := fs.Int("min-secure-bucket", 0, "decline secure rounds that put this hospital in a sum of fewer members")
	state := fs.String("state", "", "file keeping the last round manifest accepted (default: beside -key, NAME.accepted.json)")
	expect := fs.String("expect", "", "expectations file: check -data against it before every round and report the findings (counts only) to the coordinator")
	mode := fs.String("validation", "", "with -expect: warn (report and train, the default) or enforce (sit out rounds whose data has errors)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *mode != "" && *expect == "":
		return usageError("participant run: -validation needs -expect")
	case *mode != "" && *mode != modeWarn && *mode != modeEnforce:
		return usageError("participant run: -validation %q, want %s or %s", *mode, modeWarn, modeEnforce)
	}
	if err := required(fs, "coordinator", "federation", "ca", "cert", "key", "data", "coordinator-key"); err != nil {
		return err
	}
	if *state == "" {
		*state = strings.TrimSuffix(*keyFile, filepath.Ext(*keyFile)) + ".accepted.json"
	}
	keys, err := manifest.LoadPublicKeys(*coordKey)
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	if !(*holdout >= 0 && *holdout < 1) {
		return usageError("participant run: -holdout %v outside [0, 1)", *holdout)
	}
	host, _, err := net.SplitHostPort(*coordinator)
	if err != nil {
		return usageError("participant run: -coordinator %q: %v", *coordinator, err)
	}
	if *serverName == "" {
		*serverName = host
	}
	ca, err := certs.LoadCertificate(*caFile)
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	tlsCfg, err := certs.ClientConfig(certs.ClientOptions{
		CA:         ca,
		CertFile:   *certFile,
		KeyFile:    *keyFile,
		Federation: *federation,
		ServerName: *serverName,
	})
	if err != nil {
		return fmt.Errorf("participant run: %w", err)
	}
	h := *holdout
	if h == 0 {
		h = participant.NoHoldout // an explicit 0 means no holdout, not the default
	}
	agent, err := participant.New(participant.Config{
		Coordinator:     *coordinator,
		TLS:             tlsCfg,
		Trainer:         &participant.LocalTrainer{DataFile: *data, Ignore: ignore, Holdout: h, Seed: *seed},
		Log:             env.Log,
		AgentVersion:    agentVersion,
		Federation:      *federation,
		CoordinatorKeys: keys,
		StateFile:       *state,
		RequireSecure:   *requireSecure,
		MinSecureBucket: *minBucket,
		Expectations:    *expect,
		ValidationMode:  *mode,
	})
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "data"); err != nil {
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
