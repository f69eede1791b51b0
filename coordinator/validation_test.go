package coordinator_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestReportValidation: ReportValidation refuses malformed reports and
// records a valid one, as sent, in a data_validation event under the
// caller's name and the reported round.
func TestReportValidation(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s := start(t, f.cfg)
	ps := f.connect(t, s, abc...)

	pii := &fedguardv1.ValidationFinding{Column: "email", Rule: "pii", Severity: "error", Count: 40, Total: 40}
	idWarn := &fedguardv1.ValidationFinding{Column: "id", Rule: "pii", Severity: "warn"}
	unlisted := &fedguardv1.ValidationFinding{Rule: "unexpected_column", Severity: "error"}
	valid := func() *fedguardv1.ReportValidationRequest {
		return &fedguardv1.ReportValidationRequest{Round: 1, Attempt: 1, Mode: "enforce", Training: false, Rows: 569, Columns: 33,
			Findings: []*fedguardv1.ValidationFinding{idWarn, pii, unlisted}}
	}
	many := make([]*fedguardv1.ValidationFinding, 257)
	for i := range many {
		many[i] = idWarn
	}
	for _, tt := range []struct {
		name   string
		mutate func(*fedguardv1.ReportValidationRequest)
		want   codes.Code
	}{
		{"round 0", func(r *fedguardv1.ReportValidationRequest) { r.Round = 0 }, codes.InvalidArgument},
		{"future round", func(r *fedguardv1.ReportValidationRequest) { r.Round = 2 }, codes.InvalidArgument},
		{"bad mode", func(r *fedguardv1.ReportValidationRequest) { r.Mode = "strict" }, codes.InvalidArgument},
		{"too many rows", func(r *fedguardv1.ReportValidationRequest) { r.Rows = 1 << 40 }, codes.InvalidArgument},
		{"too many columns", func(r *fedguardv1.ReportValidationRequest) { r.Columns = 1 << 20 }, codes.InvalidArgument},
		{"too many findings", func(r *fedguardv1.ReportValidationRequest) { r.Findings, r.Training = many, true }, codes.InvalidArgument},
		{"unknown rule", func(r *fedguardv1.ReportValidationRequest) {
			r.Findings = []*fedguardv1.ValidationFinding{{Column: "x", Rule: "vibes", Severity: "error"}}
		}, codes.InvalidArgument},
		{"bad severity", func(r *fedguardv1.ReportValidationRequest) {
			r.Findings = []*fedguardv1.ValidationFinding{{Column: "x", Rule: "range", Severity: "fatal"}}
		}, codes.InvalidArgument},
		{"count above total", func(r *fedguardv1.ReportValidationRequest) {
			r.Findings = []*fedguardv1.ValidationFinding{{Column: "x", Rule: "range", Severity: "error", Count: 3, Total: 2}}
		}, codes.InvalidArgument},
		{"long column", func(r *fedguardv1.ReportValidationRequest) {
			r.Findings = []*fedguardv1.ValidationFinding{{Column: strings.Repeat("x", 257), Rule: "range", Severity: "error"}}
		}, codes.InvalidArgument},
		{"control char in column", func(r *fedguardv1.ReportValidationRequest) {
			r.Findings = []*fedguardv1.ValidationFinding{{Column: "x\n", Rule: "range", Severity: "error"}}
		}, codes.InvalidArgument},
		{"enforce with errors but training", func(r *fedguardv1.ReportValidationRequest) { r.Training = true }, codes.InvalidArgument},
		{"warn but not training", func(r *fedguardv1.ReportValidationRequest) { r.Mode = "warn" }, codes.InvalidArgument},
		{"valid enforce", func(*fedguardv1.ReportValidationRequest) {}, codes.OK},
		{"valid warn", func(r *fedguardv1.ReportValidationRequest) { r.Mode, r.Training = "warn", true }, codes.OK},
	} {
		req := valid()
		tt.mutate(req)
		_, err := ps[1].svc.ReportValidation(callCtx(t, 5*time.Second), req)
		wantCode(t, "ReportValidation: "+tt.name, err, tt.want)
	}
	s.stop(t)

	l, err := audit.Open(filepath.Join(f.cfg.DataDir, coordinator.AuditFile), audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Actor   string
		Round   uint64
		Payload audit.DataValidation
	}
	var events []got
	err = l.Events(0, func(e audit.Event) error {
		if e.Kind != audit.KindDataValidation {
			return nil
		}
		g := got{Actor: e.Actor, Round: e.Round}
		dec := json.NewDecoder(strings.NewReader(string(e.Payload)))
		dec.DisallowUnknownFields() // the payload holds the report and nothing else
		if err := dec.Decode(&g.Payload); err != nil {
			t.Errorf("data_validation payload %s: %v", e.Payload, err)
		}
		events = append(events, g)
		return nil
	})
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	findings := []audit.ValidationFinding{
		{Column: "id", Rule: "pii", Severity: "warn"},
		{Column: "email", Rule: "pii", Severity: "error", Count: 40, Total: 40},
		{Rule: "unexpected_column", Severity: "error"},
	}
	want := []got{
		{"hospital-b", 1, audit.DataValidation{Attempt: 1, Mode: "enforce", Training: false, Rows: 569, Columns: 33, Findings: findings}},
		{"hospital-b", 1, audit.DataValidation{Attempt: 1, Mode: "warn", Training: true, Rows: 569, Columns: 33, Findings: findings}},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("data_validation events (-want +got):\n%s", diff)
	}
}
