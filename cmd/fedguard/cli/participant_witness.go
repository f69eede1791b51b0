package cli

import (
	"context"
	"crypto"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/witness"
)

// This file holds `fedguard participant witness`: the hospital
// countersigns the audit checkpoint of the last manifest its agent
// accepted, so that an auditor can refute a cut-back or forked export of
// the coordinator's audit log (see package witness and docs/audit.md).

func runParticipantWitness(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "participant witness")
	configPath := fs.String("config", "", "participant configuration file (JSON): its cert, key, coordinator_key and state are used")
	state := fs.String("state", "", "the agent's state file (default: the configuration's, or NAME.accepted.json beside -key)")
	cert := fs.String("cert", "", "this hospital's certificate (NAME.crt)")
	key := fs.String("key", "", "this hospital's private key (NAME.key), which signs")
	coordKey := fs.String("coordinator-key", "", "the coordinator's pinned signing.pub: the checkpoint must verify under it, or under the keys the state file's key rotations lead to from it")
	out := fs.String("out", "", "output file (default: standard output)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath != "" {
		c, err := participant.LoadFileConfig(*configPath)
		if err != nil {
			return fmt.Errorf("participant witness: %w", err)
		}
		for _, f := range []struct {
			flag *string
			val  string
		}{{cert, c.Cert}, {key, c.Key}, {coordKey, c.CoordinatorKey}, {state, c.State}} {
			if *f.flag == "" {
				*f.flag = f.val
			}
		}
	}
	if err := required(fs, "cert", "key", "coordinator-key"); err != nil {
		return usageError("%v (or give -config)", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
	}
	if *state == "" {
		*state = strings.TrimSuffix(*key, filepath.Ext(*key)) + ".accepted.json"
	}
	st, err := participant.ReadState(*state)
	if err != nil {
		return fmt.Errorf("participant witness: %w", err)
	}
	if st.Checkpoint == nil {
		return fmt.Errorf("participant witness: %s records no audit checkpoint for the manifest of round %d (the agent records one when it next accepts a manifest)", *state, st.Accepted.Round)
	}
	pinned, err := manifest.LoadPublicKeys(*coordKey)
	if err != nil {
		return fmt.Errorf("participant witness: coordinator key: %w", err)
	}
	pair, err := certs.LoadKeyPair(*cert, *key)
	if err != nil {
		return fmt.Errorf("participant witness: certificate and key: %w", err)
	}
	leaf, err := certs.LoadCertificate(*cert)
	if err != nil {
		return fmt.Errorf("participant witness: %w", err)
	}
	id, err := certs.ParseIdentity(leaf)
	if err != nil {
		return fmt.Errorf("participant witness: %w", err)
	}
	// After a key rotation the agent pins the new keys, which sign the
	// checkpoints it records since: follow the rotations the state file
	// records, verified again from the configured keys.
	keys, err := st.CoordinatorKeys(pinned, id.Federation)
	if err != nil {
		return fmt.Errorf("participant witness: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("participant witness: %s is not a signing key", *key)
	}
	file, err := witness.Sign(st.Checkpoint, keys.NoteVerifiers(), st.Accepted.Round, leaf, signer)
	if err != nil {
		return fmt.Errorf("participant witness: %w", err)
	}
	w, done := output(env, *out)
	if _, err := w.Write(file); err != nil {
		return done(err)
	}
	if err := done(nil); err != nil {
		return err
	}
	if *out != "" && *out != "-" {
		fmt.Fprintf(env.Stderr, "wrote %s: the audit checkpoint of the manifest of round %d, signed by this hospital\n", *out, st.Accepted.Round)
	}
	return nil
}
