package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
)

func init() {
	commands["coordinator"] = &command{
		summary: "run a federation's coordinator (rounds, aggregation, persistence)",
		run:     runCoordinator,
	}
}

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
	var flags coordinator.Config
	coordinatorFlags(fs, &flags)
	if err := parseFlags(fs, args); err != nil {
		return coordinatorRun{}, err
	}
	if err := required(fs, "config"); err != nil {
		return coordinatorRun{}, err
	}
	cfg, err := coordinator.LoadConfig(*configPath)
	if err != nil {
		return coordinatorRun{}, err
	}
	target := flag.NewFlagSet("", flag.ContinueOnError)
	coordinatorFlags(target, &cfg)
	if err := overrideFlags(fs, target, map[string]bool{}); err != nil {
		return coordinatorRun{}, usageError("coordinator: %v", err)
	}
	return coordinatorRun{cfg: cfg, configPath: *configPath, check: *check, initKeys: *initKeys}, nil
}

func runCoordinator(ctx context.Context, env *Env, args []string) error {
	r, err := parseCoordinator(env, args)
	if err != nil {
		return err
	}
	cfg := r.cfg
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
		fmt.Fprintf(env.Stdout, "%s: configuration is valid and its certificate files load\n", r.configPath)
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		budget, err := coordinator.MemoryBudget(cfg)
		if err != nil {
			return err
		}
		debug.SetMemoryLimit(budget)
		env.Log.Debug("soft memory limit set", "bytes", budget)
	}
	c, err := coordinator.New(cfg, coordinator.WithLogger(env.Log))
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Run(ctx)
}
