package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/fedguard/fedguard/coordinator"
)

// This file holds `fedguard coordinator rotate-keys`: the rotation of a
// stopped coordinator's manifest- and checkpoint-signing keys, which the
// hospitals follow without re-pinning (docs/keys.md, Rotation).

// runCoordinatorCommand is `fedguard coordinator`: it runs the coordinator
// itself, which has flags of its own, so init and rotate-keys are
// recognised as its first argument rather than as subcommands of the table.
func runCoordinatorCommand(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "init":
			return runCoordinatorInit(ctx, env, args[1:])
		case "rotate-keys":
			return runRotateKeys(ctx, env, args[1:])
		}
	}
	return runCoordinator(ctx, env, args)
}

func runRotateKeys(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "coordinator rotate-keys")
	configPath := fs.String("config", "", "the coordinator's configuration file (JSON): its data directory and federation")
	dataDir := fs.String("data-dir", "", "override the configuration's data directory")
	dryRun := fs.Bool("dry-run", false, "print what would change (old and new key fingerprints, where the files go) and write nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("coordinator rotate-keys: unexpected arguments %q", fs.Args())
	}
	cfg, err := coordinator.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	r, err := coordinator.RotateKeys(cfg, coordinator.RotateOptions{DryRun: *dryRun})
	if err != nil {
		return err
	}
	w := env.Stdout
	switch {
	case *dryRun && r.Resumed:
		fmt.Fprintf(w, "dry run: rotation %d is pending; running rotate-keys again finishes it (nothing was written)\n", r.Seq)
	case *dryRun:
		fmt.Fprintf(w, "dry run: would rotate the signing keys of federation %s (rotation %d; nothing was written)\n", cfg.Federation, r.Seq)
	case r.Resumed:
		fmt.Fprintf(w, "finished the pending key rotation %d of federation %s\n", r.Seq, cfg.Federation)
	default:
		fmt.Fprintf(w, "rotated the signing keys of federation %s (rotation %d)\n", cfg.Federation, r.Seq)
	}
	fmt.Fprintf(w, "  old keys: %s\n  new keys: %s\n", r.OldFingerprint, r.NewFingerprint)
	fmt.Fprintf(w, "  the old keys signed up to round %d; the manifest of round %d is the new keys' first and carries the rotation\n", r.AfterRound, r.AfterRound+1)
	if r.SHA256 != "" {
		fmt.Fprintf(w, "  rotation manifest sha256: %s\n", r.SHA256)
	}
	roles := make([]string, 0, len(r.Files))
	for role := range r.Files {
		roles = append(roles, role)
	}
	slices.Sort(roles)
	for _, role := range roles {
		fmt.Fprintf(w, "  %-18s %s\n", role+":", r.Files[role])
	}
	if !*dryRun {
		fmt.Fprintln(w, "hospitals follow the rotation when they verify that manifest; nobody re-pins. Keep the retired keys: what they signed is checked with them.")
	}
	return nil
}
