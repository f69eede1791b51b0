package participant_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// validationFiles writes the expectations proposed from testdata/wdbc60.csv
// (id ignored) and a copy of that file with an e-mail column added: the
// federation's features are intact, so the trainer would happily use it.
func validationFiles(t *testing.T) (expect, withEmail string) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := validation.Propose(f, "diagnosis", validation.IgnoreColumns("id"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	expect = filepath.Join(dir, "expect.json")
	if err := os.WriteFile(expect, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		if i == 0 {
			out.WriteString(sc.Text() + ",email\n")
		} else {
			out.WriteString(sc.Text() + ",patient" + strings.Repeat("x", i%7) + "@example.org\n")
		}
	}
	withEmail = filepath.Join(dir, "email.csv")
	if err := os.WriteFile(withEmail, []byte(out.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return expect, withEmail
}

// TestDataValidation: before every round the agent checks its data file; in
// warn mode it reports and trains, in enforce mode it reports and sits out
// the rounds whose data has errors. Reports carry counts only (and, when
// the agent trains, the training rows' feature aggregates for drift
// monitoring), and the name of a column the expectations do not list stays
// at the hospital.
func TestDataValidation(t *testing.T) {
	t.Parallel()
	expect, withEmail := validationFiles(t)
	idWarn := &fedguardv1.ValidationFinding{Column: "id", Rule: "pii", Severity: "warn"}
	emailFindings := []*fedguardv1.ValidationFinding{
		{Rule: "unexpected_column", Severity: "error"},
		{Rule: "pii", Severity: "error", Count: 60, Total: 60},
		idWarn,
	}
	tests := []struct {
		name        string
		mode        string
		data        string // "" is the clean file
		wantSubmits int
		wantReports []*fedguardv1.ReportValidationRequest
	}{
		{"clean, enforce", participant.ValidationEnforce, "", 2, []*fedguardv1.ReportValidationRequest{
			{Round: 1, Attempt: 1, Mode: "enforce", Training: true, Rows: 60, Columns: 32, Findings: []*fedguardv1.ValidationFinding{idWarn}},
			{Round: 2, Attempt: 1, Mode: "enforce", Training: true, Rows: 60, Columns: 32, Findings: []*fedguardv1.ValidationFinding{idWarn}},
		}},
		{"e-mail column, warn (the default)", "", withEmail, 2, []*fedguardv1.ReportValidationRequest{
			{Round: 1, Attempt: 1, Mode: "warn", Training: true, Rows: 60, Columns: 33, Findings: emailFindings},
			{Round: 2, Attempt: 1, Mode: "warn", Training: true, Rows: 60, Columns: 33, Findings: emailFindings},
		}},
		{"e-mail column, enforce", participant.ValidationEnforce, withEmail, 0, []*fedguardv1.ReportValidationRequest{
			{Round: 1, Attempt: 1, Mode: "enforce", Training: false, Rows: 60, Columns: 33, Findings: emailFindings},
			{Round: 2, Attempt: 1, Mode: "enforce", Training: false, Rows: 60, Columns: 33, Findings: emailFindings},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A report before a round the agent trains in carries the
			// aggregates of its training rows, as ReportStats does.
			ref := newTrainer()
			if tt.data != "" {
				ref.DataFile = tt.data
			}
			st, err := ref.Prepare(testSpec())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.wantReports {
				if r.Training {
					r.FeatureStats = &fedguardv1.FeatureStats{Count: st.Count, Sum: st.Sum, SumSquares: st.SumSquares}
				}
			}
			p := newPKI(t)
			fake := newFake(t, 2)
			// A hospital that sits out does not hold the federation up: the
			// others' updates close the round without it.
			fake.advanceOnSitOut("hospital-b")
			fake.reportStats(t)
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			tr := newTrainer()
			if tt.data != "" {
				tr.DataFile = tt.data
			}
			a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys(), func(c *participant.Config) {
				c.Expectations, c.ValidationMode = expect, tt.mode
			})
			if err := run(t, a, 15*time.Second); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if _, _, submits, _ := fake.counts(); submits != tt.wantSubmits {
				t.Errorf("SubmitUpdate calls = %d, want %d", submits, tt.wantSubmits)
			}
			fake.mu.Lock()
			got := fake.validations
			fake.mu.Unlock()
			if diff := cmp.Diff(tt.wantReports, got, protocmp.Transform()); diff != "" {
				t.Errorf("ReportValidation requests (-want +got):\n%s", diff)
			}
			for _, r := range got {
				j := protojson.Format(r)
				if strings.Contains(j, "example.org") || strings.Contains(j, "email") {
					t.Errorf("report %s discloses the e-mail column's name or values", j)
				}
			}
			if tt.wantSubmits == 0 && !strings.Contains(logs.String(), "round sat out") {
				t.Errorf("no log of the rounds sat out:\n%s", logs)
			}
		})
	}
}

func TestNewValidatesExpectations(t *testing.T) {
	t.Parallel()
	expect, _ := validationFiles(t)
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := newFake(t, 1)
	tests := []struct {
		name   string
		mutate func(*participant.Config)
		ok     bool
	}{
		{"warn", func(c *participant.Config) { c.Expectations, c.ValidationMode = expect, participant.ValidationWarn }, true},
		{"default mode", func(c *participant.Config) { c.Expectations = expect }, true},
		{"unknown mode", func(c *participant.Config) { c.Expectations, c.ValidationMode = expect, "strict" }, false},
		{"mode without expectations", func(c *participant.Config) { c.ValidationMode = participant.ValidationEnforce }, false},
		{"invalid expectations", func(c *participant.Config) { c.Expectations = bad }, false},
		{"missing expectations", func(c *participant.Config) { c.Expectations = bad + ".nope" }, false},
		{"no data file", func(c *participant.Config) { c.Expectations, c.Trainer = expect, &faultyTrainer{Trainer: newTrainer()} }, false},
		{"explicit data file", func(c *participant.Config) {
			c.Expectations, c.Trainer, c.ValidationData = expect, &faultyTrainer{Trainer: newTrainer()}, dataFile
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := participant.Config{
				Coordinator: "127.0.0.1:1", TLS: newPKI(t).clientTLS, Trainer: newTrainer(),
				Federation: federation, CoordinatorKeys: fake.keys(),
			}
			tt.mutate(&cfg)
			_, err := participant.New(cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New(%s) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

// TestDataValidationBeforeStats: in enforce mode, data that fails its
// expectations does not even shape the federation's scaling: the agent
// withholds its feature statistics (and retries on the next connection).
func TestDataValidationBeforeStats(t *testing.T) {
	t.Parallel()
	expect, withEmail := validationFiles(t)
	p := newPKI(t)
	fake := newFake(t, 1) // statistics not yet reported: the agent is asked for them
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	tr := newTrainer()
	tr.DataFile = withEmail
	a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys(), func(c *participant.Config) {
		c.Expectations, c.ValidationMode = expect, participant.ValidationEnforce
	})
	if err := run(t, a, 2*time.Second); !errors.Is(err, context.DeadlineExceeded) && err != nil {
		t.Fatalf("Run = %v, want it still retrying when its context ends", err)
	}
	fake.mu.Lock()
	stats := len(fake.stats)
	fake.mu.Unlock()
	if stats != 0 {
		t.Errorf("%d feature statistics reported, want none from data that fails enforce", stats)
	}
	if joins, _, _, _ := fake.counts(); joins < 2 {
		t.Errorf("%d joins, want the agent to keep retrying", joins)
	}
	if !strings.Contains(logs.String(), "feature statistics withheld") {
		t.Errorf("no log of the withheld statistics:\n%s", logs)
	}
}
