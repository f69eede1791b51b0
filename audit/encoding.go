package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// eventMagic starts every encoded event. It names the encoding's version:
// a different layout gets a different magic, never a reinterpretation.
const eventMagic = "fedguard-audit-event-v1\x00"

// Limits on an event's fields. They bound what one event can cost to
// store, hash and export, and keep every export line under [MaxLineLen].
const (
	// MaxKindLen is the longest event kind, in bytes.
	MaxKindLen = 64
	// MaxActorLen is the longest actor, in bytes.
	MaxActorLen = 256
	// MaxPayloadLen is the longest payload, in bytes of compact JSON.
	MaxPayloadLen = 256 << 10
)

// fixedLen is the length of an encoding without its variable-length bytes.
const fixedLen = len(eventMagic) + 8 + 8 + 8 + 3*4 + sha256.Size

// String returns h as lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// AppendText appends h as 64 lowercase hex digits to b.
func (h Hash) AppendText(b []byte) ([]byte, error) { return hex.AppendEncode(b, h[:]), nil }

// MarshalText returns h as 64 lowercase hex digits, the form in exports
// and proofs.
func (h Hash) MarshalText() ([]byte, error) { return h.AppendText(nil) }

// UnmarshalText parses exactly 64 lowercase hex digits. Upper case is
// refused so that a hash has one spelling, as everything else in an export.
func (h *Hash) UnmarshalText(text []byte) error {
	if !decodeHexHash(h, text) {
		return fmt.Errorf("audit: hash must be 64 lowercase hex digits, got %q", truncate(text, 80))
	}
	return nil
}

// decodeHexHash decodes 64 lowercase hex digits into h.
func decodeHexHash(h *Hash, text []byte) bool {
	if len(text) != 2*len(h) {
		return false
	}
	for i := range h {
		hi, ok1 := unhex(text[2*i])
		lo, ok2 := unhex(text[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		h[i] = hi<<4 | lo
	}
	return true
}

// unhex decodes a lowercase hex digit.
func unhex(c byte) (byte, bool) {
	v := unhexTable[c]
	return v & 0x0f, v != 0
}

// unhexTable maps lowercase hex digits to 0x10|value, anything else to 0.
var unhexTable = func() (t [256]byte) {
	for i, c := range []byte("0123456789abcdef") {
		t[c] = 0x10 | byte(i)
	}
	return t
}()

// AppendBinary appends the canonical encoding of e (see the package
// documentation) to b. The encoding leaves out e.Hash: it is what the hash
// covers. It fails if a field breaks the limits an event must keep.
func (e *Event) AppendBinary(b []byte) ([]byte, error) {
	if err := checkFields(e.Kind, e.Actor, e.Payload); err != nil {
		return b, fmt.Errorf("audit: encode event %d: %w", e.Seq, err)
	}
	ns, err := unixNano(e.Time)
	if err != nil {
		return b, fmt.Errorf("audit: encode event %d: %w", e.Seq, err)
	}
	return appendEncoding(b, e, ns), nil
}

// MarshalBinary returns the canonical encoding of e, without e.Hash.
func (e *Event) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, fixedLen+len(e.Kind)+len(e.Actor)+len(e.Payload)))
}

// appendEncoding appends the encoding of e, whose fields are valid.
func appendEncoding(b []byte, e *Event, ns int64) []byte {
	b = append(b, eventMagic...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
	b = binary.BigEndian.AppendUint64(b, e.Round)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Kind)))
	b = append(b, e.Kind...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Actor)))
	b = append(b, e.Actor...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Payload)))
	b = append(b, e.Payload...)
	return append(b, e.Prev[:]...)
}

// UnmarshalBinary decodes a canonical encoding into e and sets e.Hash to
// its SHA-256. It refuses anything MarshalBinary would not have written,
// so decoding and re-encoding give back the same bytes. e does not alias
// data.
func (e *Event) UnmarshalBinary(data []byte) error {
	ev, err := decodeEvent(data)
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

// decodeEvent decodes and checks an encoded event, computing its hash.
func decodeEvent(data []byte) (Event, error) {
	var e Event
	d := decoder{data: data}
	if len(data) < fixedLen || string(data[:len(eventMagic)]) != eventMagic {
		return e, errors.New("audit: decode event: not a fedguard-audit-event-v1 encoding")
	}
	d.data = data[len(eventMagic):]
	e.Seq = d.uint64()
	ns := int64(d.uint64())
	e.Round = d.uint64()
	kind := d.bytes()
	actor := d.bytes()
	payload := d.bytes()
	prev := d.next(sha256.Size)
	if d.err != nil {
		return e, fmt.Errorf("audit: decode event: %w", d.err)
	}
	if len(d.data) != 0 {
		return e, fmt.Errorf("audit: decode event: %d bytes after the prev hash", len(d.data))
	}
	if err := checkFields(string(kind), string(actor), payload); err != nil {
		return e, fmt.Errorf("audit: decode event %d: %w", e.Seq, err)
	}
	e.Kind = string(kind)
	e.Actor = string(actor)
	e.Time = time.Unix(0, ns).UTC()
	e.Payload = json.RawMessage(append([]byte(nil), payload...))
	copy(e.Prev[:], prev)
	e.Hash = sha256.Sum256(data)
	return e, nil
}

// decoder reads the big-endian fields of an encoding, remembering the
// first short read.
type decoder struct {
	data []byte
	err  error
}

func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.data) < n {
		d.err = errors.New("truncated")
		return nil
	}
	b := d.data[:n]
	d.data = d.data[n:]
	return b
}

func (d *decoder) uint64() uint64 {
	if b := d.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	b := d.next(4)
	if b == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(d.data)) {
		d.err = fmt.Errorf("field of %d bytes with %d left", n, len(d.data))
		return nil
	}
	return d.next(int(n))
}

// unixNano returns t in Unix nanoseconds, failing for times an int64 of
// nanoseconds cannot hold (before 1678 or after 2262).
func unixNano(t time.Time) (int64, error) {
	ns := t.UnixNano()
	if !time.Unix(0, ns).Equal(t) {
		return 0, fmt.Errorf("time %v is outside the years 1678-2262 an event can record", t)
	}
	return ns, nil
}

// checkFields checks the limits every stored event keeps.
func checkFields(kind, actor string, payload []byte) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	if err := checkActor(actor); err != nil {
		return err
	}
	return checkPayload(payload)
}

// checkKind allows 1 to 64 bytes of [a-z_]: kinds are identifiers that
// name a payload type, and need no escaping anywhere.
func checkKind(kind string) error {
	if kind == "" || len(kind) > MaxKindLen {
		return fmt.Errorf("kind must be 1 to %d bytes, got %d", MaxKindLen, len(kind))
	}
	for i := 0; i < len(kind); i++ {
		if c := kind[i]; (c < 'a' || c > 'z') && c != '_' {
			return fmt.Errorf("kind %q: only a-z and _ are allowed", kind)
		}
	}
	return nil
}

// checkActor allows 1 to 256 bytes of UTF-8 without control characters,
// so that an actor prints on one line in any report.
func checkActor(actor string) error {
	if actor == "" || len(actor) > MaxActorLen {
		return fmt.Errorf("actor must be 1 to %d bytes, got %d", MaxActorLen, len(actor))
	}
	if !utf8.ValidString(actor) {
		return fmt.Errorf("actor %q is not valid UTF-8", actor)
	}
	for _, r := range actor {
		if r < 0x20 || r == 0x7f || (0x80 <= r && r < 0xa0) {
			return fmt.Errorf("actor %q contains a control character", actor)
		}
	}
	return nil
}

// checkPayload checks that p is a JSON object of at most MaxPayloadLen
// bytes in the form encoding/json writes: compact, valid UTF-8, with <, >,
// &, U+2028 and U+2029 escaped. That form is a fixed point of json.Marshal
// (of a json.RawMessage), so the payload's bytes, and the event's hash,
// survive any JSON document that embeds the event.
func checkPayload(p []byte) error {
	if len(p) > MaxPayloadLen {
		return fmt.Errorf("payload is %d bytes, the limit is %d", len(p), MaxPayloadLen)
	}
	if len(p) < 2 || p[0] != '{' {
		return errors.New("payload is not a JSON object")
	}
	if !utf8.Valid(p) {
		return errors.New("payload is not valid UTF-8")
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '"':
			// Skip to the string's end, stopping only at bytes that need a look.
			for i++; i < len(p); i++ {
				c := p[i]
				if !stringStop[c] {
					continue
				}
				if c == '"' {
					break
				}
				switch c {
				case '\\':
					i++ // the escaped byte cannot end the string
				case '<', '>', '&':
					return fmt.Errorf("payload has an unescaped %q at byte %d (encode it as encoding/json does)", c, i)
				case 0xe2:
					if i+2 < len(p) && p[i+1] == 0x80 && (p[i+2] == 0xa8 || p[i+2] == 0xa9) {
						return fmt.Errorf("payload has an unescaped U+2028 or U+2029 at byte %d", i)
					}
				}
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return fmt.Errorf("payload is not compact JSON: whitespace at byte %d", i)
		}
	}
	if !json.Valid(p) {
		return errors.New("payload is not valid JSON")
	}
	return nil
}

// stringStop marks the bytes checkPayload must look at inside a string.
var stringStop = [256]bool{'"': true, '\\': true, '<': true, '>': true, '&': true, 0xe2: true}

// marshalPayload turns an Entry's payload into the stored form: nil is {},
// anything else is json.Marshal'ed, which compacts a json.RawMessage and
// escapes it the way checkPayload requires.
func marshalPayload(v any) ([]byte, error) {
	if v == nil {
		return []byte("{}"), nil
	}
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if err := checkPayload(p); err != nil {
		return nil, err
	}
	return p, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
