package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// Version is the only expectations file format version this package reads
// and writes. A change that old readers would misread gets a new version.
const Version = 1

// MaxExpectationsBytes is the largest expectations file [ParseExpectations]
// and [LoadExpectations] accept (1 MiB).
const MaxExpectationsBytes = 1 << 20

// Type is the type of a data column.
type Type string

// The column types.
const (
	// TypeNumber is a column of finite plain decimal numbers
	// (dataset.ParseNumber, surrounding white space ignored), as the
	// trainer reads them.
	TypeNumber Type = "number"
	// TypeCategory is a column whose values come from a fixed list.
	TypeCategory Type = "category"
)

// Expectations describes what a hospital's data file must look like. It is
// read from JSON with [ParseExpectations] or [LoadExpectations] and written
// with [Expectations.Marshal]; see the package documentation for the format.
type Expectations struct {
	// Version must be [Version].
	Version int `json:"version"`
	// Label is the label column.
	Label Label `json:"label"`
	// Ignore lists columns that are neither checked nor trained on (a
	// record id, say). They are still screened for PII; a hit is a warning.
	Ignore []string `json:"ignore,omitempty"`
	// Columns are the feature columns, in any order. A file column that is
	// neither here, nor the label, nor ignored is an error.
	Columns []Column `json:"columns"`
}

// Label describes the label column: its name, the classes it may hold and
// the share of rows each class should have.
type Label struct {
	Column  string  `json:"column"`
	Classes []Class `json:"classes"`
}

// Class is one allowed label value and the bounds of its share of the rows,
// both in [0, 1] with MinShare ≤ MaxShare.
type Class struct {
	Value    string  `json:"value"`
	MinShare float64 `json:"min_share"`
	MaxShare float64 `json:"max_share"`
}

// Column describes one feature column.
type Column struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	// Min and Max bound a number column (inclusive); nil means unbounded.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// Values lists the allowed values of a category column (compared after
	// trimming surrounding white space).
	Values []string `json:"values,omitempty"`
	// MaxMissing is the largest allowed fraction of empty cells, in [0, 1].
	MaxMissing float64 `json:"max_missing"`
}

// Limits on the size of an expectations file's contents.
const (
	// MaxColumns is the most columns a data file or an expectations file may have.
	MaxColumns = 2000
	// MaxValues is the most allowed values a category column or label may list.
	MaxValues = 100
	// MaxNameBytes is the longest column name, category value or class.
	MaxNameBytes = 256
)

// ParseExpectations decodes an expectations file strictly: unknown fields,
// trailing data, more than [MaxExpectationsBytes] and invalid contents
// (see [Expectations.Validate]) are errors wrapping [ErrExpectations].
func ParseExpectations(data []byte) (Expectations, error) {
	var e Expectations
	if len(data) > MaxExpectationsBytes {
		return e, fmt.Errorf("validation: %w: more than %d bytes", ErrExpectations, MaxExpectationsBytes)
	}
	if err := strictjson.Unmarshal(data, &e); err != nil {
		return Expectations{}, fmt.Errorf("validation: %w: %v", ErrExpectations, err)
	}
	if err := e.Validate(); err != nil {
		return Expectations{}, err
	}
	return e, nil
}

// LoadExpectations reads and parses the expectations file at path.
func LoadExpectations(path string) (Expectations, error) {
	f, err := os.Open(path)
	if err != nil {
		return Expectations{}, fmt.Errorf("validation: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxExpectationsBytes+1))
	if err != nil {
		return Expectations{}, fmt.Errorf("validation: read %s: %w", path, err)
	}
	e, err := ParseExpectations(data)
	if err != nil {
		return Expectations{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return e, nil
}

// Marshal encodes e as indented JSON with a final newline, the form
// [Propose]'s results are written in. It does not validate e.
func (e Expectations) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("validation: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate checks that e is usable: the version, unique non-empty names
// within the limits, known types, finite bounds with Min ≤ Max, fractions and
// shares in [0, 1], category values only on category columns, and at least
// one label class. Errors wrap [ErrExpectations].
func (e Expectations) Validate() error {
	if err := e.validate(); err != nil {
		return fmt.Errorf("validation: %w: %v", ErrExpectations, err)
	}
	return nil
}

func (e Expectations) validate() error {
	if e.Version != Version {
		return fmt.Errorf("version %d, want %d", e.Version, Version)
	}
	if len(e.Columns)+len(e.Ignore)+1 > MaxColumns {
		return fmt.Errorf("more than %d columns", MaxColumns)
	}
	seen := map[string]string{}
	use := func(name, role string) error {
		if err := checkName(name); err != nil {
			return fmt.Errorf("%s name %q: %v", role, dataset.Excerpt(name), err)
		}
		if prev, ok := seen[name]; ok {
			return fmt.Errorf("column %q is both %s and %s", name, prev, role)
		}
		seen[name] = role
		return nil
	}
	if err := use(e.Label.Column, "label"); err != nil {
		return err
	}
	if len(e.Label.Classes) == 0 {
		return errors.New("label has no classes")
	}
	if len(e.Label.Classes) > MaxValues {
		return fmt.Errorf("label has more than %d classes", MaxValues)
	}
	classes := map[string]bool{}
	for _, c := range e.Label.Classes {
		if err := checkName(c.Value); err != nil {
			return fmt.Errorf("label class %q: %v", dataset.Excerpt(c.Value), err)
		}
		if classes[c.Value] {
			return fmt.Errorf("label class %q listed twice", c.Value)
		}
		classes[c.Value] = true
		if !inUnit(c.MinShare) || !inUnit(c.MaxShare) || c.MinShare > c.MaxShare {
			return fmt.Errorf("label class %q: shares [%v, %v] not within [0, 1] in order", c.Value, c.MinShare, c.MaxShare)
		}
	}
	for _, n := range e.Ignore {
		if err := use(n, "ignored"); err != nil {
			return err
		}
	}
	for _, c := range e.Columns {
		if err := use(c.Name, "feature"); err != nil {
			return err
		}
		if !inUnit(c.MaxMissing) {
			return fmt.Errorf("column %q: max_missing %v not in [0, 1]", c.Name, c.MaxMissing)
		}
		switch c.Type {
		case TypeNumber:
			if len(c.Values) > 0 {
				return fmt.Errorf("column %q: a number column has no values list", c.Name)
			}
			for _, p := range []*float64{c.Min, c.Max} {
				if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
					return fmt.Errorf("column %q: bound not finite", c.Name)
				}
			}
			if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
				return fmt.Errorf("column %q: min %v > max %v", c.Name, *c.Min, *c.Max)
			}
		case TypeCategory:
			if c.Min != nil || c.Max != nil {
				return fmt.Errorf("column %q: a category column has no min or max", c.Name)
			}
			if len(c.Values) == 0 || len(c.Values) > MaxValues {
				return fmt.Errorf("column %q: %d values, want 1 to %d", c.Name, len(c.Values), MaxValues)
			}
			vals := map[string]bool{}
			for _, v := range c.Values {
				if err := checkName(v); err != nil {
					return fmt.Errorf("column %q: value %q: %v", c.Name, dataset.Excerpt(v), err)
				}
				if vals[v] {
					return fmt.Errorf("column %q: value %q listed twice", c.Name, v)
				}
				vals[v] = true
			}
		default:
			return fmt.Errorf("column %q: type %q, want %q or %q", c.Name, c.Type, TypeNumber, TypeCategory)
		}
	}
	return nil
}

func inUnit(x float64) bool { return x >= 0 && x <= 1 }

// checkName accepts what a trimmed CSV header name or cell can be.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxNameBytes:
		return fmt.Errorf("longer than %d bytes", MaxNameBytes)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	case strings.TrimSpace(s) != s:
		return errors.New("surrounding white space")
	}
	return nil
}
