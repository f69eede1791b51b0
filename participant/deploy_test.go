package participant_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/internal/metricnames"
)

// participantDashboard is the Grafana dashboard over an agent's metrics;
// deploy/grafana/fedguard-dashboard.json, the coordinator's, is checked
// against the coordinator's registry (coordinator's
// TestDeployReferencesExist).
const participantDashboard = "../deploy/grafana/fedguard-participant-dashboard.json"

// TestDashboardsChecked: every Grafana dashboard under deploy/grafana is
// checked against a real registry, the coordinator's or the participant's.
func TestDashboardsChecked(t *testing.T) {
	checked := []string{
		"../deploy/grafana/fedguard-dashboard.json", // coordinator's TestDeployReferencesExist
		participantDashboard,                        // TestDeployReferencesExist below
	}
	files, err := filepath.Glob("../deploy/grafana/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.Contains(checked, f) {
			t.Errorf("%s: no test checks its metric names against a registry (add it to the coordinator's or the participant's TestDeployReferencesExist)", f)
		}
	}
	for _, f := range checked {
		if !slices.Contains(files, f) {
			t.Errorf("%s is missing", f)
		}
	}
}

// TestDeployReferencesExist checks that every fedguard_ metric the
// participant's Grafana dashboard names exists in a real agent's registry,
// and that the dashboard shows every fedguard_ metric the agent exports.
func TestDeployReferencesExist(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	// The agent never runs: its registry exists from New on.
	a, _ := newAgent(t, "127.0.0.1:1", p.clientTLS, newTrainer(), fake.keys())
	exported, err := metricnames.Gather(a.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	if len(exported) < 10 {
		t.Fatalf("registry exports %d fedguard_ metrics, want at least 10: %v", len(exported), exported)
	}

	b, err := os.ReadFile(participantDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", participantDashboard, err)
	}
	if dash.UID != "fedguard-participant" {
		t.Errorf("%s: uid %q, want fedguard-participant (the coordinator's is fedguard-coordinator)", participantDashboard, dash.UID)
	}
	shown := map[string]bool{}
	n := 0
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			n++
			refs := metricnames.Ref.FindAllString(tg.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("%s: a %s panel's query %q names no fedguard_ metric", participantDashboard, panel.Type, tg.Expr)
			}
			for _, ref := range refs {
				if base, ok := exported.Resolve(ref); ok {
					shown[base] = true
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s has no queries", participantDashboard)
	}
	// Every name in the file, the template variables' queries too.
	for _, ref := range metricnames.Ref.FindAllString(string(b), -1) {
		if _, ok := exported.Resolve(ref); !ok {
			t.Errorf("%s names %s, which the participant does not export", participantDashboard, ref)
		}
	}
	for name := range exported {
		if !shown[name] {
			t.Errorf("the participant dashboard has no panel for %s", name)
		}
	}
}
