package coordinator

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
)

// RotateOptions configure [RotateKeys].
type RotateOptions struct {
	// DryRun reports what would change and writes nothing.
	DryRun bool
	// Now is the clock (time.Now if nil); Rand the randomness of the new
	// keys (crypto/rand if nil).
	Now  func() time.Time
	Rand io.Reader
}

// Rotation describes a key rotation that [RotateKeys] made, resumed, or
// (dry run) would make.
type Rotation struct {
	Seq            uint64
	OldFingerprint string
	NewFingerprint string
	// AfterRound is the last round whose manifest the old keys signed.
	AfterRound uint64
	// SHA256 is the rotation manifest's digest; empty in a dry run.
	SHA256 string
	// Resumed is set when RotateKeys finished a rotation that an earlier
	// run had started.
	Resumed bool
	// Files are where the rotation puts things, by role.
	Files map[string]string
}

// ErrRotateToken is a key rotation asked of a coordinator whose Ed25519
// signing key is on a PKCS #11 token: [RotateKeys] rotates file keys only
// (docs/keys.md, Rotating a key held on a token).
var ErrRotateToken = errors.New("rotate keys: the signing key is on a PKCS #11 token, which rotate-keys does not rotate yet")

// RotateKeys rotates a stopped coordinator's signing keys: it makes new
// keys, writes the rotation manifest signed by the old and the new keys
// (package manifest, section Key rotation), records it in the audit log
// (key_rotated, covered by a checkpoint the old keys sign, their last),
// then puts the new keys in place of the old, which it keeps in
// DATA_DIR/retired/NNNNNN. The next manifest the coordinator signs is the
// new keys' first and carries the rotation, which every hospital verifies
// against the keys it pinned and follows without anyone re-pinning.
//
// Every step can be redone: a run that was cut off leaves the rotation
// pending (DATA_DIR/rotation-pending), the coordinator refuses to start
// until it is finished, and running RotateKeys again finishes it with the
// keys it had made. The coordinator must be stopped: its databases are
// locked while it runs.
func RotateKeys(cfg Config, opts RotateOptions) (Rotation, error) {
	if cfg.PKCS11.Enabled() {
		// The file keys it would read are not the ones the coordinator
		// signs with: refuse before anything is read or written, dry run
		// or not.
		return Rotation{}, fmt.Errorf("%w: its Ed25519 key %q is on token %q, and rotate-keys signs the hand-over with %s; see docs/keys.md, section \"Rotating a key held on a token\"",
			ErrRotateToken, cfg.PKCS11.KeyLabel, cfg.PKCS11.TokenLabel, manifest.KeyFile)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir := cfg.DataDir
	last, err := ExportModel(dir, -1)
	if errors.Is(err, ErrInUse) {
		// Not a copy: the hospitals follow the rotation the
		// coordinator's own directory records.
		return Rotation{}, fmt.Errorf("rotate keys: %w: stop the coordinator first, then rotate its data directory", err)
	}
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate keys: %w", err)
	}
	if last.Federation != cfg.Federation {
		return Rotation{}, fmt.Errorf("rotate keys: %s holds federation %q, the configuration names %q", dir, last.Federation, cfg.Federation)
	}
	files := map[string]string{
		"new signing key": filepath.Join(dir, manifest.KeyFile),
		"new public keys": filepath.Join(dir, manifest.PublicFile),
		"new cosign key":  filepath.Join(dir, manifest.CosignPublicFile),
		"audit log":       filepath.Join(dir, AuditFile),
	}
	_, pending, resumed, err := manifest.PendingRotation(dir)
	if err != nil {
		return Rotation{}, fmt.Errorf("rotate keys: %w", err)
	}
	if !resumed {
		old, err := manifest.LoadSigner(dir)
		if err != nil {
			return Rotation{}, fmt.Errorf("rotate keys: %w", err)
		}
		chain, err := manifest.LoadRotations(dir)
		if err != nil {
			return Rotation{}, fmt.Errorf("rotate keys: %w", err)
		}
		r := manifest.Rotation{
			Federation: cfg.Federation, Seq: uint64(len(chain)) + 1,
			AfterRound: last.Round, Rotated: opts.Now().UTC(),
		}
		for _, v := range chain {
			if v.Old.Equal(old.Public()) {
				return Rotation{}, fmt.Errorf("rotate keys: the current keys %s were retired by rotation %d", old.Public().Fingerprint(), v.Rotation.Seq)
			}
		}
		if n := len(chain); n > 0 {
			if !chain[n-1].New.Equal(old.Public()) {
				return Rotation{}, fmt.Errorf("rotate keys: %s holds keys %s, but the last rotation went to %s", filepath.Join(dir, manifest.KeyFile), old.Public().Fingerprint(), chain[n-1].Rotation.NewFingerprint)
			}
			r.Previous = hex.EncodeToString(chain[n-1].Digest[:])
		}
		d, err := manifest.Digest(last.Manifest)
		if err != nil {
			return Rotation{}, fmt.Errorf("rotate keys: manifest of round %d: %w", last.Round, err)
		}
		r.AfterManifest = hex.EncodeToString(d[:])
		next, err := manifest.GenerateSigner(opts.Rand)
		if err != nil {
			return Rotation{}, err
		}
		out := Rotation{
			Seq: r.Seq, OldFingerprint: old.Public().Fingerprint(), NewFingerprint: next.Public().Fingerprint(),
			AfterRound: r.AfterRound, Files: files,
		}
		out.Files["retired old keys"] = filepath.Join(dir, manifest.RetiredDir, fmt.Sprintf("%06d", r.Seq))
		out.Files["rotation manifest"] = filepath.Join(dir, manifest.RotationsDir, manifest.RotationFile(r.Seq))
		if opts.DryRun {
			return out, nil
		}
		env, _, err := manifest.SignRotation(old, next, r)
		if err != nil {
			return Rotation{}, err
		}
		if err := manifest.StageRotation(dir, next, env); err != nil {
			return Rotation{}, fmt.Errorf("rotate keys: %w", err)
		}
		if _, pending, _, err = manifest.PendingRotation(dir); err != nil {
			return Rotation{}, fmt.Errorf("rotate keys: %w", err)
		}
	}
	r := pending.Rotation
	out := Rotation{
		Seq: r.Seq, OldFingerprint: r.OldFingerprint, NewFingerprint: r.NewFingerprint, AfterRound: r.AfterRound,
		SHA256: hex.EncodeToString(pending.Digest[:]), Resumed: resumed, Files: files,
	}
	out.Files["retired old keys"] = filepath.Join(dir, manifest.RetiredDir, fmt.Sprintf("%06d", r.Seq))
	out.Files["rotation manifest"] = filepath.Join(dir, manifest.RotationsDir, manifest.RotationFile(r.Seq))
	if opts.DryRun {
		// A dry run while a rotation is pending says what finishing it
		// would do.
		return out, nil
	}
	if err := recordRotation(cfg, dir, pending, opts.Now); err != nil {
		return Rotation{}, err
	}
	if err := manifest.CommitRotation(dir); err != nil {
		return Rotation{}, fmt.Errorf("rotate keys: %w", err)
	}
	return out, nil
}

// recordRotation appends key_rotated to the audit log, unless the log's
// last event records this rotation already (a run resumed after the
// append), and signs a checkpoint with the old keys: their last, covering
// the hand-over.
func recordRotation(cfg Config, dir string, v manifest.VerifiedRotation, now func() time.Time) (err error) {
	oldSigner, err := retiringSigner(dir, v)
	if err != nil {
		return err
	}
	origin := AuditOrigin(cfg.Federation)
	ns, err := oldSigner.NoteSigner(origin)
	if err != nil {
		return err
	}
	log, err := audit.Open(filepath.Join(dir, AuditFile), audit.Options{Origin: origin, Signer: ns, Now: now})
	if err != nil {
		return fmt.Errorf("rotate keys: %w", err)
	}
	defer func() { err = errors.Join(err, log.Close()) }()
	digest := hex.EncodeToString(v.Digest[:])
	done := false
	if n := log.Size(); n > 0 {
		err := log.Events(n-1, func(ev audit.Event) error {
			var kr audit.KeyRotated
			if ev.Kind == audit.KindKeyRotated && json.Unmarshal(ev.Payload, &kr) == nil && kr.SHA256 == digest {
				done = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rotate keys: %w", err)
		}
	}
	if !done {
		_, err := log.Append(context.Background(), event(audit.KindKeyRotated, v.Rotation.AfterRound, audit.KeyRotated{
			Seq: v.Rotation.Seq, OldFingerprint: v.Rotation.OldFingerprint, NewFingerprint: v.Rotation.NewFingerprint,
			AfterRound: v.Rotation.AfterRound, SHA256: digest, Envelope: v.Envelope,
		}))
		if err != nil {
			return fmt.Errorf("rotate keys: audit: %w", err)
		}
	}
	if _, err := log.Checkpoint(); err != nil {
		return fmt.Errorf("rotate keys: audit: %w", err)
	}
	return nil
}

// retiringSigner finds the keys a pending rotation retires: still in
// place, or already moved to the retired directory.
func retiringSigner(dir string, v manifest.VerifiedRotation) (*manifest.Signer, error) {
	for _, d := range []string{dir, filepath.Join(dir, manifest.RetiredDir, fmt.Sprintf("%06d", v.Rotation.Seq))} {
		s, err := manifest.LoadSigner(d)
		if err == nil && s.Public().Equal(v.Old) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("rotate keys: the keys %s that rotation %d retires are neither in %s nor retired", v.Rotation.OldFingerprint, v.Rotation.Seq, dir)
}

// loadKeyring reads the committed key rotations in dir and checks that
// they lead to current, the keys in signing.key: the keyring then holds
// every identity the federation signed with, to check what the old ones
// signed. A pending rotation stops the coordinator until it is finished.
func loadKeyring(dir string, current manifest.PublicKeys) (manifest.Keyring, []manifest.VerifiedRotation, error) {
	chain, err := manifest.LoadRotations(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(chain) == 0 {
		return manifest.Keyring{current}, nil, nil
	}
	if last := chain[len(chain)-1]; !last.New.Equal(current) {
		return nil, nil, fmt.Errorf("%w: the signing keys %s are not the ones the last key rotation (%d) went to, %s; restore %s from a backup", ErrDataMismatch,
			current.Fingerprint(), last.Rotation.Seq, last.Rotation.NewFingerprint, manifest.KeyFile)
	}
	return manifest.NewKeyring(chain[0].Old, chain), chain, nil
}

// rotationsAfter returns the rotation manifests that took effect after
// round: the ones the manifest of round+1, the new keys' first, carries.
func (c *Coordinator) rotationsAfter(round uint64) []json.RawMessage {
	var out []json.RawMessage
	for _, v := range c.rotations {
		if v.Rotation.AfterRound == round {
			out = append(out, v.Envelope)
		}
	}
	return out
}
