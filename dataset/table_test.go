package dataset

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func labelCounts(t *Table) map[string]int {
	c := map[string]int{}
	for _, l := range t.Labels {
		c[l]++
	}
	return c
}

// toy returns a table with nB rows labelled "B" then nM labelled "M"; row i has
// features (i, i²) so rows can be identified after shuffling.
func toy(nB, nM int) *Table {
	t := &Table{Features: []string{"i", "sq"}}
	for i := range nB + nM {
		t.X = append(t.X, []float64{float64(i), float64(i * i)})
		l := "B"
		if i >= nB {
			l = "M"
		}
		t.Labels = append(t.Labels, l)
	}
	return t
}

func rowIDs(t *Table) []int {
	ids := make([]int, t.Len())
	for i, r := range t.X {
		ids[i] = int(r[0])
	}
	return ids
}

func TestStatsMergeOfPartitionsEqualsWhole(t *testing.T) {
	tab := readWDBC(t)
	parts, err := tab.Partition([]float64{0.5, 0.3, 0.2}, []string{"M", "B", ""}, 0.6, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	var merged Stats
	for _, p := range parts {
		if err := merged.Merge(p.Stats()); err != nil {
			t.Fatalf("Merge error: %v", err)
		}
	}
	whole := tab.Stats()
	if diff := cmp.Diff(whole, merged, cmpopts.EquateApprox(1e-12, 0)); diff != "" {
		t.Errorf("merged partition stats != whole stats (-whole +merged):\n%s", diff)
	}
	if err := merged.Merge(Stats{Count: 1, Sum: []float64{1}, SumSquares: []float64{1}}); err == nil || !strings.Contains(err.Error(), "width 1, want 30") {
		t.Errorf("Merge(width 1) error = %v, want width mismatch", err)
	}
	if err := merged.Merge(Stats{Sum: []float64{1}}); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("Merge(malformed) error = %v, want malformed", err)
	}
}

func TestScaling(t *testing.T) {
	tab := &Table{
		Features: []string{"x", "const", "bigconst"},
		X:        [][]float64{{1, 5, 1e9 + 0.1}, {2, 5, 1e9 + 0.1}, {3, 5, 1e9 + 0.1}, {6, 5, 1e9 + 0.1}},
		Labels:   []string{"a", "a", "b", "b"},
	}
	sc, err := ScalingFrom(tab.Stats())
	if err != nil {
		t.Fatal(err)
	}
	want := Scaling{Mean: []float64{3, 5, 1e9 + 0.1}, Std: []float64{math.Sqrt(3.5), 1, 1}}
	if diff := cmp.Diff(want, sc, cmpopts.EquateApprox(1e-12, 0)); diff != "" {
		t.Errorf("ScalingFrom mismatch (-want +got):\n%s", diff)
	}
	if err := tab.Standardize(sc); err != nil {
		t.Fatal(err)
	}
	after, _ := ScalingFrom(tab.Stats())
	if math.Abs(after.Mean[0]) > 1e-12 || math.Abs(after.Std[0]-1) > 1e-12 || tab.X[0][1] != 0 {
		t.Errorf("after Standardize: mean %v std %v row0 %v, want 0, 1, const→0", after.Mean[0], after.Std[0], tab.X[0])
	}

	errs := []struct {
		name string
		err  error
		want string
	}{
		{"zero count", func() error { _, err := ScalingFrom(Stats{}); return err }(), "zero rows"},
		{"non-finite", func() error {
			_, err := ScalingFrom(Stats{Count: 1, Sum: []float64{math.Inf(1)}, SumSquares: []float64{1}})
			return err
		}(), "feature 0: non-finite"},
		{"width", tab.Standardize(Scaling{Mean: []float64{0}, Std: []float64{1}}), "scaling width 1/1, table has 3 features"},
		{"zero std", tab.Standardize(Scaling{Mean: []float64{0, 0, 0}, Std: []float64{1, 0, 1}}), `feature "const": invalid scaling`},
		// Before, this standardized to infinities without an error.
		{"overflow", tab.Standardize(Scaling{Mean: []float64{1e300, 0, 0}, Std: []float64{MinStd, 1, 1}}), "makes the value non-finite"},
	}
	for _, e := range errs {
		if e.err == nil || !strings.Contains(e.err.Error(), e.want) {
			t.Errorf("%s: error = %v, want %q", e.name, e.err, e.want)
		}
	}
}

func TestEncode(t *testing.T) {
	tab := &Table{Features: []string{"a"}, X: [][]float64{{1}, {2}, {3}}, Labels: []string{"M", "B", "M"}}
	got, err := tab.Encode([]string{"B", "M"})
	if err != nil || !slices.Equal(got, []int{1, 0, 1}) {
		t.Errorf("Encode = %v, %v, want [1 0 1]", got, err)
	}
	tab.Labels[2] = "X"
	if _, err := tab.Encode([]string{"B", "M"}); err == nil || !strings.Contains(err.Error(), `row 2: unknown label "X"`) {
		t.Errorf("Encode(unknown) error = %v", err)
	}
	if _, err := tab.Encode([]string{"B", "B"}); err == nil || !strings.Contains(err.Error(), `class "B" listed twice`) {
		t.Errorf("Encode(dup classes) error = %v", err)
	}
}

func TestSubsetCopies(t *testing.T) {
	tab := toy(2, 2)
	s := tab.Subset([]int{3, 0, 3})
	if diff := cmp.Diff([]int{3, 0, 3}, rowIDs(s)); diff != "" || !slices.Equal(s.Labels, []string{"M", "B", "M"}) {
		t.Errorf("Subset rows %v labels %v", rowIDs(s), s.Labels)
	}
	s.X[0][0] = 99
	s.Features[0] = "changed"
	if tab.X[3][0] != 3 || tab.Features[0] != "i" || s.X[2][0] != 3 {
		t.Errorf("Subset shares memory with the table")
	}
}

func TestSplit(t *testing.T) {
	tab := readWDBC(t)
	train, test := tab.Split(0.2, rand.New(rand.NewPCG(7, 7)))
	if diff := cmp.Diff(map[string]int{"B": 71, "M": 42}, labelCounts(test)); diff != "" {
		t.Errorf("test label counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"B": 286, "M": 170}, labelCounts(train)); diff != "" {
		t.Errorf("train label counts (-want +got):\n%s", diff)
	}
	// Disjoint and complete: use toy rows whose first feature is their index.
	toyT := toy(50, 31)
	tr, te := toyT.Split(0.25, rand.New(rand.NewPCG(1, 1)))
	all := append(rowIDs(tr), rowIDs(te)...)
	slices.Sort(all)
	if want := rowIDs(toyT); !slices.Equal(all, want) {
		t.Errorf("train ∪ test = %v, want every row once", all)
	}
	if !slices.IsSorted(rowIDs(tr)) || !slices.IsSorted(rowIDs(te)) {
		t.Errorf("Split does not keep row order")
	}
	// Deterministic for a seed, different for another.
	_, te2 := toyT.Split(0.25, rand.New(rand.NewPCG(1, 1)))
	_, te3 := toyT.Split(0.25, rand.New(rand.NewPCG(2, 1)))
	if !slices.Equal(rowIDs(te), rowIDs(te2)) {
		t.Errorf("Split with the same seed differs: %v vs %v", rowIDs(te), rowIDs(te2))
	}
	if slices.Equal(rowIDs(te), rowIDs(te3)) {
		t.Errorf("Split with different seeds gave the same rows %v", rowIDs(te))
	}
	for _, h := range []float64{-1, 0, math.NaN()} {
		if tr, te := toyT.Split(h, rand.New(rand.NewPCG(1, 1))); tr.Len() != 81 || te.Len() != 0 {
			t.Errorf("Split(%v) sizes %d/%d, want 81/0", h, tr.Len(), te.Len())
		}
	}
	if tr, te := toyT.Split(2, rand.New(rand.NewPCG(1, 1))); tr.Len() != 0 || te.Len() != 81 {
		t.Errorf("Split(2) sizes %d/%d, want 0/81", tr.Len(), te.Len())
	}
}

func TestPartition(t *testing.T) {
	tab := toy(600, 400)
	tests := []struct {
		name      string
		fractions []float64
		preferred []string
		skew      float64
		sizes     []int
	}{
		{"iid equal", []float64{1, 1, 1, 1}, []string{"", "", "", ""}, 0, []int{250, 250, 250, 250}},
		{"unnormalized fractions", []float64{5, 3, 2}, []string{"B", "M", "B"}, 0.6, []int{500, 300, 200}},
		{"largest remainder", []float64{1, 1, 1}, []string{"B", "B", "M"}, 0.5, []int{334, 333, 333}},
		{"tiny party still gets a row", []float64{1, 1e-9}, []string{"B", "M"}, 0.5, []int{999, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := tab.Partition(tt.fractions, tt.preferred, tt.skew, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			var sizes, all []int
			for i, p := range parts {
				sizes = append(sizes, p.Len())
				all = append(all, rowIDs(p)...)
				if pref := tt.preferred[i]; pref != "" {
					share := float64(labelCounts(p)[pref]) / float64(p.Len())
					if share+1e-9 < tt.skew {
						t.Errorf("party %d: share of %q = %.3f, want >= skew %v", i, pref, share, tt.skew)
					}
				}
			}
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("sizes = %v, want %v", sizes, tt.sizes)
			}
			slices.Sort(all)
			if !slices.Equal(all, rowIDs(tab)) {
				t.Errorf("parts do not cover every row exactly once")
			}
			again, _ := tab.Partition(tt.fractions, tt.preferred, tt.skew, rand.New(rand.NewPCG(3, 4)))
			for i := range parts {
				if !slices.Equal(rowIDs(parts[i]), rowIDs(again[i])) {
					t.Errorf("party %d differs for the same seed", i)
				}
			}
		})
	}

	// Skew really skews: with skew 0.75, party 0 (prefers M) is mostly M although M is 40%.
	parts, err := tab.Partition([]float64{1, 1}, []string{"M", "B"}, 0.75, rand.New(rand.NewPCG(5, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if c := labelCounts(parts[0]); c["M"] < 375 {
		t.Errorf("skewed party 0 counts %v, want >= 375 M of 500", c)
	}
	// Preferred label runs out: party 1 and 2 both want the 400 M rows at 0.9·500.
	parts, err = tab.Partition([]float64{1, 1}, []string{"M", "M"}, 0.9, rand.New(rand.NewPCG(5, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if c0, c1 := labelCounts(parts[0]), labelCounts(parts[1]); c0["M"] != 400 || c1["M"] != 0 {
		t.Errorf("exhausted preference: counts %v / %v", c0, c1)
	}

	errs := []struct {
		name      string
		fractions []float64
		preferred []string
		skew      float64
		want      string
	}{
		{"no parties", nil, nil, 0, "no parties"},
		{"preferred length", []float64{1, 1}, []string{"B"}, 0, "1 preferred labels for 2 parties"},
		{"skew 1", []float64{1}, []string{""}, 1, "skew 1 not in [0, 1)"},
		{"skew negative", []float64{1}, []string{""}, -0.1, "skew -0.1 not in [0, 1)"},
		{"skew NaN", []float64{1}, []string{""}, math.NaN(), "skew NaN not in [0, 1)"},
		{"zero fraction", []float64{1, 0}, []string{"", ""}, 0, "fraction 1 is 0"},
		{"inf fraction", []float64{math.Inf(1)}, []string{""}, 0, "fraction 0 is +Inf"},
		{"unknown label", []float64{1, 1}, []string{"B", "Q"}, 0, `party 1: preferred label "Q" not in the table`},
		{"too many parties", make([]float64, 1001), make([]string, 1001), 0, "1000 rows cannot give 1001 parties a row each"},
	}
	for _, e := range errs {
		t.Run(e.name, func(t *testing.T) {
			_, err := tab.Partition(e.fractions, e.preferred, e.skew, rand.New(rand.NewPCG(1, 1)))
			if err == nil || !strings.Contains(err.Error(), e.want) {
				t.Errorf("Partition error = %v, want %q", err, e.want)
			}
		})
	}
}
