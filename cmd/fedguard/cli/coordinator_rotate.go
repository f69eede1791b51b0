package cli

import (
	"context"
	"flag"
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

// dataDirCommand is what the commands that work on a stopped
// coordinator's data directory and exit (init, rotate-keys) share: a
// required -config, a -data-dir that overrides its data_dir, and no
// arguments.
type dataDirCommand struct {
	name    string
	flags   *flag.FlagSet
	config  *string
	dataDir *string
}

func newDataDirCommand(env *Env, name, configUsage string) *dataDirCommand {
	flags := newFlagSet(env, name)
	return &dataDirCommand{
		name:    name,
		flags:   flags,
		config:  flags.String("config", "", configUsage),
		dataDir: flags.String("data-dir", "", "override the configuration's data directory"),
	}
}

// load parses args and returns the configuration file's contents with
// -data-dir applied.
func (c *dataDirCommand) load(args []string) (coordinator.Config, error) {
	if err := parseFlags(c.flags, args); err != nil {
		return coordinator.Config{}, err
	}
	if err := required(c.flags, "config"); err != nil {
		return coordinator.Config{}, err
	}
	if c.flags.NArg() != 0 {
		return coordinator.Config{}, usageError("%s: unexpected arguments %q", c.name, c.flags.Args())
	}
	cfg, err := coordinator.LoadConfig(*c.config)
	if err != nil {
		return coordinator.Config{}, err
	}
	if *c.dataDir != "" {
		cfg.DataDir = *c.dataDir
	}
	return cfg, nil
}

func runRotateKeys(_ context.Context, env *Env, args []string) error {
	c := newDataDirCommand(env, "coordinator rotate-keys", "the coordinator's configuration file (JSON): its data directory and federation")
	dryRun := c.flags.Bool("dry-run", false, "print what would change (old and new key fingerprints, where the files go) and write nothing")
	cfg, err := c.load(args)
	if err != nil {
		return err
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
