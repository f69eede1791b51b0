package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TestProveEvery proves every event of a small log, of a size that is not
// a power of two, and checks each proof offline.
func TestProveEvery(t *testing.T) {
	const n = 37
	l, verifiers, events, cp, proofs := provedLog(t, n)
	for seq, data := range proofs {
		ev, gotCP, err := VerifyProof(data, verifiers)
		if err != nil {
			t.Fatalf("VerifyProof(Prove(%d)) = %v", seq, err)
		}
		if diff := cmp.Diff(events[seq], ev); diff != "" {
			t.Errorf("VerifyProof(Prove(%d)) event mismatch (-want +got):\n%s", seq, diff)
		}
		if gotCP.Size != n || gotCP.Root != cp.Root {
			t.Errorf("VerifyProof(Prove(%d)) checkpoint = size %d root %v, want size %d root %v", seq, gotCP.Size, gotCP.Root, n, cp.Root)
		}
	}

	// Events after the latest checkpoint cannot be proved yet.
	if _, err := l.Append(context.Background(), synthEntry(n)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prove(n); !errors.Is(err, ErrNotCovered) {
		t.Errorf("Prove(%d) beyond the checkpoint = %v, want ErrNotCovered", n, err)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prove(n); err != nil {
		t.Errorf("Prove(%d) after a new checkpoint = %v", n, err)
	}
	// An event the log does not hold is named as such, not as one a later
	// checkpoint will cover (`audit prove --seq 9999` said "after the
	// latest checkpoint").
	if _, err := l.Prove(9999); !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), fmt.Sprintf("event 9999 is not in the log, which holds events 0 to %d", n)) {
		t.Errorf("Prove(9999) = %v, want ErrNotCovered saying the log holds events 0 to %d", err, n)
	}
}

func TestProveNoCheckpoint(t *testing.T) {
	l, _ := openTestLog(t, nil)
	if _, err := l.Append(context.Background(), synthEntry(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Prove(0); !errors.Is(err, ErrNotCovered) || !strings.Contains(err.Error(), "no checkpoint yet") {
		t.Errorf("Prove without a checkpoint = %v, want ErrNotCovered saying there is none", err)
	}
}

// TestVerifyProofTampered checks that a proof does not survive any change
// to its event, its path or its checkpoint, and survives re-indentation.
func TestVerifyProofTampered(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "proof")
	other, _ := testKey(t, testOrigin, "mallory")
	l, _ := openTestLog(t, signer)
	appendSynth(t, l, 12)
	mustCheckpoint(t, l)
	p, err := l.Prove(5)
	if err != nil {
		t.Fatal(err)
	}
	rehash := func(p *Proof) {
		enc, err := p.Event.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		p.Event.Hash = sha256.Sum256(enc)
	}
	tests := []struct {
		name    string
		mutate  func(p *Proof) []byte
		wantErr string // "" if the proof must still verify
	}{
		{"untouched", func(p *Proof) []byte { return marshal(t, p) }, ""},
		{"re-indented", func(p *Proof) []byte {
			var buf bytes.Buffer
			if err := json.Indent(&buf, marshal(t, p), "", "  "); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}, ""},
		{"payload edited", func(p *Proof) []byte {
			p.Event.Payload = flipPayloadByte(p.Event.Payload)
			return marshal(t, p)
		}, "hash does not match"},
		{"payload edited and re-hashed", func(p *Proof) []byte {
			p.Event.Payload = flipPayloadByte(p.Event.Payload)
			rehash(p)
			return marshal(t, p)
		}, "not proved in checkpoint 12"},
		{"another event's seq", func(p *Proof) []byte {
			p.Event.Seq, p.Index = 6, 6
			rehash(p)
			return marshal(t, p)
		}, "not proved"},
		{"index not the seq", func(p *Proof) []byte { p.Index = 4; return marshal(t, p) }, "index 4 is not the event's sequence number 5"},
		{"proof hash flipped", func(p *Proof) []byte {
			p.Proof = append(tlog.RecordProof(nil), p.Proof...)
			p.Proof[1][0] ^= 1
			return marshal(t, p)
		}, "not proved"},
		{"proof hash dropped", func(p *Proof) []byte { p.Proof = p.Proof[:len(p.Proof)-1]; return marshal(t, p) }, "not proved"},
		{"checkpoint re-signed by another key", func(p *Proof) []byte {
			p.Checkpoint = string(resignNote(t, p.Checkpoint, other))
			return marshal(t, p)
		}, "not signed by a trusted key"},
		{"checkpoint of another tree, signed by the right key", func(p *Proof) []byte {
			cp, err := signCheckpoint(signer, testOrigin, 12, tlog.Hash{1})
			if err != nil {
				t.Fatal(err)
			}
			p.Checkpoint = string(cp.Note)
			return marshal(t, p)
		}, "not proved"},
		{"unknown field", func(p *Proof) []byte {
			return bytes.Replace(marshal(t, p), []byte(`{"event"`), []byte(`{"x":1,"event"`), 1)
		}, "unknown field"},
		{"trailing data", func(p *Proof) []byte { return append(marshal(t, p), "{}"...) }, "data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := p
			q.Event.Payload = bytes.Clone(p.Event.Payload)
			_, _, err := VerifyProof(tt.mutate(&q), verifiers)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyProof = %v, want success", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifyProof = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// resignNote replaces a signed note's signatures by signer's.
func resignNote(t *testing.T, msg string, signer note.Signer) []byte {
	t.Helper()
	line := appendCheckpointLine(nil, &Checkpoint{Size: 1, Note: []byte(msg)})
	var cl checkpointLine
	if err := json.Unmarshal(resign(t, line, signer), &cl); err != nil {
		t.Fatal(err)
	}
	return []byte(cl.Note)
}

// FuzzVerifyProof feeds VerifyProof mutated proofs. It must never panic,
// and whatever it accepts must be an event the log's key holder signed
// (same sequence number and hash) under a checkpoint of that log.
func FuzzVerifyProof(f *testing.F) {
	const n = 5
	_, verifiers, events, cp, proofs := provedLog(f, n)
	for _, data := range proofs {
		f.Add(data)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"event":null,"proof":[],"checkpoint":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, got, err := VerifyProof(data, verifiers)
		if err != nil {
			return
		}
		if ev.Seq >= n || ev.Hash != events[ev.Seq].Hash {
			t.Fatalf("VerifyProof accepted event %d with hash %v, not one the log signed", ev.Seq, ev.Hash)
		}
		if got.Size != cp.Size || got.Root != cp.Root {
			t.Fatalf("VerifyProof accepted checkpoint size %d root %v, the log's is size %d root %v", got.Size, got.Root, cp.Size, cp.Root)
		}
	})
}

// provedLog appends n synthetic events to a new log, signs a checkpoint of
// them and returns the log, its verifiers, the events, the checkpoint and
// each event's proof in its JSON form.
func provedLog(tb testing.TB, n int) (*Log, note.Verifiers, []Event, Checkpoint, [][]byte) {
	tb.Helper()
	signer, verifiers := randomKey(tb, testOrigin)
	l, _ := openTestLog(tb, signer)
	var events []Event
	for i := range n {
		evs, err := l.Append(context.Background(), synthEntry(i))
		if err != nil {
			tb.Fatal(err)
		}
		events = append(events, evs...)
	}
	cp, err := l.Checkpoint()
	if err != nil {
		tb.Fatal(err)
	}
	var proofs [][]byte
	for seq := range uint64(n) {
		p, err := l.Prove(seq)
		if err != nil {
			tb.Fatalf("Prove(%d) = %v", seq, err)
		}
		data, err := json.Marshal(p)
		if err != nil {
			tb.Fatal(err)
		}
		proofs = append(proofs, data)
	}
	return l, verifiers, events, cp, proofs
}
