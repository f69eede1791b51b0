package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const wdbcCSV = "../../../data/wdbc/wdbc.csv"

// piiCSV is a hospital export that should never reach training: a name, an
// e-mail address and a date of birth next to the measurements.
const piiCSV = `patient_name,email,dob,radius,diagnosis
Ann van der Berg,ann@example.org,1961-03-04,12.5,B
John Smith,john.smith@example.com,1975-11-30,20.1,M
Maria Garcia,mgarcia@example.net,1982-07-15,9.8,B
`

func TestParticipantValidate(t *testing.T) {
	tmp := t.TempDir()
	pii := filepath.Join(tmp, "pii.csv")
	if err := os.WriteFile(pii, []byte(piiCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	piiExp := filepath.Join(tmp, "pii-expect.json")
	if err := os.WriteFile(piiExp, []byte(`{"version":1,
	  "label":{"column":"diagnosis","classes":[{"value":"B","min_share":0,"max_share":1},{"value":"M","min_share":0,"max_share":1}]},
	  "columns":[{"name":"radius","type":"number","min":0,"max":40,"max_missing":0},
	    {"name":"patient_name","type":"category","values":["x"],"max_missing":0},
	    {"name":"email","type":"category","values":["x"],"max_missing":0},
	    {"name":"dob","type":"category","values":["x"],"max_missing":0}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tmp, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"labels":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	proposed := filepath.Join(tmp, "wdbc.json")
	example := "../../../examples/expectations-wdbc.json"

	steps := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout, with runs of white space as one space
		wantErr  []string // substrings of stderr
	}{
		{"wdbc meets the example", []string{"participant", "validate", "--data", wdbcCSV, "--expect", example}, 0,
			[]string{"warn pii id", "569 rows, 32 columns: 0 errors, 1 warning"}, nil},
		{"wdbc json", []string{"participant", "validate", "--data", wdbcCSV, "--expect", example, "--json"}, 0,
			[]string{`"passed": true`, `"rows": 569`, `"rule": "pii"`}, nil},
		{"wdbc init refuses the id column", []string{"participant", "validate", "--data", wdbcCSV, "--init"}, 1,
			nil, []string{`"id" (identifier: header)`}},
		{"wdbc init", []string{"participant", "validate", "--data", wdbcCSV, "--init", "--ignore", "id", "--out", proposed}, 0,
			[]string{"wrote " + proposed + `: 30 columns, label "diagnosis" with 2 classes, 1 ignored`}, nil},
		{"wdbc init again", []string{"participant", "validate", "--data", wdbcCSV, "--init", "--ignore", "id", "--out", proposed}, 1,
			nil, []string{"refusing to overwrite"}},
		{"wdbc init to stdout", []string{"participant", "validate", "--data", wdbcCSV, "--init", "--label", "diagnosis", "--ignore", "id"}, 0,
			[]string{`"column": "diagnosis"`, `"name": "worst_fractal_dimension"`}, nil},
		{"pii init refused", []string{"participant", "validate", "--data", pii, "--init"}, 1,
			nil, []string{`"patient_name" (name: header, 3/3 values)`, `"email" (email: header, 3/3 values)`, `"dob" (date_of_birth: header, 3/3 values)`}},
		{"pii enforce", []string{"participant", "validate", "--data", pii, "--expect", piiExp}, 1,
			[]string{"error pii patient_name 3/3", "error pii email 3/3", "error pii dob 3/3", "3 rows, 5 columns: 6 errors"},
			[]string{"does not meet", "6 errors (mode enforce)"}},
		{"pii warn", []string{"participant", "validate", "--data", pii, "--expect", piiExp, "--mode", "warn", "--json"}, 0,
			[]string{`"mode": "warn"`, `"passed": true`, `"rule": "category"`}, nil},
		{"bad expectations", []string{"participant", "validate", "--data", wdbcCSV, "--expect", bad}, 1, nil, []string{"invalid expectations", "unknown field"}},
		{"missing data file", []string{"participant", "validate", "--data", filepath.Join(tmp, "nope.csv"), "--expect", example}, 1, nil, []string{"no such file"}},
		{"no data flag", []string{"participant", "validate", "--expect", example}, 2, nil, []string{"-data is required"}},
		{"neither expect nor init", []string{"participant", "validate", "--data", wdbcCSV}, 2, nil, []string{"one of -expect or -init"}},
		{"both expect and init", []string{"participant", "validate", "--data", wdbcCSV, "--init", "--expect", example}, 2, nil, []string{"cannot be combined"}},
		{"bad mode", []string{"participant", "validate", "--data", wdbcCSV, "--expect", example, "--mode", "strict"}, 2, nil, []string{`-mode "strict"`}},
		{"out without init", []string{"participant", "validate", "--data", wdbcCSV, "--expect", example, "--out", proposed}, 2, nil, []string{"go with -init"}},
	}
	for _, st := range steps {
		code, out, errOut := caRun(t, st.args...)
		if code != st.wantCode {
			t.Fatalf("%s: fedguard %s = exit %d, want %d\nstdout: %s\nstderr: %s", st.name, strings.Join(st.args, " "), code, st.wantCode, out, errOut)
		}
		flat := strings.Join(strings.Fields(out), " ") // table columns are padded
		for _, w := range st.wantOut {
			if !strings.Contains(flat, w) {
				t.Errorf("%s: stdout %q does not contain %q", st.name, out, w)
			}
		}
		for _, w := range st.wantErr {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q does not contain %q", st.name, errOut, w)
			}
		}
		for _, v := range []string{"Ann van der Berg", "ann@example.org", "1961-03-04", "Smith"} {
			if strings.Contains(out+errOut, v) {
				t.Errorf("%s: output discloses the cell value %q", st.name, v)
			}
		}
		if strings.HasSuffix(st.name, "json") {
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Errorf("%s: stdout is not JSON: %v", st.name, err)
			}
		}
	}
	if m := caMode(t, proposed); m != 0o644 {
		t.Errorf("mode of %s = %v, want 0644", proposed, m)
	}
	// The shipped example is exactly what --init makes from the shipped data.
	got, err := os.ReadFile(proposed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("examples/expectations-wdbc.json differs from `participant validate --init --ignore id` on data/wdbc/wdbc.csv: regenerate it")
	}
}

func TestParticipantRunValidationFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"participant", "run", "--validation", "enforce"}, "-validation needs -expect"},
		{[]string{"participant", "run", "--expect", "e.json", "--validation", "strict"}, `-validation "strict"`},
	}
	for _, tt := range tests {
		code, _, errOut := caRun(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("fedguard %s = exit %d, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, errOut, tt.wantErr)
		}
	}
}
