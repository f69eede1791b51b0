package dataset

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
)

// Table is a labelled numeric table read from a hospital's CSV file.
type Table struct {
	Features []string    // feature column names in the order of X's columns
	X        [][]float64 // rows × features
	Labels   []string    // raw label per row
}

// Len returns the number of rows, so callers need not know which slice to measure.
func (t *Table) Len() int { return len(t.X) }

// Subset returns a new table with the rows idx (in that order, repeats allowed). Rows
// are copied, so the subset can be standardized without touching t.
func (t *Table) Subset(idx []int) *Table {
	s := &Table{
		Features: slices.Clone(t.Features),
		X:        make([][]float64, len(idx)),
		Labels:   make([]string, len(idx)),
	}
	w := len(t.Features)
	backing := make([]float64, len(idx)*w)
	for i, j := range idx {
		row := backing[i*w : (i+1)*w : (i+1)*w]
		copy(row, t.X[j])
		s.X[i] = row
		s.Labels[i] = t.Labels[j]
	}
	return s
}

// Stats are per-feature aggregates: the only thing about the data that leaves a hospital for scaling.
// Sums of several hospitals' Stats (Merge) give federation-wide moments without any row.
type Stats struct {
	Count      uint64    // number of rows
	Sum        []float64 // per feature: Σ x
	SumSquares []float64 // per feature: Σ x²
}

// Stats computes the table's per-feature count, sum and sum of squares.
func (t *Table) Stats() Stats {
	w := len(t.Features)
	s := Stats{Count: uint64(len(t.X)), Sum: make([]float64, w), SumSquares: make([]float64, w)}
	for _, row := range t.X {
		row = row[:w]
		for j, v := range row {
			s.Sum[j] += v
			s.SumSquares[j] += v * v
		}
	}
	return s
}

// Merge adds other stats (same width, error otherwise). A zero Stats{} adopts the
// width of the first stats merged into it, so it can serve as an accumulator.
func (s *Stats) Merge(o Stats) error {
	if len(o.Sum) != len(o.SumSquares) {
		return fmt.Errorf("dataset: merge stats: malformed stats (%d sums, %d sums of squares)", len(o.Sum), len(o.SumSquares))
	}
	if s.Count == 0 && s.Sum == nil && s.SumSquares == nil {
		s.Sum = make([]float64, len(o.Sum))
		s.SumSquares = make([]float64, len(o.SumSquares))
	}
	if len(s.Sum) != len(o.Sum) || len(s.SumSquares) != len(o.SumSquares) {
		return fmt.Errorf("dataset: merge stats: width %d, want %d", len(o.Sum), len(s.Sum))
	}
	if s.Count+o.Count < s.Count {
		return errors.New("dataset: merge stats: row count overflows uint64")
	}
	s.Count += o.Count
	for j := range s.Sum {
		s.Sum[j] += o.Sum[j]
		s.SumSquares[j] += o.SumSquares[j]
	}
	return nil
}

// Scaling is a federation-wide standardization: every party maps feature j to
// (x - Mean[j]) / Std[j] with the same numbers, so their models see the same space.
type Scaling struct{ Mean, Std []float64 }

// MinStd is the standard deviation below which a column counts as
// constant: ScalingFrom gives such a column a deviation of 1, so no
// scaling it derives has a smaller one.
const MinStd = 1e-12

// ScalingFrom derives mean and (population) std from merged stats; a std below 1e-12 becomes 1 (constant column); Count 0 is an error.
// A variance within float64 rounding noise of the second moment (relative 2⁻⁴⁶) is
// also treated as constant, since Σx² - n·mean² cancels catastrophically there.
func ScalingFrom(s Stats) (Scaling, error) {
	if s.Count == 0 {
		return Scaling{}, errors.New("dataset: scaling from stats with zero rows")
	}
	if len(s.Sum) != len(s.SumSquares) {
		return Scaling{}, fmt.Errorf("dataset: scaling: malformed stats (%d sums, %d sums of squares)", len(s.Sum), len(s.SumSquares))
	}
	n := float64(s.Count)
	sc := Scaling{Mean: make([]float64, len(s.Sum)), Std: make([]float64, len(s.Sum))}
	for j := range s.Sum {
		mean := s.Sum[j] / n
		m2 := s.SumSquares[j] / n
		if math.IsNaN(mean) || math.IsInf(mean, 0) || math.IsNaN(m2) || math.IsInf(m2, 0) || m2 < 0 {
			return Scaling{}, fmt.Errorf("dataset: scaling: feature %d: non-finite or negative moments", j)
		}
		v := m2 - mean*mean
		std := math.Sqrt(max(v, 0))
		if std < MinStd || v <= 0x1p-46*m2 {
			std = 1
		}
		sc.Mean[j], sc.Std[j] = mean, std
	}
	return sc, nil
}

// Standardize applies s to every row in place; the width must match the table's.
func (t *Table) Standardize(s Scaling) error {
	w := len(t.Features)
	if len(s.Mean) != w || len(s.Std) != w {
		return fmt.Errorf("dataset: standardize: scaling width %d/%d, table has %d features", len(s.Mean), len(s.Std), w)
	}
	for j, sd := range s.Std {
		if !(sd > 0) || math.IsInf(sd, 0) || math.IsNaN(s.Mean[j]) || math.IsInf(s.Mean[j], 0) {
			return fmt.Errorf("dataset: standardize: feature %q: invalid scaling (mean %v, std %v)", t.Features[j], s.Mean[j], sd)
		}
	}
	for i, row := range t.X {
		row = row[:w]
		for j := range row {
			v := (row[j] - s.Mean[j]) / s.Std[j]
			if math.IsInf(v, 0) || math.IsNaN(v) {
				// Half-scaled rows are no use to the caller: it must
				// drop the table.
				return fmt.Errorf("dataset: standardize: row %d, feature %q: the scaling (mean %v, std %v) makes the value non-finite", i, t.Features[j], s.Mean[j], s.Std[j])
			}
			row[j] = v
		}
	}
	return nil
}

// Encode maps labels to class indices; an unknown label is an error naming the row and label.
// Index i of the result is classes' position of Labels[i]; rows are counted from 0.
// The federation fixes classes so that every party uses the same indices.
func (t *Table) Encode(classes []string) ([]int, error) {
	idx := make(map[string]int, len(classes))
	for i, c := range classes {
		if _, dup := idx[c]; dup {
			return nil, fmt.Errorf("dataset: encode: class %q listed twice", c)
		}
		idx[c] = i
	}
	y := make([]int, len(t.Labels))
	for i, l := range t.Labels {
		c, ok := idx[l]
		if !ok {
			return nil, fmt.Errorf("dataset: encode: row %d: unknown label %q (classes %q)", i, l, classes)
		}
		y[i] = c
	}
	return y, nil
}

// groups returns the row indices of each label, labels in sorted order, so that
// iteration is independent of map order and results are deterministic for a seed.
func (t *Table) groups() ([]string, map[string][]int) {
	g := make(map[string][]int)
	for i, l := range t.Labels {
		g[l] = append(g[l], i)
	}
	labels := make([]string, 0, len(g))
	for l := range g {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return labels, g
}

// Split holds out a stratified fraction (by label) with a seeded *rand.Rand (math/rand/v2, PCG): deterministic for a seed.
// From each label's rows it draws round(holdout·count) at random for test; the rest
// is train. Both keep the table's row order. holdout is clamped to [0, 1] (NaN is 0);
// rng must not be nil.
func (t *Table) Split(holdout float64, rng *rand.Rand) (train, test *Table) {
	if !(holdout > 0) {
		holdout = 0
	}
	holdout = min(holdout, 1)
	labels, g := t.groups()
	inTest := make([]bool, t.Len())
	for _, l := range labels {
		rows := slices.Clone(g[l])
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		k := int(math.Round(holdout * float64(len(rows))))
		for _, r := range rows[:k] {
			inTest[r] = true
		}
	}
	var tr, te []int
	for i, b := range inTest {
		if b {
			te = append(te, i)
		} else {
			tr = append(tr, i)
		}
	}
	return t.Subset(tr), t.Subset(te)
}

// Partition splits a table among k parties with given size fractions and a label skew: for each party a preferred label; skew in [0,1) is the share of that party's rows drawn from its preferred label where available. Deterministic for a seed.
//
// It simulates hospitals whose case mix differs (non-IID data). Fractions must be
// positive and are normalized by their sum; party sizes use the largest-remainder
// method and are at least one row each (an error if the table has fewer rows than
// parties). Every row goes to exactly one party. Each party first takes
// ⌈skew·size⌉ rows of its preferred label (parties in order, while that label
// lasts), then the remaining rows are dealt out at random, so a party's preferred
// share is at least skew where the label suffices, and skew 0 is a uniform split.
// An empty preferred label means no preference; an unknown one is an error.
// Rows keep the table's order within each part; rng must not be nil.
func (t *Table) Partition(fractions []float64, preferred []string, skew float64, rng *rand.Rand) ([]*Table, error) {
	k := len(fractions)
	n := t.Len()
	switch {
	case k == 0:
		return nil, errors.New("dataset: partition: no parties")
	case len(preferred) != k:
		return nil, fmt.Errorf("dataset: partition: %d preferred labels for %d parties", len(preferred), k)
	case !(skew >= 0 && skew < 1):
		return nil, fmt.Errorf("dataset: partition: skew %v not in [0, 1)", skew)
	case n < k:
		return nil, fmt.Errorf("dataset: partition: %d rows cannot give %d parties a row each", n, k)
	}
	total := 0.0
	for i, f := range fractions {
		if !(f > 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("dataset: partition: fraction %d is %v, want a positive number", i, f)
		}
		total += f
	}
	labels, g := t.groups()
	for i, p := range preferred {
		if _, ok := g[p]; p != "" && !ok {
			return nil, fmt.Errorf("dataset: partition: party %d: preferred label %q not in the table", i, p)
		}
	}
	sizes := partSizes(fractions, total, n)

	pools := make(map[string][]int, len(labels))
	for _, l := range labels {
		rows := slices.Clone(g[l])
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		pools[l] = rows
	}
	parts := make([][]int, k)
	for i, p := range preferred {
		if p == "" {
			continue
		}
		want := min(int(math.Ceil(skew*float64(sizes[i])-1e-9)), len(pools[p]))
		parts[i] = append(parts[i], pools[p][:want]...)
		pools[p] = pools[p][want:]
	}
	var rest []int
	for _, l := range labels {
		rest = append(rest, pools[l]...)
	}
	rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	for i := range parts {
		need := sizes[i] - len(parts[i])
		parts[i] = append(parts[i], rest[:need]...)
		rest = rest[need:]
	}
	out := make([]*Table, k)
	for i, p := range parts {
		slices.Sort(p)
		out[i] = t.Subset(p)
	}
	return out, nil
}

// partSizes splits n rows by fractions (largest remainder, ties to the lower index),
// then moves rows from the largest parts so that every part has at least one.
func partSizes(fractions []float64, total float64, n int) []int {
	k := len(fractions)
	sizes := make([]int, k)
	rem := make([]float64, k)
	used := 0
	for i, f := range fractions {
		exact := f / total * float64(n)
		sizes[i] = min(int(math.Floor(exact)), n)
		rem[i] = exact - float64(sizes[i])
		used += sizes[i]
	}
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for i := 0; used < n; i = (i + 1) % k {
		sizes[order[i]]++
		used++
	}
	for used > n { // rounding of huge fractions; never expected, keeps the sum exact
		sizes[slices.Index(sizes, slices.Max(sizes))]--
		used--
	}
	for i := range sizes {
		if sizes[i] == 0 {
			sizes[slices.Index(sizes, slices.Max(sizes))]--
			sizes[i] = 1
		}
	}
	return sizes
}

// WriteCSV writes the table with a header of Features then label, one row per record,
// numbers in the shortest form that parses back to the same float64, so that
// ReadCSV(…, ReadOptions{Label: label}) returns an equal table.
func (t *Table) WriteCSV(w io.Writer, label string) error {
	if label == "" {
		return errors.New("dataset: write csv: empty label column name")
	}
	if slices.Contains(t.Features, label) {
		return fmt.Errorf("dataset: write csv: label column %q is also a feature", label)
	}
	if len(t.Labels) != len(t.X) {
		return fmt.Errorf("dataset: write csv: %d labels for %d rows", len(t.Labels), len(t.X))
	}
	cw := csv.NewWriter(w)
	rec := make([]string, 0, len(t.Features)+1)
	rec = append(append(rec, t.Features...), label)
	if err := cw.Write(rec); err != nil {
		return fmt.Errorf("dataset: write csv: %w", err)
	}
	var buf []byte
	ends := make([]int, 0, len(t.Features))
	for i, row := range t.X {
		if len(row) != len(t.Features) {
			return fmt.Errorf("dataset: write csv: row %d has %d values, want %d", i, len(row), len(t.Features))
		}
		// One buffer per row keeps allocations to one string per row, not per cell.
		buf, ends = buf[:0], ends[:0]
		for _, v := range row {
			buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
			ends = append(ends, len(buf))
		}
		s := string(buf)
		rec = rec[:0]
		start := 0
		for _, e := range ends {
			rec = append(rec, s[start:e])
			start = e
		}
		rec = append(rec, t.Labels[i])
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("dataset: write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("dataset: write csv: %w", err)
	}
	return nil
}
