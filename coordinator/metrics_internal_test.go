package coordinator

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
)

func TestAnomalyFlags(t *testing.T) {
	// up points along the aggregate; down against it.
	up := []float32{1, 0}
	upd := func(v []float32, k float32) *received {
		d := []float32{v[0] * k, v[1] * k}
		return &received{delta: d, norm: math.Hypot(float64(d[0]), float64(d[1]))}
	}
	agg := []float32{1, 0}
	tests := []struct {
		name    string
		cfg     AnomalyConfig
		updates map[string]*received
		agg     []float32
		report  aggregation.Report
		want    []audit.AnomalyFlagged
	}{
		{
			name:    "alike",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9)},
			agg:     agg,
		},
		{
			name:    "norm outlier",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 50)},
			agg:     agg,
			// median 1.05, MAD 0.1: 1.05 ± 0.35, widened to 1.05/3 … 3·1.05.
			want: []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 50, Band: []float64{0.35, 3.15}}},
		},
		{
			name:    "honest spread: two and a half times the median is not flagged",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 2.5)},
			agg:     agg,
		},
		{
			name:    "norm ratio 1: the MAD band alone",
			cfg:     AnomalyConfig{NormRatio: 1},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 2.5)},
			agg:     agg,
			want:    []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 2.5, Band: []float64{0.7, 1.4}}},
		},
		{
			name:    "small norm outlier",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 0.01)},
			agg:     agg,
			// median 0.95, MAD 0.1: 0.95 ± 0.35, widened to 0.95/3 … 3·0.95.
			want: []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 0.01, Band: []float64{0.95 / 3, 2.85}}},
		},
		{
			name:    "wider band",
			cfg:     AnomalyConfig{NormMADs: 1000},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 50)},
			agg:     agg,
		},
		{
			name:    "two updates: no norm check",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 100)},
			agg:     agg,
		},
		{
			name:    "sign flip",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, -1)},
			agg:     agg,
			want:    []audit.AnomalyFlagged{{Participant: "c", Kind: AnomalyCosine, Value: -1, Band: []float64{-0.5, 1}}},
		},
		{
			name:    "sign flip, floor off",
			cfg:     AnomalyConfig{CosineFloor: ptr(-1.0)},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, -1)},
			agg:     agg,
		},
		{
			name:    "zero aggregate: no cosine check",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, -1)},
			agg:     []float32{0, 0},
		},
		{
			name:    "excluded by the rule",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9)},
			agg:     agg,
			report:  aggregation.Report{Entries: []aggregation.Entry{{ID: "a", Selected: true}, {ID: "b", Selected: false, Score: 7}, {ID: "c", Selected: true}}},
			want:    []audit.AnomalyFlagged{{Participant: "b", Kind: AnomalyExcluded, Value: 7}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var names []string
			for _, n := range []string{"a", "b", "c", "d"} {
				if tt.updates[n] != nil {
					names = append(names, n)
				}
			}
			got := anomalyFlags(tt.cfg, 0, names, tt.updates, tt.agg, tt.report)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-6), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("anomalyFlags mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
