package cli

import (
	"context"
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

func runCoordinator(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "coordinator")
	configPath := fs.String("config", "", "coordinator configuration file (JSON; see examples/coordinator.json)")
	listen := fs.String("listen", "", "override the configuration's listen address")
	dataDir := fs.String("data-dir", "", "override the configuration's data directory")
	metricsListen := fs.String("metrics-listen", "", "override the configuration's metrics_listen: serve Prometheus /metrics and /healthz on this host:port (plain HTTP)")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	reflect := fs.Bool("reflection", false, "register gRPC server reflection (for grpcurl; callers still need an enrolled certificate)")
	initKeys := fs.Bool("init-keys", false, "create the data directory and the manifest-signing keys, print where the public key is, and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	cfg, err := coordinator.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *metricsListen != "" {
		cfg.MetricsListen = *metricsListen
	}
	if *reflect {
		cfg.Reflection = true
	}
	if *initKeys {
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
	if *check {
		if err := coordinator.CheckFiles(cfg); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: configuration is valid and its certificate files load\n", *configPath)
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
