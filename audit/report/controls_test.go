package report

import (
	"os"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/audit"
	"github.com/google/go-cmp/cmp"
)

func TestControls(t *testing.T) {
	l := newReportLog(t)
	l.start()
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 1, audit.AnomalyFlagged{Participant: "lakeview", Kind: "norm", Value: 50, Band: []float64{0.7, 1.4}})
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 1, audit.AnomalyFlagged{Participant: "lakeview", Kind: "drift", Value: 4.2, Band: []float64{0, 3}})
	l.add(audit.KindUpdateRefused, "eastfield", 1, audit.UpdateRefused{Code: "ResourceExhausted", Reason: "update stream stalled"})
	l.add(audit.KindUpdateRefused, "eastfield", 1, audit.UpdateRefused{Code: "InvalidArgument", Reason: "non-finite value"})
	l.add(audit.KindDataValidation, "riverside", 1, audit.DataValidation{Mode: "warn", Training: true, Rows: 10, Columns: 3})
	l.add(audit.KindDataValidation, "westbrook", 1, audit.DataValidation{Mode: "enforce", Training: false, Rows: 10, Columns: 3,
		Findings: []audit.ValidationFinding{{Severity: "error", Rule: "range", Column: "age", Count: 2, Total: 10}}})
	l.add(audit.KindConnectionRefused, "", 0, audit.ConnectionRefused{Reason: "unknown_authority", Suppressed: 4})
	l.add(audit.KindCallRefused, "lakeview", 0, audit.CallRefused{Code: "ResourceExhausted", Reason: "too many calls"})
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 2, audit.AnomalyFlagged{Participant: "lakeview", Kind: "norm", Value: 60, Band: []float64{0.7, 1.4}})
	l.add(audit.KindEventsSuppressed, audit.ActorCoordinator, 0, audit.EventsSuppressed{Participant: "lakeview", Total: 0})
	l.add(audit.KindEventsSuppressed, audit.ActorCoordinator, 0, audit.EventsSuppressed{Participant: "lakeview", Total: 12,
		Kinds: map[string]uint64{audit.KindCallRefused: 12}})

	rep := mustBuild(t, l.events, Options{})
	want := []ControlFinding{
		{Control: "C1", ControlName: "robust aggregation", Technique: "AML.T0020", TechniqueName: "Poison Training Data",
			Kind: audit.KindAnomalyFlagged, Detail: "norm", Actor: "lakeview", Count: 2, FirstSeq: 1, LastSeq: 9},
		{Control: "C3", ControlName: "mutual TLS", Technique: "AML.T0012", TechniqueName: "Valid Accounts",
			Kind: audit.KindConnectionRefused, Detail: "unknown_authority", Count: 5, FirstSeq: 7, LastSeq: 7},
		{Control: "C8", ControlName: "data validation", Technique: "AML.T0059", TechniqueName: "Erode Dataset Integrity",
			Kind: audit.KindDataValidation, Detail: "sat out", Actor: "westbrook", Count: 1, FirstSeq: 6, LastSeq: 6},
		{Control: "C9", ControlName: "anomaly flags", Technique: "AML.T0059", TechniqueName: "Erode Dataset Integrity",
			Kind: audit.KindAnomalyFlagged, Detail: "drift", Actor: "lakeview", Count: 1, FirstSeq: 2, LastSeq: 2},
		{Control: "C11", ControlName: "refusal audit and quota", Technique: "AML.T0046", TechniqueName: "Spamming AI System with Chaff Data",
			Kind: audit.KindEventsSuppressed, Detail: "over the quota", Actor: "lakeview", Count: 12, FirstSeq: 11, LastSeq: 11},
		{Control: "C12", ControlName: "bounded resources", Technique: "AML.T0029", TechniqueName: "Denial of AI Service",
			Kind: audit.KindUpdateRefused, Detail: "ResourceExhausted", Actor: "eastfield", Count: 1, FirstSeq: 3, LastSeq: 3},
		{Control: "C12", ControlName: "bounded resources", Technique: "AML.T0018.000", TechniqueName: "Poison AI Model",
			Kind: audit.KindUpdateRefused, Detail: "InvalidArgument", Actor: "eastfield", Count: 1, FirstSeq: 4, LastSeq: 4},
		{Control: "C12", ControlName: "bounded resources", Technique: "AML.T0029", TechniqueName: "Denial of AI Service",
			Kind: audit.KindCallRefused, Detail: "ResourceExhausted", Actor: "lakeview", Count: 1, FirstSeq: 8, LastSeq: 8},
	}
	if diff := cmp.Diff(want, rep.Controls); diff != "" {
		t.Errorf("Controls mismatch (-want +got):\n%s", diff)
	}
}

// TestControlsMatchThreatModel keeps the report's mapping and
// docs/threat-model.md in agreement: every control a rule names has a row
// in the framework table, and the technique the report links is among
// that row's ATLAS techniques.
func TestControlsMatchThreatModel(t *testing.T) {
	data, err := os.ReadFile("../../docs/threat-model.md")
	if err != nil {
		t.Fatal(err)
	}
	atlas := map[string]string{} // control id -> ATLAS cell of the framework table
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 7 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "C") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimSpace(cells[1]), " ")
		atlas[id] = cells[2]
	}
	if len(atlas) == 0 {
		t.Fatal("no framework rows found in docs/threat-model.md")
	}
	for _, r := range controlRules {
		cell, ok := atlas[r.control]
		switch {
		case !ok:
			t.Errorf("rule for %s names control %s, which docs/threat-model.md's framework table lacks", r.kind, r.control)
		case !strings.Contains(cell, r.technique+" ") && !strings.HasSuffix(strings.TrimSpace(cell), r.technique) && !strings.Contains(cell, r.technique+";"):
			t.Errorf("rule for %s links %s to %s, which docs/threat-model.md's row for %s does not list (%q)", r.kind, r.control, r.technique, r.control, strings.TrimSpace(cell))
		}
	}
}
