package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

// goldenEvent is the fixed event of testdata/event.golden.
func goldenEvent() Event {
	return Event{
		Seq:     42,
		Kind:    KindRoundClosed,
		Actor:   ActorCoordinator,
		Round:   7,
		Time:    time.Date(2025, 11, 25, 9, 30, 0, 123456789, time.UTC),
		Payload: json.RawMessage(`{"attempt":1,"model_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","participants":["hospital-a","hospital-b"]}`),
		Prev:    sha256.Sum256([]byte("event 41")),
	}
}

// checkGolden fails the test unless got is testdata/name.
//
// Golden files (internal/fedtest/golden) pin the wire formats. Regenerate them only for a reason
// stated in the commit (a new format version), never to make a test pass:
//
//	go test ./audit/ -run 'Golden' -update
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if want := golden.File(t, path, got); !bytes.Equal(got, want) {
		t.Errorf("%s changed: a wire format changed (got %q, want %q); bump its version instead", path, got, want)
	}
}

func TestEventGolden(t *testing.T) {
	e := goldenEvent()
	enc, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "event.golden", []byte(hex.EncodeToString(enc)+"\n"))

	// The golden bytes decode back to the event, with its hash.
	raw, err := os.ReadFile(filepath.Join("testdata", "event.golden"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	checkDecodes(t, "golden", golden, e)
	// Spot-check the layout the package documentation promises.
	if !bytes.HasPrefix(golden, []byte("fedguard-audit-event-v1\x00\x00\x00\x00\x00\x00\x00\x00\x2a")) {
		t.Errorf("encoding does not start with the magic and seq 42 as 8 big-endian bytes: %x", golden[:32])
	}
	if !bytes.HasSuffix(golden, e.Prev[:]) {
		t.Errorf("encoding does not end with prev")
	}
}

func TestCheckpointGolden(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "golden")
	b := newExportBuilder(t, testOrigin, signer)
	for i := 0; i < 5; i++ {
		b.add(synthEntry(i))
	}
	cp := b.checkpoint()
	checkGolden(t, "checkpoint.golden", cp.Note)

	got, err := OpenCheckpoint(cp.Note, verifiers)
	if err != nil {
		t.Fatalf("OpenCheckpoint(golden) = %v", err)
	}
	if got.Origin != testOrigin || got.Size != 5 || got.Root != cp.Root {
		t.Errorf("OpenCheckpoint(golden) = %+v, want origin %q, size 5, root %v", got, testOrigin, cp.Root)
	}
	if want := testOrigin + "\n5\n"; !bytes.HasPrefix(cp.Note, []byte(want)) {
		t.Errorf("checkpoint note %q does not start with %q", cp.Note, want)
	}
}

func TestHashText(t *testing.T) {
	h := Hash(sha256.Sum256([]byte("x")))
	text, err := h.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(h[:]); string(text) != want || h.String() != want {
		t.Errorf("MarshalText = %s, String = %s, want %s", text, h, want)
	}
	var back Hash
	if err := back.UnmarshalText(text); err != nil || back != h {
		t.Errorf("UnmarshalText(%s) = %v, %v; want %v", text, back, err, h)
	}
	for _, bad := range []string{
		"",
		strings.ToUpper(string(text)),
		string(text[:62]),
		string(text) + "00",
		"g" + string(text[1:]),
		" " + string(text[1:]),
	} {
		var h Hash
		if err := h.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) = nil, want an error", bad)
		}
	}
}

func TestEventFieldLimits(t *testing.T) {
	bigPayload := `{"x":"` + strings.Repeat("a", MaxPayloadLen-8) + `"}`
	tests := []struct {
		name    string
		mutate  func(*Event)
		wantErr string // "" for valid
	}{
		{"valid", func(*Event) {}, ""},
		{"kind of 64 bytes", func(e *Event) { e.Kind = strings.Repeat("k", MaxKindLen) }, ""},
		{"kind of 65 bytes", func(e *Event) { e.Kind = strings.Repeat("k", MaxKindLen+1) }, "kind must be"},
		{"empty kind", func(e *Event) { e.Kind = "" }, "kind must be"},
		{"kind with a digit", func(e *Event) { e.Kind = "round2" }, "only a-z and _"},
		{"kind with upper case", func(e *Event) { e.Kind = "Round" }, "only a-z and _"},
		{"actor of 256 bytes", func(e *Event) { e.Actor = strings.Repeat("é", MaxActorLen/2) }, ""},
		{"actor of 257 bytes", func(e *Event) { e.Actor = strings.Repeat("a", MaxActorLen+1) }, "actor must be"},
		{"empty actor", func(e *Event) { e.Actor = "" }, "actor must be"},
		{"actor with a newline", func(e *Event) { e.Actor = "a\nb" }, "control character"},
		{"actor with invalid UTF-8", func(e *Event) { e.Actor = "a\xffb" }, "not valid UTF-8"},
		{"payload at the limit", func(e *Event) { e.Payload = json.RawMessage(bigPayload) }, ""},
		{"payload over the limit", func(e *Event) { e.Payload = json.RawMessage(`{"x":"` + strings.Repeat("a", MaxPayloadLen) + `"}`) }, "limit"},
		{"array payload", func(e *Event) { e.Payload = json.RawMessage(`[1]`) }, "not a JSON object"},
		{"empty payload", func(e *Event) { e.Payload = nil }, "not a JSON object"},
		{"invalid JSON payload", func(e *Event) { e.Payload = json.RawMessage(`{"a":}`) }, "not valid JSON"},
		{"trailing data in payload", func(e *Event) { e.Payload = json.RawMessage(`{}{}`) }, "not valid JSON"},
		{"payload with whitespace", func(e *Event) { e.Payload = json.RawMessage(`{"a": 1}`) }, "not compact"},
		{"payload with unescaped <", func(e *Event) { e.Payload = json.RawMessage(`{"a":"<b>"}`) }, "unescaped"},
		{"payload with unescaped U+2028", func(e *Event) { e.Payload = json.RawMessage("{\"a\":\"\u2028\"}") }, "U+2028"},
		{"payload with invalid UTF-8", func(e *Event) { e.Payload = json.RawMessage("{\"a\":\"\xff\"}") }, "UTF-8"},
		{"time before 1678", func(e *Event) { e.Time = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside the years"},
		{"time after 2262", func(e *Event) { e.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside the years"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := goldenEvent()
			tt.mutate(&e)
			enc, err := e.MarshalBinary()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("MarshalBinary = %v, want success", err)
				}
				checkDecodes(t, "MarshalBinary", enc, e)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("MarshalBinary = %v, want an error containing %q", err, tt.wantErr)
			}
			// The decoder applies the same limits to bytes it is handed.
			if e.Time.Year() > 1700 && e.Time.Year() < 2200 {
				ns := e.Time.UnixNano()
				if err := new(Event).UnmarshalBinary(appendEncoding(nil, &e, ns)); err == nil {
					t.Errorf("UnmarshalBinary accepted an encoding of an invalid event")
				}
			}
		})
	}
}

func TestUnmarshalBinaryRejects(t *testing.T) {
	e := goldenEvent()
	enc, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"other magic", append([]byte("fedguard-audit-event-v2\x00"), enc[24:]...)},
		{"truncated", enc[:len(enc)-1]},
		{"trailing byte", append(bytes.Clone(enc), 0)},
		{"kind length too large", func() []byte {
			b := bytes.Clone(enc)
			b[24+24] = 0xff // first byte of the kind's length
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := new(Event).UnmarshalBinary(tt.data); err == nil {
				t.Errorf("UnmarshalBinary(%q) = nil, want an error", truncate(tt.data, 40))
			}
		})
	}
}

func TestMarshalPayload(t *testing.T) {
	var nilPtr *UpdateRefused
	tests := []struct {
		name    string
		payload any
		want    string
		wantErr string
	}{
		{"nil is an empty object", nil, `{}`, ""},
		{"struct", CoordinatorStopped{Reason: "done"}, `{"reason":"done"}`, ""},
		{"raw message is compacted", json.RawMessage("{ \"a\" : [1, 2] }\n"), `{"a":[1,2]}`, ""},
		{"HTML is escaped", CoordinatorStopped{Reason: "<a&b>"}, `{"reason":"\u003ca\u0026b\u003e"}`, ""},
		{"raw HTML is escaped", json.RawMessage(`{"r":"<"}`), `{"r":"\u003c"}`, ""},
		{"map", map[string]int{"b": 2, "a": 1}, `{"a":1,"b":2}`, ""},
		{"array", []int{1}, "", "not a JSON object"},
		{"string", "x", "", "not a JSON object"},
		{"nil pointer", nilPtr, "", "not a JSON object"},
		{"bytes become a string", []byte("{}"), "", "not a JSON object"},
		{"invalid raw message", json.RawMessage(`{`), "", "payload"},
		{"raw invalid UTF-8", json.RawMessage("{\"a\":\"\xff\"}"), "", "UTF-8"},
		{"too large", map[string]string{"a": strings.Repeat("x", MaxPayloadLen)}, "", "limit"},
		{"unmarshallable", map[string]any{"f": func() {}}, "", "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := marshalPayload(tt.payload)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("marshalPayload(%v) = %s, %v; want an error containing %q", tt.payload, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("marshalPayload(%v) = %s, %v; want %s", tt.payload, got, err, tt.want)
			}
			// The stored form is a fixed point of json.Marshal, so that
			// embedding an event in other JSON keeps its hash.
			again, err := json.Marshal(json.RawMessage(got))
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("json.Marshal(%s) = %s, %v; want it unchanged", got, again, err)
			}
		})
	}
}

// TestAppendJSONString checks the export's string escaping against
// encoding/json, which it promises to match.
func TestAppendJSONString(t *testing.T) {
	cases := []string{"", "plain", `quote " backslash \`, "\x00\x01\b\f\n\r\t\x1f\x7f", "<a href='x'>&amp;</a>", "\u2028\u2029", "é—🙂", "\ufffd"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		rs := make([]rune, r.IntN(12))
		for i := range rs {
			switch r.IntN(4) {
			case 0:
				rs[i] = rune(r.IntN(0x80))
			case 1:
				rs[i] = rune(0x2020 + r.IntN(16))
			default:
				rs[i] = rune(r.IntN(0x10ffff))
			}
		}
		cases = append(cases, string(rs))
	}
	for _, s := range cases {
		checkAppendJSONString(t, s)
	}
}

// checkDecodes checks that enc (named what in errors) decodes to want,
// with the hash of enc.
func checkDecodes(t *testing.T, what string, enc []byte, want Event) {
	t.Helper()
	var got Event
	if err := got.UnmarshalBinary(enc); err != nil {
		t.Fatalf("UnmarshalBinary(%s) = %v", what, err)
	}
	want.Hash = sha256.Sum256(enc)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UnmarshalBinary(%s) mismatch (-want +got):\n%s", what, diff)
	}
}

// checkAppendJSONString checks that appendJSONString encodes s as
// encoding/json does.
func checkAppendJSONString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
		t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "<&>", "\u2028", "\x00\x1f", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(checkAppendJSONString)
}

// FuzzDecodeEvent checks that the decoder never panics and accepts only
// canonical encodings: whatever it accepts re-encodes to the same bytes,
// with the hash of those bytes.
func FuzzDecodeEvent(f *testing.F) {
	e := goldenEvent()
	enc, err := e.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(enc[:len(enc)-1])
	f.Add(append(bytes.Clone(enc), 0))
	e.Payload = json.RawMessage(`{}`)
	e.Actor = "hospital-\u00e9"
	if enc2, err := e.MarshalBinary(); err == nil {
		f.Add(enc2)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Event
		if err := e.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded event = %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decode then encode changed the bytes:\n in  %x\n out %x", data, again)
		}
		if e.Hash != sha256.Sum256(data) {
			t.Fatalf("decoded hash is not the SHA-256 of the encoding")
		}
		if !utf8.ValidString(e.Actor) {
			t.Fatalf("decoded an invalid actor %q", e.Actor)
		}
	})
}
