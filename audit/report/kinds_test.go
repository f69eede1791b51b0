package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
)

// TestNewKindIsOneRow shows that a kind the report has never heard of is
// reported from its row of the table alone: with the row, its events are
// in the timeline, rendered by the row, in both output formats; without
// it, they are skipped as a newer log's.
func TestNewKindIsOneRow(t *testing.T) {
	type ModelExported struct {
		Path string `json:"path"`
	}
	row := audit.KindSpec{
		Name: "model_exported", Payload: reflect.TypeFor[ModelExported](), Writers: audit.WriterCoordinator,
		Section: audit.SectionTimeline,
		Detail:  func(_ audit.Event, p any) string { return "model exported to " + p.(ModelExported).Path },
	}
	payload, err := json.Marshal(ModelExported{Path: "model-round-3.bin"})
	if err != nil {
		t.Fatal(err)
	}
	events := []audit.Event{
		{Seq: 0, Kind: audit.KindCoordinatorStopped, Actor: audit.ActorCoordinator, Time: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC), Payload: []byte(`{"reason":"done"}`)},
		{Seq: 1, Kind: row.Name, Actor: audit.ActorCoordinator, Time: time.Date(2025, 3, 1, 9, 1, 0, 0, time.UTC), Payload: payload},
	}

	rep := mustBuild(t, events, Options{})
	if len(rep.Timeline) != 1 {
		t.Fatalf("without the row: timeline %+v, want the stop alone", rep.Timeline)
	}

	saved := lookupKind
	t.Cleanup(func() { lookupKind = saved })
	lookupKind = func(name string) (audit.KindSpec, bool) {
		if name == row.Name {
			return row, true
		}
		return saved(name)
	}
	rep = mustBuild(t, events, Options{})
	want := TimelineEntry{Seq: 1, Time: events[1].Time, Kind: row.Name, Actor: audit.ActorCoordinator, Detail: "model exported to model-round-3.bin"}
	if len(rep.Timeline) != 2 || rep.Timeline[1] != want {
		t.Fatalf("with the row: timeline %+v, want %+v last", rep.Timeline, want)
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"markdown": func(b *bytes.Buffer) error { return rep.WriteMarkdown(b) },
		"html":     func(b *bytes.Buffer) error { return rep.WriteHTML(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "model exported to model-round-3.bin") {
			t.Errorf("the %s report does not show the new kind's line", name)
		}
	}

	// A payload of the wrong shape fails as any known kind's does.
	events[1].Payload = []byte(`{"path":3}`)
	if _, err := Build(events, Options{}); err == nil || !strings.Contains(err.Error(), "seq 1 (model_exported): decode payload") {
		t.Errorf("Build with a bad payload of the new kind: %v, want a decode error naming seq 1", err)
	}
}
