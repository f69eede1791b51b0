// Package aggregation turns the participants' updates of one round into the
// update of the global model. Rules are plain functions over vectors: no
// gRPC, no storage, so the coordinator and the simulator run the same code.
//
// # Rules
//
// Each rule has a configuration name (see Config and New) and an exported
// type implementing Rule. n is the number of updates a rule receives, f the
// assumed number of Byzantine participants among them, d the model's
// length.
//
//   - fedavg (FedAvg): the sample-weighted mean of McMahan et al.,
//     "Communication-Efficient Learning of Deep Networks from Decentralized
//     Data" (AISTATS 2017). Not robust: one participant moves the mean
//     arbitrarily far, and its weight is the sample count it claims
//     (FedAvg.MaxSamples caps the claim).
//   - median (Median): the coordinate-wise median of Yin et al.,
//     "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
//     Rates" (ICML 2018); for even n the mean of the two middle values.
//     Needs 2f < n.
//   - trimmed-mean (TrimmedMean): the coordinate-wise β-trimmed mean of Yin
//     et al. (ICML 2018): per coordinate, drop the k = ⌈β·n⌉ smallest and k
//     largest values and average the n−2k left. The ceiling is taken after
//     subtracting 1e-9 from β·n, so that binary rounding of β (0.1·30 =
//     3.0000000000000004) does not add one. Needs 0 ≤ β < 1/2, 2k < n, and
//     k ≥ f when f > 0. β = 0 is the plain mean.
//   - krum (Krum): Blanchard et al., "Machine Learning with Adversaries:
//     Byzantine Tolerant Gradient Descent" (NeurIPS 2017). The score of
//     update i is the sum of its squared Euclidean distances to the n−f−2
//     nearest other updates (an update never counts itself; distances are
//     accumulated in float64 and clamped at 0). The aggregate is the update
//     with the lowest score. Needs n ≥ 2f+3.
//   - multi-krum (MultiKrum): Blanchard et al. (NeurIPS 2017): the unweighted
//     mean of the m updates with the lowest Krum scores, the scores computed
//     once over all n updates, added in float64 in input order (so that the
//     aggregate depends on which m are chosen, not on their ranking among
//     themselves). Needs n ≥ 2f+3 and 1 ≤ m ≤ n−f; m = 1 is Krum.
//   - bulyan (Bulyan): El Mhamdi et al., "The Hidden Vulnerability of
//     Distributed Learning in Byzantium" (ICML 2018). Selection: θ = n−2f
//     updates are chosen by θ passes of Krum, each pass over the updates not
//     yet chosen (with r of them left, scores sum the max(r−f−2, 1) nearest
//     other remaining updates) and moving the lowest-scoring one into the
//     selection. The paper's r−f−2 is 0 in the last pass at f = 1 (3 left),
//     which would make every score 0 and let the smallest ID win even when
//     it is a far outlier; at least one neighbour keeps the paper's intent
//     that each pass picks an update close to the others. Aggregation: per coordinate, the β = θ−2f selected values
//     closest to the median of the θ selected values (for even θ the mean
//     of the two middle ones) are averaged. Closest means smallest absolute
//     difference; they form a run of the sorted values, grown from the
//     median outwards, a tie between the value below and the value above
//     going to the one below. Needs n ≥ 4f+3.
//   - centered-clipping (CenteredClipping): Karimireddy et al., "Learning
//     from History for Byzantine Robust Optimization" (ICML 2021). Starting
//     from v₀ = the coordinate-wise median of the updates, L iterations of
//     v ← v + (1/n)·Σᵢ (xᵢ − v)·min(1, τ/‖xᵢ − v‖), computed as the float64
//     weighted sum (1 − Σᵢcᵢ/n)·v + Σᵢ (cᵢ/n)·xᵢ with cᵢ the clip factor,
//     and v rounded to float32 after each iteration. The paper
//     starts from the previous round's aggregate momentum; these rules keep
//     no state between rounds, so the median stands in for it. Needs τ > 0,
//     L ≥ 1 (default 3) and, when f > 0, 2f < n.
//   - rfa (RFA): the weighted geometric median of Pillutla, Kakade,
//     Harchaoui, "Robust Aggregation for Federated Learning" (IEEE TSP
//     2022), by T iterations of the smoothed Weiszfeld algorithm
//     v ← Σᵢ βᵢxᵢ / Σᵢ βᵢ, βᵢ = αᵢ / max(ν, ‖v − xᵢ‖), from the weighted
//     mean (or zero), αᵢ the update's share of the (capped) sample
//     counts. Defaults T = 4, ν = 1e-5 (the authors' code); T ≤ 100.
//     Needs, when f > 0, 2f < n. See RFA for the weights.
//
// Ties between equal Krum scores go to the smaller ID, then to the earlier
// update, so the result does not depend on the order of the updates when
// IDs are distinct.
//
// # Sample counts
//
// Sample counts are self-reported. The robust rules but rfa ignore them:
// every update counts once, whatever it claims, and a zero count is not an
// error. fedavg and rfa weigh updates by their counts (rfa as its paper
// does), capped at max_samples when that is set, and refuse a zero count.
//
// # Pre-steps
//
// Two pre-steps can precede every rule, in this order:
//
//   - norm-clip (NormClip): each update x is replaced by x·min(1, C/‖x‖)
//     (float64 arithmetic, rounded to float32), so its L2 norm is at most C
//     up to float32 rounding.
//   - bucket (Bucketing): Karimireddy et al., "Byzantine-Robust Learning on
//     Heterogeneous Datasets via Bucketing" (ICLR 2022). The updates are
//     randomly permuted and cut into ⌈n/s⌉ buckets of s consecutive updates
//     (the last one may be smaller); each bucket's unweighted mean is one
//     input of the rule, which keeps its f: f Byzantine participants
//     contaminate at most f buckets. Preconditions apply to ⌈n/s⌉. With
//     fedavg the sample-weighted mean of sample-weighted bucket means is the
//     plain weighted mean, so fedavg is computed directly and the buckets
//     only appear in the report.
//
// # Randomness
//
// Only bucketing is random. Its randomness comes in as an io.Reader set by
// WithRand; without one, Aggregate fails with ErrNoRand rather than fall
// back to an unrecorded source. The permutation is a function of the bytes
// read, so a round is reproducible from its inputs and its seed: the
// coordinator derives a seed per round and passes, for example,
// rand.NewChaCha8(seed) from math/rand/v2. The permutation is the
// Fisher–Yates shuffle: for i from n−1 down to 1, swap positions i and j,
// j uniform in [0, i]. Each j is drawn by reading 8 bytes as a
// little-endian uint64 u, rejecting u ≥ 2⁶⁴ − (2⁶⁴ mod (i+1)) and reading
// again, and taking u mod (i+1).
//
// # Reports
//
// Every call returns a Report with one Entry per input, in input order,
// saying whether it was selected and why, its score (the Krum score, or
// the distance to the aggregate, or to the center in centered clipping's
// last iteration), the norm-clip factor and its bucket. Weight is the
// update's weight in the aggregate when the aggregate is a weighted mean
// of the updates (fedavg, krum, multi-krum, rfa); the coordinate-wise rules and
// centered clipping give no update a single weight and leave it 0.
//
// # Errors
//
// Inputs no rule accepts (no updates, ragged lengths, NaN or infinities)
// are refused with ErrNoUpdates, ErrLength and ErrNonFinite (naming the
// first bad update in input order; the rules detect it from their first
// pass over the inputs rather than a separate one, so on this error, as on
// any error, dst holds unspecified values and must not be used). A parameter
// that is wrong whatever the cohort is ErrConfig (or ErrUnknownRule); a
// cohort too small for the rule and its parameters is ErrCohort. The rules
// never return NaN and never fall back to another rule.
//
// # Kernel paths
//
// The dense loops run on one of four paths, chosen once per process:
// AVX-512 or AVX2 assembly on amd64, NEON assembly on arm64, or portable
// Go (every architecture, and the purego build tag). All give the same
// bits, so a round can be recomputed on any machine. The environment
// variable FEDGUARD_KERNEL (avx512, avx2, neon, purego) forces one; New refuses with ErrKernel when the
// CPU lacks it. Kernel names the path that runs.
package aggregation

import (
	"errors"
	"fmt"
	"math"

	"github.com/fedguard/fedguard/model"
)

// Update is one participant's contribution to a round.
type Update struct {
	// ID names the participant in reports.
	ID string
	// Delta is the trained model minus the round's starting model.
	Delta []float32
	// Samples is the participant's self-reported number of training rows.
	Samples uint64
}

// Entry is what a rule did with one update.
type Entry struct {
	// ID is the update's ID.
	ID string `json:"id"`
	// Weight is the update's weight in the aggregate, for rules whose
	// aggregate is a weighted mean of the updates; 0 otherwise.
	Weight float64 `json:"weight"`
	// Score is the rule's measure of the update: Krum score (krum,
	// multi-krum, bulyan), Euclidean distance to the aggregate (median,
	// trimmed-mean) or to the last center (centered-clipping).
	Score float64 `json:"score,omitempty"`
	// Selected says whether the update contributed to the aggregate.
	Selected bool `json:"selected"`
	// Reason explains the decision in words.
	Reason string `json:"reason,omitempty"`
	// Clip is the factor in (0, 1] norm-clip scaled the update by; 0 when
	// norm-clip is off.
	Clip float64 `json:"clip,omitempty"`
	// Bucket is the update's bucket, counted from 1; 0 when bucketing is
	// off.
	Bucket int `json:"bucket,omitempty"`
}

// Report explains one aggregation.
type Report struct {
	Rule    string  `json:"rule"`
	Entries []Entry `json:"entries"`
}

// Rule aggregates the updates of one round.
type Rule interface {
	// Name is the rule's name on the command line and in configuration.
	Name() string
	// Aggregate writes the aggregate of updates into dst, whose length must
	// equal every update's and which must not overlap them. It never
	// changes the updates. On error the contents of dst are unspecified
	// and must not be used.
	Aggregate(dst []float32, updates []Update) (Report, error)
}

// Errors for inputs no rule accepts.
var (
	ErrNoUpdates   = errors.New("aggregation: no updates")
	ErrLength      = errors.New("aggregation: update length differs from the model's")
	ErrNonFinite   = errors.New("aggregation: update has a NaN or infinite value")
	ErrZeroSamples = errors.New("aggregation: update claims zero samples")
)

// Errors for rules and their parameters.
var (
	// ErrUnknownRule is a configuration naming no rule.
	ErrUnknownRule = errors.New("aggregation: unknown rule")
	// ErrConfig is a parameter that is invalid whatever the cohort, such
	// as a negative f or β ≥ 1/2.
	ErrConfig = errors.New("aggregation: invalid rule parameter")
	// ErrCohort is a number of updates that does not meet the rule's
	// precondition, such as krum's n ≥ 2f+3.
	ErrCohort = errors.New("aggregation: cohort does not meet the rule's precondition")
	// ErrNoRand is a rule that needs randomness (bucketing) called without
	// a source: see WithRand.
	ErrNoRand = errors.New("aggregation: no randomness source (use WithRand)")
)

// Check validates updates against a model of n parameters: at least one
// update, each of length n and finite.
func Check(n int, updates []Update) error {
	if err := checkLengths(n, updates); err != nil {
		return err
	}
	return checkFinite(updates)
}

// checkLengths is Check without the finiteness test: at least one update,
// each of length n. The rules call it up front and leave finiteness to
// their first kernel pass (see deferredFinite).
func checkLengths(n int, updates []Update) error {
	if len(updates) == 0 {
		return ErrNoUpdates
	}
	for _, u := range updates {
		if len(u.Delta) != n {
			return fmt.Errorf("%w: %q has %d, want %d", ErrLength, u.ID, len(u.Delta), n)
		}
	}
	return nil
}

// checkFinite is Check's finiteness test: ErrNonFinite naming the first
// update in input order holding a NaN or infinity.
func checkFinite(updates []Update) error {
	n := 0
	if len(updates) > 0 {
		n = len(updates[0].Delta)
	}
	// One pass over every input: spread it over the cores, reporting the
	// first bad update in input order whatever finishes first.
	errs := make([]error, len(updates))
	parallel(len(updates), n*len(updates), func(_, i int) {
		errs[i] = model.CheckFinite(updates[i].Delta)
	})
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrNonFinite, updates[i].ID, err)
		}
	}
	return nil
}

// deferredFinite is how the rules avoid a separate validation pass. A rule
// checks lengths up front and runs its first kernel pass over the inputs
// unvalidated; every such pass (weightedSum, pairwiseSquaredDistances,
// squaredDistancesTo) propagates a NaN or infinity of any input into some
// value it returns, because NaN and ±Inf survive subtraction from, scaling
// by and addition of finite numbers (or become NaN). When that value is not
// finite the rule calls deferredFinite, which runs the exact test and
// returns ErrNonFinite naming the first bad update in input order, or nil
// when all inputs are finite after all (a float32 overflow of a finite
// result), in which case the rule goes on as before. On error dst holds
// unspecified values.
func deferredFinite(updates []Update) error { return checkFinite(updates) }

// deferredFiniteDistances is the finiteness test of the rules whose first
// pass is squaredDistancesTo: it calls deferredFinite when one of the
// squared distances sq is not finite.
func deferredFiniteDistances(sq []float64, updates []Update) error {
	for _, v := range sq {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return deferredFinite(updates)
		}
	}
	return nil
}

// FedAvg is the sample-weighted mean. Sample counts are self-reported, so
// a participant can buy weight by claiming a large count; MaxSamples, when
// not zero, caps each update's count before weighting. The zero value is
// the plain weighted mean.
type FedAvg struct {
	// MaxSamples caps each claimed sample count (0: no cap).
	MaxSamples uint64
}

var _ Rule = FedAvg{}

// Name implements Rule.
func (FedAvg) Name() string { return "fedavg" }

// weights returns each update's weight nᵢ / Σ nᵢ, in memory and out of
// core alike. A zero count is refused with ErrZeroSamples, unless
// checkFinite (the caller's way to read the updates) finds a non-finite
// value first, which is then the error.
func (r FedAvg) weights(updates []Update, checkFinite func([]Update) error) ([]float64, error) {
	var total float64
	for _, u := range updates {
		if u.Samples == 0 {
			if err := checkFinite(updates); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %q", ErrZeroSamples, u.ID)
		}
		total += float64(r.samples(u))
	}
	w := make([]float64, len(updates))
	for i, u := range updates {
		w[i] = float64(r.samples(u)) / total
	}
	return w, nil
}

// report is FedAvg's report: every update selected, with its weight, and
// the reason when its count was capped.
func (r FedAvg) report(updates []Update, w []float64) Report {
	rep := Report{Rule: "fedavg", Entries: make([]Entry, len(updates))}
	for i, u := range updates {
		rep.Entries[i] = Entry{ID: u.ID, Weight: w[i], Selected: true}
		if s := r.samples(u); s != u.Samples {
			rep.Entries[i].Reason = fmt.Sprintf("fedavg: claimed %d samples, capped at %d", u.Samples, s)
		}
	}
	return rep
}

// Aggregate implements Rule: dst = Σ nᵢ·Δᵢ / Σ nᵢ with nᵢ the claimed
// sample count, capped at MaxSamples when that is set. A zero count is
// refused with ErrZeroSamples.
func (r FedAvg) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := checkLengths(len(dst), updates); err != nil {
		return Report{}, err
	}
	w, err := r.weights(updates, checkFinite)
	if err != nil {
		return Report{}, err
	}
	// dst = Σ wᵢ·Δᵢ accumulated per coordinate in float64, each product
	// rounded before it is added and the updates added in input order
	// (weightedSum), so the result is the same bit for bit on every
	// architecture and core count: anyone can recompute a round's model
	// from its inputs.
	if !weightedSum(dst, vectors(updates), w) {
		// Finiteness is tested on the result: see deferredFinite.
		if err := deferredFinite(updates); err != nil {
			return Report{}, err
		}
	}
	return r.report(updates, w), nil
}

// samples is u's sample count after the cap.
func (r FedAvg) samples(u Update) uint64 {
	if r.MaxSamples > 0 && u.Samples > r.MaxSamples {
		return r.MaxSamples
	}
	return u.Samples
}
