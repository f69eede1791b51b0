package validation

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Margins [Propose] widens what it observed by.
const (
	// RangeMargin widens a number column's observed [min, max] by this
	// fraction of its width on each side (of |min| or 1 when all values are
	// equal); the lower bound stays at 0 when every value is non-negative.
	// Bounds are then rounded outwards to three significant digits of the width.
	RangeMargin = 0.1
	// MissingMargin is added to a column's observed missing fraction (when
	// it is not 0), rounded up to a hundredth and capped at 1.
	MissingMargin = 0.05
	// BalanceMargin is subtracted from and added to each class's observed
	// share (rounded outwards to a hundredth and kept within [0, 1]).
	BalanceMargin = 0.1
)

// ProposeOption adjusts [Propose].
type ProposeOption func(*proposeOptions)

type proposeOptions struct{ ignore []string }

// IgnoreColumns makes [Propose] list the named columns as ignored instead
// of describing them. Names absent from the file are fine.
func IgnoreColumns(names ...string) ProposeOption {
	return func(o *proposeOptions) { o.ignore = append(o.ignore, names...) }
}

// Propose reads a CSV data file and proposes expectations that it meets: a
// number column for every column whose non-empty cells are all finite
// numbers, a category column for one with at most [MaxValues] distinct
// values, and the label's classes with bounds around their shares, widened
// by the documented margins. It refuses with a *[PIIError] when a column
// other than the ignored ones looks like personal data, and with
// ErrNotDescribable when a column is neither numeric nor a category.
func Propose(r io.Reader, label string, opts ...ProposeOption) (Expectations, error) {
	var o proposeOptions
	for _, f := range opts {
		f(&o)
	}
	if err := checkName(label); err != nil {
		return Expectations{}, fmt.Errorf("validation: %w: label name: %v", ErrLabel, err)
	}
	if slices.Contains(o.ignore, label) {
		return Expectations{}, fmt.Errorf("validation: %w: label %q is also ignored", ErrLabel, label)
	}
	t, err := newTable(r)
	if err != nil {
		return Expectations{}, err
	}
	if !slices.Contains(t.header, label) {
		return Expectations{}, fmt.Errorf("validation: %w: no column %q in the header", ErrLabel, label)
	}
	stats := make([]*colStat, len(t.header))
	for i, h := range t.header {
		c := &colStat{track: true, distinct: map[string]int{}, isLabel: h == label}
		if slices.Contains(o.ignore, h) {
			c.unchecked, c.track = true, false
		}
		stats[i] = c
	}
	if err := scan(t, stats); err != nil {
		return Expectations{}, err
	}

	var pii PIIError
	for i, h := range t.header {
		if stats[i].unchecked {
			continue
		}
		if sig := stats[i].screen.signals(h); len(sig) > 0 {
			pii.Columns = append(pii.Columns, PIIColumn{Name: h, Signals: sig})
		}
	}
	if len(pii.Columns) > 0 {
		return Expectations{}, fmt.Errorf("validation: %w", &pii)
	}

	rows := t.rows
	e := Expectations{Version: Version, Label: Label{Column: label}, Columns: []Column{}}
	for _, n := range o.ignore {
		if slices.Contains(t.header, n) && !slices.Contains(e.Ignore, n) {
			e.Ignore = append(e.Ignore, n)
		}
	}
	for i, h := range t.header {
		c := stats[i]
		switch {
		case c.unchecked:
			continue
		case c.isLabel:
			if c.missing > 0 {
				return Expectations{}, fmt.Errorf("validation: %w: %d of %d labels are empty", ErrLabel, c.missing, rows)
			}
			if c.overflow {
				return Expectations{}, fmt.Errorf("validation: %w: more than %d classes", ErrLabel, MaxValues)
			}
			for _, v := range sortedKeys(c.distinct) {
				share := float64(c.distinct[v]) / float64(rows)
				e.Label.Classes = append(e.Label.Classes, Class{
					Value:    v,
					MinShare: roundDown(max(0, share-BalanceMargin), 2),
					MaxShare: roundUp(min(1, share+BalanceMargin), 2),
				})
			}
			continue
		}
		col := Column{Name: h, MaxMissing: proposeMissing(c.missing, rows)}
		switch {
		case c.present == 0:
			return Expectations{}, fmt.Errorf("validation: %w: column %q is empty: ignore it or remove it", ErrNotDescribable, h)
		case c.numbers == c.present:
			col.Type = TypeNumber
			lo, hi := widen(c.min, c.max)
			col.Min, col.Max = &lo, &hi
		case c.numbers == 0 && !c.overflow:
			col.Type = TypeCategory
			col.Values = sortedKeys(c.distinct)
		default:
			return Expectations{}, fmt.Errorf("validation: %w: column %q mixes numbers and text or has more than %d distinct values: ignore it or fix it",
				ErrNotDescribable, h, MaxValues)
		}
		e.Columns = append(e.Columns, col)
	}
	if err := e.Validate(); err != nil {
		return Expectations{}, err // cannot happen: the file's names passed the same checks
	}
	return e, nil
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func proposeMissing(missing, rows int) float64 {
	if missing == 0 {
		return 0
	}
	return min(1, roundUp(float64(missing)/float64(rows)+MissingMargin, 2))
}

// widen applies RangeMargin to [lo, hi] and rounds outwards.
func widen(lo, hi float64) (float64, float64) {
	w := hi - lo
	if w == 0 {
		w = math.Abs(lo)
		w = cmp.Or(w, 1)
	}
	nlo, nhi := lo-RangeMargin*w, hi+RangeMargin*w
	if lo >= 0 && nlo < 0 {
		nlo = 0
	}
	if math.IsInf(nlo, 0) || math.IsInf(nhi, 0) || math.IsInf(w, 0) {
		return math.Max(nlo, -math.MaxFloat64), math.Min(nhi, math.MaxFloat64)
	}
	// Three significant digits of the width: w=12.3 → 1 decimal.
	dec := max(0, 2-int(math.Floor(math.Log10(w))))
	dec = min(dec, 15)
	return roundDown(nlo, dec), roundUp(nhi, dec)
}

// roundDown and roundUp round x to dec decimals, towards -inf and +inf,
// returning the float64 nearest to the decimal so it prints short.
// A slack of 1e-9 units keeps float noise (0.2+0.1 = 0.30000000000000004)
// from pushing a bound a whole unit out.
func roundDown(x float64, dec int) float64 {
	return roundTo(func(y float64) float64 { return math.Floor(y + 1e-9) }, x, dec)
}

func roundUp(x float64, dec int) float64 {
	return roundTo(func(y float64) float64 { return math.Ceil(y - 1e-9) }, x, dec)
}

func roundTo(f func(float64) float64, x float64, dec int) float64 {
	p := math.Pow10(dec)
	y := f(x*p) / p
	if math.IsInf(y, 0) || math.IsNaN(y) {
		return x
	}
	z, err := strconv.ParseFloat(strconv.FormatFloat(y, 'f', dec, 64), 64)
	if err != nil {
		return x
	}
	return z
}
