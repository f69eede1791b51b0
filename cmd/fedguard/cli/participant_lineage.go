package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// This file holds `fedguard participant lineage`: the hospital recomputes
// the data version its agent reports (package lineage) and, with -check,
// compares it with the one a signed round manifest recorded for it.

func runParticipantLineage(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "participant lineage")
	configPath := fs.String("config", "", "participant configuration file (JSON): its data, ignore, holdout, seed, ca, cert and coordinator_key are used")
	manifestPath := fs.String("manifest", "", "a signed round manifest (e.g. MODEL.bin.manifest.json from 'fedguard audit model'): it names the model's columns and records the data versions")
	check := fs.Bool("check", false, "fail unless the manifest records this hospital's current data version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config", "manifest"); err != nil {
		return err
	}
	cfg, err := participant.LoadFileConfig(*configPath)
	if err != nil {
		return fmt.Errorf("participant lineage: %w", err)
	}
	keys, err := manifest.LoadPublicKeys(cfg.CoordinatorKey)
	if err != nil {
		return fmt.Errorf("participant lineage: coordinator_key: %w", err)
	}
	env1, err := strictjson.ReadFile(*manifestPath, manifest.MaxEnvelopeSize)
	if err != nil {
		return fmt.Errorf("participant lineage: manifest: %w", err)
	}
	v, err := manifest.Verify(env1, keys, cfg.Federation)
	if err != nil {
		return fmt.Errorf("participant lineage: %s: %w", *manifestPath, err)
	}
	cert, err := certs.LoadCertificate(cfg.Cert)
	if err != nil {
		return fmt.Errorf("participant lineage: %w", err)
	}
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		return fmt.Errorf("participant lineage: %w", err)
	}
	got, err := cfg.DataVersion(v.Round.ModelSpec, v.Round.NumParams)
	if err != nil {
		return fmt.Errorf("participant lineage: %w", err)
	}
	if !*check {
		fmt.Fprintf(env.Stdout, "%s: data version %s (%s, federation %s)\n", id.Name, got, cfg.Data, cfg.Federation)
		return nil
	}
	r := v.Round.Round
	for _, c := range v.Round.Included {
		if c.Name != id.Name {
			continue
		}
		switch c.DataSHA256 {
		case got.String():
			fmt.Fprintf(env.Stdout, "OK: the manifest of round %d records %s's data version %s, the one %s gives now\n", r, id.Name, got, cfg.Data)
			return nil
		case "":
			return fmt.Errorf("participant lineage: the manifest of round %d records no data version for %s", r, id.Name)
		default:
			return fmt.Errorf("participant lineage: FAILED: the manifest of round %d records %s's data version %s, but %s gives %s: the data differ from what trained that round (file, columns or rows)",
				r, id.Name, c.DataSHA256, cfg.Data, got)
		}
	}
	return errors.New("participant lineage: " + fmt.Sprintf("%s did not contribute to the model of round %d", id.Name, r))
}
