package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fedguard/fedguard/internal/strictjson"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Proof shows that one event is in the log a signed checkpoint vouches
// for: an RFC 6962 inclusion proof of the event's leaf in the checkpoint's
// tree. It carries everything needed to check it except the public key.
//
// Its JSON form is
//
//	{"event":{…},"index":N,"proof":["<base64>",…],"checkpoint":"<signed note>"}
//
// where the event is in Event's JSON form (hashes lowercase hex, time RFC
// 3339) and the proof's hashes are base64, as tlog.Hash marshals them and
// as the checkpoint's root is written.
type Proof struct {
	Event Event `json:"event"`
	// Index is the event's leaf index, its sequence number.
	Index uint64           `json:"index"`
	Proof tlog.RecordProof `json:"proof"`
	// Checkpoint is the signed checkpoint note the proof leads to.
	Checkpoint string `json:"checkpoint"`
}

// Prove returns the proof that event seq is in the tree of the latest
// checkpoint. An event after that checkpoint gives an error wrapping
// ErrNotCovered.
func (l *Log) Prove(seq uint64) (Proof, error) {
	if l.isClosed() {
		return Proof{}, ErrClosed
	}
	p, err := l.prove(seq)
	if errors.Is(err, ErrClosed) {
		return Proof{}, ErrClosed
	}
	if errors.Is(err, ErrNotCovered) {
		return Proof{}, err
	}
	if err != nil {
		return Proof{}, fmt.Errorf("audit: prove event %d: %w", seq, err)
	}
	return p, nil
}

// VerifyProof checks a Proof in its JSON form: that the event's hash is
// the SHA-256 of its content, that the checkpoint is signed by a key in
// verifiers named after its origin, and that the proof leads from the
// event's leaf to the checkpoint's root. It returns the event and the
// checkpoint. Insignificant whitespace in the payload (a re-indented
// proof) is ignored; any other change to the event is not.
func VerifyProof(data []byte, verifiers note.Verifiers) (Event, Checkpoint, error) {
	var p Proof
	if err := strictjson.Unmarshal(data, &p); errors.Is(err, strictjson.ErrTrailing) {
		return Event{}, Checkpoint{}, errors.New("audit: verify proof: data after the proof")
	} else if err != nil {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: %w", err)
	}
	ev := p.Event
	if p.Index != ev.Seq {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: index %d is not the event's sequence number %d", p.Index, ev.Seq)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, ev.Payload); err != nil {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: event %d: payload: %w", ev.Seq, err)
	}
	ev.Payload = compact.Bytes()
	ev.Time = ev.Time.UTC()
	enc, err := ev.MarshalBinary()
	if err != nil {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: %w", err)
	}
	if Hash(sha256.Sum256(enc)) != ev.Hash {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: event %d: hash does not match the event's content", ev.Seq)
	}
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), verifiers)
	if err != nil {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: checkpoint: %w", err)
	}
	if p.Index >= cp.Size {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: event %d is not in checkpoint %d", p.Index, cp.Size)
	}
	if err := tlog.CheckRecord(p.Proof, int64(cp.Size), cp.Root, int64(p.Index), tlog.RecordHash(enc)); err != nil {
		return Event{}, Checkpoint{}, fmt.Errorf("audit: verify proof: event %d is not proved in checkpoint %d: %w", p.Index, cp.Size, err)
	}
	return ev, cp, nil
}

func (l *Log) prove(seq uint64) (Proof, error) {
	cp, ok, err := l.latestCheckpoint()
	if err != nil {
		return Proof{}, err
	}
	if !ok {
		return Proof{}, fmt.Errorf("%w: event %d: the log has no checkpoint yet", ErrNotCovered, seq)
	}
	if size := l.Size(); seq >= size && size > 0 {
		return Proof{}, fmt.Errorf("%w: event %d is not in the log, which holds events 0 to %d", ErrNotCovered, seq, size-1)
	}
	if seq >= cp.Size {
		return Proof{}, fmt.Errorf("%w: event %d is after the latest checkpoint, of size %d", ErrNotCovered, seq, cp.Size)
	}
	encs, err := l.store.ReadEvents(seq, 1, 0)
	if err == nil && len(encs) == 0 {
		err = corruptf("event %d is missing", seq)
	}
	if err != nil {
		return Proof{}, err
	}
	v := encs[0]
	ev, err := decodeEvent(v)
	if err != nil {
		return Proof{}, corruptf("event %d: %v", seq, err)
	}
	proof, err := tlog.ProveRecord(int64(cp.Size), int64(seq), l.store)
	if err != nil {
		return Proof{}, err
	}
	// Hand out only proofs that check: a damaged tree must not make a
	// proof an auditor would reject as a forgery.
	if err := tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(seq), tlog.RecordHash(v)); err != nil {
		return Proof{}, corruptf("the stored tree does not prove event %d in checkpoint %d: %v", seq, cp.Size, err)
	}
	return Proof{Event: ev, Index: seq, Proof: proof, Checkpoint: string(cp.Note)}, nil
}
