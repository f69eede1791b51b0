package validation

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fedguard/fedguard/dataset"
)

// Limits that bound what [Check] and [Propose] read, so that a malformed or
// hostile file fails early with ErrTooLarge instead of exhausting the host.
// They match package dataset's limits where both have one.
const (
	// MaxRows is the most data rows (1,000,000, dataset.DefaultMaxRows).
	MaxRows = 1_000_000
	// MaxBytes is the most input read (1 GiB, dataset.MaxBytes).
	MaxBytes = 1 << 30
	// MaxLineBytes is the longest physical line (8 MiB, dataset.MaxLineBytes).
	MaxLineBytes = 8 << 20
	// MaxCellBytes is the longest cell (64 KiB).
	MaxCellBytes = 64 << 10
	// MaxCells is the most cells, header excluded (100,000,000).
	MaxCells = 100_000_000
)

// The limits actually enforced; tests lower them to exercise the errors cheaply.
var (
	maxRows      = MaxRows
	maxBytes     = int64(MaxBytes)
	maxLineBytes = int64(MaxLineBytes)
	maxCellBytes = MaxCellBytes
	maxCells     = MaxCells
)

// table reads a CSV file row by row within the limits. Cells are trimmed of
// surrounding white space, like package dataset does.
type table struct {
	cr     *csv.Reader
	header []string
	rows   int
}

func newTable(r io.Reader) (*table, error) {
	cr := csv.NewReader(dataset.NewBoundedReader(r, maxBytes, maxLineBytes))
	cr.ReuseRecord = true
	rec, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("validation: %w: no header", ErrEmpty)
		}
		return nil, csvError(err)
	}
	if err := dataset.CheckSeparator(rec); err != nil {
		return nil, fmt.Errorf("validation: %w: %w", ErrCSV, err)
	}
	if len(rec) > MaxColumns {
		return nil, fmt.Errorf("validation: %w: more than %d columns", ErrTooLarge, MaxColumns)
	}
	t := &table{cr: cr, header: make([]string, len(rec))}
	seen := make(map[string]int, len(rec))
	for i, h := range rec {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.TrimSpace(h)
		if err := checkName(h); err != nil {
			return nil, fmt.Errorf("validation: %w: column %d name: %v", ErrCSV, i+1, err)
		}
		if j, dup := seen[h]; dup {
			return nil, fmt.Errorf("validation: %w: duplicate column %q (columns %d and %d)", ErrCSV, h, j+1, i+1)
		}
		seen[h] = i
		t.header[i] = strings.Clone(h)
	}
	return t, nil
}

// next returns the next row's trimmed cells (valid until the next call), or
// io.EOF. Errors never quote a cell.
func (t *table) next() ([]string, error) {
	rec, err := t.cr.Read()
	if err == io.EOF {
		if t.rows == 0 {
			return nil, fmt.Errorf("validation: %w: header but no data rows", ErrEmpty)
		}
		return nil, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(err, csv.ErrFieldCount) {
			return nil, fmt.Errorf("validation: %w: line %d has %d fields, header has %d", ErrCSV, pe.StartLine, len(rec), len(t.header))
		}
		return nil, csvError(err)
	}
	t.rows++
	if t.rows > maxRows {
		return nil, fmt.Errorf("validation: %w: more than %d data rows", ErrTooLarge, maxRows)
	}
	if t.rows*len(t.header) > maxCells {
		return nil, fmt.Errorf("validation: %w: more than %d cells", ErrTooLarge, maxCells)
	}
	for i, c := range rec {
		if len(c) > maxCellBytes {
			line, _ := t.cr.FieldPos(i)
			return nil, fmt.Errorf("validation: %w: line %d column %q: cell longer than %d bytes", ErrTooLarge, line, t.header[i], maxCellBytes)
		}
		rec[i] = strings.TrimSpace(c)
	}
	return rec, nil
}

func csvError(err error) error {
	if errors.Is(err, dataset.ErrTooLarge) {
		return fmt.Errorf("validation: %w: %v", ErrTooLarge, strings.TrimPrefix(err.Error(), dataset.ErrTooLarge.Error()+": "))
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		// ParseError never quotes the data; keep line, column and cause.
		return fmt.Errorf("validation: %w: %v", ErrCSV, pe)
	}
	return fmt.Errorf("validation: read: %w", err)
}
