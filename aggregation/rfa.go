package aggregation

import (
	"cmp"
	"fmt"
	"math"
)

// RFA parameters' defaults and bounds.
const (
	// DefaultRFAIterations is RFA's T when the configuration leaves it 0:
	// the authors' code (krishnap25/RFA, models/server.py,
	// update_model's maxiter=4) runs at most 4 Weiszfeld steps.
	DefaultRFAIterations = 4
	// MaxRFAIterations bounds T: each iteration is one pass over all
	// updates, and the smoothed Weiszfeld iterates converge linearly, so
	// more than a hundred buys nothing but time.
	MaxRFAIterations = 100
	// DefaultNu is RFA's smoothing ν when the configuration leaves it 0:
	// the authors' code's eps=1e-5 (geometric_median_update). It is a
	// distance in the units of the updates: an update closer than ν to
	// the iterate is weighed as if it were ν away, so no weight is
	// infinite.
	DefaultNu = 1e-5
)

// RFA starting points (Config.Start).
const (
	// RFAStartMean starts the iterations at the weighted mean, as the
	// authors' code does (geometric_median_update). The default.
	RFAStartMean = "mean"
	// RFAStartZero starts them at the zero vector, as the bucketing
	// paper's code (epfml/byzantine-robust-noniid-optimizer,
	// codes/aggregator/rfa.py) and EPFL's ByzFL (GeometricMedian) do.
	RFAStartZero = "zero"
)

// RFA is robust federated aggregation: the weighted geometric median
// argmin_v Σᵢ αᵢ‖v − xᵢ‖ approximated by the smoothed Weiszfeld algorithm
// of Pillutla, Kakade, Harchaoui, "Robust Aggregation for Federated
// Learning" (IEEE Transactions on Signal Processing 70, 2022). Starting
// from v⁽⁰⁾ (the weighted mean, or zero), each of T iterations sets
//
//	βᵢ = αᵢ / max(ν, ‖v − xᵢ‖),   v ← Σᵢ βᵢxᵢ / Σᵢ βᵢ.
//
// αᵢ is update i's share of the sample counts, as in the paper, where
// each device weighs by its number of points. The counts are
// self-reported: a participant claiming a large count buys weight, and one
// holding more than half of the total weight moves the geometric median
// anywhere. MaxSamples caps each claim (as FedAvg's does); MaxSamples = 1
// gives every update the same weight, as the bucketing paper's code and
// ByzFL do. A zero count is refused with ErrZeroSamples.
//
// The arithmetic is the package's deterministic kernels': distances are
// squaredDistancesTo's float64 sums, each new iterate is weightedSum's
// float64 weighted sum of the updates rounded to float32, so a round
// recomputes to the same bits on every machine.
type RFA struct {
	// Iterations is T, in [0, MaxRFAIterations]; 0 means
	// DefaultRFAIterations.
	Iterations int
	// Nu is the smoothing ν > 0 (finite); 0 means DefaultNu.
	Nu float64
	// Start is RFAStartMean (or empty) or RFAStartZero.
	Start string
	// MaxSamples caps each claimed sample count (0: no cap).
	MaxSamples uint64
	// F is the assumed number of Byzantine updates; when positive,
	// Aggregate refuses n ≤ 2F (the geometric median's breakdown point
	// is one half of the weight).
	F int
}

var _ Rule = RFA{}

// Name implements Rule.
func (RFA) Name() string { return NameRFA }

func (r RFA) validate() error {
	if err := checkF(r.F); err != nil {
		return err
	}
	if r.Iterations < 0 || r.Iterations > MaxRFAIterations {
		return fmt.Errorf("%w: rfa iterations %d must be in [0, %d] (0: %d)", ErrConfig, r.Iterations, MaxRFAIterations, DefaultRFAIterations)
	}
	if !(r.Nu >= 0) || math.IsInf(r.Nu, 0) {
		return fmt.Errorf("%w: rfa nu %v must be positive and finite (0: %g)", ErrConfig, r.Nu, DefaultNu)
	}
	switch r.Start {
	case "", RFAStartMean, RFAStartZero:
	default:
		return fmt.Errorf("%w: rfa start %q must be %s or %s", ErrConfig, r.Start, RFAStartMean, RFAStartZero)
	}
	return nil
}

func (r RFA) cohort(n int) error { return honestMajority(r.Name(), n, r.F) }

func (r RFA) params() (iters int, nu float64) {
	iters, nu = r.Iterations, r.Nu
	iters = cmp.Or(iters, DefaultRFAIterations)
	nu = cmp.Or(nu, DefaultNu)
	return iters, nu
}

// samples is u's sample count after the cap.
func (r RFA) samples(u Update) uint64 {
	if r.MaxSamples > 0 && u.Samples > r.MaxSamples {
		return r.MaxSamples
	}
	return u.Samples
}

// Aggregate implements Rule. Each entry's weight is the update's weight
// in the aggregate (its βᵢ/Σβ of the last iteration) and its score the
// distance to the last iterate before it.
func (r RFA) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := prologue(r, dst, updates); err != nil {
		return Report{}, err
	}
	iters, nu := r.params()
	xs := vectors(updates)
	n := len(xs)
	alpha := make([]float64, n)
	var total float64
	for i, u := range updates {
		s := r.samples(u)
		if s == 0 {
			if err := checkFinite(updates); err != nil {
				return Report{}, err
			}
			return Report{}, fmt.Errorf("%w: %q (rfa weighs updates by their sample counts)", ErrZeroSamples, u.ID)
		}
		alpha[i] = float64(s)
		total += float64(s)
	}
	for i := range alpha {
		alpha[i] /= total
	}
	// v⁽⁰⁾ lives in dst. The distances to it are the finiteness test (see
	// deferredFinite): a NaN or infinity in an update makes its distance,
	// or the weighted mean and so every distance, non-finite.
	if r.Start == RFAStartZero {
		clear(dst)
	} else {
		weightedSum(dst, xs, alpha)
	}
	sqs := squaredDistancesTo(xs, dst)
	if err := deferredFiniteDistances(sqs, updates); err != nil {
		return Report{}, err
	}
	w := make([]float64, n)
	dist := make([]float64, n)
	for it := range iters {
		var sum float64
		for i, sq := range sqs {
			dist[i] = math.Sqrt(sq)
			w[i] = alpha[i] / max(nu, dist[i])
			sum += w[i]
		}
		for i := range w {
			w[i] /= sum
		}
		if it == iters-1 {
			weightedSum(dst, xs, w)
			break
		}
		sqs, _ = weightedSumDist(dst, xs, w, xs)
	}
	rep := Report{Rule: r.Name(), Entries: make([]Entry, n)}
	for i, u := range updates {
		rep.Entries[i] = Entry{ID: u.ID, Weight: w[i], Score: dist[i], Selected: true,
			Reason: fmt.Sprintf("rfa: distance %.6g to the iterate, weight %.6g (sample share %.6g) in Weiszfeld iteration %d", dist[i], w[i], alpha[i], iters)}
	}
	return rep, nil
}
