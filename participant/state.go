package participant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
)

// maxStateFileSize bounds the state file the agent reads: one record of a
// manifest and one digest (67 bytes) per secure round revealed, so 16 MiB
// is some 250,000 secure rounds.
const maxStateFileSize = 16 << 20

// stateRecord is the content of [Config.StateFile], one JSON object:
//
//	{"round": 7, "digest": "<hex>", "revealed": ["<hex>", ...],
//	 "rotations": [{"old_fingerprint": "sha256:<hex>", "new_fingerprint": "sha256:<hex>",
//	                "at": "<RFC 3339>", "sha256": "<hex>", "envelope": {<DSSE>}}, ...]}
//
// round and digest are a [manifest.Accepted], the last manifest the agent
// accepted. revealed lists, sorted, the SHA-256 digests (lowercase hex) of
// the starting models of the secure rounds in which the agent revealed
// its shares (see [Agent.runSecure]). It is omitted while empty, so an agent
// that never took part in a secure round writes exactly the format of
// [manifest.SaveAccepted], and a file written before secure rounds existed
// reads as one with nothing revealed.
//
// rotations lists, in order, the coordinator key rotations the agent
// followed (see package manifest, section Key rotation): the keys it
// pinned before and after, when it followed, the rotation manifest's
// digest and the manifest itself. The agent trusts none of it on its own
// word: at start it verifies the manifests again from the keys in its
// configuration ([manifest.FollowRotations]) and pins the keys they end
// at. It is omitted while empty, like revealed.
type stateRecord struct {
	Round     uint64           `json:"round"`
	Digest    string           `json:"digest"`
	Revealed  []string         `json:"revealed,omitempty"`
	Rotations []rotationRecord `json:"rotations,omitempty"`
}

// rotationRecord is one key rotation the agent followed.
type rotationRecord struct {
	OldFingerprint string          `json:"old_fingerprint"`
	NewFingerprint string          `json:"new_fingerprint"`
	At             time.Time       `json:"at"`
	SHA256         string          `json:"sha256"`
	Envelope       json.RawMessage `json:"envelope"`
}

// check validates the form of r; its signatures are checked by the agent.
func (r rotationRecord) check() error {
	for _, fp := range []string{r.OldFingerprint, r.NewFingerprint} {
		if !strings.HasPrefix(fp, "sha256:") || !isHexDigest(fp[len("sha256:"):]) {
			return fmt.Errorf("key fingerprint %.80q is not sha256:<64 lowercase hex digits>", fp)
		}
	}
	switch {
	case r.At.IsZero():
		return errors.New("no time")
	case !isHexDigest(r.SHA256):
		return fmt.Errorf("rotation digest %.80q is not 64 lowercase hex digits", r.SHA256)
	case len(r.Envelope) == 0 || len(r.Envelope) > manifest.MaxEnvelopeSize || r.Envelope[0] != '{':
		return errors.New("no rotation manifest (a JSON object)")
	}
	return nil
}

// isHexDigest reports whether s is a SHA-256 digest in lowercase hex.
func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// State is what the agent keeps in its state file (see [Ops]): the last
// manifest it accepted, the sessions in which it revealed its shares, and
// the coordinator key rotations it followed. An Ops that keeps it elsewhere
// stores the value as it is given.
type State struct {
	Accepted *manifest.Accepted
	Revealed map[string]bool
	// rotations are re-verified from Config.CoordinatorKeys at start-up,
	// so a state file cannot name keys on its own word.
	rotations []rotationRecord
}

// loadState reads the state file at path: nil and no reveals when it does
// not exist. Anything but one well-formed record is an error, so that a
// corrupt file stops the agent instead of making it forget the chain.
func loadState(path string) (*manifest.Accepted, map[string]bool, []rotationRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, map[string]bool{}, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFileSize+1))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load state %s: %w", path, err)
	}
	if len(data) > maxStateFileSize {
		return nil, nil, nil, fmt.Errorf("load state %s: larger than %d bytes", path, maxStateFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rec stateRecord
	if err := dec.Decode(&rec); err != nil {
		return nil, nil, nil, fmt.Errorf("load state %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, nil, fmt.Errorf("load state %s: data after the JSON value", path)
	}
	if !isHexDigest(rec.Digest) {
		return nil, nil, nil, fmt.Errorf("load state %s: digest %.80q is not 64 lowercase hex digits", path, rec.Digest)
	}
	revealed := make(map[string]bool, len(rec.Revealed))
	for _, d := range rec.Revealed {
		if !isHexDigest(d) {
			return nil, nil, nil, fmt.Errorf("load state %s: revealed model digest %.80q is not 64 lowercase hex digits", path, d)
		}
		revealed[d] = true
	}
	if len(rec.Rotations) > manifest.MaxRotations {
		return nil, nil, nil, fmt.Errorf("load state %s: %d key rotations, more than %d", path, len(rec.Rotations), manifest.MaxRotations)
	}
	for i, r := range rec.Rotations {
		if err := r.check(); err != nil {
			return nil, nil, nil, fmt.Errorf("load state %s: rotation %d: %w", path, i+1, err)
		}
	}
	return &manifest.Accepted{Round: rec.Round, Digest: rec.Digest}, revealed, rec.Rotations, nil
}

// saveState records acc, revealed and rotations in the state file at
// path, atomically: after a crash the file holds either the old record or
// the new one, never a torn one. In particular a followed key rotation and
// the first manifest the new keys signed are recorded together.
func saveState(path string, acc manifest.Accepted, revealed map[string]bool, rotations []rotationRecord) error {
	if !isHexDigest(acc.Digest) {
		return fmt.Errorf("save accepted manifest: digest %.80q is not 64 lowercase hex digits", acc.Digest)
	}
	rec := stateRecord{Round: acc.Round, Digest: acc.Digest, Rotations: rotations}
	for d := range revealed {
		rec.Revealed = append(rec.Revealed, d)
	}
	slices.Sort(rec.Revealed)
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("save accepted manifest: %w", err)
	}
	if err := certs.WriteFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save accepted manifest: %w", err)
	}
	return nil
}
