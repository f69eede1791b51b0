package coordinator_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/model"
	agent "github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestDriftDefaultOnDemo is the measurement behind DefaultDriftShift: the
// demo's hospitals (75 % label skew) stay below it over several data
// splits, and a hospital whose every feature is shifted by 3 reference
// standard deviations is above it.
func TestDriftDefaultOnDemo(t *testing.T) {
	fedtest.SkipIfShort(t, "sets up demo federations")
	seeds := []uint64{1, 2, 3, 4, 5}
	worst, least := 0.0, 1e9
	looWorst, looLeast := 0.0, 1e9
	for _, seed := range seeds {
		dir := t.TempDir()
		fed, err := demo.Setup(dir, seed)
		if err != nil {
			t.Fatalf("demo.Setup: %v", err)
		}
		spec := &fedguardv1.ModelSpec{
			FormatVersion: model.FormatVersion,
			Kind:          fedguardv1.ModelKind_MODEL_KIND_LOGREG,
			Features:      fed.Features,
			Label:         wdbc.Label,
			Classes:       wdbc.Classes(),
			NumParams:     uint64((len(fed.Features) + 1) * len(wdbc.Classes())),
		}
		// The reference is the scaling the coordinator fixes: the robust
		// rule over the hospitals' statistics.
		var parties []dataset.Party
		stats := map[string]dataset.Stats{}
		for _, h := range fed.Hospitals {
			// As demo.Fed.Agent trains: holdout 0.2, the agent's seed.
			tr := &agent.LocalTrainer{DataFile: filepath.Join(dir, h.Name, "data.csv"), Holdout: 0.2, Seed: seed}
			st, err := tr.Prepare(spec)
			if err != nil {
				t.Fatalf("seed %d: %s: Prepare: %v", seed, h.Name, err)
			}
			stats[h.Name] = st
			parties = append(parties, dataset.Party{Name: h.Name, Stats: st})
		}
		ref, clipped, err := dataset.RobustScaling(parties)
		if err != nil {
			t.Fatal(err)
		}
		if len(clipped) > 0 {
			t.Errorf("seed %d: the robust scaling clipped honest hospitals: %v", seed, clipped)
		}
		for name, st := range stats {
			shift, vr, ok := coordinator.DriftShiftOf(st, ref)
			if !ok {
				t.Fatalf("seed %d: %s: stats not comparable", seed, name)
			}
			t.Logf("seed %d: %s (%d rows): largest shift %.3f, its variance ratio %.3f", seed, name, st.Count, shift, vr)
			worst = max(worst, shift)
			if shift >= coordinator.DefaultDriftShift {
				t.Errorf("seed %d: honest %s has shift %.3f, at or above DefaultDriftShift %v", seed, name, shift, coordinator.DefaultDriftShift)
			}
			// Every feature moved by 3 reference standard deviations.
			moved := dataset.Stats{Count: st.Count, Sum: make([]float64, len(st.Sum)), SumSquares: make([]float64, len(st.Sum))}
			n := float64(st.Count)
			for j := range st.Sum {
				d := 3 * ref.Std[j]
				moved.Sum[j] = st.Sum[j] + n*d
				moved.SumSquares[j] = st.SumSquares[j] + 2*d*st.Sum[j] + n*d*d
			}
			shift, _, _ = coordinator.DriftShiftOf(moved, ref)
			least = min(least, shift)
			if shift <= coordinator.DefaultDriftShift {
				t.Errorf("seed %d: %s shifted by 3 std has shift %.3f, not above DefaultDriftShift %v", seed, name, shift, coordinator.DefaultDriftShift)
			}
			// Against the drift reference, the others' scaling: honest
			// still below the default, and shifted from the start (its
			// moved statistics in the scaling too) above it.
			refs, err := anomaly.References(parties)
			if err != nil {
				t.Fatal(err)
			}
			loo, _ := anomaly.DriftOf(st, refs[name])
			looWorst = max(looWorst, loo.Shift)
			if loo.Shift >= coordinator.DefaultDriftShift {
				t.Errorf("seed %d: honest %s has shift %.3f against the others, at or above DefaultDriftShift %v", seed, name, loo.Shift, coordinator.DefaultDriftShift)
			}
			fromStart := slices.Clone(parties)
			for i := range fromStart {
				if fromStart[i].Name == name {
					fromStart[i].Stats = moved
				}
			}
			if refs, err = anomaly.References(fromStart); err != nil {
				t.Fatal(err)
			}
			loo, _ = anomaly.DriftOf(moved, refs[name])
			looLeast = min(looLeast, loo.Shift)
			if loo.Shift <= coordinator.DefaultDriftShift {
				t.Errorf("seed %d: %s shifted by 3 std from the start has shift %.3f against the others, not above DefaultDriftShift %v", seed, name, loo.Shift, coordinator.DefaultDriftShift)
			}
		}
	}
	t.Logf("largest honest shift %.3f; smallest shift of a +3 std hospital %.3f", worst, least)
	t.Logf("against the others: largest honest shift %.3f; smallest shift of a hospital +3 std from the start %.3f", looWorst, looLeast)
}
