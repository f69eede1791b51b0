package simulation

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/fedguard/fedguard/model"
)

// maxBatchRestart bounds K in "epoch:K": far above any paper's epoch, low
// enough that K·batch cannot overflow.
const maxBatchRestart = 1 << 20

// batchOrder is a parsed Options.BatchOrder.
type batchOrder struct {
	// epoch walks shuffled copies of the rows (BatchEpoch); false draws
	// each round afresh (BatchFresh).
	epoch bool
	// restart is K of "epoch:K": the walk restarts, reshuffled, every K
	// batches (0: never).
	restart int
}

// parseBatchOrder reads "", "fresh", "epoch" or "epoch:K" (1 ≤ K ≤ 2²⁰).
func parseBatchOrder(s string) (batchOrder, error) {
	name, k, hasK := strings.Cut(s, ":")
	switch {
	case s == "" || s == BatchFresh:
		return batchOrder{}, nil
	case name == BatchEpoch && !hasK:
		return batchOrder{epoch: true}, nil
	case name == BatchEpoch:
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 || n > maxBatchRestart {
			return batchOrder{}, fmt.Errorf("batch order %q: want epoch:K with K from 1 to %d", s, maxBatchRestart)
		}
		return batchOrder{epoch: true, restart: n}, nil
	}
	return batchOrder{}, fmt.Errorf("batch order %q, want %s, %s or %s:K", s, BatchFresh, BatchEpoch, BatchEpoch)
}

// batches returns client i's rows for round r's o.LocalSteps mini-batches
// of plan.BatchSize rows (all its rows per batch when it holds fewer), with
// the plan of one pass over them: one SGD step per mini-batch. With
// BatchFresh the rows are drawn from rng without replacement; with
// BatchEpoch they are the round's next batches of the client's walk
// (epochRows).
func (s *sim) batches(i, r int, rng *rand.Rand, plan model.Plan) ([][]float64, []int, model.Plan) {
	rows := len(s.clientY[i])
	var pick []int
	if s.order.epoch {
		pick = s.epochRows(i, r, min(plan.BatchSize, rows))
	} else {
		pick = rng.Perm(rows)[:min(s.o.LocalSteps*plan.BatchSize, rows)]
	}
	x, y := make([][]float64, len(pick)), make([]int, len(pick))
	for j, p := range pick {
		x[j], y[j] = s.clientX[i][p], s.clientY[i][p]
	}
	plan.Epochs = 1
	return x, y, plan
}

// epochRows returns the rows of client i's batches (r−1)·L to r·L−1 (L =
// o.LocalSteps, r from 1) of b rows each in its walk: batch T is batch t
// = T mod K of walk w = T div K (K = the restart, or w = 0 and t = T
// without one); within a walk, epoch e = t div P takes batch t mod P of a
// permutation of the rows drawn for (client, walk, epoch), P = ⌊rows/b⌋
// batches to a permutation (the last partial batch dropped, as PyTorch's
// drop_last). Everything is computed from r, so a client keeps no state
// between rounds and the result does not depend on the workers.
func (s *sim) epochRows(i, r, b int) []int {
	rows := len(s.clientY[i])
	per := rows / b
	out := make([]int, 0, s.o.LocalSteps*b)
	var perm []int
	lastW, lastE := -1, -1
	for j := range s.o.LocalSteps {
		T := (r-1)*s.o.LocalSteps + j
		w, t := 0, T
		if k := s.order.restart; k > 0 {
			w, t = T/k, T%k
		}
		e, pos := t/per, t%per
		if w != lastW || e != lastE {
			perm = derive(s.o.Seed, "batch order", uint64(i), uint64(w), uint64(e)).Perm(rows)
			lastW, lastE = w, e
		}
		out = append(out, perm[pos*b:(pos+1)*b]...)
	}
	return out
}
