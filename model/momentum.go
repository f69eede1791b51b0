package model

import (
	"fmt"
	"math"
)

// Worker momentum conventions. The papers and their code write the same
// heavy-ball recursion two ways; they differ by the factor 1/(1−β) on the
// step, which also scales what a clipping radius or a norm bound at the
// coordinator is measured against.
const (
	// MomentumEMA is m ← (1−β)·u + β·m, the exponential moving average of
	// Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
	// Optimization" (ICML 2021), Algorithm 2, and "Byzantine-Robust
	// Learning on Heterogeneous Datasets via Bucketing" (ICLR 2022),
	// Algorithm 2. The default.
	MomentumEMA = "ema"
	// MomentumHeavyBall is m ← β·m + u, PyTorch's SGD momentum buffer
	// without dampening, as the bucketing paper's code keeps it
	// (epfml/byzantine-robust-noniid-optimizer, codes/worker.py,
	// MomentumWorker).
	MomentumHeavyBall = "heavy-ball"
)

// Momentum is one participant's worker momentum: the state m that
// successive local updates u are folded into, m being what the
// participant sends instead of u. The zero state is m = 0, so the first
// update sent is u (heavy-ball) or (1−β)·u (EMA). Beta = 0 sends u itself
// and keeps no state. The same recursion, in the same float32 arithmetic,
// is the simulator's -worker-momentum.
//
// A Momentum is not safe for concurrent use.
type Momentum struct {
	// Beta is β in [0, 1).
	Beta float64
	// Style is MomentumEMA (or empty) or MomentumHeavyBall.
	Style string

	m []float32
}

// Validate checks β and the style.
func (m *Momentum) Validate() error {
	if !(m.Beta >= 0 && m.Beta < 1) {
		return fmt.Errorf("model: momentum %v outside [0, 1)", m.Beta)
	}
	switch m.Style {
	case "", MomentumEMA, MomentumHeavyBall:
		return nil
	}
	return fmt.Errorf("model: momentum style %q, want %s or %s", m.Style, MomentumEMA, MomentumHeavyBall)
}

// Step folds u into the momentum and overwrites u with the new momentum.
// A u of another length than the state's (a new model) restarts from
// m = 0. Values saturate at ±MaxFloat32, so a blown-up update cannot turn
// the state into infinities; a NaN in u is left for the caller's
// finiteness check (the agent refuses to send it) and resets the state,
// so it does not poison the rounds after. β = 0 leaves u as it is.
func (m *Momentum) Step(u []float32) {
	if m.Beta == 0 {
		return
	}
	if len(m.m) != len(u) {
		m.m = make([]float32, len(u))
	}
	bad := Fold(m.m, u, m.Style, float32(m.Beta))
	copy(u, m.m)
	if bad {
		m.m = nil
	}
}

// Fold folds the update u into the momentum state m of style (MomentumEMA
// or empty, or MomentumHeavyBall) with β = beta, in float32 and saturating
// (see Saturate): m ← (1−β)·u + β·m, or m ← β·m + u. It reports whether
// the new state holds a NaN (one in u). Momentum.Step folds its state
// with it, and the simulator its clients' and its server's momenta, so
// that both compute the same numbers.
func Fold(m, u []float32, style string, beta float32) (nan bool) {
	m = m[:len(u)]
	switch style {
	case MomentumHeavyBall:
		for j, v := range u {
			m[j] = Saturate(beta*m[j] + v)
			nan = nan || m[j] != m[j]
		}
	default:
		a := 1 - beta
		for j, v := range u {
			m[j] = Saturate(a*v + beta*m[j])
			nan = nan || m[j] != m[j]
		}
	}
	return nan
}

// Reset forgets the state: the next Step starts from m = 0.
func (m *Momentum) Reset() { m.m = nil }

// Saturate returns v, or ±MaxFloat32 for ±Inf: a float32 sum or product
// of finite model values that overflowed, brought back to the largest
// finite value so that an infinity does not poison the model (and the
// rounds after it). A NaN is returned as is, for the caller's finiteness
// check. Momentum's state, the coordinator's and the simulator's global
// model and the attacks' crafted updates all saturate with it.
func Saturate(v float32) float32 {
	switch {
	case v > math.MaxFloat32:
		return math.MaxFloat32
	case v < -math.MaxFloat32:
		return -math.MaxFloat32
	}
	return v
}
