package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the log's Merkle tree: its Size
// (number of events) and Root (tlog.TreeHash of them), as the C2SP
// tlog-checkpoint note described in the package documentation.
type Checkpoint struct {
	// Origin names the log; it is also the name of the signing key.
	Origin string
	Size   uint64
	Root   tlog.Hash
	// Note is the full signed note text.
	Note []byte
}

// checkpointText is the signed body of a checkpoint.
func checkpointText(origin string, size uint64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// signCheckpoint signs the checkpoint of the tree of size events.
func signCheckpoint(signer note.Signer, origin string, size uint64, root tlog.Hash) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointText(origin, size, root)}, signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: sign checkpoint of size %d: %w", size, err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: msg}, nil
}

// parseCheckpointText parses a checkpoint body in the one form
// checkpointText writes; C2SP extension lines are refused because this log
// writes none.
func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, errors.New("checkpoint text is not three lines (origin, size, root)")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	if err := checkOrigin(origin); err != nil {
		return Checkpoint{}, err
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is not a decimal number", sizeText)
	}
	rootText := strings.TrimSuffix(lines[2], "\n")
	raw, err := base64.StdEncoding.DecodeString(rootText)
	if err != nil || len(raw) != tlog.HashSize || base64.StdEncoding.EncodeToString(raw) != rootText {
		return Checkpoint{}, fmt.Errorf("checkpoint root %q is not a base64 SHA-256 hash", rootText)
	}
	var root tlog.Hash
	copy(root[:], raw)
	return Checkpoint{Origin: origin, Size: size, Root: root}, nil
}

// OpenCheckpoint verifies the signed checkpoint msg with verifiers and
// parses it. It requires a valid signature by a known key named after the
// checkpoint's origin: another known key vouching for the tree (a witness,
// say) does not make it the log's own checkpoint.
func OpenCheckpoint(msg []byte, verifiers note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("not signed by a trusted key (signed by %s)", describeSigs(unverified.Note.UnverifiedSigs))
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("invalid signature by key %s+%08x", invalid.Name, invalid.Hash)
		}
		return Checkpoint{}, fmt.Errorf("not a signed note: %w", err)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	signed := false
	for _, s := range n.Sigs {
		signed = signed || s.Name == c.Origin
	}
	if !signed {
		return Checkpoint{}, fmt.Errorf("no trusted signature by the log's key %q (signed by %s)", c.Origin, describeSigs(n.Sigs))
	}
	c.Note = bytes.Clone(msg)
	return c, nil
}

// parseStoredCheckpoint parses a note this log signed and stored, without
// verifying its signature: a Log holds a signer, not a verifier, and the
// note's root is checked against the tree when it matters (Prove).
func parseStoredCheckpoint(msg []byte) (Checkpoint, error) {
	split := bytes.LastIndex(msg, []byte("\n\n"))
	if split < 0 {
		return Checkpoint{}, errors.New("stored checkpoint is not a signed note")
	}
	c, err := parseCheckpointText(string(msg[:split+1]))
	if err != nil {
		return Checkpoint{}, err
	}
	c.Note = bytes.Clone(msg)
	return c, nil
}

func describeSigs(sigs []note.Signature) string {
	if len(sigs) == 0 {
		return "no key"
	}
	var b strings.Builder
	for i, s := range sigs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s+%08x", s.Name, s.Hash)
	}
	return b.String()
}

// checkOrigin applies note's rules for key names, since the origin is the
// name of the key that signs checkpoints: non-empty UTF-8 without spaces,
// plus signs or control characters.
func checkOrigin(origin string) error {
	if origin == "" {
		return errors.New("origin is empty")
	}
	if !utf8.ValidString(origin) {
		return fmt.Errorf("origin %q is not valid UTF-8", origin)
	}
	for _, r := range origin {
		if unicode.IsSpace(r) || r == '+' || unicode.IsControl(r) {
			return fmt.Errorf("origin %q: spaces, '+' and control characters are not allowed (it names a note key)", origin)
		}
	}
	if len(origin) > 255 {
		return fmt.Errorf("origin is %d bytes, at most 255 are allowed", len(origin))
	}
	return nil
}
