package coordinator_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/coordinator"
)

// spilledRun is what one federation committed.
type spilledRun struct {
	recs    []coordinator.RoundRecord
	results []coordinator.RoundResult
}

// runSpillFederation runs two rounds of three hospitals over mTLS with the
// given rule and spill mode, each hospital sending the same updates
// whatever the mode (one of them an outlier, so that anomaly flags are
// raised), and checks the spill folder as it goes: with spilling, one file
// of mode 0600 while the round takes updates, none once it is committed.
func runSpillFederation(t *testing.T, rule aggregation.Config, mode string) spilledRun {
	t.Helper()
	abc := []string{"a", "b", "c"}
	f := newFederation(t, abc)
	// 2 features, 20,000 hidden units, 2 classes: 100,002 parameters, two
	// wire chunks per update.
	f.cfg.Model = coordinator.ModelConfig{Kind: "mlp", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"}, Hidden: []int{20000}}
	f.cfg.Training.Rounds = 2
	f.cfg.MinParticipants = 3
	f.cfg.Aggregation = rule
	f.cfg.Spill = coordinator.SpillConfig{Mode: mode}
	s, ps := f.startScaled(t, abc...)
	spillDir := filepath.Join(f.cfg.DataDir, "spill")
	rng := rand.New(rand.NewPCG(21, 22))
	for round := uint64(1); round <= 2; round++ {
		assignments(t, ps)
		const params = 100002
		updates := map[string]update{}
		for i, n := range abc {
			x := make([]float32, params)
			for j := range x {
				x[j] = float32(rng.NormFloat64() * 0.01)
				if i == 1 {
					x[j] *= -50
				}
			}
			updates[n] = update{delta: x, samples: uint64(10 * (i + 1))}
		}
		// One update first: the spill file exists and holds it.
		submitAll(t, round, ps[:1], updates)
		files, err := os.ReadDir(spillDir)
		if err != nil {
			t.Fatal(err)
		}
		if mode == coordinator.SpillAlways {
			if len(files) != 1 {
				t.Fatalf("round %d: spill folder holds %v, want the attempt's file", round, files)
			}
			fi, err := os.Stat(filepath.Join(spillDir, files[0].Name()))
			if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 4*int64(params) {
				t.Fatalf("round %d: spill file %v (%v), want mode 0600 holding one update", round, fi, err)
			}
		} else if len(files) != 0 {
			t.Fatalf("round %d: spill folder holds %v without spilling", round, files)
		}
		submitAll(t, round, ps[1:], updates)
		waitRounds(t, s.c, int(round), 20*time.Second)
		s.waitObserved(t, round, 10*time.Second)
		if files, _ := os.ReadDir(spillDir); len(files) != 0 {
			t.Fatalf("round %d committed: spill folder still holds %v", round, files)
		}
	}
	recs, err := s.c.Rounds()
	if err != nil {
		t.Fatal(err)
	}
	return spilledRun{recs: recs, results: s.observed()}
}

// TestSpilledRoundsMatchInMemory runs the same federation with its
// updates in memory and spilled, for every rule that spills: the round
// records (reports, norms, digests), the anomaly flags and the committed
// models must be the same, bit for bit.
func TestSpilledRoundsMatchInMemory(t *testing.T) {
	for _, rule := range []aggregation.Config{
		{Rule: aggregation.NameFedAvg},
		{Rule: aggregation.NameMedian, F: 1},
		{Rule: aggregation.NameTrimmedMean, Beta: 0.3, F: 1},
	} {
		t.Run(rule.Rule, func(t *testing.T) {
			mem := runSpillFederation(t, rule, coordinator.SpillNever)
			spilled := runSpillFederation(t, rule, coordinator.SpillAlways)
			opts := cmp.Options{cmpopts.IgnoreFields(coordinator.RoundRecord{}, "Opened", "Closed"), cmpopts.EquateEmpty()}
			if diff := cmp.Diff(mem.recs, spilled.recs, opts); diff != "" {
				t.Fatalf("round records (-in memory +spilled):\n%s", diff)
			}
			if len(mem.results) != 2 || len(spilled.results) != 2 {
				t.Fatalf("observed %d and %d rounds, want 2", len(mem.results), len(spilled.results))
			}
			flags := 0
			for i := range mem.results {
				if !sameBits(mem.results[i].Model, spilled.results[i].Model) {
					t.Errorf("round %d: the spilled model differs from the in-memory one", i+1)
				}
				if diff := cmp.Diff(mem.results[i].Flags, spilled.results[i].Flags, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("round %d: anomaly flags (-in memory +spilled):\n%s", i+1, diff)
				}
				flags += len(mem.results[i].Flags)
			}
			if flags == 0 {
				t.Error("no anomaly flag was raised: the outlier tests nothing")
			}
			if slices.Equal(mem.results[0].Model, mem.results[1].Model) {
				t.Error("the two rounds made the same model")
			}
		})
	}
}
