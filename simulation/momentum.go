package simulation

import (
	"cmp"
	"fmt"
	"math"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/model"
)

// Momentum conventions (Options.MomentumStyle), package model's: the
// simulator folds momenta with model.Fold, as a participant's
// model.Momentum does. The papers and their code write the same
// heavy-ball recursion two ways; with a tuned learning rate they differ
// only by the factor 1/(1−β) on the step size, but that factor also scales
// what a clipping radius τ or a norm bound is measured against, so a
// preset must use the convention its hyper-parameters were tuned for.
const (
	// MomentumEMA is m ← (1−β)·u + β·m, the exponential moving average
	// written in Karimireddy, He, Jaggi, "Learning from History for
	// Byzantine Robust Optimization" (ICML 2021), Algorithm 2, and in
	// "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing"
	// (ICLR 2022), Algorithm 2. It is the default.
	MomentumEMA = model.MomentumEMA
	// MomentumHeavyBall is m ← β·m + u (m starting at 0), PyTorch's
	// SGD momentum buffer without dampening, which the bucketing paper's
	// code uses: epfml/byzantine-robust-noniid-optimizer,
	// codes/worker.py, MomentumWorker._save_grad
	// (momentum_buffer.mul_(momentum).add_(grad)).
	MomentumHeavyBall = model.MomentumHeavyBall
)

// Centers of stateful centered clipping (Options.ClippingCenter).
const (
	// CenterMedian starts every round's iterations from the coordinate-wise
	// median of the round's updates: the stateless variant, the production
	// rule aggregation.CenteredClipping. The default.
	CenterMedian = "median"
	// CenterPrevious starts them from the previous round's aggregate (0 in
	// the first round), as its authors define centered clipping:
	// Karimireddy, He, Jaggi (ICML 2021), Algorithm 2 (v ← the last
	// aggregate), and their code, epfml/byzantine-robust-noniid-optimizer,
	// codes/aggregator/clipping.py, Clipping.__call__ (self.momentum kept
	// across calls).
	CenterPrevious = "previous"
)

// momentum is the per-client worker momentum state kept across rounds, and
// the server's.
type momentum struct {
	style  string
	beta   float32
	worker [][]float32 // worker[i] is client i's momentum, nil until round 1
}

func newMomentum(style string, beta float64, clients int) *momentum {
	return &momentum{style: style, beta: float32(beta), worker: make([][]float32, clients)}
}

// step folds client i's fresh update u into its momentum and returns the
// momentum (a copy the caller may keep: craft replaces slots of deltas). A
// client's momentum is touched only by its own goroutine.
func (m *momentum) step(i int, u []float32) []float32 {
	if m.worker[i] == nil {
		m.worker[i] = make([]float32, len(u))
	}
	model.Fold(m.worker[i], u, m.style, m.beta)
	return append([]float32(nil), m.worker[i]...)
}

// previousClipping is centered clipping started from the previous round's
// aggregate (CenterPrevious): v ← center; L times
// v ← v + (1/n)·Σ clip_τ(xᵢ − v); center ← v. The arithmetic is float64
// per coordinate, rounded to float32 once per iteration, as the
// production rule stores its center.
type previousClipping struct {
	tau    float64
	iters  int
	center []float32
}

// Name implements aggregation.Rule.
func (*previousClipping) Name() string { return "centered-clipping/previous" }

// Aggregate implements aggregation.Rule. Each entry's score is the
// update's distance to the center of the last iteration, as in the
// production rule's report.
func (c *previousClipping) Aggregate(dst []float32, updates []aggregation.Update) (aggregation.Report, error) {
	if err := aggregation.Check(len(dst), updates); err != nil {
		return aggregation.Report{}, err
	}
	if c.center == nil {
		c.center = make([]float32, len(dst))
	}
	if len(c.center) != len(dst) {
		return aggregation.Report{}, fmt.Errorf("simulation: centered clipping: center has %d values, updates %d", len(c.center), len(dst))
	}
	n := len(updates)
	dist := make([]float64, n)
	scale := make([]float64, n)
	acc := make([]float64, len(dst))
	for range c.iters {
		for i, u := range updates {
			var sq float64
			for j, x := range u.Delta {
				d := float64(x) - float64(c.center[j])
				sq += d * d
			}
			dist[i] = math.Sqrt(sq)
			scale[i] = 1
			if dist[i] > c.tau {
				scale[i] = c.tau / dist[i]
			}
		}
		clear(acc)
		for i, u := range updates {
			w := scale[i] / float64(n)
			for j, x := range u.Delta {
				acc[j] += w * (float64(x) - float64(c.center[j]))
			}
		}
		for j := range c.center {
			c.center[j] = model.Saturate(float32(float64(c.center[j]) + acc[j]))
		}
	}
	copy(dst, c.center)
	rep := aggregation.Report{Rule: c.Name(), Entries: make([]aggregation.Entry, n)}
	for i, u := range updates {
		rep.Entries[i] = aggregation.Entry{ID: u.ID, Score: dist[i], Selected: true,
			Reason: fmt.Sprintf("centered-clipping/previous: distance %.6g to the center, scaled by %.6g", dist[i], scale[i])}
	}
	return rep, nil
}

// statefulRule returns, for CenterPrevious, the rule c configures with its
// centered clipping replaced by previousClipping (with c's pre-steps, in
// aggregation.New's order); it returns nil when c needs no state.
func statefulRule(c aggregation.Config, center string) aggregation.Rule {
	if center != CenterPrevious || c.Rule != aggregation.NameCenteredClipping {
		return nil
	}
	iters := cmp.Or(c.Iterations, aggregation.DefaultIterations)
	var rule aggregation.Rule = &previousClipping{tau: c.Tau, iters: iters}
	if c.Bucket > 1 {
		rule = aggregation.Bucketing{Size: c.Bucket, Rule: rule}
	}
	if c.NormClip > 0 {
		rule = aggregation.NormClip{Bound: c.NormClip, Rule: rule}
	}
	return rule
}
