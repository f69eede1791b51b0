package coordinator

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/audit"
)

// TestEventQuotaWindows: each identity has its own window; counts beyond
// the limit come out once, when the window ends (due without all) or at
// a stop (due with all), never twice, and a new window starts afresh.
func TestEventQuotaWindows(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var q eventQuota
	for i := range AuditEventsPerMinute + 5 {
		if got, want := q.take("a", audit.KindDataValidation, t0.Add(time.Duration(i)*time.Millisecond)), i < AuditEventsPerMinute; got != want {
			t.Fatalf("take #%d = %t, want %t", i, got, want)
		}
	}
	q.suppress("a", audit.KindCallRefused, t0.Add(time.Second))
	if !q.take("b", audit.KindDataValidation, t0.Add(time.Second)) {
		t.Fatal("b's first event refused after a's flood")
	}
	if got := q.due(t0.Add(59*time.Second), false); len(got) != 0 {
		t.Errorf("due before the window ended = %+v", got)
	}
	want := []audit.EventsSuppressed{{
		Participant: "a", Kinds: map[string]uint64{audit.KindDataValidation: 5, audit.KindCallRefused: 1}, Total: 6,
		Since: "2026-01-01T00:00:00Z", Until: "2026-01-01T00:01:00Z",
	}}
	if diff := cmp.Diff(want, q.due(t0.Add(61*time.Second), false)); diff != "" {
		t.Errorf("due after the window (-want +got):\n%s", diff)
	}
	if got := q.due(t0.Add(62*time.Second), true); len(got) != 0 {
		t.Errorf("due again = %+v, want nothing (already written)", got)
	}
	// A window that ends while its identity keeps calling is kept for the
	// next write, not merged into the new one.
	t1 := t0.Add(2 * time.Minute)
	for i := range AuditEventsPerMinute + 2 {
		q.take("a", audit.KindUpdateRefused, t1.Add(time.Duration(i)*time.Millisecond))
	}
	if !q.take("a", audit.KindUpdateRefused, t1.Add(time.Minute)) {
		t.Error("first event of a new window refused")
	}
	q.take("a", audit.KindUpdateRefused, t1.Add(time.Minute+time.Second)) // within the new quota
	got := q.due(t1.Add(time.Minute+2*time.Second), true)
	if len(got) != 1 || got[0].Total != 2 || got[0].Until != "2026-01-01T00:03:00Z" {
		t.Errorf("at stop = %+v, want the ended window's 2", got)
	}
}

// TestEventQuotaKeepsOneSummaryPerIdentity: windows that end while nothing
// is written (a paused coordinator) merge into one summary per identity.
func TestEventQuotaKeepsOneSummaryPerIdentity(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var q eventQuota
	for m := range 10 {
		q.suppress("a", audit.KindCallRefused, t0.Add(time.Duration(m)*time.Minute))
		q.suppress("b", audit.KindCallRefused, t0.Add(time.Duration(m)*time.Minute))
	}
	if len(q.ended) != 2 {
		t.Fatalf("%d summaries kept after 10 windows of 2 identities, want 2", len(q.ended))
	}
	got := q.due(t0.Add(20*time.Minute), true)
	if len(got) != 2 || got[0].Total != 10 || got[1].Total != 10 || got[0].Since != "2026-01-01T00:00:00Z" || got[0].Until != "2026-01-01T00:10:00Z" {
		t.Errorf("due = %+v, want a and b with 10 each over 10 minutes", got)
	}
}

// TestSuppressedWrittenWhenWindowEnds: the count of refusals beyond the
// quota is written once the window ends, by the periodic flush, with no
// later refusal to carry it (the old connection-refusal limit put it on
// the next refusal's event, so a quiet end or a stop lost it).
func TestSuppressedWrittenWhenWindowEnds(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{
		Federation: "quota", DataDir: t.TempDir(), CACert: "ca.crt", Cert: "c.crt", Key: "c.key",
		Enrolled: []string{"hospital-a", "hospital-b"},
		Model:    ModelConfig{Kind: "logreg", Features: []string{"f1"}, Label: "y", Classes: []string{"B", "M"}},
	}
	c, err := New(cfg, WithInit(), WithLogger(slog.New(slog.DiscardHandler)), func(o *options) { o.now = func() time.Time { return clock } })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for range AuditEventsPerMinute + 5 {
		c.refusal(ctx, "hospital-a", audit.Entry{Kind: audit.KindUpdateRefused, Actor: "hospital-a", Round: 1,
			Payload: audit.UpdateRefused{Code: "FailedPrecondition", Reason: "round 1 is not open"}}, "update refused")
	}
	count := func() (refused, summaries int, last audit.EventsSuppressed) {
		t.Helper()
		if err := c.audit.Events(0, func(e audit.Event) error {
			switch e.Kind {
			case audit.KindUpdateRefused:
				refused++
			case audit.KindEventsSuppressed:
				summaries++
				return json.Unmarshal(e.Payload, &last)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return refused, summaries, last
	}
	clock = clock.Add(30 * time.Second)
	if err := c.flushSuppressed(ctx, false); err != nil {
		t.Fatal(err)
	}
	if r, s, _ := count(); r != AuditEventsPerMinute || s != 0 {
		t.Fatalf("within the window: %d update_refused, %d events_suppressed; want %d and 0", r, s, AuditEventsPerMinute)
	}
	clock = clock.Add(31 * time.Second)
	if err := c.flushSuppressed(ctx, false); err != nil {
		t.Fatal(err)
	}
	r, s, last := count()
	if r != AuditEventsPerMinute || s != 1 || last.Participant != "hospital-a" || last.Kinds[audit.KindUpdateRefused] != 5 {
		t.Errorf("after the window: %d update_refused, %d events_suppressed (%+v); want %d and one counting 5", r, s, last, AuditEventsPerMinute)
	}
}
