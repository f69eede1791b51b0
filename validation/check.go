package validation

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fedguard/fedguard/dataset"
)

// Severity says whether a finding stops training (in enforce mode).
type Severity string

// The severities.
const (
	// SeverityWarn is reported but never stops training.
	SeverityWarn Severity = "warn"
	// SeverityError stops training in enforce mode.
	SeverityError Severity = "error"
)

// Rule names the check a finding comes from.
type Rule string

// The rules [Check] applies, in the order it reports them for a column.
const (
	// RuleMissingColumn: a column of the expectations is not in the file.
	RuleMissingColumn Rule = "missing_column"
	// RuleUnexpectedColumn: a file column is neither a feature, the label,
	// nor ignored; the trainer would use it, so it is an error.
	RuleUnexpectedColumn Rule = "unexpected_column"
	// RulePII: the PII screen flagged the column; an error unless the
	// column is ignored.
	RulePII Rule = "pii"
	// RuleMissing: more empty cells than max_missing allows (for the label:
	// any empty cell).
	RuleMissing Rule = "missing"
	// RuleNotNumber: cells of a number column that are not finite numbers.
	RuleNotNumber Rule = "not_number"
	// RuleRange: numbers outside [min, max].
	RuleRange Rule = "range"
	// RuleCategory: values of a category column outside its list.
	RuleCategory Rule = "category"
	// RuleLabelClass: labels that are not one of the classes.
	RuleLabelClass Rule = "label_class"
	// RuleLabelBalance: a class's share of the rows is outside its bounds.
	RuleLabelBalance Rule = "label_balance"
	// RuleUnreadable is never in a Report: callers that report a data file
	// Check could not read (it returned an error) use it, as an error
	// about the whole file.
	RuleUnreadable Rule = "unreadable"
	// RulePrivacyBudget is not a check of the data: a participant agent
	// reports it, as an error about no column, when it sits a round out
	// because training would exceed the hospital's record-level privacy
	// budget (participant.ErrPrivacyBudget).
	RulePrivacyBudget Rule = "privacy_budget"
)

// Known reports whether r is one of the rules above.
func (r Rule) Known() bool {
	switch r {
	case RuleMissingColumn, RuleUnexpectedColumn, RulePII, RuleMissing, RuleNotNumber,
		RuleRange, RuleCategory, RuleLabelClass, RuleLabelBalance, RuleUnreadable, RulePrivacyBudget:
		return true
	}
	return false
}

// Finding is one problem [Check] found. It carries counts and aggregates
// only: never a cell value, nor which rows are at fault.
type Finding struct {
	// Column is the column at fault.
	Column   string   `json:"column"`
	Rule     Rule     `json:"rule"`
	Severity Severity `json:"severity"`
	// Count of Total cells (or rows, or sampled values for RulePII) are at
	// fault; both are 0 for findings about a whole column.
	Count int `json:"count"`
	Total int `json:"total"`
	// Message explains the finding in words, with aggregates such as the
	// observed minimum and maximum; it quotes no cell.
	Message string `json:"message"`
}

// Report is the result of [Check].
type Report struct {
	// Rows and Columns are the size of the data file (header excluded).
	Rows    int `json:"rows"`
	Columns int `json:"columns"`
	// Findings are in file column order, the label's last; empty when the
	// file meets the expectations.
	Findings []Finding `json:"findings"`
}

// Errors returns the number of findings of severity error.
func (r Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == SeverityError {
			n++
		}
	}
	return n
}

// colStat accumulates one column's counts over the rows.
type colStat struct {
	missing   int
	present   int
	numbers   int // present cells that are finite numbers
	min, max  float64
	screen    screen
	distinct  map[string]int // Propose: non-numeric values, at most MaxValues+1
	overflow  bool           // Propose: too many or too long non-numeric values
	track     bool           // Propose: fill distinct
	spec      *Column        // Check: the expectation, nil for others
	allowed   map[string]int // Check: counts of the allowed values or classes
	notAllow  int
	below     int
	above     int
	isLabel   bool
	unchecked bool // ignored or unexpected: screened only
}

func (c *colStat) add(v string, sample bool) {
	if sample {
		c.screen.add(v)
	}
	if v == "" {
		c.missing++
		return
	}
	c.present++
	if c.unchecked {
		return
	}
	x, err := dataset.ParseNumber(v)
	isNum := err == nil
	if isNum {
		if c.numbers == 0 || x < c.min {
			c.min = x
		}
		if c.numbers == 0 || x > c.max {
			c.max = x
		}
		c.numbers++
		if c.spec != nil && c.spec.Type == TypeNumber {
			if c.spec.Min != nil && x < *c.spec.Min {
				c.below++
			}
			if c.spec.Max != nil && x > *c.spec.Max {
				c.above++
			}
		}
	}
	if c.allowed != nil {
		if _, ok := c.allowed[v]; ok {
			c.allowed[v]++
		} else {
			c.notAllow++
		}
	}
	if c.track && (!isNum || c.isLabel) && !c.overflow {
		if _, ok := c.distinct[v]; !ok && (len(c.distinct) >= MaxValues || len(v) > MaxNameBytes) {
			c.overflow = true
			return
		}
		c.distinct[strings.Clone(v)]++
	}
}

// scan reads every row of t into stats (one per header column).
func scan(t *table, stats []*colStat) error {
	for {
		rec, err := t.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		sample := t.rows <= PIISampleRows
		for i, v := range rec {
			stats[i].add(v, sample)
		}
	}
}

// Check reads a CSV data file (a header row, then one row per record) and
// checks it against e and the PII screen. It returns an error only when the
// file cannot be read as CSV within the limits (ErrEmpty, ErrTooLarge,
// ErrCSV) or e is invalid (ErrExpectations); problems with the data itself
// are findings in the report.
func Check(r io.Reader, e Expectations) (Report, error) {
	if err := e.Validate(); err != nil {
		return Report{}, err
	}
	t, err := newTable(r)
	if err != nil {
		return Report{}, err
	}
	specs := make(map[string]*Column, len(e.Columns))
	for i := range e.Columns {
		specs[e.Columns[i].Name] = &e.Columns[i]
	}
	ignored := make(map[string]bool, len(e.Ignore))
	for _, n := range e.Ignore {
		ignored[n] = true
	}
	stats := make([]*colStat, len(t.header))
	inFile := make(map[string]bool, len(t.header))
	for i, h := range t.header {
		inFile[h] = true
		c := &colStat{}
		switch {
		case h == e.Label.Column:
			c.isLabel = true
			c.allowed = make(map[string]int, len(e.Label.Classes))
			for _, cl := range e.Label.Classes {
				c.allowed[cl.Value] = 0
			}
		case specs[h] != nil:
			c.spec = specs[h]
			if c.spec.Type == TypeCategory {
				c.allowed = make(map[string]int, len(c.spec.Values))
				for _, v := range c.spec.Values {
					c.allowed[v] = 0
				}
			}
		default:
			c.unchecked = true
		}
		stats[i] = c
	}
	if err := scan(t, stats); err != nil {
		return Report{}, err
	}

	rep := Report{Rows: t.rows, Columns: len(t.header), Findings: []Finding{}}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	if !inFile[e.Label.Column] {
		add(Finding{Column: e.Label.Column, Rule: RuleMissingColumn, Severity: SeverityError,
			Message: "label column not in the file"})
	}
	for _, c := range e.Columns {
		if !inFile[c.Name] {
			add(Finding{Column: c.Name, Rule: RuleMissingColumn, Severity: SeverityError,
				Message: "column not in the file"})
		}
	}
	rows := t.rows
	var label *colStat
	for i, h := range t.header {
		c := stats[i]
		if c.unchecked && !ignored[h] {
			add(Finding{Column: h, Rule: RuleUnexpectedColumn, Severity: SeverityError,
				Message: "column not in the expectations: describe it, or ignore it"})
		}
		if sig := c.screen.signals(h); len(sig) > 0 {
			f := Finding{Column: h, Rule: RulePII, Severity: SeverityError,
				Message: "looks like personal data (" + describeSignals(sig) + ")"}
			for _, s := range sig {
				if s.Matches > f.Count {
					f.Count, f.Total = s.Matches, s.Sampled
				}
			}
			if ignored[h] {
				f.Severity = SeverityWarn
				f.Message += "; ignored, so not trained on"
			}
			add(f)
		}
		if c.isLabel {
			label = c
			continue
		}
		if c.spec == nil {
			continue
		}
		s := c.spec
		if frac := float64(c.missing) / float64(rows); frac > s.MaxMissing {
			add(Finding{Column: h, Rule: RuleMissing, Severity: SeverityError, Count: c.missing, Total: rows,
				Message: fmt.Sprintf("%d of %d cells empty (%s), max_missing is %s", c.missing, rows, pct(frac), num(s.MaxMissing))})
		}
		switch s.Type {
		case TypeNumber:
			if bad := c.present - c.numbers; bad > 0 {
				add(Finding{Column: h, Rule: RuleNotNumber, Severity: SeverityError, Count: bad, Total: c.present,
					Message: fmt.Sprintf("%d of %d non-empty cells are not finite numbers", bad, c.present)})
			}
			if out := c.below + c.above; out > 0 {
				add(Finding{Column: h, Rule: RuleRange, Severity: SeverityError, Count: out, Total: c.numbers,
					Message: fmt.Sprintf("%d of %d cells out of range %s (%d below, %d above; observed min %s, max %s)",
						out, c.numbers, bounds(s), c.below, c.above, num(c.min), num(c.max))})
			}
		case TypeCategory:
			if c.notAllow > 0 {
				add(Finding{Column: h, Rule: RuleCategory, Severity: SeverityError, Count: c.notAllow, Total: c.present,
					Message: fmt.Sprintf("%d of %d non-empty cells not among the %d allowed values", c.notAllow, c.present, len(s.Values))})
			}
		}
	}
	if label != nil {
		h := e.Label.Column
		if label.missing > 0 {
			add(Finding{Column: h, Rule: RuleMissing, Severity: SeverityError, Count: label.missing, Total: rows,
				Message: fmt.Sprintf("%d of %d labels empty", label.missing, rows)})
		}
		if label.notAllow > 0 {
			add(Finding{Column: h, Rule: RuleLabelClass, Severity: SeverityError, Count: label.notAllow, Total: label.present,
				Message: fmt.Sprintf("%d of %d labels not among the %d classes", label.notAllow, label.present, len(e.Label.Classes))})
		}
		for _, cl := range e.Label.Classes {
			n := label.allowed[cl.Value]
			share := float64(n) / float64(rows)
			if share < cl.MinShare || share > cl.MaxShare {
				add(Finding{Column: h, Rule: RuleLabelBalance, Severity: SeverityError, Count: n, Total: rows,
					Message: fmt.Sprintf("class %q: %d of %d rows (%s), expected %s to %s",
						cl.Value, n, rows, pct(share), pct(cl.MinShare), pct(cl.MaxShare))})
			}
		}
	}
	return rep, nil
}

func bounds(c *Column) string {
	lo, hi := "-inf", "+inf"
	if c.Min != nil {
		lo = num(*c.Min)
	}
	if c.Max != nil {
		hi = num(*c.Max)
	}
	return "[" + lo + ", " + hi + "]"
}

func num(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }

func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" }
