package coordinator

import (
	"testing"

	"github.com/fedguard/fedguard/audit"
)

// TestMetricsKindsFromTable checks that the coordinator's per-kind series
// are the table of event kinds' (audit.Kinds): every kind the coordinator
// writes is counted from zero, every kind under the quota has its
// suppressed series, and no other kind appears, so a new row is all a new
// kind needs to be measured.
func TestMetricsKindsFromTable(t *testing.T) {
	m := newMetrics()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "kind" {
					if got[mf.GetName()] == nil {
						got[mf.GetName()] = map[string]bool{}
					}
					got[mf.GetName()][l.GetValue()] = true
				}
			}
		}
	}
	want := map[string]map[string]bool{"fedguard_audit_events_total": {}, "fedguard_audit_events_suppressed_total": {}}
	for _, k := range audit.Kinds() {
		if k.Writers&audit.WriterCoordinator != 0 {
			want["fedguard_audit_events_total"][k.Name] = true
		}
		if k.Quota {
			want["fedguard_audit_events_suppressed_total"][k.Name] = true
		}
	}
	for name, kinds := range want {
		if len(kinds) == 0 {
			t.Fatalf("the table gives %s no kind", name)
		}
		for k := range kinds {
			if !got[name][k] {
				t.Errorf("%s{kind=%q} is not pre-created", name, k)
			}
		}
		for k := range got[name] {
			if !kinds[k] {
				t.Errorf("%s{kind=%q} is not a kind of the table", name, k)
			}
		}
	}
}
