package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
)

// coordinatorFlags registers the flags of `coordinator` that override
// fields of its configuration file, bound to c.
func coordinatorFlags(fs *flag.FlagSet, c *coordinator.Config) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "override the configuration's listen address")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "override the configuration's data directory")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "override the configuration's metrics_listen: serve Prometheus /metrics and /healthz on this host:port (plain HTTP; an empty value turns it off)")
	fs.BoolVar(&c.Reflection, "reflection", c.Reflection, "override the configuration's reflection: register gRPC server reflection (for grpcurl; callers still need an enrolled certificate)")
}

// coordinatorRun is the parsed command line of `coordinator`.
type coordinatorRun struct {
	cfg        coordinator.Config // the file's values, overridden by the flags given
	configPath string
	check      bool
	initKeys   bool
	init       bool
	checkData  bool
}

// parseCoordinator parses the command line of `coordinator` and loads its
// configuration file; the flags given explicitly override the file's
// values (flags > file > defaults), so `-reflection=false` turns off what
// the file turns on.
func parseCoordinator(env *Env, args []string) (coordinatorRun, error) {
	fs := newFlagSet(env, "coordinator")
	configPath := fs.String("config", "", "coordinator configuration file (JSON; see examples/coordinator.json); flags given override it")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	initKeys := fs.Bool("init-keys", false, "create the data directory and the manifest-signing keys, print where the public key is, and exit")
	init := fs.Bool("init", false, "start a new federation if the data directory holds none (creates state.db, audit.db and, if absent, the signing keys), then run; an existing federation is resumed. Without it the coordinator only resumes one: a missing file is an error, never a new history")
	checkData := fs.Bool("check-data", false, "check the data directory of a stopped coordinator (state.db and audit.db sound, the audit log verified, the two in agreement), print the verdict and exit (status 1 if it fails)")
	var flags coordinator.Config
	coordinatorFlags(fs, &flags)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nAnd the commands on a stopped coordinator's data directory (each with -h):\n"+
			"  fedguard coordinator init --config FILE          create a new federation (state.db, audit.db, keys if absent) and exit\n"+
			"  fedguard coordinator rotate-keys --config FILE   rotate the manifest-signing keys (--dry-run first)\n")
	}
	if err := parseFlags(fs, args, "config"); err != nil {
		return coordinatorRun{}, err
	}
	cfg, err := coordinator.LoadConfig(*configPath)
	if err != nil {
		return coordinatorRun{}, err
	}
	if cfg, err = overlay(fs, coordinatorFlags, cfg, nil, nil); err != nil {
		return coordinatorRun{}, usageError("coordinator: %v", err)
	}
	return coordinatorRun{cfg: cfg, configPath: *configPath, check: *check, initKeys: *initKeys, init: *init, checkData: *checkData}, nil
}

func runCoordinator(ctx context.Context, env *Env, args []string) error {
	r, err := parseCoordinator(env, args)
	if err != nil {
		return err
	}
	cfg := r.cfg
	if r.initKeys && cfg.PKCS11.Enabled() {
		return initTokenKeys(env, cfg)
	}
	if r.initKeys {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		signer, created, err := manifest.LoadOrCreateSigner(cfg.DataDir)
		if err != nil {
			return err
		}
		verb := "kept the existing"
		if created {
			verb = "created"
		}
		fmt.Fprintf(env.Stdout, "%s manifest-signing keys in %s (fingerprint %s)\nhand %s to every hospital with its certificate: they pin it\n",
			verb, cfg.DataDir, signer.Public().Fingerprint(), filepath.Join(cfg.DataDir, manifest.PublicFile))
		return nil
	}
	if r.check {
		if err := coordinator.CheckFiles(cfg); err != nil {
			return err
		}
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(env.Stderr, "%s: warning: %s\n", r.configPath, w)
		}
		fmt.Fprintf(env.Stdout, "%s: configuration is valid and its certificate files load\n", r.configPath)
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if r.checkData {
		return checkData(env, cfg)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		budget, err := coordinator.MemoryBudget(cfg)
		if err != nil {
			return err
		}
		debug.SetMemoryLimit(budget)
		env.Log.Debug("soft memory limit set", "bytes", budget)
	}
	opts := []coordinator.Option{coordinator.WithLogger(env.Log)}
	if r.init {
		opts = append(opts, coordinator.WithInit())
	}
	c, err := coordinator.New(cfg, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Run(ctx)
}

// checkData runs `coordinator --check-data`: the start-up checks of the
// data directory, without starting.
func checkData(env *Env, cfg coordinator.Config) error {
	d, err := coordinator.CheckData(cfg)
	if errors.Is(err, coordinator.ErrInUse) {
		// No verdict on the files: FAILED would send the operator to
		// the backups.
		fmt.Fprintf(env.Stdout, "NOT CHECKED: %s (stop the coordinator, or check a copy of the directory)\n", cfg.DataDir)
		return err
	}
	if err != nil {
		fmt.Fprintf(env.Stdout, "FAILED: %s\n", cfg.DataDir)
		return err
	}
	round := fmt.Sprintf("last closed round %d", d.LastRound)
	if !d.Signed {
		round = "no signed round yet (the feature scaling is not fixed)"
	}
	fmt.Fprintf(env.Stdout, "OK: %s\n  %s: sound, %s\n  %s: sound and verified, %d events, %d signed checkpoints (the last covers %d events), head %s\n  the two agree\n",
		cfg.DataDir, coordinator.StateFile, round, coordinator.AuditFile, d.Audit.Events, d.Audit.Checkpoints, d.Audit.Covered, d.Audit.Head)
	return nil
}
