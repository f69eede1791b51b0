package dataset

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fedguard/fedguard/internal/excerpt"
)

// Limits that bound what ReadCSV will hold in memory, so that a malformed or hostile
// file fails early with a clear error instead of exhausting the host.
const (
	// DefaultMaxRows is the data-row limit used when ReadOptions.MaxRows is 0.
	DefaultMaxRows = 1_000_000
	// MaxBytes is the most input ReadCSV reads (1 GiB); more is ErrTooLarge.
	MaxBytes = 1 << 30
	// MaxLineBytes is the longest physical line ReadCSV accepts (8 MiB); a longer
	// line is ErrTooLarge. It keeps csv.Reader from buffering an unbounded line.
	MaxLineBytes = 8 << 20
)

// The limits actually enforced; tests lower them to exercise the errors cheaply.
var (
	maxBytes     int64 = MaxBytes
	maxLineBytes int64 = MaxLineBytes
)

// Sentinel errors, matched with errors.Is. The messages returned by ReadCSV wrap them
// with the line, column and value at fault.
var (
	// ErrEmpty means the input has no header or no data row.
	ErrEmpty = errors.New("empty file")
	// ErrTooLarge means the input exceeds MaxBytes, MaxLineBytes or the row limit.
	ErrTooLarge = errors.New("input too large")
	// ErrSchema means the header does not fit the ReadOptions: a missing label or
	// feature column, a duplicate or empty column name, or conflicting options.
	ErrSchema = errors.New("schema mismatch")
	// ErrNotNumber means a feature cell does not parse as a decimal number.
	ErrNotNumber = errors.New("not a number")
	// ErrNonFinite means a feature cell is NaN, infinite or out of float64 range.
	ErrNonFinite = errors.New("non-finite value")
	// ErrMissingValue means a feature cell is empty: imputation is not supported yet.
	ErrMissingValue = errors.New("empty cell (missing values are not supported yet)")
	// ErrRagged means a row has a different number of fields than the header.
	ErrRagged = errors.New("ragged row")
	// ErrBadLabel means a label cell is empty, not UTF-8 or holds a control character.
	ErrBadLabel = errors.New("bad label")
	// ErrUnknownLabel means a label cell is not one of ReadOptions.Classes.
	ErrUnknownLabel = errors.New("unknown label")
	// ErrSeparator means the header is one column that holds another
	// separator (';', a tab, '|'): a file saved with other than commas
	// between its cells. See CheckSeparator.
	ErrSeparator = errors.New("not comma-separated")
)

// RowError locates a problem in one data row so that hospital IT can find and fix
// the record. Err wraps one of the sentinel errors above.
type RowError struct {
	Line   int    // physical line in the file, counting the header as line 1
	Column string // column name, or "" when the whole row is at fault
	Value  string // the offending cell, truncated to 40 bytes; "" when not applicable
	Err    error
}

// Error reads like `line 7: column "mean_radius": not a number (value "abc")`.
func (e *RowError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: ", e.Line)
	if e.Column != "" {
		fmt.Fprintf(&b, "column %q: ", e.Column)
	}
	b.WriteString(e.Err.Error())
	if e.Column != "" {
		fmt.Fprintf(&b, " (value %q)", e.Value)
	}
	return b.String()
}

// Unwrap returns the underlying sentinel so errors.Is works.
func (e *RowError) Unwrap() error { return e.Err }

// ReadOptions says which columns of a hospital CSV file are the label and the
// features; the federation agrees on them so every party builds the same matrix.
type ReadOptions struct {
	Label    string   // label column (required)
	Features []string // wanted feature columns in this order; nil = every column except Label and Ignore
	Ignore   []string // columns to skip (e.g. "id"); names absent from the header are fine
	MaxRows  int      // 0 = DefaultMaxRows (1_000_000); more rows is an error
	// Classes, if not empty, are the labels a row may have (the federation's
	// classes): another is a *RowError wrapping ErrUnknownLabel, with the
	// line, as every other bad cell.
	Classes []string
}

// ReadFile opens path and reads it with ReadCSV.
func ReadFile(path string, o ReadOptions) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	t, err := readCSV(f, o)
	if err != nil {
		return nil, fmt.Errorf("dataset: read %s: %w", path, err)
	}
	return t, nil
}

// ReadCSV reads a labelled numeric table: a header row, then one row per record.
// Header names, cells and labels are trimmed of surrounding white space and a
// leading UTF-8 byte-order mark is dropped. Every feature cell must be a finite
// plain decimal number (see ParseNumber); empty cells are refused for now. Errors name
// the line, column and value; they wrap ErrEmpty, ErrTooLarge, ErrSchema,
// ErrSeparator or, for a bad row, a *RowError.
func ReadCSV(r io.Reader, o ReadOptions) (*Table, error) {
	t, err := readCSV(r, o)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return t, nil
}

func readCSV(r io.Reader, o ReadOptions) (*Table, error) {
	if o.Label == "" {
		return nil, fmt.Errorf("%w: ReadOptions.Label is required", ErrSchema)
	}
	maxRows := cmp.Or(o.MaxRows, DefaultMaxRows)
	if maxRows < 0 {
		return nil, fmt.Errorf("%w: ReadOptions.MaxRows %d is negative", ErrSchema, o.MaxRows)
	}
	cr := csv.NewReader(NewBoundedReader(r, maxBytes, maxLineBytes))
	cr.ReuseRecord = true
	// FieldsPerRecord 0: the header fixes the width, every later row must match.

	header, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: no header", ErrEmpty)
		}
		return nil, csvError(err)
	}
	if err := CheckSeparator(header); err != nil {
		return nil, err
	}
	names := make([]string, len(header))
	pos := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("%w: empty column name in header (column %d)", ErrSchema, i+1)
		}
		if strings.HasPrefix(h, "\ufeff") {
			// Only the file's first byte-order mark is dropped; another would not
			// survive writing the table back.
			return nil, fmt.Errorf("%w: column name %s starts with a byte-order mark", ErrSchema, quoteTrunc(h))
		}
		if err := checkText(h); err != nil {
			return nil, fmt.Errorf("%w: column name %s: %v", ErrSchema, quoteTrunc(h), err)
		}
		if j, dup := pos[h]; dup {
			return nil, fmt.Errorf("%w: duplicate column %q in header (columns %d and %d)", ErrSchema, h, j+1, i+1)
		}
		pos[h] = i
		names[i] = h
	}
	labelCol, ok := pos[o.Label]
	if !ok {
		return nil, fmt.Errorf("%w: missing label column %q", ErrSchema, o.Label)
	}
	if slices.Contains(o.Ignore, o.Label) {
		return nil, fmt.Errorf("%w: label column %q is also in Ignore", ErrSchema, o.Label)
	}
	var featCols []int
	var features []string
	if o.Features == nil {
		for i, h := range names {
			if i != labelCol && !slices.Contains(o.Ignore, h) {
				featCols = append(featCols, i)
				features = append(features, h)
			}
		}
	} else {
		seen := make(map[string]bool, len(o.Features))
		for _, f := range o.Features {
			i, ok := pos[f]
			switch {
			case seen[f]:
				return nil, fmt.Errorf("%w: feature %q requested twice", ErrSchema, f)
			case f == o.Label:
				return nil, fmt.Errorf("%w: feature %q is the label column", ErrSchema, f)
			case slices.Contains(o.Ignore, f):
				return nil, fmt.Errorf("%w: feature %q is also in Ignore", ErrSchema, f)
			case !ok:
				return nil, fmt.Errorf("%w: missing feature column %q", ErrSchema, f)
			}
			seen[f] = true
			featCols = append(featCols, i)
			features = append(features, f)
		}
	}
	if len(featCols) == 0 {
		return nil, fmt.Errorf("%w: no feature columns", ErrSchema)
	}

	t := &Table{Features: features}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && errors.Is(err, csv.ErrFieldCount) {
				return nil, &RowError{Line: pe.StartLine,
					Err: fmt.Errorf("%w: %d fields, header has %d", ErrRagged, len(rec), len(names))}
			}
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(t.X) >= maxRows {
			return nil, fmt.Errorf("%w: more than %d data rows (line %d; ReadOptions.MaxRows)", ErrTooLarge, maxRows, line)
		}
		row := make([]float64, len(featCols))
		for j, c := range featCols {
			v, err := parseCell(rec[c])
			if err != nil {
				l, _ := cr.FieldPos(c)
				return nil, &RowError{Line: l, Column: names[c], Value: Excerpt(rec[c]), Err: err}
			}
			row[j] = v
		}
		label := strings.TrimSpace(rec[labelCol])
		if err := checkLabel(label); err != nil {
			l, _ := cr.FieldPos(labelCol)
			return nil, &RowError{Line: l, Column: names[labelCol], Value: Excerpt(rec[labelCol]), Err: err}
		}
		if len(o.Classes) > 0 && !slices.Contains(o.Classes, label) {
			l, _ := cr.FieldPos(labelCol)
			return nil, &RowError{Line: l, Column: names[labelCol], Value: Excerpt(rec[labelCol]),
				Err: fmt.Errorf("%w, want one of %q", ErrUnknownLabel, o.Classes)}
		}
		t.X = append(t.X, row)
		// Clone: with ReuseRecord the cell shares memory with the whole record.
		t.Labels = append(t.Labels, strings.Clone(label))
	}
	if len(t.X) == 0 {
		return nil, fmt.Errorf("%w: header but no data rows", ErrEmpty)
	}
	return t, nil
}

// CheckSeparator refuses a CSV header that is one column holding ';', a
// tab or '|': a spreadsheet saved with another separator than the comma
// (';' is the default of many European locales). Without it the file
// reads as one column and fails later as a missing column, or as a header
// name too long. Every reader of a hospital's data file calls it on the
// header row.
func CheckSeparator(header []string) error {
	if len(header) != 1 {
		return nil
	}
	for _, sep := range []string{";", "\t", "|"} {
		if strings.Contains(header[0], sep) {
			return fmt.Errorf("%w: the header is one column holding %s; fedguard reads files whose cells are separated by commas: save the file as CSV with ',' between cells",
				ErrSeparator, quoteSep(sep))
		}
	}
	return nil
}

// quoteSep is sep as the message shows it, between single quotes.
func quoteSep(sep string) string {
	if sep == "\t" {
		return `'\t'`
	}
	return "'" + sep + "'"
}

// csvError turns csv.Reader errors into the package's vocabulary.
func csvError(err error) error {
	var te *tooLargeError
	if errors.As(err, &te) {
		return te
	}
	return fmt.Errorf("csv: %w", err)
}

func parseCell(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, ErrMissingValue
	}
	return ParseNumber(s)
}

// ParseNumber parses one cell as a plain decimal number: an optional sign,
// digits with an optional decimal point, and an optional exponent ("-1.5",
// ".5", "3e-2"). It refuses the rest of Go's syntax that strconv.ParseFloat
// accepts — hexadecimal ("0x1p-2"), underscores ("1_000"), "inf", "NaN" —
// since no spreadsheet or database writes them and each would otherwise be
// read differently by other tools. The error wraps ErrNotNumber, or
// ErrNonFinite for a number out of float64 range.
func ParseNumber(s string) (float64, error) {
	if !plainNumber(s) {
		switch strings.ToLower(strings.TrimLeft(s, "+-")) {
		case "nan", "inf", "infinity":
			return 0, ErrNonFinite
		}
		return 0, ErrNotNumber
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) && math.IsInf(v, 0) {
			return 0, fmt.Errorf("%w (out of float64 range)", ErrNonFinite)
		}
		return 0, ErrNotNumber
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, ErrNonFinite
	}
	return v, nil
}

// plainNumber reports whether s is [+-]digits[.digits][(e|E)[+-]digits],
// with at least one digit in the mantissa.
func plainNumber(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

func checkLabel(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty label", ErrBadLabel)
	}
	if err := checkText(s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadLabel, err)
	}
	return nil
}

// checkText refuses strings that would not survive a CSV round trip or a protobuf
// string field: invalid UTF-8 and control characters (CR, LF, NUL, ...).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return errors.New("contains a control character")
	}
	return nil
}

const maxShown = 40

// Excerpt shortens a cell (or a name) read from a data or expectations
// file to at most 40 bytes, cut on a rune boundary and marked with "…", so
// that an error message quotes enough to find it and never a whole field
// of up to a line's length (this package's and package validation's).
func Excerpt(s string) string { return excerpt.Of(s, maxShown) }

func quoteTrunc(s string) string { return strconv.Quote(Excerpt(s)) }

// tooLargeError is returned by guardReader; it wraps ErrTooLarge.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return ErrTooLarge.Error() + ": " + e.msg }
func (e *tooLargeError) Unwrap() error { return ErrTooLarge }

// guardReader caps the total bytes and the physical line length that reach csv.Reader.
type guardReader struct {
	r        io.Reader
	maxBytes int64
	maxLine  int64
	n        int64 // bytes read so far
	lineLen  int64 // bytes since the last '\n'
	line     int   // current physical line, 1-based
	err      error // sticky
}

// NewBoundedReader returns a reader of r that fails with an error wrapping
// ErrTooLarge once more than maxBytes have been read or a physical line is
// longer than maxLineBytes, naming the line. Put it under a csv.Reader,
// which otherwise buffers whatever line it is given.
func NewBoundedReader(r io.Reader, maxBytes, maxLineBytes int64) io.Reader {
	return &guardReader{r: r, maxBytes: maxBytes, maxLine: maxLineBytes, line: 1}
}

func (g *guardReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if room := g.maxBytes - g.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	k, err := g.r.Read(p)
	g.n += int64(k)
	if g.n > g.maxBytes {
		g.err = &tooLargeError{fmt.Sprintf("more than %d bytes", g.maxBytes)}
		return 0, g.err
	}
	q := p[:k]
	for {
		i := bytes.IndexByte(q, '\n')
		if i < 0 {
			g.lineLen += int64(len(q))
			break
		}
		g.lineLen += int64(i)
		if g.lineLen > g.maxLine {
			break
		}
		g.lineLen = 0
		g.line++
		q = q[i+1:]
	}
	if g.lineLen > g.maxLine {
		g.err = &tooLargeError{fmt.Sprintf("line %d is longer than %d bytes", g.line, g.maxLine)}
		return 0, g.err
	}
	return k, err
}
