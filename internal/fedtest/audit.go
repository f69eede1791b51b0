package fedtest

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
)

// AuditEvents returns the events of kind ("": every kind), in order, of the
// audit log of a stopped coordinator configured by cfg, opened read-only
// as an auditor would.
func AuditEvents(t testing.TB, cfg coordinator.Config, kind string) []audit.Event {
	t.Helper()
	l, err := audit.Open(filepath.Join(cfg.DataDir, coordinator.AuditFile), audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("fedtest: open the audit log: %v", err)
	}
	defer l.Close()
	var out []audit.Event
	if err := l.Events(0, func(e audit.Event) error {
		if kind == "" || e.Kind == kind {
			out = append(out, e)
		}
		return nil
	}); err != nil {
		t.Fatalf("fedtest: read the audit log: %v", err)
	}
	return out
}

// Payload decodes the JSON payload of e as a T.
func Payload[T any](t testing.TB, e audit.Event) T {
	t.Helper()
	var p T
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		t.Fatalf("seq %d (%s): %v", e.Seq, e.Kind, err)
	}
	return p
}
