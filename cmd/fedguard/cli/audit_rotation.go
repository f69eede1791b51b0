package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
)

// rotations returns the audit.VerifyOptions.Rotate of an auditor who
// trusts k: it follows each key_rotated event of a log from the keys
// trusted so far (k's, then each rotation's new keys), accepting only a
// rotation manifest those keys and the new ones both signed, and returns
// the new keys' checkpoint verifiers. So `fedguard audit verify` with the
// federation's first signing.pub verifies a log across every rotation
// (docs/keys.md, Rotation).
func rotations(k manifest.PublicKeyFile) func(ev *audit.Event) (note.Verifiers, error) {
	follow := rotationFollower(k)
	return func(ev *audit.Event) (note.Verifiers, error) {
		keys, err := follow(ev)
		if err != nil {
			return nil, err
		}
		return keys.NoteVerifiers(), nil
	}
}

// rotationFollower is rotations, returning the new keys themselves.
func rotationFollower(k manifest.PublicKeyFile) func(ev *audit.Event) (manifest.PublicKeys, error) {
	if k.Keys == nil {
		return func(*audit.Event) (manifest.PublicKeys, error) {
			return manifest.PublicKeys{}, errors.New("the log rotates the coordinator's keys: verify it with the signing.pub (PEM) of the keys it started with, not a note verifier key, so that the rotation's ML-DSA-65 signatures are checked too")
		}
	}
	trusted := *k.Keys
	return func(ev *audit.Event) (manifest.PublicKeys, error) {
		var kr audit.KeyRotated
		if err := json.Unmarshal(ev.Payload, &kr); err != nil {
			return manifest.PublicKeys{}, fmt.Errorf("key_rotated payload: %w", err)
		}
		v, err := manifest.OpenRotation(kr.Envelope)
		if err != nil {
			return manifest.PublicKeys{}, err
		}
		switch {
		case !v.Old.Equal(trusted):
			// Most often the auditor took DATA_DIR/signing.pub, which a
			// rotation replaced with the newest keys.
			return manifest.PublicKeys{}, fmt.Errorf("rotation %d is from keys %s, not the keys trusted at that point, %s: "+
				"verify with the federation's first signing.pub (the one the hospitals pinned; after a rotation "+
				"the coordinator's data directory keeps it as %s/000001/%s, and %s holds the newest keys)",
				v.Rotation.Seq, v.Rotation.OldFingerprint, trusted.Fingerprint(), manifest.RetiredDir, manifest.PublicFile, manifest.PublicFile)
		case kr.SHA256 != hex.EncodeToString(v.Digest[:]) || kr.Seq != v.Rotation.Seq ||
			kr.OldFingerprint != v.Rotation.OldFingerprint || kr.NewFingerprint != v.Rotation.NewFingerprint:
			return manifest.PublicKeys{}, fmt.Errorf("the key_rotated event does not describe the rotation manifest it holds (rotation %d, %s)", v.Rotation.Seq, hex.EncodeToString(v.Digest[:]))
		}
		trusted = v.New
		return v.New, nil
	}
}

// followLog follows the key rotations recorded in l from k's keys and
// returns every key trusted on the way, k's first: what signed the log's
// checkpoints and the federation's manifests. It returns k's keys alone
// when k is a note verifier key and the log never rotated.
func followLog(k manifest.PublicKeyFile, l *audit.Log) (manifest.Keyring, error) {
	var ring manifest.Keyring
	if k.Keys != nil {
		ring = manifest.Keyring{*k.Keys}
	}
	follow := rotationFollower(k)
	err := l.Events(0, func(ev audit.Event) error {
		if ev.Kind != audit.KindKeyRotated {
			return nil
		}
		keys, err := follow(&ev)
		if err != nil {
			return fmt.Errorf("event %d: key rotation: %w", ev.Seq, err)
		}
		ring = append(ring, keys)
		return nil
	})
	return ring, err
}

// keyringVerifiers verifies checkpoints signed by any key of a keyring,
// each signature against the key its hash names.
type keyringVerifiers struct{ ring manifest.Keyring }

func (k keyringVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	for _, keys := range k.ring {
		if v, err := keys.NoteVerifiers().Verifier(name, hash); err == nil {
			return v, nil
		}
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// rotatedKeyring returns pinned and the keys that the rotations committed
// in a coordinator's data directory lead to from it: what `audit model
// --key` checks a manifest with, from before or after a rotation.
func rotatedKeyring(dataDir string, pinned manifest.PublicKeys, federation string) (manifest.Keyring, error) {
	chain, err := manifest.LoadRotations(dataDir)
	if err != nil || len(chain) == 0 {
		return manifest.Keyring{pinned}, err
	}
	envs := make([][]byte, len(chain))
	for i, v := range chain {
		envs[i] = v.Envelope
	}
	_, applied, err := manifest.FollowRotations(pinned, federation, envs)
	if err != nil {
		return nil, err
	}
	return manifest.NewKeyring(pinned, applied), nil
}

// verifyWith is manifest.Verify under the newest key of ring that verifies
// env; the error is the newest key's if none does.
func verifyWith(ring manifest.Keyring, env []byte, federation string) (manifest.Verified, error) {
	var first error
	for i := len(ring) - 1; i >= 0; i-- {
		v, err := manifest.Verify(env, ring[i], federation)
		if err == nil {
			return v, nil
		}
		if first == nil {
			first = err
		}
	}
	return manifest.Verified{}, first
}
