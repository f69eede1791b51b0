package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/mod/sumdb/note"
)

// The base export of the mutation tests: 30 events (lines 2..31, event k
// on line k+2) and checkpoints of sizes 10, 20 and 30 (lines 32..34).
const (
	baseEvents = 30
	cpLine10   = baseEvents + 2
	cpLine20   = baseEvents + 3
	cpLine30   = baseEvents + 4
)

func eventLineNo(seq int) int { return seq + 2 }

// baseExport builds the base export with a deterministic key.
func baseExport(tb testing.TB) (*exportBuilder, note.Verifiers) {
	signer, verifiers := testKey(tb, testOrigin, "verify")
	b := newExportBuilder(tb, testOrigin, signer)
	for i := range baseEvents {
		b.add(synthEntry(i))
		if (i+1)%10 == 0 {
			b.checkpoint()
		}
	}
	return b, verifiers
}

// rewriteEvent parses an event line, lets fn change the event, optionally
// recomputes its hash, and renders the line again.
func rewriteEvent(tb testing.TB, line []byte, fn func(*Event), rehash bool) []byte {
	tb.Helper()
	var e Event
	var seqOK bool
	ns, err := parseEventLine(bytes.TrimSuffix(line, []byte("\n")), &e, &seqOK)
	if err != nil {
		tb.Fatal(err)
	}
	e.Payload = bytes.Clone(e.Payload)
	fn(&e)
	if rehash {
		e.Hash = sha256.Sum256(appendEncoding(nil, &e, ns))
	}
	return appendEventLine(nil, &e)
}

// resign replaces a checkpoint line's signatures by signer's.
func resign(tb testing.TB, line []byte, signer note.Signer) []byte {
	tb.Helper()
	var cl checkpointLine
	if err := json.Unmarshal(line, &cl); err != nil {
		tb.Fatal(err)
	}
	text := cl.Note[:strings.LastIndex(cl.Note, "\n\n")+1]
	msg, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		tb.Fatal(err)
	}
	return appendCheckpointLine(nil, &Checkpoint{Size: cl.Size, Note: msg})
}

type mutation struct {
	name   string
	mutate func(tb testing.TB, lines [][]byte) [][]byte
	opts   VerifyOptions // Verifiers filled in if nil
	// Where the error must point, and a part of its reason.
	line   int
	seq    int64
	cpSize uint64
	reason string
}

// mutations are the tamperings Verify must catch, each with where it must
// say the export went wrong.
func mutations() []mutation {
	del := func(lines [][]byte, i int) [][]byte { return slices.Delete(slices.Clone(lines), i, i+1) }
	replace := func(lines [][]byte, i int, line []byte) [][]byte {
		out := slices.Clone(lines)
		out[i] = line
		return out
	}
	replaceIn := func(lines [][]byte, i int, old, new string) [][]byte {
		return replace(lines, i, bytes.Replace(lines[i], []byte(old), []byte(new), 1))
	}
	ev := func(seq int) int { return eventLineNo(seq) - 1 } // index in lines
	header := func(events, cps int) []byte { return appendHeaderLine(nil, testOrigin, uint64(events), cps) }
	return []mutation{
		{
			name:   "payload byte flipped",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replace(l, ev(7), flipPayloadByte(l[ev(7)])) },
			line:   eventLineNo(7), seq: 7, reason: "hash does not match the event's content",
		},
		{
			name:   "line deleted",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return del(l, ev(7)) },
			line:   eventLineNo(7), seq: 7, reason: "expected event 7, found 8",
		},
		{
			name: "two lines swapped",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				l = slices.Clone(l)
				l[ev(7)], l[ev(8)] = l[ev(8)], l[ev(7)]
				return l
			},
			line: eventLineNo(7), seq: 7, reason: "expected event 7, found 8",
		},
		{
			name:   "line duplicated",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return slices.Insert(slices.Clone(l), ev(8), l[ev(7)]) },
			line:   eventLineNo(8), seq: 8, reason: "expected event 8, found 7",
		},
		{
			name: "hash edited",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				line := bytes.Clone(l[ev(7)])
				line[len(line)-5] ^= 1 // a hex digit of "hash"
				return replace(l, ev(7), line)
			},
			line: eventLineNo(7), seq: 7, reason: "hash does not match the event's content",
		},
		{
			name: "actor edited and the event re-hashed",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				return replace(l, ev(7), rewriteEvent(tb, l[ev(7)], func(e *Event) { e.Actor = "mallory" }, true))
			},
			line: eventLineNo(8), seq: 8, reason: "is not the hash of event 7",
		},
		{
			name: "prev edited and the event re-hashed",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				return replace(l, ev(7), rewriteEvent(tb, l[ev(7)], func(e *Event) { e.Prev[0] ^= 1 }, true))
			},
			line: eventLineNo(7), seq: 7, reason: "is not the hash of event 6",
		},
		{
			name: "first event's prev not zero",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				return replace(l, ev(0), rewriteEvent(tb, l[ev(0)], func(e *Event) { e.Prev[31] = 1 }, true))
			},
			line: eventLineNo(0), seq: 0, reason: "prev of the first event",
		},
		{
			name: "history rewritten with a consistent chain",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				// Change event 12 and rebuild every hash after it.
				signer, _ := testKey(tb, testOrigin, "verify")
				b := newExportBuilder(tb, testOrigin, signer)
				for i := range baseEvents {
					e := synthEntry(i)
					if i == 12 {
						e.Actor = "mallory"
					}
					b.add(e)
				}
				forged := splitLines(b.export())
				out := slices.Clone(l)
				copy(out[1:1+baseEvents], forged[1:1+baseEvents])
				return out
			},
			line: cpLine20, seq: 10, cpSize: 20, reason: "does not match events 10..19: the history was rewritten after checkpoint 10",
		},
		{
			name: "first checkpoint's history rewritten",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				out := slices.Clone(l)
				out[ev(3)] = rewriteEvent(tb, l[ev(3)], func(e *Event) { e.Round = 99 }, true)
				for seq := 4; seq < baseEvents; seq++ {
					prev := out[ev(seq-1)]
					var pe Event
					var ok bool
					if _, err := parseEventLine(bytes.TrimSuffix(prev, []byte("\n")), &pe, &ok); err != nil {
						tb.Fatal(err)
					}
					out[ev(seq)] = rewriteEvent(tb, l[ev(seq)], func(e *Event) { e.Prev = pe.Hash }, true)
				}
				return out
			},
			line: cpLine10, seq: 0, cpSize: 10, reason: "events 0..9: the history was rewritten after the start of the log",
		},
		{
			name: "checkpoint re-signed by another key",
			mutate: func(tb testing.TB, l [][]byte) [][]byte {
				other, _ := testKey(tb, testOrigin, "mallory")
				return replace(l, cpLine20-1, resign(tb, l[cpLine20-1], other))
			},
			line: cpLine20, seq: -1, cpSize: 20, reason: "not signed by a trusted key",
		},
		{
			name: "checkpoint signature corrupted",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				line := bytes.Clone(l[cpLine20-1])
				i := bytes.LastIndex(line, []byte(" ")) + 40 // inside the signature, after the key hash
				line[i] ^= 1
				return replace(l, cpLine20-1, line)
			},
			line: cpLine20, seq: -1, cpSize: 20, reason: "invalid signature",
		},
		{
			name: "tail cut behind the last checkpoint",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return slices.Delete(slices.Clone(l), ev(25), ev(baseEvents))
			},
			line: cpLine30 - 5, seq: 25, cpSize: 30, reason: "events 25..29 are missing (the tail was cut)",
		},
		{
			name: "tail and its checkpoint cut, header kept",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return slices.Delete(slices.Clone(l[:cpLine20]), ev(20), ev(baseEvents))
			},
			line: 0, seq: 20, reason: "the header says 30 events, but the export holds only 20: events 20..29 are missing",
		},
		{
			name: "every checkpoint removed",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				out := slices.Clone(l[:cpLine10-1])
				out[0] = header(baseEvents, 0)
				return out
			},
			line: 0, seq: -1, reason: "nothing in the export is signed",
		},
		{
			name: "checkpoints out of order",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				l = slices.Clone(l)
				l[cpLine10-1], l[cpLine20-1] = l[cpLine20-1], l[cpLine10-1]
				return l
			},
			line: cpLine20, seq: -1, cpSize: 10, reason: "increasing size order",
		},
		{
			name:   "checkpoint line's size is not the note's",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, cpLine20-1, `"size":20`, `"size":19`) },
			line:   cpLine20, seq: -1, cpSize: 19, reason: "the signed note is for size 20",
		},
		{
			name:   "header origin changed",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, 0, testOrigin, "other.example/log") },
			line:   cpLine10, seq: -1, cpSize: 10, reason: `the signed origin "fedguard.example/FED" is not the export's "other.example/log"`,
		},
		{
			name:   "origin not the expected one",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return l },
			opts:   VerifyOptions{Origin: "other.example/log"},
			line:   1, seq: -1, reason: `the export's origin is "fedguard.example/FED", not "other.example/log"`,
		},
		{
			name:   "header missing",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return del(l, 0) },
			line:   1, seq: -1, reason: "not a header line",
		},
		{
			name: "unknown export format",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return replaceIn(l, 0, ExportFormat, "fedguard-audit-export-v2")
			},
			line: 1, seq: -1, reason: `export format "fedguard-audit-export-v2"`,
		},
		{
			name:   "whitespace in a payload",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, ev(7), `"payload":{`, `"payload":{ `) },
			line:   eventLineNo(7), seq: 7, reason: "not compact JSON",
		},
		{
			name:   "payload escaped differently",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, ev(7), `"attempt"`, `"\u0061ttempt"`) },
			line:   eventLineNo(7), seq: 7, reason: "hash does not match",
		},
		{
			name:   "fields reordered",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, ev(7), `,"round":0,`, `,"round" :0,`) },
			line:   eventLineNo(7), seq: 7, reason: `expected ,"round":`,
		},
		{
			name: "time with an offset",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return replaceIn(l, ev(7), `Z","payload"`, `+00:00","payload"`)
			},
			line: eventLineNo(7), seq: 7, reason: "not in canonical form",
		},
		{
			name:   "actor escaped needlessly",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, ev(7), `"hospital-`, `"hosp\u0069tal-`) },
			line:   eventLineNo(7), seq: 7, reason: "not in canonical form",
		},
		{
			name: "hash in upper case",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				line := bytes.Clone(l[ev(7)])
				i := bytes.Index(line, []byte(`"hash":"`)) + 8
				copy(line[i:i+64], bytes.ToUpper(line[i:i+64]))
				return replace(l, ev(7), line)
			},
			line: eventLineNo(7), seq: 7, reason: "64 lowercase hex digits",
		},
		{
			name:   "seq with a leading zero",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replaceIn(l, ev(7), `"seq":7,`, `"seq":07,`) },
			line:   eventLineNo(7), seq: 7, reason: "not a canonical decimal number",
		},
		{
			name: "garbage line",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return slices.Insert(slices.Clone(l), ev(4), []byte("hello\n"))
			},
			line: eventLineNo(4), seq: 4, reason: "not an event or checkpoint line",
		},
		{
			name:   "empty line",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return slices.Insert(slices.Clone(l), ev(4), []byte("\n")) },
			line:   eventLineNo(4), seq: 4, reason: "not an event or checkpoint line",
		},
		{
			name:   "event after the checkpoints",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return append(slices.Clone(l), l[ev(baseEvents-1)]) },
			line:   cpLine30 + 1, seq: baseEvents, reason: "event line after the checkpoints",
		},
		{
			name:   "second header",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return slices.Insert(slices.Clone(l), 1, l[0]) },
			line:   2, seq: -1, reason: "a second header line",
		},
		{
			name: "last newline cut",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				l = slices.Clone(l)
				l[len(l)-1] = bytes.TrimSuffix(l[len(l)-1], []byte("\n"))
				return l
			},
			line: cpLine30, seq: -1, reason: "no newline",
		},
		{
			name: "line too long",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return slices.Insert(slices.Clone(l), ev(4), append(bytes.Repeat([]byte("x"), MaxLineLen), '\n'))
			},
			line: eventLineNo(4), seq: -1, reason: "longer than",
		},
		{
			name:   "header count of checkpoints wrong",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replace(l, 0, header(baseEvents, 4)) },
			line:   0, seq: -1, reason: "the header says 4 checkpoints, but the export has 3",
		},
		{
			name:   "header count of events too low",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return replace(l, 0, header(baseEvents-1, 3)) },
			line:   0, seq: baseEvents - 1, reason: "the header says 29 events, but the export has 30",
		},
		{
			name:   "empty export",
			mutate: func(_ testing.TB, l [][]byte) [][]byte { return nil },
			line:   0, seq: -1, reason: "empty export",
		},
		{
			name: "checkpoint line with an unknown field",
			mutate: func(_ testing.TB, l [][]byte) [][]byte {
				return replaceIn(l, cpLine10-1, `"size":10,`, `"size":10,"x":1,`)
			},
			line: cpLine10, seq: -1, reason: "malformed checkpoint line",
		},
	}
}

func TestVerifyMutations(t *testing.T) {
	b, verifiers := baseExport(t)
	base := splitLines(b.export())
	if sum, err := Verify(bytes.NewReader(joinLines(base)), VerifyOptions{Verifiers: verifiers}); err != nil || sum.Covered != baseEvents {
		t.Fatalf("Verify(base export) = %+v, %v; want all %d events covered", sum, err, baseEvents)
	}
	for _, m := range mutations() {
		t.Run(m.name, func(t *testing.T) {
			data := joinLines(m.mutate(t, base))
			opts := m.opts
			if opts.Verifiers == nil {
				opts.Verifiers = verifiers
			}
			sum, err := Verify(bytes.NewReader(data), opts)
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("Verify = %+v, %v; want a *VerifyError", sum, err)
			}
			t.Log(err)
			if verr.Line != m.line || verr.Seq != m.seq || verr.CheckpointSize != m.cpSize || !strings.Contains(verr.Reason, m.reason) {
				t.Errorf("Verify = %q\n (line %d, seq %d, checkpoint %d)\nwant line %d, seq %d, checkpoint %d, reason containing %q",
					err, verr.Line, verr.Seq, verr.CheckpointSize, m.line, m.seq, m.cpSize, m.reason)
			}
		})
	}
}

func TestVerifySummary(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "summary")
	b := newExportBuilder(t, testOrigin, signer)
	for i := range 25 {
		b.add(synthEntry(i))
		if i == 4 || i == 19 {
			b.checkpoint()
		}
	}
	sum, err := Verify(bytes.NewReader(b.export()), VerifyOptions{Verifiers: verifiers, Origin: testOrigin})
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Events: 25, Checkpoints: 2, Covered: 20, Uncovered: 5, Origin: testOrigin, Root: b.cps[1].Root}
	if sum != want {
		t.Errorf("Verify = %+v, want %+v", sum, want)
	}
	// One byte at a time, the reader makes no difference.
	sum, err = Verify(iotest.OneByteReader(bytes.NewReader(b.export())), VerifyOptions{Verifiers: verifiers})
	if err != nil || sum != want {
		t.Errorf("Verify(one byte at a time) = %+v, %v; want %+v", sum, err, want)
	}
	// A read error is returned as such, not as a verification failure.
	broken := io.MultiReader(bytes.NewReader(b.export()[:500]), iotest.ErrReader(errors.New("disk on fire")))
	if _, err := Verify(broken, VerifyOptions{Verifiers: verifiers}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Verify(failing reader) = %v, want the read error", err)
	}
	// Without the right key nothing is trusted.
	_, others := randomKey(t, testOrigin)
	var verr *VerifyError
	if _, err := Verify(bytes.NewReader(b.export()), VerifyOptions{Verifiers: others}); !errors.As(err, &verr) || verr.CheckpointSize != 5 {
		t.Errorf("Verify with another key = %v, want an error at checkpoint 5", err)
	}
}

func TestVerifyErrorString(t *testing.T) {
	tests := []struct {
		err  VerifyError
		want string
	}{
		{VerifyError{Line: 58, Seq: 56, Reason: "hash does not match the event's content"}, "audit: line 58, event 56: hash does not match the event's content"},
		{VerifyError{Line: 60, Seq: -1, CheckpointSize: 100, Reason: "r"}, "audit: line 60, checkpoint 100: r"},
		{VerifyError{Line: 60, Seq: 57, CheckpointSize: 100, Reason: "r"}, "audit: line 60, checkpoint 100, event 57: r"},
		{VerifyError{Seq: -1, Reason: "no checkpoint"}, "audit: no checkpoint"},
		{VerifyError{Seq: 0, Reason: "r"}, "audit: event 0: r"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// FuzzVerify feeds Verify mutated exports. It must never panic, and
// whatever it accepts must be byte for byte the export of what it
// reported (so no second spelling passes), with every covered event the
// one the key's holder signed.
func FuzzVerify(f *testing.F) {
	b, verifiers := baseExport(f)
	data := b.export()
	base := splitLines(data)
	f.Add(data)
	// A small export too, where mutations are cheap to find.
	small := newExportBuilder(f, testOrigin, b.signer)
	for i := range 4 {
		small.add(synthEntry(i))
		if i%2 == 1 {
			small.checkpoint()
		}
	}
	f.Add(small.export())
	for _, m := range mutations() {
		if m.name == "line too long" {
			continue // a megabyte seed slows every fuzz run
		}
		f.Add(joinLines(m.mutate(f, base)))
	}
	signed := make(map[uint64]Hash, len(b.events))
	for _, e := range b.events {
		signed[e.Seq] = e.Hash
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var events, cps []byte
		v := &verifier{
			opts:         VerifyOptions{Verifiers: verifiers},
			onEvent:      func(e *Event) { events = appendEventLine(events, e) },
			onCheckpoint: func(c *Checkpoint) { cps = appendCheckpointLine(cps, c) },
		}
		sum, err := v.run(bytes.NewReader(data))
		if err != nil {
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("Verify = %v, want a *VerifyError for in-memory input", err)
			}
			return
		}
		again := appendHeaderLine(nil, sum.Origin, sum.Events, sum.Checkpoints)
		again = append(append(again, events...), cps...)
		if !bytes.Equal(again, data) {
			t.Fatalf("Verify accepted an export that is not the export of what it read:\n got %q\nwant %q", data, again)
		}
		if sum.Covered > uint64(len(signed)) {
			t.Fatalf("Verify accepted %d covered events, more than were signed", sum.Covered)
		}
		for _, line := range splitLines(events)[:sum.Covered] {
			var e Event
			var ok bool
			if _, err := parseEventLine(bytes.TrimSuffix(line, []byte("\n")), &e, &ok); err != nil {
				t.Fatal(err)
			}
			if signed[e.Seq] != e.Hash {
				t.Fatalf("Verify accepted a covered event %d that was not signed", e.Seq)
			}
		}
	})
}

// TestVerifyDatabaseInsteadOfExport: `audit verify` given the audit
// database itself (audit.db, beside the export in the README's commands)
// printed the database's first bytes as a quoted string of escapes. It
// must say what the file is and which command makes an export of it.
func TestVerifyDatabaseInsteadOfExport(t *testing.T) {
	l, path := openTestLog(t, nil)
	if _, err := l.Append(context.Background(), synthEntry(0)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(bytes.NewReader(db), VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), "binary, not an export") || !strings.Contains(err.Error(), "fedguard audit export --db") {
		t.Errorf("Verify(audit.db) = %v, want it to say the file is binary and how to export it", err)
	}
}
