package coordinator

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

func TestAnomalyFlags(t *testing.T) {
	up := []float32{1, 0}
	upd := func(v []float32, k float32) *received {
		d := []float32{v[0] * k, v[1] * k}
		return &received{delta: d, norm: math.Hypot(float64(d[0]), float64(d[1])), samples: 10}
	}
	tests := []struct {
		name    string
		cfg     AnomalyConfig
		updates map[string]*received
		report  aggregation.Report
		want    []audit.AnomalyFlagged
	}{
		{
			name:    "alike",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9)},
		},
		{
			name:    "norm outlier",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 50)},
			// median 1.05, MAD 0.1: 1.05 ± 0.35, widened to 1.05/3 … 3·1.05.
			want: []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 50, Band: []float64{0.35, 3.15}}},
		},
		{
			name:    "honest spread: two and a half times the median is not flagged",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 2.5)},
		},
		{
			name:    "norm ratio 1: the MAD band alone",
			cfg:     AnomalyConfig{NormRatio: 1},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 2.5)},
			want:    []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 2.5, Band: []float64{0.7, 1.4}}},
		},
		{
			name:    "small norm outlier",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 0.01)},
			// median 0.95, MAD 0.1: 0.95 ± 0.35, widened to 0.95/3 … 3·0.95.
			want: []audit.AnomalyFlagged{{Participant: "d", Kind: AnomalyNorm, Value: 0.01, Band: []float64{0.95 / 3, 2.85}}},
		},
		{
			name:    "wider band",
			cfg:     AnomalyConfig{NormMADs: 1000},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9), "d": upd(up, 50)},
		},
		{
			name:    "two updates: no norm check",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 100)},
		},
		{
			name:    "sign flip",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, -1)},
			want:    []audit.AnomalyFlagged{{Participant: "c", Kind: AnomalyCosine, Value: -1, Band: []float64{-0.5, 1}}},
		},
		{
			name:    "sign flip, floor off",
			cfg:     AnomalyConfig{CosineFloor: ptr(-1.0)},
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, -1)},
		},
		{
			name:    "the others are zero: no cosine check",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 0)},
		},
		{
			// Before, the cosine was taken against the round's FedAvg
			// aggregate, which d's size drags its way: a and b were flagged
			// at −0.98 and −0.99, and d, which points against everyone, was
			// not. Against the clipped mean, a, b and c are at 0.55 to 0.78.
			name: "a large update does not set the direction: only it is flagged",
			updates: map[string]*received{
				"a": upd([]float32{1, 0}, 1), "b": upd([]float32{0.9, 0.3}, 1), "c": upd([]float32{-0.2, 1}, 1), "d": upd([]float32{-50, -10}, 1),
			},
			want: []audit.AnomalyFlagged{
				{Participant: "d", Kind: AnomalyNorm, Value: 50.99019513592785, Band: []float64{0.3366339837864262, 3.029705854077836}},
				{Participant: "d", Kind: AnomalyCosine, Value: -0.6996193093150425, Band: []float64{-0.5, 1}},
			},
		},
		{
			name:    "excluded by the rule",
			updates: map[string]*received{"a": upd(up, 1), "b": upd(up, 1.1), "c": upd(up, 0.9)},
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
			got := anomalyFlags(tt.cfg, 0, names, tt.updates, tt.report)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-6), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("anomalyFlags mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestDriftOf(t *testing.T) {
	ref := dataset.Scaling{Mean: []float64{1, 10}, Std: []float64{2, 5}}
	// statsOf builds stats of n rows with the given per-feature means and
	// variances.
	statsOf := func(n uint64, mean, variance []float64) dataset.Stats {
		s := dataset.Stats{Count: n}
		for j := range mean {
			s.Sum = append(s.Sum, float64(n)*mean[j])
			s.SumSquares = append(s.SumSquares, float64(n)*(variance[j]+mean[j]*mean[j]))
		}
		return s
	}
	for _, tt := range []struct {
		name string
		st   dataset.Stats
		want drift
		ok   bool
	}{
		{"the reference", statsOf(10, []float64{1, 10}, []float64{4, 25}), drift{Feature: 0, Shift: 0, VarianceRatio: 1}, true},
		{"first feature up 1.5 std", statsOf(10, []float64{4, 10}, []float64{4, 25}), drift{Feature: 0, Shift: 1.5, VarianceRatio: 1}, true},
		{"second feature down 3 std", statsOf(4, []float64{1.5, -5}, []float64{1, 100}), drift{Feature: 1, Shift: 3, VarianceRatio: 4}, true},
		{"narrower", statsOf(8, []float64{1, 12.5}, []float64{1, 6.25}), drift{Feature: 1, Shift: 0.5, VarianceRatio: 0.25}, true},
		{"no rows", dataset.Stats{Sum: []float64{0, 0}, SumSquares: []float64{0, 0}}, drift{}, false},
		{"wrong width", statsOf(3, []float64{1}, []float64{1}), drift{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := driftOf(tt.st, ref)
			if ok != tt.ok || math.Abs(got.Shift-tt.want.Shift) > 1e-9 || got.Feature != tt.want.Feature ||
				math.Abs(got.VarianceRatio-tt.want.VarianceRatio) > 1e-9 {
				t.Errorf("driftOf(%+v) = %+v, %t, want %+v, %t", tt.st, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDriftFlag(t *testing.T) {
	ref := dataset.Scaling{Mean: []float64{0, 0}, Std: []float64{1, 1}}
	st := dataset.Stats{Count: 2, Sum: []float64{0, 5}, SumSquares: []float64{2, 12.5}} // f2: mean 2.5, variance 0
	for _, tt := range []struct {
		name  string
		cfg   AnomalyConfig
		names []string
		want  *audit.AnomalyFlagged
	}{
		{"default band", AnomalyConfig{}, []string{"a", "b"},
			&audit.AnomalyFlagged{Attempt: 2, Participant: "p", Kind: AnomalyDrift, Value: 2.5, Band: []float64{0, DefaultDriftShift}, Feature: "b"}},
		{"no names", AnomalyConfig{}, nil,
			&audit.AnomalyFlagged{Attempt: 2, Participant: "p", Kind: AnomalyDrift, Value: 2.5, Band: []float64{0, DefaultDriftShift}, Feature: "feature 1"}},
		{"wider band", AnomalyConfig{DriftShift: 3}, []string{"a", "b"}, nil},
		{"at the limit", AnomalyConfig{DriftShift: 2.5}, []string{"a", "b"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := driftFlag(tt.cfg, 2, "p", tt.names, st, ref)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("driftFlag (-want +got):\n%s", diff)
			}
		})
	}
}

// refBlock is package anomaly's block of the reference (1<<14
// parameters); the lengths below straddle it.
const refBlock = 1 << 14

// medianOf is the median as package anomaly takes it.
func medianOf(v []float64) float64 {
	v = slices.Sorted(slices.Values(v))
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// cosineFlagsWhole is anomalyFlags' cosine check as it was before the
// reference was built in blocks: over a model-sized float64 reference.
func cosineFlagsWhole(cfg AnomalyConfig, names []string, updates map[string]*received) []float64 {
	norms := make([]float64, len(names))
	for i, n := range names {
		norms[i] = updates[n].norm
	}
	med := medianOf(norms)
	ref := make([]float64, len(updates[names[0]].delta))
	for _, n := range names {
		u := updates[n]
		if u.norm == 0 {
			continue
		}
		w := float64(u.samples) * min(1, med/u.norm)
		for j, v := range u.delta {
			ref[j] += w * float64(v)
		}
	}
	refNorm := 0.0
	for _, v := range ref {
		refNorm += v * v
	}
	refNorm = math.Sqrt(refNorm)
	var cos []float64
	for _, n := range names {
		u := updates[n]
		if u.norm == 0 {
			continue
		}
		dot := 0.0
		for j, v := range u.delta {
			dot += float64(v) * ref[j]
		}
		cos = append(cos, dot/(u.norm*refNorm))
	}
	return cos
}

// TestAnomalyFlagsBlockedReference: the cosine flags, built over the
// reference a block at a time so that the round's close holds no
// model-sized float64 vector, carry the very values (bit for bit) of the
// whole-vector computation, for lengths around the block size.
func TestAnomalyFlagsBlockedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for _, d := range []int{1, 5, refBlock - 1, refBlock, refBlock + 1, 3*refBlock + 17} {
		names := []string{"a", "b", "c", "d", "e", "z"}
		updates := map[string]*received{}
		for i, n := range names {
			v := make([]float32, d)
			for j := range v {
				v[j] = float32(rng.NormFloat64())
			}
			if n == "z" {
				clear(v) // a zero update has no cosine
			}
			updates[n] = &received{delta: v, norm: math.Sqrt(model.SumSquares(v)), samples: uint64(10 + i)}
		}
		// A floor of 2 flags every update with a norm, so every cosine is
		// in the flags.
		floor := 2.0
		cfg := AnomalyConfig{CosineFloor: &floor}
		flags := anomalyFlags(cfg, 1, names, updates, aggregation.Report{})
		want := cosineFlagsWhole(cfg, names, updates)
		var got []float64
		for _, f := range flags {
			if f.Kind == AnomalyCosine {
				got = append(got, f.Value)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("d=%d: %d cosine flags, want %d: %+v", d, len(got), len(want), flags)
		}
		for i := range got {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Errorf("d=%d: cosine of %s = %v, whole-vector reference gives %v", d, names[i], got[i], want[i])
			}
		}
	}
}
