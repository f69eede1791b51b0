package wire_test

import (
	"math"
	"testing"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// FuzzSpecFromProto feeds arbitrary ModelSpec messages, as a participant
// receives them from Join, to the participant's check: it must never
// panic, and a spec it accepts must be valid, within model.MaxParams, and
// of the parameter count the message claims.
func FuzzSpecFromProto(f *testing.F) {
	protofuzz.Seed(f, []*fedguardv1.ModelSpec{
		{FormatVersion: model.FormatVersion, Kind: fedguardv1.ModelKind(model.LogReg), Features: []string{"a", "b"}, Classes: []string{"B", "M"}, NumParams: 6},
		{FormatVersion: model.FormatVersion, Kind: fedguardv1.ModelKind(model.MLP), Features: []string{"a"}, Classes: []string{"x", "y", "z"}, Hidden: []uint32{4}, NumParams: 23},
		{FormatVersion: 2},
		{FormatVersion: model.FormatVersion, Kind: fedguardv1.ModelKind(model.Tensors), NumParams: 7, Tensors: []*fedguardv1.TensorSpec{{Name: "w", Shape: []uint64{2, 3}}, {Name: "b"}}},
		{FormatVersion: model.FormatVersion, Kind: fedguardv1.ModelKind(model.MLP), Features: []string{"a"}, Classes: []string{"x", "y"}, Hidden: []uint32{1 << 31}, NumParams: 1},
	}...)
	protofuzz.Fuzz(f, func(t *testing.T, p *fedguardv1.ModelSpec) {
		s, err := wire.SpecFromProto(p)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("SpecFromProto accepted an invalid spec %+v: %v", s, err)
		}
		if n := s.NumParams(); n <= 0 || n > model.MaxParams || uint64(n) != p.GetNumParams() {
			t.Fatalf("SpecFromProto accepted %d parameters (message says %d, limit %d)", n, p.GetNumParams(), model.MaxParams)
		}
	})
}

// FuzzScalingFromProto feeds arbitrary FeatureScaling messages, as a
// participant receives them with an assignment, to the participant's
// check: it must never panic, a scaling it accepts has no deviation below
// dataset.MinStd (as none the coordinator derives has), and standardizing
// ordinary data (|x| ≤ 1e6) with it gives finite values or an error, never
// silently non-finite ones (it did, with mean 1e300 and std 1e-300).
func FuzzScalingFromProto(f *testing.F) {
	protofuzz.Seed(f, []*fedguardv1.FeatureScaling{
		{Mean: []float64{1, -2}, Std: []float64{0.5, 3}},
		{Mean: []float64{0, 0}, Std: []float64{1, 0}},
		{Mean: []float64{1e300, 0}, Std: []float64{1e-300, 1}},
		{Mean: []float64{math.NaN(), 0}, Std: []float64{1, 1}},
	}...)
	protofuzz.Fuzz(f, func(t *testing.T, p *fedguardv1.FeatureScaling) {
		sc, err := wire.ScalingFromProto(p, 2)
		if err != nil {
			return
		}
		for _, s := range sc.Std {
			if s < dataset.MinStd {
				t.Fatalf("ScalingFromProto accepted std %v < %v", s, dataset.MinStd)
			}
		}
		tbl := &dataset.Table{Features: []string{"a", "b"}, X: [][]float64{{1e6, -1e6}, {-1e6, 1e6}, {0, 0}}, Labels: []string{"x", "y", "x"}}
		if err := tbl.Standardize(sc); err != nil {
			return
		}
		for _, row := range tbl.X {
			for _, v := range row {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("accepted scaling (mean %v, std %v) makes ordinary data non-finite", sc.Mean, sc.Std)
				}
			}
		}
	})
}
