package benchmark

// # Aggregation rules
//
// Aggregate times one aggregation rule on N random float32 updates of D
// coordinates, and in the same process on the same data its baseline: one
// pass that sums the updates (aggregation.Pass: float32 SIMD adds over
// L1-sized blocks on all cores), the memory floor of any rule that reads
// every input. It is at least as fast as numpy's single-threaded x.sum(0).
// AggregateResult.Ratio is the rule's median time over the pass's.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/internal/workers"
)

// DefaultAggregateRuns is the number of timed runs of Aggregate when
// AggregateOptions.Runs is 0 (after one untimed warm-up run).
const DefaultAggregateRuns = 5

// AggregateOptions configure Aggregate.
type AggregateOptions struct {
	// Rule is the rule's configuration name (aggregation.Config.Rule).
	Rule string
	// N updates of D coordinates.
	N, D int
	// F is the assumed number of Byzantine updates. Negative means the
	// largest the rule accepts for N (see aggregation.MaxF); fedavg uses
	// none.
	F int
	// M is multi-krum's number of averaged updates (0: N − F).
	M int
	// Beta is trimmed-mean's trimmed fraction (0: F/N, so that k = F).
	Beta float64
	// Tau is centered-clipping's radius (0: aggregation.DefaultTau).
	Tau float64
	// Iterations is centered-clipping's L (0: the rule's default).
	Iterations int
	// Runs is the number of timed runs (0: DefaultAggregateRuns).
	Runs int
	// Seed makes the random updates reproducible.
	Seed uint64
}

// AggregateResult is Aggregate's measurement. JSON names are the
// benchmark's stable output format.
type AggregateResult struct {
	Rule string `json:"rule"`
	N    int    `json:"n"`
	D    int    `json:"d"`
	// Kernel is the aggregation kernel path that ran: "avx512", "avx2",
	// "neon" or "purego" (aggregation.Kernel; FEDGUARD_KERNEL forces one).
	Kernel string `json:"kernel"`
	// PassKernel is the path of the summing pass ("avx2", "neon" or "purego"): the
	// widest the CPU has, whatever FEDGUARD_KERNEL forces.
	PassKernel string `json:"pass_kernel"`
	// Seconds is the median time of one aggregation; PassSeconds the median
	// time of one summing pass over the same updates, measured interleaved
	// with it; Ratio is Seconds / PassSeconds.
	Seconds     float64 `json:"seconds"`
	PassSeconds float64 `json:"pass_seconds"`
	Ratio       float64 `json:"ratio"`
	// Config is the rule configuration actually run (with defaults filled).
	Config aggregation.Config `json:"-"`
}

// ErrAggregateOptions marks options Aggregate refuses.
var ErrAggregateOptions = errors.New("benchmark: invalid aggregate options")

// config fills o's defaults into a rule configuration: those of
// aggregation.Defaults, then the parameters o sets.
func (o AggregateOptions) config() aggregation.Config {
	c := aggregation.Defaults(o.Rule, o.N, o.F)
	switch c.Rule {
	case aggregation.NameMultiKrum:
		if o.M != 0 {
			c.M = o.M
		}
	case aggregation.NameTrimmedMean:
		if o.Beta != 0 {
			c.Beta = o.Beta
		}
	case aggregation.NameCenteredClipping:
		if o.Tau != 0 {
			c.Tau = o.Tau
		}
		c.Iterations = o.Iterations
	}
	return c
}

// Aggregate runs the benchmark. It builds the rule with aggregation.New and
// checks the cohort before generating any data.
func Aggregate(ctx context.Context, o AggregateOptions) (AggregateResult, error) {
	if o.N < 1 || o.D < 1 {
		return AggregateResult{}, fmt.Errorf("%w: n=%d d=%d, both must be positive", ErrAggregateOptions, o.N, o.D)
	}
	runs := cmp.Or(o.Runs, DefaultAggregateRuns)
	if runs < 0 {
		return AggregateResult{}, fmt.Errorf("%w: runs=%d", ErrAggregateOptions, runs)
	}
	kernel, err := aggregation.Kernel()
	if err != nil {
		return AggregateResult{}, fmt.Errorf("benchmark: %w", err)
	}
	cfg := o.config()
	if err := cfg.CheckCohort(o.N); err != nil {
		return AggregateResult{}, fmt.Errorf("benchmark: %w", err)
	}
	rule, err := aggregation.New(cfg)
	if err != nil {
		return AggregateResult{}, fmt.Errorf("benchmark: %w", err)
	}
	updates := randomUpdates(o.N, o.D, o.Seed)
	xs := make([][]float32, o.N)
	for i, u := range updates {
		xs[i] = u.Delta
	}
	dst := make([]float32, o.D)
	sum := make([]float32, o.D)
	var ruleTimes, passTimes []float64
	var passKernel string
	for r := range runs + 1 { // run 0 is the warm-up
		if err := ctx.Err(); err != nil {
			return AggregateResult{}, err
		}
		start := time.Now()
		passKernel = SumPass(sum, xs)
		pass := time.Since(start).Seconds()
		start = time.Now()
		if _, err := rule.Aggregate(dst, updates); err != nil {
			return AggregateResult{}, fmt.Errorf("benchmark: %s: %w", cfg.Rule, err)
		}
		t := time.Since(start).Seconds()
		if r > 0 {
			ruleTimes, passTimes = append(ruleTimes, t), append(passTimes, pass)
		}
	}
	res := AggregateResult{Rule: cfg.Rule, N: o.N, D: o.D, Kernel: kernel, PassKernel: passKernel, Config: cfg,
		Seconds: median(ruleTimes), PassSeconds: median(passTimes)}
	if res.PassSeconds > 0 {
		res.Ratio = res.Seconds / res.PassSeconds
	}
	return res, nil
}

func median(ts []float64) float64 {
	if len(ts) == 0 {
		return 0
	}
	ts = slices.Sorted(slices.Values(ts))
	return ts[len(ts)/2]
}

// randomUpdates returns n updates of d standard normal float32 values, each
// generated from its own stream (in parallel) so that the data depend only on
// the seed.
func randomUpdates(n, d int, seed uint64) []aggregation.Update {
	us := make([]aggregation.Update, n)
	workers.Indexed(runtime.GOMAXPROCS(0), n, func(_, i int) {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		x := make([]float32, d)
		for c := range x {
			x[c] = float32(rng.NormFloat64())
		}
		us[i] = aggregation.Update{ID: "p" + strconv.Itoa(i), Delta: x, Samples: 1 + uint64(i%7)}
	})
	return us
}

// SumPass sets dst = Σ xs in float32: the baseline pass (aggregation.Pass).
// It returns the kernel path that ran.
func SumPass(dst []float32, xs [][]float32) string { return aggregation.Pass(dst, xs) }
