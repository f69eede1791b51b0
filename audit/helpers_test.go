package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const testOrigin = "fedguard.example/FED"

// testKey returns a signer and verifiers for origin derived from seed, so
// that signatures (ed25519 is deterministic) and golden files are stable.
func testKey(tb testing.TB, origin, seed string) (note.Signer, note.Verifiers) {
	tb.Helper()
	s := sha256.Sum256([]byte(seed))
	skey, vkey, err := note.GenerateKey(bytes.NewReader(s[:]), origin)
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair(tb, skey, vkey)
}

// randomKey returns a fresh signer and verifiers for origin.
func randomKey(tb testing.TB, origin string) (note.Signer, note.Verifiers) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		tb.Fatal(err)
	}
	return keyPair(tb, skey, vkey)
}

func keyPair(tb testing.TB, skey, vkey string) (note.Signer, note.Verifiers) {
	tb.Helper()
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return signer, note.VerifierList(verifier)
}

// fixedClock returns a clock that starts at a fixed instant and advances
// by a step with sub-microsecond digits on each call, so that times
// exercise the nanosecond encoding.
func fixedClock() func() time.Time {
	t := time.Date(2025, 11, 25, 9, 30, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(1500*time.Microsecond + 7)
		return t
	}
}

// synthEntry is the i'th entry of a synthetic log: an update_received
// event with a payload of about 150 bytes, the typical size.
// appendSynth appends synthEntry(0) to synthEntry(n-1) to l, one append
// each.
func appendSynth(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(context.Background(), synthEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// mustCheckpoint writes a checkpoint of l.
func mustCheckpoint(t *testing.T, l *Log) {
	t.Helper()
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

func synthEntry(i int) Entry {
	sum := sha256.Sum256([]byte(fmt.Sprint(i)))
	return Entry{
		Kind:  KindUpdateReceived,
		Actor: fmt.Sprintf("hospital-%02d", i%17),
		Round: uint64(i / 50),
		Payload: UpdateReceived{
			Attempt:         uint32(i%3 + 1),
			SHA256:          hex.EncodeToString(sum[:]),
			Norm:            float64(i%1000) / 7,
			Samples:         uint64(1000 + i%500),
			HoldoutCount:    100,
			HoldoutAccuracy: 0.5 + float64(i%50)/100,
		},
	}
}

// exportBuilder builds an export from synthetic events in memory, without
// bbolt: the same encoding, tree and line formats as Log, for tests and
// benchmarks that need many events or hand-made histories.
type exportBuilder struct {
	tb     testing.TB
	origin string
	signer note.Signer
	now    func() time.Time
	events []Event // kept unless discard
	lines  []byte  // event lines
	n      uint64
	prev   Hash
	tree   memTree
	cps    []Checkpoint

	discard bool // keep no events (a million would cost too much memory)
}

func newExportBuilder(tb testing.TB, origin string, signer note.Signer) *exportBuilder {
	return &exportBuilder{tb: tb, origin: origin, signer: signer, now: fixedClock()}
}

// add appends an event made from e, as Log.Append would.
func (b *exportBuilder) add(e Entry) Event {
	b.tb.Helper()
	p, err := prepare(e)
	if err != nil {
		b.tb.Fatalf("prepare entry %d: %v", b.n, err)
	}
	ev := Event{Seq: b.n, Kind: p.kind, Actor: p.actor, Round: p.round, Time: b.now().UTC(), Payload: p.payload, Prev: b.prev}
	enc, err := ev.MarshalBinary()
	if err != nil {
		b.tb.Fatal(err)
	}
	ev.Hash = sha256.Sum256(enc)
	if err := b.tree.add(int64(b.n), tlog.RecordHash(enc)); err != nil {
		b.tb.Fatal(err)
	}
	b.lines = appendEventLine(b.lines, &ev)
	if !b.discard {
		b.events = append(b.events, ev)
	}
	b.prev = ev.Hash
	b.n++
	return ev
}

// checkpoint signs a checkpoint of the events so far.
func (b *exportBuilder) checkpoint() Checkpoint {
	b.tb.Helper()
	root, err := tlog.TreeHash(int64(b.n), &b.tree)
	if err != nil {
		b.tb.Fatal(err)
	}
	cp, err := signCheckpoint(b.signer, b.origin, b.n, root)
	if err != nil {
		b.tb.Fatal(err)
	}
	b.cps = append(b.cps, cp)
	return cp
}

// export returns the export: header, events, checkpoints.
func (b *exportBuilder) export() []byte {
	out := appendHeaderLine(make([]byte, 0, len(b.lines)+4096), b.origin, b.n, len(b.cps))
	out = append(out, b.lines...)
	for i := range b.cps {
		out = appendCheckpointLine(out, &b.cps[i])
	}
	return out
}

// buildExport builds an export of n synthetic events with checkpoints
// after the given sizes.
func buildExport(tb testing.TB, signer note.Signer, n int, checkpointsAt ...int) []byte {
	tb.Helper()
	b := newExportBuilder(tb, testOrigin, signer)
	b.discard = true
	next := 0
	for i := 0; i < n; i++ {
		b.add(synthEntry(i))
		if next < len(checkpointsAt) && checkpointsAt[next] == i+1 {
			b.checkpoint()
			next++
		}
	}
	return b.export()
}

// splitLines splits an export into lines, each with its newline.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	return lines
}

func joinLines(lines [][]byte) []byte { return bytes.Join(lines, nil) }

// openTestLog opens a new log in a temporary directory.
func openTestLog(tb testing.TB, signer note.Signer) (*Log, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "audit.db")
	l, err := Open(path, Options{Origin: testOrigin, Signer: signer, Now: fixedClock()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l, path
}

// flipPayloadByte returns a copy of data (an encoded event or an export
// line of a synthetic event) with one hex digit of the payload's sha256
// field changed: the payload stays valid JSON, so only hashes can tell.
func flipPayloadByte(data []byte) []byte {
	i := bytes.Index(data, []byte(`"sha256":"`))
	if i < 0 {
		panic("flipPayloadByte: no sha256 field")
	}
	out := bytes.Clone(data)
	out[i+len(`"sha256":"`)+4] ^= 1
	return out
}
