package anomaly_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/dataset"
)

func update(id string, d ...float32) anomaly.Update {
	n := 0.0
	for _, v := range d {
		n += float64(v) * float64(v)
	}
	return anomaly.Update{ID: id, Delta: d, Samples: 10, Norm: math.Sqrt(n)}
}

// TestCheck covers each heuristic once; the coordinator's TestAnomalyFlags
// covers the bands in detail through the coordinator's wrapper.
func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     anomaly.Config
		updates []anomaly.Update
		report  aggregation.Report
		want    []anomaly.Flag
	}{
		{
			name:    "alike",
			updates: []anomaly.Update{update("a", 1, 0), update("b", 1.1, 0), update("c", 0.9, 0)},
		},
		{
			name:    "flags in the order of the updates, norm before cosine before excluded",
			updates: []anomaly.Update{update("z", -50, 0), update("a", 1, 0), update("b", 1.1, 0), update("c", 0.9, 0)},
			report:  aggregation.Report{Entries: []aggregation.Entry{{ID: "z", Score: 9}, {ID: "a", Selected: true}, {ID: "b", Selected: true}, {ID: "c"}}},
			want: []anomaly.Flag{
				{ID: "z", Kind: anomaly.Norm, Value: 50, Band: []float64{0.35, 3.15}},
				{ID: "z", Kind: anomaly.Cosine, Value: -1, Band: []float64{-0.5, 1}},
				{ID: "z", Kind: anomaly.Excluded, Value: 9},
				{ID: "c", Kind: anomaly.Excluded},
			},
		},
		{
			name:    "cosine off",
			cfg:     anomaly.Config{CosineFloor: new(-1.0)},
			updates: []anomaly.Update{update("a", 1, 0), update("b", 1.1, 0), update("c", -1, 0)},
		},
		{
			name:    "two updates: no norm check",
			updates: []anomaly.Update{update("a", 1, 0), update("b", 100, 0)},
		},
		{name: "no updates"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := anomaly.Check(tt.cfg, tt.updates, tt.report)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-6), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Check mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := anomaly.Config{}.WithDefaults()
	if got.NormMADs != anomaly.DefaultNormMADs || got.NormRatio != anomaly.DefaultNormRatio ||
		*got.CosineFloor != anomaly.DefaultCosineFloor || got.DriftShift != anomaly.DefaultDriftShift {
		t.Errorf("Config{}.WithDefaults() = %+v (floor %v), want the defaults", got, *got.CosineFloor)
	}
	floor := -1.0
	c := anomaly.Config{CosineFloor: &floor}
	d := c.WithDefaults()
	*d.CosineFloor = 0.5
	if floor != -1 {
		t.Errorf("WithDefaults shares the caller's CosineFloor: it became %v", floor)
	}
}

func ExampleCheck() {
	updates := []anomaly.Update{
		update("hospital-a", 1, 0.1), update("hospital-b", 0.9, 0.2), update("hospital-c", 1.1, 0),
		update("hospital-d", -40, 0), // boosted and reversed
	}
	for _, f := range anomaly.Check(anomaly.Config{}, updates, aggregation.Report{}) {
		fmt.Printf("%s %s %.2f\n", f.ID, f.Kind, f.Value)
	}
	// Output:
	// hospital-d norm 40.00
	// hospital-d cosine -0.99
}

func ExampleDriftOf() {
	ref := dataset.Scaling{Mean: []float64{0, 10}, Std: []float64{1, 2}}
	// Two rows whose second feature averages 16: three reference
	// standard deviations above the federation's mean.
	st := dataset.Stats{Count: 2, Sum: []float64{0, 32}, SumSquares: []float64{2, 520}}
	d, _ := anomaly.DriftOf(st, ref)
	fmt.Printf("feature %d shift %.1f flagged %t\n", d.Feature, d.Shift, anomaly.Config{}.Drifted(d))
	// Output:
	// feature 1 shift 3.0 flagged true
}

// TestReferences: a party shifted from the start is flagged against the
// others' scaling, not against the scaling its own rows are in, and the
// others are flagged against neither.
func TestReferences(t *testing.T) {
	// Two rows per party with mean m and variance 1 in the one feature.
	at := func(m float64) dataset.Stats {
		return dataset.Stats{Count: 2, Sum: []float64{2 * m}, SumSquares: []float64{(m-1)*(m-1) + (m+1)*(m+1)}}
	}
	parties := []dataset.Party{{Name: "a", Stats: at(0)}, {Name: "b", Stats: at(3)}, {Name: "c", Stats: at(0)}}
	all, _, err := dataset.RobustScaling(parties)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := anomaly.References(parties)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parties {
		full, _ := anomaly.DriftOf(p.Stats, all)
		loo, _ := anomaly.DriftOf(p.Stats, refs[p.Name])
		wantLOO := p.Name == "b"
		var cfg anomaly.Config
		if got := cfg.Drifted(loo); got != wantLOO || cfg.Drifted(full) {
			t.Errorf("%s: shift %.3f against the others (flagged %t, want %t), %.3f against all (want not flagged)", p.Name, loo.Shift, got, wantLOO, full.Shift)
		}
	}
	if refs, err := anomaly.References(parties[:1]); refs != nil || err != nil {
		t.Errorf("References(one party) = %v, %v, want nil, nil", refs, err)
	}
}
