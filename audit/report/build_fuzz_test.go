package report_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
)

// maxFuzzEvents bounds the events one fuzz input decodes to.
const maxFuzzEvents = 256

// FuzzBuild reads arbitrary events, one JSON object each, renumbered into
// one contiguous run, as `fedguard audit report` reads them from an audit
// database it was handed (without -key nothing is verified first; with it
// a log that does not verify is still reported on). Build must never
// panic; a log it accepts must write as Markdown and as HTML, and the
// same log must give the same report each time (auditors compare them).
func FuzzBuild(f *testing.F) {
	var seed bytes.Buffer
	enc := json.NewEncoder(&seed)
	for _, ev := range reportEvents() {
		if err := enc.Encode(ev); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(seed.Bytes())
	secure := []audit.Event{
		{Kind: audit.KindRoundOpened, Actor: audit.ActorCoordinator, Round: 1, Payload: json.RawMessage(`{"deadline":"2025-03-01T09:30:00Z","secure":true}`)},
		{Kind: audit.KindCohort, Actor: audit.ActorCoordinator, Round: 1, Payload: json.RawMessage(`{"members":["a","b","c"]}`)},
		{Kind: audit.KindSecureSession, Actor: audit.ActorCoordinator, Round: 1, Payload: mustJSON(f, audit.SecureSession{Bucket: 1,
			Members: []string{"a", "b", "c"}, Survivors: []string{"a", "b"}, Dropped: map[string]string{"c": "MaskedInput: stream ended"}, Weight: 20})},
		{Kind: audit.KindRoundClosed, Actor: audit.ActorCoordinator, Round: 1, Payload: json.RawMessage(`{"participants":["a","b"],"dropped":["c"]}`)},
	}
	seed.Reset()
	for _, ev := range secure {
		if err := enc.Encode(ev); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(seed.Bytes())
	f.Add([]byte(`{"kind":"round_closed","round":7,"payload":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var events []audit.Event
		dec := json.NewDecoder(bytes.NewReader(data))
		for len(events) < maxFuzzEvents {
			var ev audit.Event
			if err := dec.Decode(&ev); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return
			}
			ev.Seq = uint64(len(events))
			events = append(events, ev)
		}
		for _, round := range []uint64{0, 1} {
			rep, err := report.Build(events, report.Options{Round: round})
			if err != nil {
				continue
			}
			md := write(t, rep.WriteMarkdown)
			write(t, rep.WriteHTML)
			again, err := report.Build(events, report.Options{Round: round})
			if err != nil {
				t.Fatalf("Build accepted the log once, then refused it: %v", err)
			}
			if md2 := write(t, again.WriteMarkdown); !bytes.Equal(md, md2) {
				t.Fatalf("the same log reported twice differs:\n%s\n---\n%s", md, md2)
			}
		}
	})
}

func write(t *testing.T, w func(io.Writer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := w(&b); err != nil {
		t.Fatalf("writing a report Build accepted: %v", err)
	}
	return b.Bytes()
}

func mustJSON(tb testing.TB, v any) json.RawMessage {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
