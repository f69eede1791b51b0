// Package anomaly holds the heuristics that flag suspicious updates and
// data: the coordinator runs them on every plain round (and on the data
// statistics of every round), and the simulator runs the same code on
// every simulated round to measure how often they catch each attack (see
// docs/attacks.md, "Detection rates"). It is pure: no clock, no I/O, no
// randomness; the caller records the flags (the coordinator as
// audit.AnomalyFlagged events and a metric).
//
// # Updates
//
// Check looks at the updates of one round against each other, and flags
// an update when:
//
//   - norm: its L2 norm lies outside [median − K·MAD, median + K·MAD] of
//     the cohort's norms (K = Config.NormMADs, default 3.5; MAD is the
//     median absolute deviation) and also outside [median/R, R·median]
//     (R = Config.NormRatio, default 3). The MAD is floored at 5% of the
//     median: when half the cohort has nearly the same norm the MAD is
//     close to zero and would flag any difference. The ratio keeps honest
//     hospitals with different data from being flagged: near convergence
//     their norms differ by a factor of two or so from round to round (the
//     WDBC demo's do), while a boosted update (model replacement, scaling)
//     is many times the median. With fewer than 3 updates the check is
//     skipped: the median says nothing.
//   - cosine: its cosine similarity to the round's reference direction is
//     below Config.CosineFloor (default −0.5: it points clearly against
//     the others); skipped when either vector is zero. The reference is
//     the sample-weighted mean of the updates, each first scaled down to
//     the cohort's median norm if it is larger: FedAvg's direction when
//     the updates are alike, but one that no single update, however
//     large, can drag its way. (It was the round's aggregate, which a
//     boosted update — the demo's --poison, 50 times an honest one —
//     dragged so far that the honest hospitals were the ones flagged.)
//     Honest updates near convergence are mostly noise and can point
//     slightly away from the reference (the demo's go down to about
//     −0.4), so the floor is below 0.
//   - excluded: the robust rule left it out of the aggregate (value: the
//     rule's score, when it has one).
//
// # Data
//
// DriftOf looks at data rather than updates: a participant's training-row
// aggregates (count, per-feature sum and sum of squares, dataset.Stats)
// against the federation's reference scaling. Per feature it computes the
// standardized mean shift |mean − mean_ref| / std_ref and the variance
// ratio var / std_ref²; the participant is flagged (drift) when the
// largest shift exceeds Config.DriftShift (default DefaultDriftShift, 2).
//
// The reference should not include the participant's own rows: a
// participant holding a fraction p of the federation's rows, all shifted
// by the same amount, pulls a pooled reference's mean towards itself and
// widens its standard deviation, so that it can never lie more than
// √((1−p)/p) reference standard deviations away, whatever its shift
// (1.73 for p = 1/4, 2 for p = 1/5): with the default of 2, drift present
// from the start would never be flagged for a hospital holding a fifth or
// more of the rows. References gives each participant the robust scaling
// of the others' statistics instead. In the demo (WDBC, 4 hospitals each
// drawing 75 % of its rows from one diagnosis, data splits of seeds 1 to
// 5) an honest hospital's largest shift against the others lies between
// 0.60 and 1.45 (against all four, itself included: 0.47 to 0.86); a
// hospital whose every feature was moved by 3 standard deviations from
// the start shows 2.84 to 6.21 against the others, but only 1.26 to 3.22
// against all four (the coordinator's TestDriftFromStart and
// TestDriftDefaultOnDemo). The default of 2 lies above every honest shift
// and below every shifted hospital's.
package anomaly

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/workers"
)

// Kinds of flags: the values of Flag.Kind (and of the coordinator's
// audit.AnomalyFlagged.Kind and metric label).
const (
	Norm     = "norm"
	Cosine   = "cosine"
	Excluded = "excluded"
	Drift    = "drift"
)

// Defaults of Config.
const (
	// DefaultNormMADs is how many median absolute deviations an update's
	// norm may lie from the cohort's median before it is flagged.
	DefaultNormMADs = 3.5
	// DefaultNormRatio is how many times the cohort's median norm an
	// update's norm must also be off (above or below) before it is flagged.
	DefaultNormRatio = 3.0
	// DefaultCosineFloor is the lowest cosine similarity to the reference
	// direction an update may have without being flagged.
	DefaultCosineFloor = -0.5
	// DefaultDriftShift is the largest standardized mean shift, in
	// reference standard deviations, a participant's feature statistics
	// may show against the federation's scaling without being flagged
	// (see the package documentation for the measurements behind it).
	DefaultDriftShift = 2.0
)

// madFloor is the smallest MAD, as a fraction of the median norm, that the
// norm check uses (see the package documentation).
const madFloor = 0.05

// Config tunes the heuristics; zero values take the defaults. It is the
// coordinator's "anomaly" configuration (coordinator.AnomalyConfig).
type Config struct {
	// NormMADs is K: an update whose norm lies more than K median absolute
	// deviations from the cohort's median norm is flagged (default
	// DefaultNormMADs).
	NormMADs float64 `json:"norm_mads,omitempty"`
	// NormRatio is R: the norm must also be more than R times the median,
	// or less than the median over R (default DefaultNormRatio; at least
	// 1).
	NormRatio float64 `json:"norm_ratio,omitempty"`
	// CosineFloor: an update whose cosine similarity to the reference
	// direction is below it is flagged (default DefaultCosineFloor when
	// absent; -1 turns the check off). It must be in [-1, 1].
	CosineFloor *float64 `json:"cosine_floor,omitempty"`
	// DriftShift: a participant whose reported feature statistics have a
	// feature mean more than DriftShift reference standard deviations
	// from the federation's mean is flagged (default DefaultDriftShift;
	// a finite number > 0).
	DriftShift float64 `json:"drift_shift,omitempty"`
}

// WithDefaults returns c with every zero setting replaced by its default
// (CosineFloor then points to a copy).
func (c Config) WithDefaults() Config {
	c.NormMADs = cmp.Or(c.NormMADs, DefaultNormMADs)
	c.NormRatio = cmp.Or(c.NormRatio, DefaultNormRatio)
	floor := DefaultCosineFloor
	if c.CosineFloor != nil {
		floor = *c.CosineFloor
	}
	c.CosineFloor = &floor
	c.DriftShift = cmp.Or(c.DriftShift, DefaultDriftShift)
	return c
}

// Update is one participant's update in a round, as Check sees it.
type Update struct {
	// ID names the participant; Report entries refer to it.
	ID    string
	Delta []float32
	// Samples weighs the update in the reference direction.
	Samples uint64
	// Norm is Delta's L2 norm (model.Norm), which the caller usually has.
	Norm float64
}

// Flag is one heuristic flagging one participant.
type Flag struct {
	ID   string
	Kind string
	// Value is what was measured: the norm, the cosine similarity, the
	// rule's score, or the largest shift.
	Value float64
	// Band is the interval Value was expected in (nil for excluded).
	Band []float64
}

// NormBand is the interval [lo, hi] a round's update norms are expected in
// (see the package documentation); false when there are too few updates
// (under 3) to say.
func NormBand(cfg Config, norms []float64) (lo, hi float64, ok bool) {
	if len(norms) < 3 {
		return 0, 0, false
	}
	cfg = cfg.WithDefaults()
	k, ratio := cfg.NormMADs, cfg.NormRatio
	med := median(slices.Clone(norms))
	dev := make([]float64, len(norms))
	for i, v := range norms {
		dev[i] = math.Abs(v - med)
	}
	mad := max(median(dev), madFloor*med)
	return min(med-k*mad, med/ratio), max(med+k*mad, med*ratio), true
}

// refBlock is how many parameters of Check's reference are built at a
// time: 128 KiB of float64, which stays in the cache while every update's
// dot product with it is taken.
const refBlock = 1 << 14

// refDots builds the reference of Check, Σ w[i]·updates[i].Delta over the
// updates of non-zero norm, a block of refBlock parameters at a time, and
// returns every update's dot product with it (0 for a zero norm or a
// length other than d) and the sum of its squares. The work of each
// block is shared out over up to parts goroutines.
//
// Every sum is a chain of float64 additions, and a chain of additions
// waits on its adder's latency: one update's dot product at a time ran at
// one element per latency, 9 % of the coordinator's CPU at 10 × 10M
// (docs/capacity.md), on one goroutine while the round closes. The loops
// below take four updates at once: four independent chains in flight,
// each in exactly the order it had alone (the reference element by
// element in update order, each dot product element by element), so the
// results are bit-for-bit those of one update at a time
// (TestRefDotsSameBits).
//
// The goroutines split each block without changing any chain: the
// reference's elements are independent of each other, so each goroutine
// builds a range of them; then each dot product (in groups of four) and
// the reference's sum of squares is one task, a whole chain in its own
// order. The results are the same bits for any parts
// (TestRefDotsParallelSameBits).
func refDots(updates []Update, w []float64, d int, full []bool, parts int, block func(lo, hi int) ([][]float32, error)) (dots []float64, refNorm float64, err error) {
	dots = make([]float64, len(updates))
	var dotted []int // updates dotted with the reference
	for i, u := range updates {
		if u.Norm != 0 && full[i] {
			dotted = append(dotted, i)
		}
	}
	// The tasks of the dot products: groups of four dotted updates, the
	// last one shorter; task len(groups) is the reference's norm.
	var groups [][]int
	for k := 0; k < len(dotted); k += 4 {
		groups = append(groups, dotted[k:min(k+4, len(dotted))])
	}
	parts = max(parts, 1)
	ref := make([]float64, min(refBlock, d))
	in := make([]int, 0, len(updates))
	for lo := 0; lo < d; lo += refBlock {
		hi := min(lo+refBlock, d)
		xs, err := block(lo, hi)
		if err != nil {
			return nil, 0, err
		}
		r := ref[:hi-lo]
		// The updates in this block's reference: a non-zero norm and the
		// block's parameters (a shorter update adds nothing, as if its
		// missing parameters were zero).
		in = in[:0]
		for i, u := range updates {
			if u.Norm != 0 && len(xs[i]) >= len(r) {
				in = append(in, i)
			}
		}
		// Split the reference into ranges of whole cache lines.
		span := (len(r) + parts - 1) / parts
		span = (span + 7) &^ 7
		ranges := (len(r) + span - 1) / max(span, 1)
		eachPart(parts, ranges, func(p int) {
			a, b := p*span, min((p+1)*span, len(r))
			buildRef(r[a:b], in, w, xs, a)
		})
		eachPart(parts, len(groups)+1, func(t int) {
			if t == len(groups) {
				sq := refNorm
				for _, v := range r {
					sq += v * v
				}
				refNorm = sq
				return
			}
			dotGroup(dots, groups[t], xs, r)
		})
	}
	return dots, refNorm, nil
}

// eachPart calls f(i) for every i in [0, n) on up to parts goroutines.
// Every f writes only its own results.
func eachPart(parts, n int, f func(i int)) {
	// f returns no error, so neither does Each.
	_ = workers.Each(context.Background(), parts, n, func(i int) error {
		f(i)
		return nil
	})
}

// buildRef sets r, the reference's elements from off on within the block,
// to Σ w[i]·xs[i][off+j] over the updates in, in their order.
func buildRef(r []float64, in []int, w []float64, xs [][]float32, off int) {
	clear(r)
	k := 0
	for ; k+4 <= len(in); k += 4 {
		i0, i1, i2, i3 := in[k], in[k+1], in[k+2], in[k+3]
		w0, w1, w2, w3 := w[i0], w[i1], w[i2], w[i3]
		u0, u1, u2, u3 := xs[i0][off:off+len(r)], xs[i1][off:off+len(r)], xs[i2][off:off+len(r)], xs[i3][off:off+len(r)]
		for j := range r {
			x := r[j]
			x += w0 * float64(u0[j])
			x += w1 * float64(u1[j])
			x += w2 * float64(u2[j])
			x += w3 * float64(u3[j])
			r[j] = x
		}
	}
	for ; k < len(in); k++ {
		i := in[k]
		for j, v := range xs[i][off : off+len(r)] {
			r[j] += w[i] * float64(v)
		}
	}
}

// dotGroup adds the block's terms of the dot products of up to four
// updates (group) with the block's reference r to dots, as four chains in
// flight: a shorter group repeats its first update in the spare chains,
// whose results are dropped, so that it too waits on the adder once per
// element rather than once per element and update.
func dotGroup(dots []float64, group []int, xs [][]float32, r []float64) {
	var g [4]int
	for k := range g {
		g[k] = group[0]
		if k < len(group) {
			g[k] = group[k]
		}
	}
	d0, d1, d2, d3 := dots[g[0]], dots[g[1]], dots[g[2]], dots[g[3]]
	u0, u1, u2, u3 := xs[g[0]][:len(r)], xs[g[1]][:len(r)], xs[g[2]][:len(r)], xs[g[3]][:len(r)]
	for j, rj := range r {
		d0 += float64(u0[j]) * rj
		d1 += float64(u1[j]) * rj
		d2 += float64(u2[j]) * rj
		d3 += float64(u3[j]) * rj
	}
	out := [4]float64{d0, d1, d2, d3}
	for k, i := range group {
		dots[i] = out[k]
	}
}

// Check flags the updates of one round against each other (see the
// package documentation); report is the rule's report on them, whose
// unselected entries are flagged as excluded. The flags come in the
// order of updates, and for each update norm before cosine before
// excluded.
func Check(cfg Config, updates []Update, report aggregation.Report) []Flag {
	d, full, block := deltaBlocks(updates)
	flags, _ := check(cfg, updates, d, full, block, report)
	return flags
}

// deltaBlocks gives check the updates' own vectors: d is the first
// update's length, full[i] says whether update i has that length, and
// block(lo, hi) returns updates[i].Delta[lo:hi] (nil for an update shorter
// than hi).
func deltaBlocks(updates []Update) (d int, full []bool, block func(lo, hi int) ([][]float32, error)) {
	if len(updates) > 0 {
		d = len(updates[0].Delta)
	}
	full = make([]bool, len(updates))
	for i, u := range updates {
		full[i] = len(u.Delta) == d
	}
	xs := make([][]float32, len(updates))
	return d, full, func(lo, hi int) ([][]float32, error) {
		for i, u := range updates {
			xs[i] = nil
			if len(u.Delta) >= hi {
				xs[i] = u.Delta[lo:hi]
			}
		}
		return xs, nil
	}
}

// CheckRows is Check with the updates' vectors read from rows (the
// coordinator's spill file) instead of updates[i].Delta, which is
// ignored: every row has d parameters. It reads the rows a block of
// refBlock parameters at a time, holding n blocks, and returns Check's
// flags, bit for bit (every sum is taken in the same order), or the
// first read error.
func CheckRows(cfg Config, updates []Update, d int, rows aggregation.Rows, report aggregation.Report) ([]Flag, error) {
	full := make([]bool, len(updates))
	for i := range full {
		full[i] = true
	}
	buf := make([]float32, len(updates)*min(refBlock, d))
	xs := make([][]float32, len(updates))
	return check(cfg, updates, d, full, func(lo, hi int) ([][]float32, error) {
		for i := range xs {
			xs[i] = buf[i*(hi-lo) : (i+1)*(hi-lo)]
		}
		if err := rows.ReadBlock(lo, xs); err != nil {
			return nil, fmt.Errorf("anomaly: reading the updates' parameters %d to %d: %w", lo, hi, err)
		}
		return xs, nil
	}, report)
}

// check is Check over vectors given a block at a time: block(lo, hi)
// returns every update's parameters lo..hi-1 (for updates with full[i],
// those of length d; the others take no part in the cosine test).
func check(cfg Config, updates []Update, d int, full []bool, block func(lo, hi int) ([][]float32, error), report aggregation.Report) ([]Flag, error) {
	floor := *cfg.WithDefaults().CosineFloor
	var flags []Flag
	norms := make([]float64, len(updates))
	for i, u := range updates {
		norms[i] = u.Norm
	}
	lo, hi, checkNorm := NormBand(cfg, norms)
	// ref is the sample-weighted mean of the updates clipped to the median
	// norm: what the round's FedAvg would be if no update were larger
	// than the median one. It is built and used a block of parameters at
	// a time (refBlock), each sum taken in the same order as over the
	// whole vector, so the flags are those of a model-sized ref without
	// holding one: in float64 it would be two models' worth of memory at
	// the coordinator's peak.
	var dots []float64
	refNorm := 0.0
	if len(updates) > 0 {
		med := median(slices.Clone(norms))
		w := make([]float64, len(updates))
		for i, u := range updates {
			if u.Norm != 0 {
				w[i] = float64(u.Samples) * min(1, med/u.Norm)
			}
		}
		var err error
		if dots, refNorm, err = refDots(updates, w, d, full, runtime.GOMAXPROCS(0), block); err != nil {
			return nil, err
		}
	} else {
		dots = make([]float64, len(updates))
	}
	refNorm = math.Sqrt(refNorm)
	entries := map[string]aggregation.Entry{}
	for _, e := range report.Entries {
		entries[e.ID] = e
	}
	for i, u := range updates {
		if checkNorm && (norms[i] < lo || norms[i] > hi) {
			flags = append(flags, Flag{ID: u.ID, Kind: Norm, Value: norms[i], Band: []float64{lo, hi}})
		}
		if u.Norm > 0 && refNorm > 0 && full[i] {
			if cos := dots[i] / (u.Norm * refNorm); cos < floor {
				flags = append(flags, Flag{ID: u.ID, Kind: Cosine, Value: cos, Band: []float64{floor, 1}})
			}
		}
		if e, ok := entries[u.ID]; ok && !e.Selected {
			flags = append(flags, Flag{ID: u.ID, Kind: Excluded, Value: e.Score})
		}
	}
	return flags, nil
}

// Shift is how far a participant's feature statistics lie from the
// federation's reference scaling, at the feature where they lie farthest.
type Shift struct {
	// Feature is the index of the feature with the largest Shift.
	Feature int
	// Shift is |mean − mean_ref| / std_ref at Feature.
	Shift float64
	// VarianceRatio is var / std_ref² at Feature (population variances).
	VarianceRatio float64
}

// DriftOf compares st with ref (see the package documentation); false
// when st has no rows or its width is not ref's. Ties go to the lower
// feature.
func DriftOf(st dataset.Stats, ref dataset.Scaling) (Shift, bool) {
	w := len(ref.Mean)
	if st.Count == 0 || w == 0 || len(ref.Std) != w || len(st.Sum) != w || len(st.SumSquares) != w {
		return Shift{}, false
	}
	n := float64(st.Count)
	d := Shift{Shift: -1}
	for j := range w {
		mean := st.Sum[j] / n
		v := max(st.SumSquares[j]/n-mean*mean, 0)
		sd := ref.Std[j]
		if !(sd > 0) {
			sd = 1 // as dataset.ScalingFrom does for a constant column
		}
		shift := math.Abs(mean-ref.Mean[j]) / sd
		if shift > d.Shift {
			d = Shift{Feature: j, Shift: shift, VarianceRatio: v / (sd * sd)}
		}
	}
	return d, true
}

// References returns each party's drift reference: the robust scaling
// (dataset.RobustScaling) of the other parties' statistics, so that its
// own rows do not pull the reference towards it (see the package
// documentation). With fewer than two parties there is no other party,
// and References returns nil: the caller falls back to the federation's
// scaling. Every party must pass dataset.CheckStats, and all have one
// width, as RobustScaling requires of the whole.
func References(parties []dataset.Party) (map[string]dataset.Scaling, error) {
	if len(parties) < 2 {
		return nil, nil
	}
	refs := make(map[string]dataset.Scaling, len(parties))
	others := make([]dataset.Party, 0, len(parties)-1)
	for i, p := range parties {
		others = append(append(others[:0], parties[:i]...), parties[i+1:]...)
		sc, _, err := dataset.RobustScaling(others)
		if err != nil {
			return nil, fmt.Errorf("anomaly: drift reference of %s: %w", p.Name, err)
		}
		refs[p.Name] = sc
	}
	return refs, nil
}

// Drifted reports whether a participant at d is flagged: its largest
// shift exceeds cfg's DriftShift.
func (c Config) Drifted(d Shift) bool { return d.Shift > c.WithDefaults().DriftShift }

// median sorts v and returns its median; v must not be empty.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
