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
func (k keyFile) rotations() func(ev *audit.Event) (note.Verifiers, error) {
	if k.keys == nil {
		return func(*audit.Event) (note.Verifiers, error) {
			return nil, errors.New("the log rotates the coordinator's keys: verify it with the signing.pub (PEM) of the keys it started with, not a note verifier key, so that the rotation's ML-DSA-65 signatures are checked too")
		}
	}
	trusted := *k.keys
	return func(ev *audit.Event) (note.Verifiers, error) {
		var kr audit.KeyRotated
		if err := json.Unmarshal(ev.Payload, &kr); err != nil {
			return nil, fmt.Errorf("key_rotated payload: %w", err)
		}
		v, err := manifest.OpenRotation(kr.Envelope)
		if err != nil {
			return nil, err
		}
		switch {
		case !v.Old.Equal(trusted):
			return nil, fmt.Errorf("rotation %d is from keys %s, not the keys trusted at that point, %s", v.Rotation.Seq, v.Rotation.OldFingerprint, trusted.Fingerprint())
		case kr.SHA256 != hex.EncodeToString(v.Digest[:]) || kr.Seq != v.Rotation.Seq ||
			kr.OldFingerprint != v.Rotation.OldFingerprint || kr.NewFingerprint != v.Rotation.NewFingerprint:
			return nil, fmt.Errorf("the key_rotated event does not describe the rotation manifest it holds (rotation %d, %s)", v.Rotation.Seq, hex.EncodeToString(v.Digest[:]))
		}
		trusted = v.New
		return keyVerifiers{v.New}, nil
	}
}
