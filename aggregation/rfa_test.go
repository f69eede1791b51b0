package aggregation

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/strictjson"
)

// rfaReference is a case in testdata/rfa: inputs and the aggregate an
// independent implementation computed from them (gen.py says which and
// how to regenerate).
type rfaReference struct {
	Comment   string `json:"comment"`
	Reference string `json:"reference"`
	Config    Config `json:"config"`
	Inputs    []struct {
		ID      string    `json:"id"`
		Delta   []float64 `json:"delta"`
		Samples uint64    `json:"samples"`
	} `json:"inputs"`
	Want []float64 `json:"want"`
}

// TestRFAMatchesReferences compares RFA with ByzFL's GeometricMedian, the
// RFA authors' geometric_median_update and the bucketing paper's
// smoothed_weiszfeld on the inputs in testdata/rfa. They compute in
// float64 and RFA keeps its iterate in float32, so the tolerance is a few
// float32 ulps per iteration.
func TestRFAMatchesReferences(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "rfa", "*.json"))
	if err != nil || len(files) < 7 {
		t.Fatalf("reference vectors: %d files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v rfaReference
			if err := strictjson.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			us := make([]Update, len(v.Inputs))
			for i, in := range v.Inputs {
				d := make([]float32, len(in.Delta))
				for j, x := range in.Delta {
					d[j] = float32(x)
					if float64(d[j]) != x {
						t.Fatalf("input %d[%d] = %v is not a float32", i, j, x)
					}
				}
				us[i] = Update{ID: in.ID, Delta: d, Samples: in.Samples}
			}
			r, err := New(v.Config)
			if err != nil {
				t.Fatal(err)
			}
			dst := make([]float32, len(v.Want))
			rep, err := r.Aggregate(dst, us)
			if err != nil {
				t.Fatal(err)
			}
			for j, w := range v.Want {
				if math.Abs(float64(dst[j])-w) > 1e-5*(1+math.Abs(w)) {
					t.Errorf("%s: dst[%d] = %v, want %v", v.Reference, j, dst[j], w)
				}
			}
			var sum float64
			for _, e := range rep.Entries {
				sum += e.Weight
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("weights sum to %v", sum)
			}
		})
	}
}

// TestRFA covers what the references do not: the breakdown point, the
// sample cap, refusals and determinism.
func TestRFA(t *testing.T) {
	honest := [][]float32{{1, 1}, {1.1, 0.9}, {0.9, 1.05}, {1.05, 1.1}, {0.95, 0.95}}
	us := func(byz []float32, byzSamples uint64) []Update {
		var out []Update
		for i, x := range honest {
			out = append(out, Update{ID: string(rune('a' + i)), Delta: x, Samples: 10})
		}
		for i := range 4 {
			out = append(out, Update{ID: string(rune('v' + i)), Delta: byz, Samples: byzSamples})
		}
		return out
	}
	agg := func(c Config, u []Update) ([]float32, Report, error) {
		t.Helper()
		r, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, 2)
		rep, err := r.Aggregate(dst, u)
		return dst, rep, err
	}
	// 4 of 9 updates at 1e6: the mean moves by 4e5, the geometric
	// median stays within the honest points' hull. From the mean the
	// iterates approach it linearly (about ×0.8 a step here), so this
	// takes the maximum T.
	dst, rep, err := agg(Config{Rule: "rfa", Iterations: MaxRFAIterations}, us([]float32{1e6, 1e6}, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range dst {
		if v < 0.85 || v > 1.15 {
			t.Fatalf("rfa with 4 of 9 far updates = %v, want near 1", dst)
		}
	}
	if w := rep.Entries[8].Weight; w > 1e-5 {
		t.Errorf("far update's weight %v, want about 0", w)
	}
	// The same four claiming 100× the samples hold most of the weight and
	// win, unless max_samples caps the claims.
	dst, _, _ = agg(Config{Rule: "rfa", Iterations: 20}, us([]float32{1e6, 1e6}, 1000))
	if dst[0] < 1e5 {
		t.Errorf("uncapped sample claims: rfa = %v, want the claimers' point", dst)
	}
	dst, _, _ = agg(Config{Rule: "rfa", Iterations: MaxRFAIterations, MaxSamples: 10}, us([]float32{1e6, 1e6}, 1000))
	if dst[0] > 1.15 {
		t.Errorf("max_samples 10: rfa = %v, want near 1", dst)
	}
	// Zero claims, NaN and Inf are refused.
	if _, _, err := agg(Config{Rule: "rfa"}, us([]float32{2, 2}, 0)); !errors.Is(err, ErrZeroSamples) {
		t.Errorf("zero samples: %v, want ErrZeroSamples", err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		for _, start := range []string{"", "zero"} {
			if _, _, err := agg(Config{Rule: "rfa", Start: start}, us([]float32{bad, 2}, 1)); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), `"v"`) {
				t.Errorf("start %q, %v: %v, want ErrNonFinite naming v", start, bad, err)
			}
		}
	}
	// Deterministic: the same inputs in the same order give the same bits.
	a, _, _ := agg(Config{Rule: "rfa", Nu: 0.01}, us([]float32{3, -2}, 7))
	b, _, _ := agg(Config{Rule: "rfa", Nu: 0.01}, us([]float32{3, -2}, 7))
	if math.Float32bits(a[0]) != math.Float32bits(b[0]) || math.Float32bits(a[1]) != math.Float32bits(b[1]) {
		t.Errorf("two runs: %v and %v", a, b)
	}
}

func TestRFAConfig(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want error
	}{
		{Config{Rule: "rfa"}, nil},
		{Config{Rule: "rfa", Iterations: MaxRFAIterations, Nu: 1e-9, Start: "zero", MaxSamples: 1, F: 2}, nil},
		{Config{Rule: "rfa", Start: "mean"}, nil},
		{Config{Rule: "rfa", Iterations: MaxRFAIterations + 1}, ErrConfig},
		{Config{Rule: "rfa", Iterations: -1}, ErrConfig},
		{Config{Rule: "rfa", Nu: -1}, ErrConfig},
		{Config{Rule: "rfa", Nu: math.Inf(1)}, ErrConfig},
		{Config{Rule: "rfa", Nu: math.NaN()}, ErrConfig},
		{Config{Rule: "rfa", Start: "median"}, ErrConfig},
		{Config{Rule: "rfa", Tau: 1}, ErrConfig},
		{Config{Rule: "rfa", F: -1}, ErrConfig},
		{Config{Rule: "median", Nu: 0.1}, ErrConfig},
		{Config{Rule: "centered-clipping", Tau: 1, Start: "zero"}, ErrConfig},
	} {
		if err := tt.c.Validate(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Validate(%+v) = %v, want %v", tt.c, err, tt.want)
		}
	}
	if err := (Config{Rule: "rfa", F: 2}).CheckCohort(4); !errors.Is(err, ErrCohort) {
		t.Errorf("rfa f=2 n=4: %v, want ErrCohort", err)
	}
	if got := MaxF("rfa", 9); got != 4 {
		t.Errorf("MaxF(rfa, 9) = %d, want 4", got)
	}
	if got := Defaults("rfa", 9, -1); got != (Config{Rule: "rfa", F: 4}) {
		t.Errorf("Defaults(rfa, 9, -1) = %+v", got)
	}
}
