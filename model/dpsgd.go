package model

import (
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
)

// DP are the parameters of differentially private SGD (Abadi et al. 2016) for
// [TrainDP]: each step samples every row independently with probability Q
// (Poisson sampling), clips each sampled row's gradient to ℓ2 norm at most
// Clip, sums the clipped gradients, adds Gaussian noise of standard
// deviation Sigma·Clip to every coordinate and divides by the expected batch
// size Q·N. A step is then exactly one application of the Poisson-subsampled
// Gaussian mechanism with noise multiplier Sigma, which is what package
// privacy accounts for.
type DP struct {
	// Q is the sampling rate, in (0, 1].
	Q float64
	// Sigma is the noise multiplier σ, >= 0 (0 only for tests: no privacy).
	Sigma float64
	// Clip is the per-row clipping norm C, > 0; +Inf disables clipping
	// (tests only: the sensitivity is then unbounded).
	Clip float64
	// Rand draws the Poisson samples and the noise. It must be
	// unpredictable to everyone but this hospital: nil means a ChaCha8
	// generator seeded from crypto/rand (see [NewNoiseRand]). Tests pass a
	// seeded one.
	Rand *mrand.Rand
}

// NewNoiseRand returns the generator DP-SGD draws from: ChaCha8 (a
// cryptographically strong generator, math/rand/v2) seeded with 32 bytes
// from crypto/rand. Both the noise and the sample must stay secret: noise
// that someone can predict can be subtracted, and a sample someone knows
// loses the amplification by subsampling. The training rng of a round is
// derived from a seed the coordinator chooses in part, so it must not be
// used here. ChaCha8 rather than crypto/rand directly because DP-SGD draws
// one normal per parameter per step, and ChaCha8 gives the same strength
// without a system call per block.
func NewNoiseRand() *mrand.Rand {
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // never fails (crypto/rand documents it crashes instead)
	return mrand.New(mrand.NewChaCha8(seed))
}

// Validate checks the DP parameters.
func (d DP) Validate() error {
	switch {
	case !(d.Q > 0 && d.Q <= 1):
		return fmt.Errorf("model: dp: sampling rate %v outside (0, 1]", d.Q)
	case !(d.Sigma >= 0) || math.IsInf(d.Sigma, 0):
		return fmt.Errorf("model: dp: noise multiplier %v, want a finite number >= 0", d.Sigma)
	case !(d.Clip > 0):
		return fmt.Errorf("model: dp: clipping norm %v, want > 0", d.Clip)
	}
	return nil
}

// DPSteps is the number of DP-SGD steps TrainDP takes for a plan on n rows
// with sampling rate q: Epochs·⌈1/q⌉, so that each epoch samples every row
// once in expectation. The agent hands (q, σ, DPSteps) to the accountant
// before it trains.
func DPSteps(epochs int, q float64) int64 {
	if !(q > 0 && q <= 1) || epochs < 1 {
		return 0
	}
	return int64(epochs) * int64(math.Ceil(1/q-1e-9))
}

// DPRate is the sampling rate that gives batches of batchSize rows in
// expectation out of n: min(1, batchSize/n).
func DPRate(batchSize, n int) float64 {
	if n <= 0 || batchSize <= 0 {
		return 0
	}
	return min(1, float64(batchSize)/float64(n))
}

// TrainDP runs DP-SGD (see [DP]) for DPSteps(p.Epochs, dp.Q) steps from
// params and returns the new params (params untouched). p.BatchSize is not
// used: the batch size is Poisson with mean dp.Q·len(x). The L2 term does
// not depend on the data, so its gradient is added after the noise, at no
// privacy cost. Errors are those of [Train].
//
// With Sigma = 0, Q = 1 and Clip = +Inf every step is one full-batch
// gradient step, the same as Train with BatchSize = len(x) up to the order
// of floating-point summation (Train sums the batch inside one matrix
// product, TrainDP row by row), so the two agree to rounding, not bit for bit.
func TrainDP(s Spec, params []float32, x [][]float64, y []int, p Plan, dp DP) ([]float32, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := dp.Validate(); err != nil {
		return nil, err
	}
	rng := dp.Rand
	if rng == nil {
		rng = NewNoiseRand()
	}
	n, err := newNet(s, params, x, y)
	if err != nil {
		return nil, fmt.Errorf("model: train: %w", err)
	}
	w := toFloat64(params)
	g := make([]float64, len(w))   // one row's gradient
	sum := make([]float64, len(w)) // sum of clipped gradients
	ws := n.workspace(1)
	row := []int{0}
	std := dp.Sigma * dp.Clip
	scale := 1 / (dp.Q * float64(len(x)))
	steps := DPSteps(p.Epochs, dp.Q)
	for range steps {
		clear(sum)
		for i := range x {
			if dp.Q < 1 && rng.Float64() >= dp.Q {
				continue
			}
			row[0] = i
			n.gradient(ws, w, g, x, y, row, 0)
			if c := clipFactor(g, dp.Clip); c != 1 {
				for k := range g {
					g[k] *= c
				}
			}
			for k, v := range g {
				sum[k] += v
			}
		}
		if std > 0 {
			for k := range sum {
				sum[k] += std * rng.NormFloat64()
			}
		}
		for k := range sum {
			sum[k] *= scale
		}
		if p.L2 != 0 {
			n.addL2(w, sum, p.L2)
		}
		lr := p.LearningRate
		for k := range w {
			w[k] -= lr * sum[k]
		}
	}
	return finalParams(w)
}

// clipFactor returns min(1, c/‖g‖): the factor that brings g within norm c.
func clipFactor(g []float64, c float64) float64 {
	if math.IsInf(c, 1) {
		return 1
	}
	ss := 0.0
	for _, v := range g {
		ss += v * v
	}
	norm := math.Sqrt(ss)
	if norm <= c {
		return 1
	}
	return c / norm
}

// addL2 adds l2·W to the weight entries of g (biases are not regularized).
func (n *net) addL2(w, g []float64, l2 float64) {
	for l := 1; l < len(n.sizes); l++ {
		for i := n.wOff[l]; i < n.bOff[l]; i++ {
			g[i] += l2 * w[i]
		}
	}
}
