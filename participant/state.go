package participant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/manifest"
)

// maxStateFileSize bounds the state file the agent reads: one record of a
// manifest and one digest (67 bytes) per secure round revealed, so 16 MiB
// is some 250,000 secure rounds.
const maxStateFileSize = 16 << 20

// stateRecord is the content of [Config.StateFile], one JSON object:
//
//	{"round": 7, "digest": "<hex>", "checkpoint": "<note>", "revealed": ["<hex>", ...],
//	 "rotations": [{"old_fingerprint": "sha256:<hex>", "new_fingerprint": "sha256:<hex>",
//	                "at": "<RFC 3339>", "sha256": "<hex>", "envelope": {<DSSE>}}, ...]}
//
// round and digest are a [manifest.Accepted], the last manifest the agent
// accepted. revealed lists, sorted, the SHA-256 digests (lowercase hex) of
// the starting models of the secure rounds in which the agent revealed
// its shares (see [Agent.runSecure]). It is omitted while empty, so an agent
// that never took part in a secure round writes exactly the format of
// [manifest.SaveAccepted], and a file written before secure rounds existed
// reads as one with nothing revealed. checkpoint is the signed audit
// checkpoint (a note) that the accepted manifest carries, what `fedguard
// participant witness` countersigns; it is omitted when that manifest has
// none, and a file written before it was recorded reads as one without.
//
// rotations lists, in order, the coordinator key rotations the agent
// followed (see package manifest, section Key rotation): the keys it
// pinned before and after, when it followed, the rotation manifest's
// digest and the manifest itself. The agent trusts none of it on its own
// word: at start it verifies the manifests again from the keys in its
// configuration ([manifest.FollowRotations]) and pins the keys they end
// at. It is omitted while empty, like revealed.
type stateRecord struct {
	Round      uint64           `json:"round"`
	Digest     string           `json:"digest"`
	Checkpoint string           `json:"checkpoint,omitempty"`
	Revealed   []string         `json:"revealed,omitempty"`
	Rotations  []rotationRecord `json:"rotations,omitempty"`
}

// maxCheckpointNote bounds the checkpoint note kept in the state file: a
// checkpoint is three short lines and a signature or two, well under 1 KiB.
const maxCheckpointNote = 16 << 10

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
// manifest it accepted and that manifest's signed audit checkpoint, the
// sessions in which it revealed its shares, and the coordinator key
// rotations it followed. An Ops that keeps it elsewhere stores the value as
// it is given.
type State struct {
	// Accepted is the last manifest the agent accepted; nil before the
	// first.
	Accepted *manifest.Accepted
	// Checkpoint is the signed audit checkpoint (a note, unverified here)
	// of that manifest; nil if it had none or the file predates it.
	Checkpoint []byte
	Revealed   map[string]bool
	// rotations are re-verified from Config.CoordinatorKeys at start-up,
	// so a state file cannot name keys on its own word.
	rotations []rotationRecord
}

// CoordinatorKeys returns the coordinator keys the agent pins with this
// state: pinned (the configured coordinator_key) followed through the key
// rotations the state records, each verified again from pinned as the
// agent does at start-up ([manifest.FollowRotations]) — the state file is
// not trusted to name keys on its own. It is pinned when the state records
// no rotation. `fedguard participant witness` checks the state's
// checkpoint with these keys.
func (s State) CoordinatorKeys(pinned manifest.PublicKeys, federation string) (manifest.PublicKeys, error) {
	keys, err := followRecorded(pinned, federation, s.rotations)
	if err != nil {
		return manifest.PublicKeys{}, fmt.Errorf("participant: state: %w", err)
	}
	return keys, nil
}

// ReadState reads the agent's state file at path, for the commands that
// work from it offline (`fedguard participant witness`). It is an error
// if the file does not exist: the agent has accepted nothing yet.
func ReadState(path string) (State, error) {
	if _, err := os.Stat(path); err != nil {
		return State{}, fmt.Errorf("participant: state file: %w", err)
	}
	st, err := loadState(path)
	if err != nil {
		return State{}, fmt.Errorf("participant: %w", err)
	}
	return st, nil
}

// loadState reads the state file at path: no accepted manifest, no
// checkpoint and no reveals when it does not exist. Anything but one well-formed record is an error, so that a
// corrupt file stops the agent instead of making it forget the chain.
func loadState(path string) (State, error) {
	data, err := readAgentFile(path, maxStateFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Revealed: map[string]bool{}}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("load state: %w", err)
	}
	var rec stateRecord
	if err := strictjson.Unmarshal(data, &rec); err != nil {
		return State{}, fmt.Errorf("load state %s: %w", path, err)
	}
	if !isHexDigest(rec.Digest) {
		return State{}, fmt.Errorf("load state %s: digest %.80q is not 64 lowercase hex digits", path, rec.Digest)
	}
	if err := checkCheckpointNote(rec.Checkpoint); err != nil {
		return State{}, fmt.Errorf("load state %s: %w", path, err)
	}
	var cp []byte
	if rec.Checkpoint != "" {
		cp = []byte(rec.Checkpoint)
	}
	revealed := make(map[string]bool, len(rec.Revealed))
	for _, d := range rec.Revealed {
		if !isHexDigest(d) {
			return State{}, fmt.Errorf("load state %s: revealed model digest %.80q is not 64 lowercase hex digits", path, d)
		}
		revealed[d] = true
	}
	if len(rec.Rotations) > manifest.MaxRotations {
		return State{}, fmt.Errorf("load state %s: %d key rotations, more than %d", path, len(rec.Rotations), manifest.MaxRotations)
	}
	for i, r := range rec.Rotations {
		if err := r.check(); err != nil {
			return State{}, fmt.Errorf("load state %s: rotation %d: %w", path, i+1, err)
		}
	}
	return State{Accepted: &manifest.Accepted{Round: rec.Round, Digest: rec.Digest}, Checkpoint: cp, Revealed: revealed, rotations: rec.Rotations}, nil
}

// readAgentFile reads one of the files the agent writes itself (the
// state file, the privacy ledger), of at most limit bytes. They are
// always regular files, written atomically: anything else (a named pipe,
// which would block the agent's start for good, a link to a device) is
// refused before a byte is read. A missing file's error matches
// fs.ErrNotExist.
func readAgentFile(path string, limit int64) ([]byte, error) {
	f, _, err := openRegular(path)
	if err != nil {
		if _, ok := errors.AsType[*fs.PathError](err); !ok {
			err = &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return nil, err
	}
	defer f.Close()
	return strictjson.ReadAll(f, path, limit)
}

// saveState records st (st.Accepted is not nil) in the state file at path,
// atomically: after a crash the file holds either the old record or the
// new one, never a torn one. In particular a followed key rotation and the
// first manifest the new keys signed are recorded together.
func saveState(path string, st State) error {
	acc := st.Accepted
	if acc == nil {
		return errors.New("save accepted manifest: no manifest")
	}
	if !isHexDigest(acc.Digest) {
		return fmt.Errorf("save accepted manifest: digest %.80q is not 64 lowercase hex digits", acc.Digest)
	}
	if err := checkCheckpointNote(string(st.Checkpoint)); err != nil {
		return fmt.Errorf("save accepted manifest: %w", err)
	}
	rec := stateRecord{Round: acc.Round, Digest: acc.Digest, Checkpoint: string(st.Checkpoint), Rotations: st.rotations}
	for d := range st.Revealed {
		rec.Revealed = append(rec.Revealed, d)
	}
	slices.Sort(rec.Revealed)
	if err := certs.WriteJSONAtomic(path, rec, 0o600); err != nil {
		return fmt.Errorf("save accepted manifest: %w", err)
	}
	return nil
}

// checkCheckpointNote bounds a checkpoint note kept in the state file and
// requires printable UTF-8 (a signed note has no other control character
// than newline). Its signature is checked by whoever relies on it.
func checkCheckpointNote(cp string) error {
	if len(cp) > maxCheckpointNote {
		return fmt.Errorf("checkpoint note is %d bytes, more than %d", len(cp), maxCheckpointNote)
	}
	if !utf8.ValidString(cp) || strings.IndexFunc(cp, func(r rune) bool { return r < 0x20 && r != '\n' }) >= 0 {
		return errors.New("checkpoint note is not printable UTF-8")
	}
	return nil
}
