package validation

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrExpectations means an expectations file is malformed or inconsistent.
	ErrExpectations = errors.New("invalid expectations")
	// ErrEmpty means the data file has no header or no data row.
	ErrEmpty = errors.New("empty data file")
	// ErrTooLarge means the data file exceeds one of the limits (MaxBytes,
	// MaxLineBytes, MaxCellBytes, MaxColumns, MaxRows, MaxCells).
	ErrTooLarge = errors.New("data file too large")
	// ErrCSV means the data file is not well-formed CSV with a usable header
	// (a syntax error, a ragged row, an empty or duplicate column name).
	ErrCSV = errors.New("malformed CSV")
	// ErrLabel means the label column given to [Propose] is absent or
	// cannot be described (no values, too many classes).
	ErrLabel = errors.New("unusable label column")
	// ErrPII means [Propose] refused because columns look identifying; the
	// error is a *[PIIError] naming them.
	ErrPII = errors.New("columns look like personal data")
	// ErrNotDescribable means [Propose] found a column that is neither
	// numeric nor a category with at most MaxValues values.
	ErrNotDescribable = errors.New("column cannot be described")
)

// PIIError is returned by [Propose] when columns that would be trained on
// look like personal data. It names the columns and why, never their values.
type PIIError struct {
	Columns []PIIColumn
}

// PIIColumn is one column the PII screen flagged and the kinds it looks like.
type PIIColumn struct {
	Name    string
	Signals []Signal
}

// Error lists the flagged columns, e.g.
// `columns look like personal data: "email" (email: header, 5/5 values)`.
func (e *PIIError) Error() string {
	var b strings.Builder
	b.WriteString(ErrPII.Error())
	b.WriteString(": ")
	for i, c := range e.Columns {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%q (%s)", c.Name, describeSignals(c.Signals))
	}
	b.WriteString(" (ignore them, or remove them from the file)")
	return b.String()
}

// Unwrap returns ErrPII.
func (e *PIIError) Unwrap() error { return ErrPII }
