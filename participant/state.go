package participant

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

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
//	{"round": 7, "digest": "<hex>", "revealed": ["<hex>", ...]}
//
// round and digest are a [manifest.Accepted], the last manifest the agent
// accepted. revealed lists, sorted, the SHA-256 digests (lowercase hex) of
// the starting models of the secure rounds in which the agent revealed
// its shares (see [Agent.runSecure]). It is omitted while empty, so an agent
// that never took part in a secure round writes exactly the format of
// [manifest.SaveAccepted], and a file written before secure rounds existed
// reads as one with nothing revealed.
type stateRecord struct {
	Round    uint64   `json:"round"`
	Digest   string   `json:"digest"`
	Revealed []string `json:"revealed,omitempty"`
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

// loadState reads the state file at path: nil and no reveals when it does
// not exist. Anything but one well-formed record is an error, so that a
// corrupt file stops the agent instead of making it forget the chain.
func loadState(path string) (*manifest.Accepted, map[string]bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, map[string]bool{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("load state %s: %w", path, err)
	}
	if len(data) > maxStateFileSize {
		return nil, nil, fmt.Errorf("load state %s: larger than %d bytes", path, maxStateFileSize)
	}
	var rec stateRecord
	if err := strictjson.Unmarshal(data, &rec); err != nil {
		return nil, nil, fmt.Errorf("load state %s: %w", path, err)
	}
	if !isHexDigest(rec.Digest) {
		return nil, nil, fmt.Errorf("load state %s: digest %.80q is not 64 lowercase hex digits", path, rec.Digest)
	}
	revealed := make(map[string]bool, len(rec.Revealed))
	for _, d := range rec.Revealed {
		if !isHexDigest(d) {
			return nil, nil, fmt.Errorf("load state %s: revealed model digest %.80q is not 64 lowercase hex digits", path, d)
		}
		revealed[d] = true
	}
	return &manifest.Accepted{Round: rec.Round, Digest: rec.Digest}, revealed, nil
}

// saveState records acc and revealed in the state file at path,
// atomically: after a crash the file holds either the old record or the
// new one, never a torn one.
func saveState(path string, acc manifest.Accepted, revealed map[string]bool) error {
	if !isHexDigest(acc.Digest) {
		return fmt.Errorf("save accepted manifest: digest %.80q is not 64 lowercase hex digits", acc.Digest)
	}
	rec := stateRecord{Round: acc.Round, Digest: acc.Digest}
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
