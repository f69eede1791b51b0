package aggregation

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// The robust rules. Each checks its parameters (ErrConfig), the updates'
// lengths and its cohort precondition (ErrCohort) before any arithmetic,
// tests finiteness from its first kernel pass (see deferredFinite),
// ignores sample counts, and does its heavy work in the kernels
// (pairwiseSquaredDistances, coordinateMedian, coordinateTrimmedMean,
// meanOf), except Bulyan's closest-to-the-median trimming below.

var (
	_ Rule = Median{}
	_ Rule = TrimmedMean{}
	_ Rule = Krum{}
	_ Rule = MultiKrum{}
	_ Rule = Bulyan{}
	_ Rule = CenteredClipping{}
)

// DefaultIterations is centered clipping's number of iterations L when
// none is configured.
const DefaultIterations = 3

// Median is the coordinate-wise median (Yin et al., ICML 2018).
type Median struct {
	// F is the assumed number of Byzantine updates; Aggregate refuses
	// n ≤ 2F.
	F int
}

// Name implements Rule.
func (Median) Name() string { return "median" }

func (r Median) validate() error { return checkF(r.F) }

func (r Median) cohort(n int) error { return honestMajority(r.Name(), n, r.F) }

// honestMajority is the precondition of the rules that need fewer than half
// of the n updates to be Byzantine.
func honestMajority(name string, n, f int) error {
	if n < 1 || 2*f >= n {
		return fmt.Errorf("%w: %s needs f < n/2, have n=%d f=%d", ErrCohort, name, n, f)
	}
	return nil
}

// Aggregate implements Rule. Each entry's score is the update's distance
// to the median.
func (r Median) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := prologue(r, dst, updates); err != nil {
		return Report{}, err
	}
	xs := vectors(updates)
	coordinateMedian(dst, xs)
	return distanceReport(r.Name(), dst, updates, "median: distance %.6g to the coordinate-wise median")
}

// TrimmedMean is the coordinate-wise β-trimmed mean (Yin et al., ICML
// 2018): per coordinate, the mean of the values left after dropping the
// k = ⌈β·n⌉ smallest and k largest.
type TrimmedMean struct {
	// Beta is the fraction trimmed at each end, 0 ≤ Beta < 1/2.
	Beta float64
	// F is the assumed number of Byzantine updates; when positive,
	// Aggregate refuses k < F.
	F int
}

// Name implements Rule.
func (TrimmedMean) Name() string { return "trimmed-mean" }

// trimCount is ⌈β·n⌉, forgiving binary rounding of β·n by 1e-9.
func trimCount(beta float64, n int) int {
	return int(math.Ceil(beta*float64(n) - 1e-9))
}

func (r TrimmedMean) validate() error {
	if err := checkF(r.F); err != nil {
		return err
	}
	if !(r.Beta >= 0 && r.Beta < 0.5) {
		return fmt.Errorf("%w: trimmed-mean beta %v not in [0, 0.5)", ErrConfig, r.Beta)
	}
	return nil
}

func (r TrimmedMean) cohort(n int) error {
	k := trimCount(r.Beta, n)
	if n < 1 || 2*k >= n {
		return fmt.Errorf("%w: trimmed-mean needs k < n/2, have k=⌈%v·%d⌉=%d", ErrCohort, r.Beta, n, k)
	}
	if k < r.F {
		return fmt.Errorf("%w: trimmed-mean needs k ≥ f, have k=⌈%v·%d⌉=%d f=%d", ErrCohort, r.Beta, n, k, r.F)
	}
	return nil
}

// Aggregate implements Rule. Each entry's score is the update's distance
// to the aggregate.
func (r TrimmedMean) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := prologue(r, dst, updates); err != nil {
		return Report{}, err
	}
	n := len(updates)
	k := trimCount(r.Beta, n)
	coordinateTrimmedMean(dst, vectors(updates), k)
	return distanceReport(r.Name(), dst, updates, fmt.Sprintf(
		"trimmed-mean: %d lowest and %d highest of %d values dropped per coordinate; distance %%.6g to the aggregate", k, k, n))
}

// Krum selects the update with the lowest Krum score (Blanchard et al.,
// NeurIPS 2017): the sum of its squared distances to its n−F−2 nearest
// other updates.
type Krum struct {
	// F is the assumed number of Byzantine updates; Aggregate needs
	// n ≥ 2F+3.
	F int
}

// Name implements Rule.
func (Krum) Name() string { return "krum" }

func (r Krum) validate() error    { return checkF(r.F) }
func (r Krum) cohort(n int) error { return krumCohort("krum", n, r.F) }

// Aggregate implements Rule. The selected update gets weight 1.
func (r Krum) Aggregate(dst []float32, updates []Update) (Report, error) {
	return MultiKrum{F: r.F, M: 1}.aggregate(r, dst, updates)
}

// MultiKrum is the mean of the M updates with the lowest Krum scores
// (Blanchard et al., NeurIPS 2017).
type MultiKrum struct {
	// F is the assumed number of Byzantine updates; Aggregate needs
	// n ≥ 2F+3.
	F int
	// M is the number of updates averaged, 1 ≤ M ≤ n−F.
	M int
}

// Name implements Rule.
func (MultiKrum) Name() string { return "multi-krum" }

func (r MultiKrum) validate() error {
	if err := checkF(r.F); err != nil {
		return err
	}
	if r.M < 1 {
		return fmt.Errorf("%w: multi-krum m %d must be at least 1", ErrConfig, r.M)
	}
	return nil
}

func (r MultiKrum) cohort(n int) error {
	if err := krumCohort("multi-krum", n, r.F); err != nil {
		return err
	}
	if r.M > n-r.F {
		return fmt.Errorf("%w: multi-krum needs m ≤ n−f, have n=%d f=%d m=%d", ErrCohort, n, r.F, r.M)
	}
	return nil
}

// Aggregate implements Rule. Each selected update gets weight 1/M.
func (r MultiKrum) Aggregate(dst []float32, updates []Update) (Report, error) {
	return r.aggregate(r, dst, updates)
}

// aggregate is Multi-Krum, reporting as as (Krum or MultiKrum).
func (r MultiKrum) aggregate(as checked, dst []float32, updates []Update) (Report, error) {
	if err := prologue(as, dst, updates); err != nil {
		return Report{}, err
	}
	name := as.Name()
	xs := vectors(updates)
	n := len(xs)
	pd, finite := newPairDist(xs, true)
	if !finite {
		if err := deferredFinite(updates); err != nil {
			return Report{}, err
		}
		pd.nb = newNeighbours(pd.d, n)
	}
	alive := make([]bool, n)
	for i := range alive {
		alive[i] = true
	}
	// The mean is added in input order, so it depends only on which M
	// updates are chosen: their order by score among themselves, which
	// near-equal scores would make the Gram path refine (at n = 50,
	// M = 27, half the rows), is not needed. Against the score order of
	// earlier versions the result differs only where a float64 sum of the
	// float32 values is inexact in one order and not the other (their
	// exponents more than ~24 bits apart) and that difference, a few
	// float64 roundings of the partial sums, moves the final float32
	// rounding: the sum must lie that close to a float32 rounding
	// boundary.
	scores, order := pd.resolve(updates, alive, n-r.F-2, r.M, true)
	chosen := slices.Sorted(slices.Values(order[:r.M]))
	meanOf(dst, xs, chosen)

	rep := Report{Rule: name, Entries: make([]Entry, n)}
	for i, u := range updates {
		rep.Entries[i] = Entry{ID: u.ID, Score: scores[i]}
	}
	cut := scores[order[r.M-1]]
	for rank, i := range order {
		e := &rep.Entries[i]
		switch {
		case name == "krum" && rank == 0:
			e.Selected, e.Weight = true, 1
			e.Reason = fmt.Sprintf("krum: score %.6g is the lowest", scores[i])
		case name == "krum":
			e.Reason = fmt.Sprintf("krum: score %.6g not the lowest (%.6g)", scores[i], cut)
		case rank < r.M:
			e.Selected, e.Weight = true, 1/float64(r.M)
			e.Reason = fmt.Sprintf("multi-krum: score %.6g among the %d lowest", scores[i], r.M)
		default:
			e.Reason = fmt.Sprintf("multi-krum: score %.6g not among the %d lowest (highest kept %.6g)", scores[i], r.M, cut)
		}
	}
	return rep, nil
}

func krumCohort(name string, n, f int) error {
	if n < 2*f+3 {
		return fmt.Errorf("%w: %s needs n ≥ 2f+3, have n=%d f=%d", ErrCohort, name, n, f)
	}
	return nil
}

// Bulyan is Krum-based selection followed by a coordinate-wise trimmed
// mean around the median (El Mhamdi et al., ICML 2018); see the package
// documentation for the exact variant.
type Bulyan struct {
	// F is the assumed number of Byzantine updates; Aggregate needs
	// n ≥ 4F+3.
	F int
}

// Name implements Rule.
func (Bulyan) Name() string { return "bulyan" }

func (r Bulyan) validate() error { return checkF(r.F) }

func (r Bulyan) cohort(n int) error {
	if n < 4*r.F+3 {
		return fmt.Errorf("%w: bulyan needs n ≥ 4f+3, have n=%d f=%d", ErrCohort, n, r.F)
	}
	return nil
}

// Aggregate implements Rule. Each entry's score is the update's Krum score
// over all n updates.
func (r Bulyan) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := prologue(r, dst, updates); err != nil {
		return Report{}, err
	}
	xs := vectors(updates)
	n := len(xs)
	theta := n - 2*r.F
	beta := theta - 2*r.F
	// The differences kernel throughout: Bulyan's n−2F passes each need a
	// certain minimum, and at n = 100 they refined about a third of the
	// rows, which with the Gram matrix cost more than this kernel alone
	// (see gram.go). resolve still serves its passes.
	pd, finite := newPairDist(xs, bulyanGram)
	if !finite {
		if err := deferredFinite(updates); err != nil {
			return Report{}, err
		}
		pd.nb = newNeighbours(pd.d, n)
	}
	alive := make([]bool, n)
	for i := range alive {
		alive[i] = true
	}
	first := pd.nb.scores(alive, n-r.F-2)
	pass := make([]int, n) // pass that selected i, from 1; 0 = never
	passScore := make([]float64, n)
	sel := make([]int, 0, theta)
	for p := 1; p <= theta; p++ {
		left := n - p + 1
		s, order := pd.resolve(updates, alive, bulyanNeighbours(left, r.F), 1, true)
		i := order[0]
		sel = append(sel, i)
		alive[i] = false
		pass[i], passScore[i] = p, s[i]
	}
	coordinateClosestToMedianMean(dst, xs, sel, beta, true) // all finite: checked above

	rep := Report{Rule: r.Name(), Entries: make([]Entry, n)}
	for i, u := range updates {
		e := Entry{ID: u.ID, Score: first[i]}
		if pass[i] > 0 {
			e.Selected = true
			e.Reason = fmt.Sprintf("bulyan: chosen by Krum pass %d of %d (score %.6g among the %d left); per coordinate the %d of %d chosen values closest to the median are averaged",
				pass[i], theta, passScore[i], n-pass[i]+1, beta, theta)
		} else {
			e.Reason = fmt.Sprintf("bulyan: not among the %d chosen by repeated Krum (score %.6g over all %d)", theta, first[i], n)
		}
		rep.Entries[i] = e
	}
	return rep, nil
}

// bulyanNeighbours is the number of nearest neighbours a Krum pass of
// Bulyan sums with left updates remaining: left−f−2 as in Krum, but at
// least 1 (while there is another update). At f = 1 the last pass has 3
// left and left−f−2 = 0: every score would be 0 and the tie would go to the
// smallest ID, even a far outlier. The paper's intent is that each pass
// picks an update close to others; one neighbour keeps that (the outlier's
// nearest neighbour is far, the two others are each other's).
func bulyanNeighbours(left, f int) int {
	return min(max(left-f-2, 1), left-1)
}

// CenteredClipping is centered clipping (Karimireddy et al., ICML 2021)
// started from the coordinate-wise median; see the package documentation.
type CenteredClipping struct {
	// Tau is the clipping radius τ > 0.
	Tau float64
	// Iterations is the number of iterations L; 0 means
	// DefaultIterations.
	Iterations int
	// F is the assumed number of Byzantine updates; when positive,
	// Aggregate refuses n ≤ 2F.
	F int
}

// Name implements Rule.
func (CenteredClipping) Name() string { return "centered-clipping" }

func (r CenteredClipping) validate() error {
	if err := checkF(r.F); err != nil {
		return err
	}
	if !(r.Tau > 0) || math.IsInf(r.Tau, 0) {
		return fmt.Errorf("%w: centered-clipping tau %v must be positive and finite", ErrConfig, r.Tau)
	}
	if r.Iterations < 0 {
		return fmt.Errorf("%w: centered-clipping iterations %d must not be negative", ErrConfig, r.Iterations)
	}
	return nil
}

func (r CenteredClipping) cohort(n int) error { return honestMajority(r.Name(), n, r.F) }

// Aggregate implements Rule. Each entry's score is the update's distance
// to the center of the last iteration.
func (r CenteredClipping) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := prologue(r, dst, updates); err != nil {
		return Report{}, err
	}
	iters := cmp.Or(r.Iterations, DefaultIterations)
	xs := vectors(updates)
	n := len(xs)
	// v lives in dst; each iteration is one weighted sum over the updates
	// and the old center: v ← (1 − Σcᵢ/n)·v + Σ (cᵢ/n)·xᵢ.
	coordinateMedian(dst, xs)
	v := make([]float32, len(dst))
	terms := append(xs[:n:n], v)
	w := make([]float64, n+1)
	dist := make([]float64, n)
	scale := make([]float64, n)
	// The distances to the first center are the finiteness test (see
	// deferredFinite): a NaN or infinity in an update, or in the median,
	// makes a distance non-finite. Each later iteration's distances come
	// out of the previous weighted sum, fused (weightedSumDist).
	copy(v, dst)
	sqs := squaredDistancesTo(xs, v)
	if err := deferredFiniteDistances(sqs, updates); err != nil {
		return Report{}, err
	}
	for it := range iters {
		var sum float64
		for i, sq := range sqs {
			dist[i] = math.Sqrt(sq)
			scale[i] = 1
			if dist[i] > r.Tau {
				scale[i] = r.Tau / dist[i]
			}
			w[i] = scale[i] / float64(n)
			sum += w[i]
		}
		w[n] = max(1-sum, 0)
		if it == iters-1 {
			weightedSum(dst, terms, w)
			break
		}
		sqs, _ = weightedSumDist(dst, terms, w, xs)
		copy(v, dst)
	}
	rep := Report{Rule: r.Name(), Entries: make([]Entry, n)}
	for i, u := range updates {
		e := Entry{ID: u.ID, Score: dist[i], Selected: true}
		if scale[i] < 1 {
			e.Reason = fmt.Sprintf("centered-clipping: distance %.6g to the center > τ %.6g, scaled by %.6g in iteration %d", dist[i], r.Tau, scale[i], iters)
		} else {
			e.Reason = fmt.Sprintf("centered-clipping: distance %.6g to the center ≤ τ %.6g, not clipped in iteration %d", dist[i], r.Tau, iters)
		}
		rep.Entries[i] = e
	}
	return rep, nil
}

// checked is a rule with parameter and cohort preconditions.
type checked interface {
	Rule
	validate() error
	cohort(n int) error
}

// prologue checks r's parameters, the updates' lengths and r's cohort. It
// does not test finiteness when the cohort is fine: the rule does, from its
// first kernel pass (see deferredFinite). The errors come in the order of
// Check then cohort either way.
func prologue(r checked, dst []float32, updates []Update) error {
	if err := r.validate(); err != nil {
		return err
	}
	if err := checkLengths(len(dst), updates); err != nil {
		return err
	}
	if err := r.cohort(len(updates)); err != nil {
		if ferr := checkFinite(updates); ferr != nil {
			return ferr
		}
		return err
	}
	return nil
}

func checkF(f int) error {
	if f < 0 {
		return fmt.Errorf("%w: f %d must not be negative", ErrConfig, f)
	}
	return nil
}

// vectors returns the updates' deltas.
func vectors(updates []Update) [][]float32 {
	xs := make([][]float32, len(updates))
	for i, u := range updates {
		xs[i] = u.Delta
	}
	return xs
}

// distanceReport selects every update and scores it by its distance to
// agg; format has one %g verb for the distance. It is the finiteness test
// of the rules that call it (see deferredFinite): a NaN or infinity in an
// update, or in agg, makes that update's distance non-finite.
func distanceReport(name string, agg []float32, updates []Update, format string) (Report, error) {
	rep := Report{Rule: name, Entries: make([]Entry, len(updates))}
	sq := squaredDistancesTo(vectors(updates), agg)
	if err := deferredFiniteDistances(sq, updates); err != nil {
		return Report{}, err
	}
	for i, u := range updates {
		dd := math.Sqrt(sq[i])
		rep.Entries[i] = Entry{ID: u.ID, Score: dd, Selected: true, Reason: fmt.Sprintf(format, dd)}
	}
	return rep, nil
}

// neighbours holds the distance matrix and each row's other indices in
// increasing distance (ties by index).
type neighbours struct {
	d    []float64
	n    int
	rows [][]int
}

// newNeighbours sorts the rows on all cores: at n = 100 the sorts were
// 4% of Krum's CPU time, all of it on one core.
func newNeighbours(d []float64, n int) *neighbours {
	nb := &neighbours{d: d, n: n, rows: make([][]int, n)}
	// About log₂ n comparisons per element, each some ten operations.
	parallel(n, n*n*bits.Len(uint(n))*10, func(_, i int) {
		row := make([]int, 0, n-1)
		for j := range n {
			if j != i {
				row = append(row, j)
			}
		}
		di := d[i*n : (i+1)*n]
		slices.SortFunc(row, func(a, b int) int {
			return cmp.Or(cmp.Compare(max(di[a], 0), max(di[b], 0)), cmp.Compare(a, b))
		})
		nb.rows[i] = row
	})
	return nb
}

// scores returns, for each alive i, the float64 sum of its k smallest
// squared distances to other alive updates (0 for dead ones).
func (nb *neighbours) scores(alive []bool, k int) []float64 {
	s := make([]float64, nb.n)
	for i := range nb.n {
		if !alive[i] {
			continue
		}
		di := nb.d[i*nb.n : (i+1)*nb.n]
		left := k
		for _, j := range nb.rows[i] {
			if left == 0 {
				break
			}
			if alive[j] {
				s[i] += max(di[j], 0)
				left--
			}
		}
	}
	return s
}

// krumOrder returns the alive indices by increasing score, ties by ID then
// index.
func krumOrder(scores []float64, updates []Update, alive []bool) []int {
	order := make([]int, 0, len(scores))
	for i, a := range alive {
		if a {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(scores[a], scores[b]), strings.Compare(updates[a].ID, updates[b].ID), cmp.Compare(a, b))
	})
	return order
}
