package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
)

// This file holds `fedguard coordinator init`: the creation of a new
// federation's data directory as a step of its own, which exits, so that a
// service manager (systemd, a container runtime) only ever resumes a
// federation and never has to run the coordinator in the foreground with
// --init and stop it by hand.

// errFederationExists reports an init into a data directory that already
// holds a federation (or part of one): init never overwrites a history.
var errFederationExists = errors.New("coordinator init: the data directory already holds a federation")

func runCoordinatorInit(_ context.Context, env *Env, args []string) error {
	cfg, err := newDataDirCommand(env, "coordinator init", "the coordinator's configuration file (JSON): its data directory, federation and model").load(args)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	statePath := filepath.Join(cfg.DataDir, coordinator.StateFile)
	auditPath := filepath.Join(cfg.DataDir, coordinator.AuditFile)
	for _, p := range []string{statePath, auditPath} {
		switch _, err := os.Stat(p); {
		case err == nil:
			return fmt.Errorf("%w: %s exists; init never overwrites a history. Start the coordinator to resume it (`fedguard coordinator --check-data` checks it first), or point data_dir at an empty directory for a new federation", errFederationExists, p)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("coordinator init: %w", err)
		}
	}
	keyPath := filepath.Join(cfg.DataDir, manifest.KeyFile)
	_, keyErr := os.Stat(keyPath)
	c, err := coordinator.New(cfg, coordinator.WithLogger(env.Log), coordinator.WithInit())
	if err != nil {
		return err
	}
	fp := c.PublicKeys().Fingerprint()
	if err := c.Close(); err != nil {
		return fmt.Errorf("coordinator init: close the new federation's files: %w", err)
	}
	w := env.Stdout
	fmt.Fprintf(w, "created federation %s in %s\n", cfg.Federation, cfg.DataDir)
	fmt.Fprintf(w, "  state database: %s (round 0, the initial model)\n", statePath)
	fmt.Fprintf(w, "  audit log:      %s\n", auditPath)
	switch {
	case cfg.PKCS11.Enabled():
		fmt.Fprintf(w, "  signing keys:   on the PKCS#11 token (label %s), fingerprint %s\n", cfg.PKCS11.KeyLabel, fp)
	case errors.Is(keyErr, fs.ErrNotExist):
		fmt.Fprintf(w, "  signing keys:   created %s, fingerprint %s\n", keyPath, fp)
	default:
		fmt.Fprintf(w, "  signing keys:   kept the existing %s, fingerprint %s\n", keyPath, fp)
	}
	fmt.Fprintf(w, "hand %s to every hospital with its certificate: they pin it.\nthen start the coordinator without --init (e.g. `systemctl start fedguard-coordinator`); it resumes this federation\n",
		filepath.Join(cfg.DataDir, manifest.PublicFile))
	return nil
}
