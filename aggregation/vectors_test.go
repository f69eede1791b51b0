package aggregation

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/strictjson"
)

// vector is a known-answer case in testdata/vectors: small inputs whose
// aggregate and selection can be checked by hand (the comment says how).
type vector struct {
	Comment string `json:"comment"`
	Config  Config `json:"config"`
	Rand    string `json:"rand,omitempty"` // hex bytes for bucketing
	Inputs  []struct {
		ID      string    `json:"id"`
		Delta   []float64 `json:"delta"` // converted to float32, so 1e39 is +Inf
		Samples uint64    `json:"samples"`
	} `json:"inputs"`
	Want     []float64      `json:"want,omitempty"`
	Selected []string       `json:"selected,omitempty"`
	Buckets  map[string]int `json:"buckets,omitempty"`
	Error    string         `json:"error,omitempty"` // a key of vectorErrors
}

var vectorErrors = map[string]error{
	"cohort":     ErrCohort,
	"config":     ErrConfig,
	"non-finite": ErrNonFinite,
	"length":     ErrLength,
}

func readVectors(t testing.TB) map[string]vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "vectors", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	vs := map[string]vector{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := strictjson.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		vs[strings.TrimSuffix(filepath.Base(f), ".json")] = v
	}
	return vs
}

func TestVectors(t *testing.T) {
	for name, v := range readVectors(t) {
		t.Run(name, func(t *testing.T) {
			us := make([]Update, len(v.Inputs))
			for i, in := range v.Inputs {
				d := make([]float32, len(in.Delta))
				for j, x := range in.Delta {
					d[j] = float32(x)
				}
				us[i] = Update{ID: in.ID, Delta: d, Samples: in.Samples}
			}
			rule, err := New(v.Config)
			if err != nil {
				t.Fatalf("New(%+v) = %v", v.Config, err)
			}
			rnd, err := hex.DecodeString(v.Rand)
			if err != nil {
				t.Fatal(err)
			}
			rule = WithRand(rule, bytes.NewReader(rnd))
			dst := make([]float32, len(us[0].Delta))
			rep, err := rule.Aggregate(dst, us)
			if v.Error != "" {
				want, ok := vectorErrors[v.Error]
				if !ok {
					t.Fatalf("unknown error name %q", v.Error)
				}
				if !errors.Is(err, want) {
					t.Fatalf("Aggregate = %v, want %v", err, want)
				}
				if want == ErrCohort {
					if err := v.Config.CheckCohort(len(us)); !errors.Is(err, ErrCohort) {
						t.Errorf("CheckCohort(%d) = %v, want %v", len(us), err, ErrCohort)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Aggregate = %v", err)
			}
			for j, w := range v.Want {
				if math.Abs(float64(dst[j])-w) > 1e-6*(1+math.Abs(w)) {
					t.Errorf("dst[%d] = %v, want %v", j, dst[j], w)
				}
			}
			var sel []string
			for _, e := range rep.Entries {
				if e.Selected {
					sel = append(sel, e.ID)
				}
				if b, ok := v.Buckets[e.ID]; ok && e.Bucket != b {
					t.Errorf("%s in bucket %d, want %d", e.ID, e.Bucket, b)
				}
			}
			slices.Sort(sel)
			if !slices.Equal(sel, v.Selected) {
				t.Errorf("selected %v, want %v", sel, v.Selected)
			}
			// The naive reference agrees with the vector too.
			if v.Config.Bucket <= 1 {
				ref := reference(v.Config, us, rnd)
				if j, ok := closeTo(dst, ref.agg, 1e-6); !ok {
					t.Errorf("reference dst[%d] = %v, package %v", j, ref.agg[j], dst[j])
				}
			}
		})
	}
}
