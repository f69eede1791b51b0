package aggregation

import (
	"errors"
	"fmt"
	"math"

	"github.com/fedguard/fedguard/model"
)

// Rows is a set of update vectors held outside memory, such as the
// coordinator's spill file: row i is the Delta of the i-th update given to
// AggregateOutOfCore, every row as long as the aggregate.
type Rows interface {
	// ReadBlock fills each dst[i] with row i's parameters from index off
	// on, len(dst[i]) of them (all of dst's slices have one length).
	ReadBlock(off int, dst [][]float32) error
	// ReadRow fills dst with row i, whole.
	ReadRow(i int, dst []float32) error
}

// OutOfCore is where AggregateOutOfCore reads the updates from, and the
// memory it may use.
type OutOfCore struct {
	// Rows holds the updates.
	Rows Rows
	// Row is a vector of the aggregate's length for the passes that read
	// one whole update at a time (the finiteness test, the distances of
	// median and trimmed-mean); nil: allocated when needed.
	Row []float32
	// BlockBytes bounds the column block (n rows × B coordinates of
	// float32) read at once; 0 means DefaultBlockBytes. The block never
	// has fewer than colChunk coordinates.
	BlockBytes int
}

// DefaultBlockBytes is OutOfCore's column block budget by default.
const DefaultBlockBytes = 16 << 20

// ErrRows wraps a failure to read the updates' rows.
var ErrRows = errors.New("aggregation: reading the updates")

// SupportsOutOfCore reports whether AggregateOutOfCore can run rule: the
// coordinate-wise rules fedavg, median and trimmed-mean, without pre-steps.
// The distance rules (krum, multi-krum, bulyan, centered-clipping, rfa)
// and the pre-steps (norm-clip, bucketing) need their updates in memory.
func SupportsOutOfCore(rule Rule) bool {
	switch rule.(type) {
	case FedAvg, Median, TrimmedMean:
		return true
	}
	return false
}

// AggregateOutOfCore is rule.Aggregate(dst, updates) with the updates'
// vectors read from src.Rows instead of updates[i].Delta (which is
// ignored): the same report and the same aggregate, bit for bit, holding
// in memory only dst, src.Row and one column block. The coordinate-wise
// kernels run over column blocks (each coordinate's arithmetic is the
// same whatever the block), and the per-update passes read one update at a
// time and call the same kernels on it as Aggregate does. A rule for which
// SupportsOutOfCore is false is refused with ErrConfig; a read that fails
// is returned wrapped in ErrRows.
func AggregateOutOfCore(rule Rule, dst []float32, updates []Update, src OutOfCore) (Report, error) {
	o := &outOfCore{src: src, d: len(dst), n: len(updates)}
	switch r := rule.(type) {
	case FedAvg:
		return r.aggregateRows(dst, updates, o)
	case Median:
		if err := o.prologue(r, updates); err != nil {
			return Report{}, err
		}
		n := len(updates)
		lo, hi := n/2, n/2+1
		if n%2 == 0 {
			lo = n/2 - 1
		}
		if err := o.blocks(dst, func(part []float32, xs [][]float32) { orderStat(part, xs, lo, hi) }); err != nil {
			return Report{}, err
		}
		return o.distanceReport(r.Name(), dst, updates, "median: distance %.6g to the coordinate-wise median")
	case TrimmedMean:
		if err := o.prologue(r, updates); err != nil {
			return Report{}, err
		}
		n := len(updates)
		k := trimCount(r.Beta, n)
		if err := o.blocks(dst, func(part []float32, xs [][]float32) { orderStat(part, xs, k, n-k) }); err != nil {
			return Report{}, err
		}
		return o.distanceReport(r.Name(), dst, updates, fmt.Sprintf(
			"trimmed-mean: %d lowest and %d highest of %d values dropped per coordinate; distance %%.6g to the aggregate", k, k, n))
	}
	return Report{}, fmt.Errorf("%w: %s cannot aggregate out of core", ErrConfig, ruleName(rule))
}

// outOfCore is one AggregateOutOfCore call's reading state.
type outOfCore struct {
	src  OutOfCore
	d, n int
}

// row returns the whole-row scratch vector.
func (o *outOfCore) row() []float32 {
	if len(o.src.Row) != o.d {
		o.src.Row = make([]float32, o.d)
	}
	return o.src.Row
}

// readRow reads update i into the scratch vector.
func (o *outOfCore) readRow(i int) ([]float32, error) {
	x := o.row()
	if err := o.src.Rows.ReadRow(i, x); err != nil {
		return nil, fmt.Errorf("%w: update %d: %w", ErrRows, i, err)
	}
	return x, nil
}

// checkFinite is checkFinite over the rows: ErrNonFinite naming the first
// update in input order that holds a NaN or infinity.
func (o *outOfCore) checkFinite(updates []Update) error {
	for i, u := range updates {
		x, err := o.readRow(i)
		if err != nil {
			return err
		}
		if err := model.CheckFinite(x); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrNonFinite, u.ID, err)
		}
	}
	return nil
}

// prologue is prologue without the length test (every row has the
// aggregate's length by Rows' contract).
func (o *outOfCore) prologue(r checked, updates []Update) error {
	if err := r.validate(); err != nil {
		return err
	}
	if len(updates) == 0 {
		return ErrNoUpdates
	}
	if err := r.cohort(len(updates)); err != nil {
		if ferr := o.checkFinite(updates); ferr != nil {
			return ferr
		}
		return err
	}
	return nil
}

// blocks calls kernel(dst[lo:hi], xs) for consecutive column blocks
// [lo, hi) of the rows, xs[i] being row i's coordinates lo..hi-1. Blocks
// start at multiples of colChunk, so the kernels' own tasks split each
// block where they split the whole vector.
func (o *outOfCore) blocks(dst []float32, kernel func(part []float32, xs [][]float32)) error {
	if o.d == 0 || o.n == 0 {
		return nil
	}
	budget := o.src.BlockBytes
	if budget <= 0 {
		budget = DefaultBlockBytes
	}
	b := budget / (4 * o.n) / colChunk * colChunk
	b = min(max(b, colChunk), (o.d+colChunk-1)/colChunk*colChunk)
	buf := alignedFloats(o.n * b)
	xs := make([][]float32, o.n)
	for lo := 0; lo < o.d; lo += b {
		hi := min(lo+b, o.d)
		for i := range xs {
			// Each row's slice starts on a 64-byte boundary, as the
			// kernels' scratch does (b is a multiple of 16).
			xs[i] = buf[i*b : i*b+hi-lo : i*b+hi-lo]
		}
		if err := o.src.Rows.ReadBlock(lo, xs); err != nil {
			return fmt.Errorf("%w: parameters %d to %d: %w", ErrRows, lo, hi, err)
		}
		kernel(dst[lo:hi], xs)
	}
	return nil
}

// distanceReport is distanceReport over the rows, one at a time: the
// distance of each is squaredDistancesTo's for that row alone, which is
// the same sum as in a call with every row (each row's partial sums are
// its own, taken over the same column blocks in the same order).
func (o *outOfCore) distanceReport(name string, agg []float32, updates []Update, format string) (Report, error) {
	rep := Report{Rule: name, Entries: make([]Entry, len(updates))}
	sq := make([]float64, len(updates))
	bad := false
	for i := range updates {
		x, err := o.readRow(i)
		if err != nil {
			return Report{}, err
		}
		sq[i] = squaredDistancesTo([][]float32{x}, agg)[0]
		bad = bad || math.IsNaN(sq[i]) || math.IsInf(sq[i], 0)
	}
	if bad {
		if err := o.checkFinite(updates); err != nil {
			return Report{}, err
		}
	}
	for i, u := range updates {
		dd := math.Sqrt(sq[i])
		rep.Entries[i] = Entry{ID: u.ID, Score: dd, Selected: true, Reason: fmt.Sprintf(format, dd)}
	}
	return rep, nil
}

// aggregateRows is Aggregate over the rows.
func (r FedAvg) aggregateRows(dst []float32, updates []Update, o *outOfCore) (Report, error) {
	if len(updates) == 0 {
		return Report{}, ErrNoUpdates
	}
	w, err := r.weights(updates, o.checkFinite)
	if err != nil {
		return Report{}, err
	}
	finite := true
	if err := o.blocks(dst, func(part []float32, xs [][]float32) {
		finite = weightedSum(part, xs, w) && finite
	}); err != nil {
		return Report{}, err
	}
	if !finite {
		if err := o.checkFinite(updates); err != nil {
			return Report{}, err
		}
	}
	return r.report(updates, w), nil
}
