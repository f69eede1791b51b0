package validation

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"github.com/fedguard/fedguard/dataset"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

func readExpectations(t *testing.T, name string) Expectations {
	t.Helper()
	return readExpectationsPath(t, filepath.Join("testdata", name))
}

// openTestdata opens testdata/name, closed when the test ends.
func openTestdata(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func renderReport(t *testing.T, rep Report) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n")
	b.Write(j)
	b.WriteString("\n")
	return b.Bytes()
}

func TestCheckGolden(t *testing.T) {
	tests := []struct {
		data, expect string
		errors       int
	}{
		{"clean.csv", "expect.json", 0},
		{"broken.csv", "expect.json", 9},
		{"pii.csv", "expect-pii.json", 12},
	}
	for _, tt := range tests {
		t.Run(tt.data, func(t *testing.T) {
			f := openTestdata(t, tt.data)
			rep, err := Check(f, readExpectations(t, tt.expect))
			if err != nil {
				t.Fatalf("Check(%s) = %v", tt.data, err)
			}
			if got := rep.Errors(); got != tt.errors {
				t.Errorf("Check(%s).Errors() = %d, want %d", tt.data, got, tt.errors)
			}
			out := renderReport(t, rep)
			golden.Check(t, filepath.Join("testdata", strings.TrimSuffix(tt.data, ".csv")+".report.golden"), out)
			assertNoCellValues(t, tt.data, out)
		})
	}
}

// assertNoCellValues checks that no non-numeric cell of the file appears in
// the report, except values that are also column names or expectations.
func assertNoCellValues(t *testing.T, name string, report []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"B": true, "M": true, "left": true, "right": true}
	for _, h := range recs[0] {
		known[h] = true
	}
	for _, rec := range recs[1:] {
		for _, v := range rec {
			if _, err := strconv.ParseFloat(v, 64); err == nil || v == "" || known[v] {
				continue
			}
			if bytes.Contains(report, []byte(v)) {
				t.Errorf("report of %s contains the cell value %q", name, v)
			}
		}
	}
}

func TestCheckWDBC(t *testing.T) {
	raw, err := os.ReadFile("../data/wdbc/wdbc.csv")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Propose(bytes.NewReader(raw), "diagnosis")
	var pe *PIIError
	if !errors.As(err, &pe) || len(pe.Columns) != 1 || pe.Columns[0].Name != "id" {
		t.Fatalf("Propose(wdbc) = %v, want a PIIError naming id only", err)
	}
	e, err := Propose(bytes.NewReader(raw), "diagnosis", IgnoreColumns("id"))
	if err != nil {
		t.Fatalf("Propose(wdbc, ignore id) = %v", err)
	}
	if len(e.Columns) != 30 || len(e.Label.Classes) != 2 {
		t.Errorf("Propose(wdbc) = %d columns, %d classes, want 30 and 2", len(e.Columns), len(e.Label.Classes))
	}
	rep, err := Check(bytes.NewReader(raw), e)
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{{Column: "id", Rule: RulePII, Severity: SeverityWarn,
		Message: "looks like personal data (identifier: header); ignored, so not trained on"}}
	if diff := cmp.Diff(want, rep.Findings); diff != "" || rep.Rows != 569 || rep.Columns != 32 {
		t.Errorf("Check(wdbc, proposed) = %d rows %d columns, findings (-want +got):\n%s", rep.Rows, rep.Columns, diff)
	}
	// The shipped example must be what --init makes and must pass.
	shipped := readExpectationsPath(t, "../examples/expectations-wdbc.json")
	if diff := cmp.Diff(e, shipped); diff != "" {
		t.Errorf("examples/expectations-wdbc.json differs from Propose(wdbc) (-propose +shipped):\n%s", diff)
	}
}

func readExpectationsPath(t *testing.T, path string) Expectations {
	t.Helper()
	e, err := LoadExpectations(path)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestProposeGolden(t *testing.T) {
	tests := []struct {
		data   string
		label  string
		ignore []string
	}{
		{"clean.csv", "diagnosis", []string{"id"}},
		{"categories.csv", "diagnosis", nil},
	}
	for _, tt := range tests {
		t.Run(tt.data, func(t *testing.T) {
			f := openTestdata(t, tt.data)
			e, err := Propose(f, tt.label, IgnoreColumns(tt.ignore...))
			if err != nil {
				t.Fatalf("Propose(%s) = %v", tt.data, err)
			}
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", strings.TrimSuffix(tt.data, ".csv")+".proposed.golden"), b)
			// A proposal is met by the file it was made from.
			if _, err := f.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			rep, err := Check(f, e)
			if err != nil || rep.Errors() != 0 {
				t.Errorf("Check(%s, Propose(%s)) = %+v, %v; want no errors", tt.data, tt.data, rep.Findings, err)
			}
		})
	}
}

func TestProposeRefuses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		label   string
		ignore  []string
		wantErr error
		wantPII []string // flagged columns
	}{
		{name: "pii file", in: "@pii.csv", label: "diagnosis", wantErr: ErrPII,
			wantPII: []string{"patient_name", "e-mail", "date_of_birth", "phone", "ssn", "street", "postcode", "notes"}},
		{name: "pii file, two ignored", in: "@pii.csv", label: "diagnosis", ignore: []string{"notes", "patient_name"}, wantErr: ErrPII,
			wantPII: []string{"e-mail", "date_of_birth", "phone", "ssn", "street", "postcode"}},
		{name: "pii by values only", in: "@pii-values.csv", label: "label", wantErr: ErrPII,
			wantPII: []string{"a", "b", "c", "d", "e", "f"}},
		{name: "no label", in: "a,b\n1,2\n", label: "y", wantErr: ErrLabel},
		{name: "label ignored", in: "a,y\n1,2\n", label: "y", ignore: []string{"y"}, wantErr: ErrLabel},
		{name: "empty label", in: "a,y\n1,B\n2,\n", label: "y", wantErr: ErrLabel},
		{name: "mixed column", in: "a,y\n1,B\nx,M\n", label: "y", wantErr: ErrNotDescribable},
		{name: "empty column", in: "a,b,y\n1,,B\n2,,M\n", label: "y", wantErr: ErrNotDescribable},
		{name: "header only", in: "a,y\n", label: "y", wantErr: ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			if name, ok := strings.CutPrefix(tt.in, "@"); ok {
				var err error
				if in, err = os.ReadFile(filepath.Join("testdata", name)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Propose(bytes.NewReader(in), tt.label, IgnoreColumns(tt.ignore...))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Propose(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
			var pe *PIIError
			if errors.As(err, &pe) {
				var got []string
				for _, c := range pe.Columns {
					got = append(got, c.Name)
				}
				if diff := cmp.Diff(tt.wantPII, got); diff != "" {
					t.Errorf("Propose(%s) flagged (-want +got):\n%s", tt.name, diff)
				}
				assertNoCellValues(t, "pii.csv", []byte(err.Error()))
				assertNoCellValues(t, "pii-values.csv", []byte(err.Error()))
			}
		})
	}
}

func TestValueKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
	}{
		{"ann@example.org", KindEmail},
		{"123-45-6789", KindIdentifier},
		{"123456789", KindIdentifier},
		{"9434765919", KindIdentifier},
		{"943 476 5919", KindIdentifier},
		{"12345678", ""},
		{"1961-03-04", KindBirthDate},
		{"1961-03-04T10:00:00Z", KindBirthDate},
		{"04/03/1961", KindBirthDate},
		{"4.3.61", KindBirthDate},
		{"4 March 1961", KindBirthDate},
		{"Mar 4, 1961", KindBirthDate},
		{"+31 20 123 4567", KindPhone},
		{"(555) 123-4567", KindPhone},
		{"555-1234", KindPhone},
		{"12 High Street", KindAddress},
		{"Kerkstraat 12a", KindAddress},
		{"1234 AB", KindAddress},
		{"SW1A 1AA", KindAddress},
		{"12345-6789", KindAddress},
		{"Ann van der Berg", KindName},
		{"Smith, J.", KindName},
		{"O'Neil Smith-Jones", KindName},
		{"the patient reports mild pain", KindFreeText},
		{"12.5", ""},
		{"-3e4", ""},
		{"0x1p-2", ""},
		{"Invasive Ductal", KindName}, // a name by shape: the distinct-share rule keeps categories out
		{"left", ""},
		{"B", ""},
		{"stage 2", ""},
		{"T2N0M0", ""},
	}
	for _, tt := range tests {
		if got := valueKind(tt.in); got != tt.want {
			t.Errorf("valueKind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHeaderKinds(t *testing.T) {
	tests := []struct {
		in   string
		want []Kind
	}{
		{"patient_name", []Kind{KindName}},
		{"patientName", []Kind{KindName}},
		{"E-Mail", []Kind{KindEmail}},
		{"DOB", []Kind{KindBirthDate}},
		{"date_of_birth", []Kind{KindBirthDate}},
		{"id", []Kind{KindIdentifier}},
		{"PatientID", []Kind{KindIdentifier}},
		{"nhs_number", []Kind{KindIdentifier}},
		{"home_phone", []Kind{KindPhone}},
		{"ZipCode", []Kind{KindAddress}},
		{"free text", []Kind{KindFreeText}},
		{"mean_radius", nil},
		{"cell_size", nil},
		{"family_history", nil},
		{"idle", nil},
		{"diagnosis", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, headerKinds(tt.in)); diff != "" {
			t.Errorf("headerKinds(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseExpectationsErrors(t *testing.T) {
	valid := `{"version":1,"label":{"column":"y","classes":[{"value":"a","min_share":0,"max_share":1}]},"columns":[{"name":"x","type":"number","max_missing":0}]}`
	if _, err := ParseExpectations([]byte(valid)); err != nil {
		t.Fatalf("ParseExpectations(valid) = %v", err)
	}
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"not json", `nope`},
		{"unknown field", strings.Replace(valid, `"columns"`, `"colums"`, 1)},
		{"trailing", valid + `{}`},
		{"version", strings.Replace(valid, `"version":1`, `"version":2`, 1)},
		{"no classes", `{"version":1,"label":{"column":"y","classes":[]},"columns":[]}`},
		{"share order", strings.Replace(valid, `"min_share":0,"max_share":1`, `"min_share":0.6,"max_share":0.5`, 1)},
		{"share range", strings.Replace(valid, `"max_share":1`, `"max_share":1.5`, 1)},
		{"bad type", strings.Replace(valid, `"number"`, `"text"`, 1)},
		{"min > max", strings.Replace(valid, `"max_missing":0}`, `"min":2,"max":1,"max_missing":0}`, 1)},
		{"missing > 1", strings.Replace(valid, `"max_missing":0}`, `"max_missing":2}`, 1)},
		{"values on number", strings.Replace(valid, `"max_missing":0}`, `"values":["a"],"max_missing":0}`, 1)},
		{"category without values", strings.Replace(valid, `"number"`, `"category"`, 1)},
		{"label is a column", strings.Replace(valid, `"name":"x"`, `"name":"y"`, 1)},
		{"ignored twice", strings.Replace(valid, `"columns"`, `"ignore":["i","i"],"columns"`, 1)},
		{"empty name", strings.Replace(valid, `"name":"x"`, `"name":""`, 1)},
		{"name with spaces", strings.Replace(valid, `"name":"x"`, `"name":" x"`, 1)},
		{"control char", strings.Replace(valid, `"name":"x"`, `"name":"x\n"`, 1)},
		{"too large", `{"version":1,` + strings.Repeat(" ", MaxExpectationsBytes) + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseExpectations([]byte(tt.in)); !errors.Is(err, ErrExpectations) {
				t.Errorf("ParseExpectations(%s) = %v, want ErrExpectations", tt.name, err)
			}
		})
	}
}

func TestCheckErrors(t *testing.T) {
	e := Expectations{Version: 1, Label: Label{Column: "y", Classes: []Class{{Value: "a", MaxShare: 1}}},
		Columns: []Column{{Name: "x", Type: TypeNumber}}}
	defer func(r, c, cb int, b, l int64) {
		maxRows, maxCells, maxCellBytes, maxBytes, maxLineBytes = r, c, cb, b, l
	}(maxRows, maxCells, maxCellBytes, maxBytes, maxLineBytes)
	maxRows, maxCells, maxCellBytes, maxBytes, maxLineBytes = 3, 7, 8, 200, 40
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrEmpty},
		{"header only", "x,y\n", ErrEmpty},
		{"ragged", "x,y\n1,a\n2\n", ErrCSV},
		{"bad quote", "x,y\n\"1,a\n", ErrCSV},
		{"duplicate column", "x,x\n1,2\n", ErrCSV},
		{"empty column name", "x,\n1,2\n", ErrCSV},
		// A spreadsheet saved with ';' between cells (many European
		// locales): before, "column 1 name: longer than 256 bytes" for a
		// real header.
		{"semicolons", "x;y\n1;a\n", dataset.ErrSeparator},
		{"too many rows", "x,y\n1,a\n1,a\n1,a\n1,a\n", ErrTooLarge},
		{"too many cells", "x,y,z\n1,a,1\n1,a,1\n1,a,1\n", ErrTooLarge},
		{"long cell", "x,y\n1,abcdefghij\n", ErrTooLarge},
		{"long line", "x,y\n1," + strings.Repeat("a", 50) + "\n", ErrTooLarge},
		{"too many bytes", "x,y\n" + strings.Repeat("1,a\n", 60), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(strings.NewReader(tt.in), e)
			if !errors.Is(err, tt.want) {
				t.Errorf("Check(%q) = %v, want %v", tt.in, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "abcdefghij") {
				t.Errorf("Check(%q) error %q quotes a cell", tt.in, err)
			}
		})
	}
	if _, err := Check(strings.NewReader("x,y\n1,a\n"), Expectations{}); !errors.Is(err, ErrExpectations) {
		t.Errorf("Check with zero Expectations = %v, want ErrExpectations", err)
	}
}

func TestWiden(t *testing.T) {
	tests := []struct{ lo, hi, wantLo, wantHi float64 }{
		{6.981, 28.11, 4.8, 30.3},
		{0.5, 0.7, 0.48, 0.72},
		{43.79, 188.5, 29, 203},
		{0, 0, 0, 0.1},
		{5, 5, 4.5, 5.5},
		{-3, 1, -3.4, 1.4},
		{0.001, 0.002, 0.0009, 0.0021},
	}
	for _, tt := range tests {
		lo, hi := widen(tt.lo, tt.hi)
		if lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("widen(%v, %v) = %v, %v; want %v, %v", tt.lo, tt.hi, lo, hi, tt.wantLo, tt.wantHi)
		}
	}
}

// TestCheckGoNumberSyntax: a number column holding Go-only number syntax
// (hexadecimal, underscores) is not numeric, exactly as the trainer's
// reader refuses it. Before, strconv.ParseFloat's syntax passed the check
// and the data then failed to load, or was read differently by other tools.
func TestCheckGoNumberSyntax(t *testing.T) {
	e := Expectations{Version: 1, Label: Label{Column: "y", Classes: []Class{{Value: "a", MaxShare: 1}}},
		Columns: []Column{{Name: "x", Type: TypeNumber}}}
	rep, err := Check(strings.NewReader("x,y\n0x1p-2,a\n1_000,a\n0x10,a\n2.5e1,a\n"), e)
	if err != nil {
		t.Fatal(err)
	}
	var got *Finding
	for i, f := range rep.Findings {
		if f.Rule == RuleNotNumber && f.Column == "x" {
			got = &rep.Findings[i]
		}
	}
	if got == nil || got.Count != 3 || got.Total != 4 {
		t.Errorf("Check findings %+v, want not_number on x for 3 of 4 cells", rep.Findings)
	}
}
