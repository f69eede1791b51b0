package dataset

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/google/go-cmp/cmp"
)

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name string
		in   string
		o    ReadOptions
		want *Table
	}{
		{
			name: "all columns",
			in:   "a,b,y\n1,2,x\n3,4.5e1,z\n",
			o:    ReadOptions{Label: "y"},
			want: &Table{Features: []string{"a", "b"}, X: [][]float64{{1, 2}, {3, 45}}, Labels: []string{"x", "z"}},
		},
		{
			name: "ignore, label in the middle, spaces, BOM, CRLF",
			in:   "\ufeffid, y ,a,b\r\n1, B , -1 ,.25\r\n\r\n2,M,+3,1E3\r\n",
			o:    ReadOptions{Label: "y", Ignore: []string{"id", "nope"}},
			want: &Table{Features: []string{"a", "b"}, X: [][]float64{{-1, 0.25}, {3, 1000}}, Labels: []string{"B", "M"}},
		},
		{
			name: "chosen features in order, others not parsed",
			in:   "a,b,c,y\n1,2,junk,x\n",
			o:    ReadOptions{Label: "y", Features: []string{"b", "a"}},
			want: &Table{Features: []string{"b", "a"}, X: [][]float64{{2, 1}}, Labels: []string{"x"}},
		},
		{
			name: "quoted fields",
			in:   "\"a\",\"label, with comma\"\n\"7\",\"x, y\"\n",
			o:    ReadOptions{Label: "label, with comma"},
			want: &Table{Features: []string{"a"}, X: [][]float64{{7}}, Labels: []string{"x, y"}},
		},
		{
			name: "max rows exactly",
			in:   "a,y\n1,x\n2,x\n",
			o:    ReadOptions{Label: "y", MaxRows: 2},
			want: &Table{Features: []string{"a"}, X: [][]float64{{1}, {2}}, Labels: []string{"x", "x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.in), tt.o)
			if err != nil {
				t.Fatalf("ReadCSV(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadCSV(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		name    string
		in      string
		o       ReadOptions
		want    string // substring of the message
		wantErr error  // sentinel, if any
	}{
		{"empty file", "", ReadOptions{Label: "y"}, "dataset: empty file: no header", ErrEmpty},
		{"only blank lines", "\n\n", ReadOptions{Label: "y"}, "empty file", ErrEmpty},
		{"header only", "a,y\n", ReadOptions{Label: "y"}, "empty file: header but no data rows", ErrEmpty},
		{"no label option", "a,y\n1,x\n", ReadOptions{}, "ReadOptions.Label is required", ErrSchema},
		{"missing label column", "a,b\n1,2\n", ReadOptions{Label: "y"}, `missing label column "y"`, ErrSchema},
		{"missing feature column", "a,y\n1,x\n", ReadOptions{Label: "y", Features: []string{"a", "zz"}}, `missing feature column "zz"`, ErrSchema},
		{"feature twice", "a,y\n1,x\n", ReadOptions{Label: "y", Features: []string{"a", "a"}}, `feature "a" requested twice`, ErrSchema},
		{"feature is label", "a,y\n1,x\n", ReadOptions{Label: "y", Features: []string{"y"}}, `feature "y" is the label column`, ErrSchema},
		{"feature ignored", "a,y\n1,x\n", ReadOptions{Label: "y", Features: []string{"a"}, Ignore: []string{"a"}}, `feature "a" is also in Ignore`, ErrSchema},
		{"label ignored", "a,y\n1,x\n", ReadOptions{Label: "y", Ignore: []string{"y"}}, `label column "y" is also in Ignore`, ErrSchema},
		{"no features", "id,y\n1,x\n", ReadOptions{Label: "y", Ignore: []string{"id"}}, "no feature columns", ErrSchema},
		{"duplicate header", "a,b,a,y\n1,2,3,x\n", ReadOptions{Label: "y"}, `duplicate column "a" in header (columns 1 and 3)`, ErrSchema},
		{"duplicate header after trim", "a, a,y\n1,2,x\n", ReadOptions{Label: "y"}, `duplicate column "a"`, ErrSchema},
		{"empty header name", "a,,y\n1,2,x\n", ReadOptions{Label: "y"}, "empty column name in header (column 2)", ErrSchema},
		{"control char in header", "a,\"b\nc\",y\n1,2,x\n", ReadOptions{Label: "y"}, "contains a control character", ErrSchema},
		{"negative max rows", "a,y\n1,x\n", ReadOptions{Label: "y", MaxRows: -1}, "MaxRows -1 is negative", ErrSchema},
		{"not a number", "a,b,y\n1,2,x\n3,abc,x\n", ReadOptions{Label: "y"}, `dataset: line 3: column "b": not a number (value "abc")`, ErrNotNumber},
		{"not a number, truncated", "a,y\n" + long + ",x\n", ReadOptions{Label: "y"}, `line 2: column "a": not a number (value "` + long[:40] + `…")`, ErrNotNumber},
		{"hexadecimal float", "a,y\n0x1p-2,x\n", ReadOptions{Label: "y"}, `line 2: column "a": not a number (value "0x1p-2")`, ErrNotNumber},
		{"hexadecimal integer", "a,y\n0x10,x\n", ReadOptions{Label: "y"}, `not a number (value "0x10")`, ErrNotNumber},
		{"underscores", "a,y\n1_000,x\n", ReadOptions{Label: "y"}, `not a number (value "1_000")`, ErrNotNumber},
		{"no mantissa", "a,y\n.e5,x\n", ReadOptions{Label: "y"}, `not a number (value ".e5")`, ErrNotNumber},
		{"no exponent digits", "a,y\n1e,x\n", ReadOptions{Label: "y"}, `not a number (value "1e")`, ErrNotNumber},
		{"Infinity", "a,y\n+Infinity,x\n", ReadOptions{Label: "y"}, `non-finite value (value "+Infinity")`, ErrNonFinite},
		{"NaN", "a,y\n1,x\nNaN,x\n", ReadOptions{Label: "y"}, `line 3: column "a": non-finite value (value "NaN")`, ErrNonFinite},
		{"Inf", "a,y\n-Inf,x\n", ReadOptions{Label: "y"}, `non-finite value (value "-Inf")`, ErrNonFinite},
		{"out of range", "a,y\n1e999,x\n", ReadOptions{Label: "y"}, `non-finite value (out of float64 range) (value "1e999")`, ErrNonFinite},
		{"empty cell", "a,b,y\n1,,x\n", ReadOptions{Label: "y"}, `line 2: column "b": empty cell (missing values are not supported yet)`, ErrMissingValue},
		{"ragged short", "a,b,y\n1,2,x\n1,2\n", ReadOptions{Label: "y"}, "line 3: ragged row: 2 fields, header has 3", ErrRagged},
		{"ragged long", "a,b,y\n1,2,x,9\n", ReadOptions{Label: "y"}, "line 2: ragged row: 4 fields, header has 3", ErrRagged},
		{"empty label", "a,y\n1,x\n2, \n", ReadOptions{Label: "y"}, `line 3: column "y": bad label: empty label`, ErrBadLabel},
		{"control char in label", "a,y\n1,\"x\ty\"\n", ReadOptions{Label: "y"}, "bad label: contains a control character", ErrBadLabel},
		{"invalid utf8 label", "a,y\n1,\xff\n", ReadOptions{Label: "y"}, "bad label: not valid UTF-8", ErrBadLabel},
		// Before, only Table.Encode found it, naming a 0-based row and no
		// column, where every other cell error names the line and column.
		// A spreadsheet saved with ';' or tabs between cells: before,
		// `missing label column "y"` for a file that has one.
		{"semicolons", "a;y\n1;x\n", ReadOptions{Label: "y"}, `the header is one column holding ';'`, ErrSeparator},
		{"tabs", "a\ty\n1\tx\n", ReadOptions{Label: "y"}, `the header is one column holding '\t'`, ErrSeparator},
		{"label outside the classes", "a,y\n1,B\n2,M\n3,X\n", ReadOptions{Label: "y", Classes: []string{"B", "M"}},
			`line 4: column "y": unknown label, want one of ["B" "M"] (value "X")`, ErrUnknownLabel},
		{"too many rows", "a,y\n1,x\n2,x\n3,x\n", ReadOptions{Label: "y", MaxRows: 2}, "more than 2 data rows (line 4", ErrTooLarge},
		{"bad quote", "a,y\n1,x\"y\n", ReadOptions{Label: "y"}, "csv: parse error on line 2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.in), tt.o)
			if err == nil {
				t.Fatalf("ReadCSV(%q) = %+v, want error containing %q", tt.in, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadCSV(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadCSV(%q) error = %v, want errors.Is %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestReadCSVRowError(t *testing.T) {
	_, err := ReadCSV(strings.NewReader("a,b,y\n1,2,x\n3,4,x\n5,oops,x\n"), ReadOptions{Label: "y"})
	var re *RowError
	if !errors.As(err, &re) {
		t.Fatalf("ReadCSV error = %v, want a *RowError", err)
	}
	if re.Line != 4 || re.Column != "b" || re.Value != "oops" || re.Err != ErrNotNumber {
		t.Errorf("RowError = %+v, want line 4, column b, value oops, ErrNotNumber", *re)
	}
}

func TestReadCSVLimits(t *testing.T) {
	// Lower the byte limits; these tests must not run in parallel with others.
	oldB, oldL := maxBytes, maxLineBytes
	t.Cleanup(func() { maxBytes, maxLineBytes = oldB, oldL })
	maxBytes, maxLineBytes = 64, 16

	tests := []struct {
		name, in, want string
	}{
		{"line too long", "a,y\n1,x\n" + strings.Repeat("1", 20) + ",x\n", "input too large: line 3 is longer than 16 bytes"},
		{"line too long, no newline", "a,y\n" + strings.Repeat("1", 40), "line 2 is longer than 16 bytes"},
		{"file too large", "a,y\n" + strings.Repeat("1,x\n", 30), "input too large: more than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.in), ReadOptions{Label: "y"})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadCSV(%q) error = %v, want ErrTooLarge containing %q", tt.in, err, tt.want)
			}
		})
	}
	// Right at the limits it works.
	in := "a,y\n" + strings.Repeat("1", 14) + ",x\n"
	in += strings.Repeat("2,x\n", (64-len(in))/4)
	if _, err := ReadCSV(strings.NewReader(in), ReadOptions{Label: "y"}); err != nil {
		t.Errorf("ReadCSV(%d bytes at the limits) error: %v", len(in), err)
	}
}

// errReader fails after its data, like a broken disk or connection.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestReadCSVReaderError(t *testing.T) {
	_, err := ReadCSV(errReader{strings.NewReader("a,y\n1,x\n")}, ReadOptions{Label: "y"})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("ReadCSV(failing reader) error = %v, want the reader's error", err)
	}
}

func TestReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.csv")
	if err := os.WriteFile(path, []byte("a,y\n1,x\nbad,x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path, ReadOptions{Label: "y"})
	if err == nil || !strings.Contains(err.Error(), "dataset: read "+path+": line 3: column \"a\": not a number") {
		t.Errorf("ReadFile(%s) error = %v", path, err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.csv"), ReadOptions{Label: "y"}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v, want os.ErrNotExist", err)
	}
}

func readWDBC(t testing.TB) *Table {
	t.Helper()
	tab, err := ReadCSV(bytes.NewReader(wdbc.CSV), ReadOptions{Label: wdbc.Label, Ignore: []string{wdbc.IDColumn}})
	if err != nil {
		t.Fatalf("ReadCSV(wdbc) error: %v", err)
	}
	return tab
}

func TestReadWDBC(t *testing.T) {
	tab := readWDBC(t)
	if tab.Len() != 569 || len(tab.Features) != 30 || len(tab.X[0]) != 30 {
		t.Fatalf("wdbc: %d rows × %d features, want 569 × 30", tab.Len(), len(tab.Features))
	}
	if tab.Features[0] != "mean_radius" || tab.Features[29] != "worst_fractal_dimension" {
		t.Errorf("wdbc features = %q ... %q", tab.Features[0], tab.Features[29])
	}
	counts := map[string]int{}
	for _, l := range tab.Labels {
		counts[l]++
	}
	if diff := cmp.Diff(map[string]int{"B": 357, "M": 212}, counts); diff != "" {
		t.Errorf("wdbc label counts (-want +got):\n%s", diff)
	}
	if tab.X[0][0] != 17.99 || tab.Labels[0] != "M" {
		t.Errorf("wdbc first row = %v %q, want 17.99 ... M", tab.X[0][0], tab.Labels[0])
	}
	if _, err := tab.Encode(wdbc.Classes()); err != nil {
		t.Errorf("Encode(wdbc.Classes()) error: %v", err)
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	tabs := []*Table{
		readWDBC(t),
		{
			Features: []string{"a b", "quoted \"x\"", "comma,y", " lead"},
			X:        [][]float64{{0, math.Copysign(0, -1), 1e-310, 1.7976931348623157e308}, {0.1, -2.5, 3, 1.0 / 3}},
			Labels:   []string{"λ", "with, comma"},
		},
	}
	for i, tab := range tabs {
		var buf bytes.Buffer
		if err := tab.WriteCSV(&buf, "label"); err != nil {
			t.Fatalf("WriteCSV #%d error: %v", i, err)
		}
		got, err := ReadCSV(&buf, ReadOptions{Label: "label"})
		if err != nil {
			t.Fatalf("ReadCSV(WriteCSV #%d) error: %v", i, err)
		}
		if i == 1 {
			tab.Features[3] = "lead" // ReadCSV trims names
		}
		if diff := cmp.Diff(tab, got); diff != "" {
			t.Errorf("round trip #%d mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func TestWriteCSVErrors(t *testing.T) {
	tab := &Table{Features: []string{"a"}, X: [][]float64{{1}}, Labels: []string{"x"}}
	tests := []struct {
		name  string
		tab   *Table
		label string
		want  string
	}{
		{"empty label name", tab, "", "empty label column name"},
		{"label is feature", tab, "a", `label column "a" is also a feature`},
		{"labels length", &Table{Features: []string{"a"}, X: [][]float64{{1}}}, "y", "0 labels for 1 rows"},
		{"ragged", &Table{Features: []string{"a"}, X: [][]float64{{1, 2}}, Labels: []string{"x"}}, "y", "row 0 has 2 values, want 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tab.WriteCSV(io.Discard, tt.label)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteCSV(%q) error = %v, want %q", tt.label, err, tt.want)
			}
		})
	}
}

// TestParseNumber: plain decimal and scientific notation only.
func TestParseNumber(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
	}{
		{"0", 0}, {"-0", 0}, {"+2", 2}, {"1.5", 1.5}, {"-1.5", -1.5}, {".5", 0.5}, {"5.", 5},
		{"1e3", 1000}, {"1E-3", 0.001}, {"2.5e+2", 250}, {"007", 7},
	} {
		if got, err := ParseNumber(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseNumber(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x1p-2", "0X10", "1_000", "0b101", "0o17",
		" 1", "1 ", "1,5", "--1", "+-1", "1e5.5", "١"} {
		if _, err := ParseNumber(in); !errors.Is(err, ErrNotNumber) {
			t.Errorf("ParseNumber(%q) error = %v, want ErrNotNumber", in, err)
		}
	}
	for _, in := range []string{"NaN", "nan", "Inf", "-inf", "+Infinity", "1e999"} {
		if _, err := ParseNumber(in); !errors.Is(err, ErrNonFinite) {
			t.Errorf("ParseNumber(%q) error = %v, want ErrNonFinite", in, err)
		}
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("a,b,y\n1,2,x\n3,4,z\n"), "y")
	f.Add([]byte("\ufeffid, y ,a\r\n1, B , -1\r\n"), "y")
	f.Add([]byte("\"a\",\"q\"\"\"\n1e308,\"x,y\"\n"), "q\"")
	f.Add([]byte("a,y\nNaN,x\n"), "y")
	f.Add([]byte("a,y\n0x1p-1074,-0\n"), "y")
	f.Add([]byte("a,y\n1_000,-0\n4.9e-324,x\n"), "y")
	f.Add(wdbc.CSV[:2000], "diagnosis")
	f.Fuzz(func(t *testing.T, in []byte, label string) {
		tab, err := ReadCSV(bytes.NewReader(in), ReadOptions{Label: label, MaxRows: 1000})
		if err != nil {
			return
		}
		if tab.Len() == 0 || len(tab.Labels) != tab.Len() {
			t.Fatalf("ReadCSV(%q) accepted a table with %d rows, %d labels", in, tab.Len(), len(tab.Labels))
		}
		var buf bytes.Buffer
		if err := tab.WriteCSV(&buf, label); err != nil {
			t.Fatalf("WriteCSV of an accepted table: %v", err)
		}
		got, err := ReadCSV(&buf, ReadOptions{Label: label, MaxRows: 1000})
		if err != nil {
			t.Fatalf("ReadCSV(WriteCSV(ReadCSV(%q))) error: %v\nwritten: %q", in, err, buf.String())
		}
		if diff := cmp.Diff(tab, got); diff != "" {
			t.Fatalf("round trip of %q mismatch (-want +got):\n%s", in, diff)
		}
	})
}
