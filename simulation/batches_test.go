package simulation

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

func TestParseBatchOrder(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want batchOrder
		err  string
	}{
		{"", batchOrder{}, ""},
		{"fresh", batchOrder{}, ""},
		{"epoch", batchOrder{epoch: true}, ""},
		{"epoch:30", batchOrder{epoch: true, restart: 30}, ""},
		{"epoch:1048576", batchOrder{epoch: true, restart: 1 << 20}, ""},
		{"epoch:0", batchOrder{}, "K from 1"},
		{"epoch:-3", batchOrder{}, "K from 1"},
		{"epoch:1048577", batchOrder{}, "K from 1"},
		{"epoch:", batchOrder{}, "K from 1"},
		{"epoch:x", batchOrder{}, "K from 1"},
		{"fresh:3", batchOrder{}, "want fresh"},
		{"iid", batchOrder{}, "want fresh"},
		{"Epoch", batchOrder{}, "want fresh"},
	} {
		got, err := parseBatchOrder(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseBatchOrder(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseBatchOrder(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// batchOptions is a small run with mini-batch rounds and momentum, where
// the batch order matters.
func batchOptions() Options {
	o := wdbcOptions()
	o.Model, o.Clients, o.Byzantine, o.Rounds = "mlp", 8, 2, 6
	o.LocalSteps, o.BatchSize = 2, 16
	o.WorkerMomentum, o.MomentumStyle = 0.9, MomentumHeavyBall
	o.Attack = attack.Config{Name: attack.NameALIE}
	o.Aggregation = aggregation.Config{Rule: aggregation.NameMedian, F: 2}
	return o
}

// TestBatchOrderFreshUnchanged pins the default batch order to the bits
// it gave before the switch existed: the digest was printed by this run at
// commit 5cf1dce, whose simulator had only fresh batches.
func TestBatchOrderFreshUnchanged(t *testing.T) {
	const want = "8f7c8b07d93924030612d304f612c6451b296a8999e071b8c4c0f2188cc99e28"
	for _, order := range []string{"", BatchFresh} {
		o := batchOptions()
		o.BatchOrder = order
		res, err := Run(context.Background(), o, nil)
		if err != nil {
			t.Fatalf("batch order %q: %v", order, err)
		}
		if res.ModelSHA256 != want {
			t.Errorf("batch order %q: model %s, want %s", order, res.ModelSHA256, want)
		}
	}
	o := batchOptions()
	o.BatchOrder = BatchEpoch
	res, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("batch order epoch: %v", err)
	}
	if res.ModelSHA256 == want {
		t.Error("batch order epoch gave the fresh order's model")
	}
	o.Workers = 1
	if again, err := Run(context.Background(), o, nil); err != nil || again.ModelSHA256 != res.ModelSHA256 {
		t.Errorf("batch order epoch on 1 worker: %v, model %s, want %s", err, again.ModelSHA256, res.ModelSHA256)
	}
	o.LocalSteps = 0
	if _, err := Run(context.Background(), o, nil); err == nil || !strings.Contains(err.Error(), "needs local steps") {
		t.Errorf("batch order without local steps: %v, want a refusal", err)
	}
}

// TestEpochRows checks the walk: the batches of one epoch are disjoint, a
// new epoch is a new permutation, the last partial batch is dropped, and
// "epoch:K" restarts the walk every K batches.
func TestEpochRows(t *testing.T) {
	const rows, b = 50, 8 // 6 batches an epoch, 2 rows dropped
	newSim := func(steps, restart int) *sim {
		c := &checked{o: Options{Seed: 3, LocalSteps: steps}, order: batchOrder{epoch: true, restart: restart}}
		return &sim{checked: c, clientY: [][]int{nil, make([]int, rows)}}
	}
	perm := func(w, e int) []int { return derive(3, "batch order", 1, uint64(w), uint64(e)).Perm(rows) }

	s := newSim(1, 0)
	seen := map[int]bool{}
	for r := 1; r <= 6; r++ {
		got := s.epochRows(1, r, b)
		if want := perm(0, 0)[(r-1)*b : r*b]; !slices.Equal(got, want) {
			t.Fatalf("round %d: rows %v, want %v", r, got, want)
		}
		for _, x := range got {
			if seen[x] {
				t.Fatalf("round %d: row %d again within the epoch", r, x)
			}
			seen[x] = true
		}
	}
	if got, want := s.epochRows(1, 7, b), perm(0, 1)[:b]; !slices.Equal(got, want) {
		t.Errorf("round 7: rows %v, want the second epoch's first batch %v", got, want)
	}

	// Two steps a round: round 4 takes batches 6 and 7, which straddle
	// the first epoch's end.
	s = newSim(2, 0)
	if got, want := s.epochRows(1, 4, b), append(slices.Clone(perm(0, 1)[:b]), perm(0, 1)[b:2*b]...); !slices.Equal(got, want) {
		t.Errorf("two steps, round 4: rows %v, want %v", got, want)
	}
	if got, want := s.epochRows(1, 3, b), append(slices.Clone(perm(0, 0)[4*b:5*b]), perm(0, 0)[5*b:6*b]...); !slices.Equal(got, want) {
		t.Errorf("two steps, round 3: rows %v, want %v", got, want)
	}

	// epoch:4 restarts after 4 batches, before the epoch is spent.
	s = newSim(1, 4)
	if got, want := s.epochRows(1, 4, b), perm(0, 0)[3*b:4*b]; !slices.Equal(got, want) {
		t.Errorf("epoch:4, round 4: rows %v, want %v", got, want)
	}
	if got, want := s.epochRows(1, 5, b), perm(1, 0)[:b]; !slices.Equal(got, want) {
		t.Errorf("epoch:4, round 5: rows %v, want the second walk's first batch %v", got, want)
	}
	// epoch:9 outlasts an epoch of 6 batches: the walk reshuffles within it.
	s = newSim(1, 9)
	if got, want := s.epochRows(1, 7, b), perm(0, 1)[:b]; !slices.Equal(got, want) {
		t.Errorf("epoch:9, round 7: rows %v, want %v", got, want)
	}
	if got, want := s.epochRows(1, 10, b), perm(1, 0)[:b]; !slices.Equal(got, want) {
		t.Errorf("epoch:9, round 10: rows %v, want %v", got, want)
	}
}
