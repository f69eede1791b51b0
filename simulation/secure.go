package simulation

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/workers"
	"github.com/fedguard/fedguard/secureround"
)

// Secure + robust mode (Options.Secure), as the coordinator runs it with
// "secure": true. Each round the cohort (every client) is split into
// buckets by secureround.Plan.Buckets, the production split: ⌊n/S⌋
// buckets of S to 2S−1 clients (S = Options.Aggregation.Bucket; 0 or 1:
// one bucket of all), drawn afresh each round from the round's seed. Each
// client's update, honest or crafted, becomes its SecAgg input through
// secureround.Plan.Input, the participant agent's own code: clipped to
// Options.Aggregation.NormClip in L2 norm, then each coordinate clipped to
// ±SecureClip, weighted by ⌈samples/unit⌉ and stochastically rounded to
// the fixed-point encoding of secagg.Params (package
// aggregation/secagg, quant.go). A bucket's inputs are summed modulo 2^32
// — what SecAgg's masked sum is once the masks cancel; the masking, key
// agreement and secret sharing are not simulated, nor are dropouts — and
// decoded by secagg.Params.Decode into the bucket's weighted mean. The
// rule, without its bucket and clipping pre-steps, aggregates the bucket
// means weighted by their total weights: it sees no single update. The
// attacks see the rule as configured (attack.Round.Rule): those that
// simulate it use aggregation's bucketing pre-step in place of the
// secure split.
//
// The encoding is the coordinator's default for the cohort:
// secagg.DefaultParams for the largest bucket (secureround.LargestBucket),
// that is 10 weight bits and what the 32-bit ring leaves for the
// quantization. The weight unit is the smallest that keeps every client's
// weight within the 2^10 the weight bits allow, so the bucket means weigh
// clients by their rows as FedAvg does (a coordinator with larger
// hospitals sets secagg.weight_unit the same way; at its default of 1,
// every hospital above 1,024 rows weighs the same).

// DefaultSecureClip is SecAgg's coordinate clip in a secure run: the
// coordinator's default secagg.clip.
const DefaultSecureClip = 1.0

// SecureResult is the layout a secure run used.
type SecureResult struct {
	// Buckets is the number of buckets, the rule's inputs each round.
	Buckets    int     `json:"buckets"`
	BucketSize int     `json:"bucket_size"`
	Clip       float64 `json:"clip"`
	QuantBits  uint    `json:"quant_bits"`
	WeightBits uint    `json:"weight_bits"`
	WeightUnit uint64  `json:"weight_unit"`
}

// secureRuleConfig is the rule over bucket means: c without its
// pre-steps, which the secure round replaces (the coordinator's
// secureRule).
func secureRuleConfig(c aggregation.Config) aggregation.Config {
	c.Bucket, c.NormClip = 0, 0
	return c
}

// secureBucketSize is the plan's bucket size for a configured bucket
// (the coordinator's securePlan).
func secureBucketSize(bucket int) int {
	if bucket <= 1 {
		return 0
	}
	return bucket
}

// SecureBuckets is the number of buckets, and so of the rule's inputs, of
// a secure run of n clients with Options.Aggregation.Bucket = bucket:
// ⌊n/bucket⌋, or 1 for a bucket of 0 or 1 (secureround.Plan.Buckets).
func SecureBuckets(n, bucket int) int {
	if s := secureBucketSize(bucket); s > 0 {
		return max(1, n/s)
	}
	return 1
}

// secureMode is the secure layout of one run.
type secureMode struct {
	plan  secureround.Plan // Round and Start are set each round
	index map[string]int   // client ID → index
	res   SecureResult
}

// newSecure builds the run's plan for dim parameters and checks it as the
// coordinator does. Errors wrap ErrOptions.
func newSecure(s *sim, dim int) (*secureMode, error) {
	o := s.o
	clip := cmp.Or(o.SecureClip, DefaultSecureClip)
	size := secureBucketSize(o.Aggregation.Bucket)
	params, err := secagg.DefaultParams(secureround.LargestBucket(o.Clients, size), clip)
	if err != nil {
		return nil, fmt.Errorf("%w: secure: %w", ErrOptions, err)
	}
	var most uint64
	for _, y := range s.clientY {
		most = max(most, uint64(len(y)))
	}
	maxWeight := uint64(1) << params.WeightBits
	unit := max(1, (most+maxWeight-1)/maxWeight)
	m := &secureMode{index: map[string]int{}}
	cohort := make([]string, o.Clients)
	for i := range cohort {
		cohort[i] = clientID(i)
		m.index[cohort[i]] = i
	}
	m.plan = secureround.Plan{
		Federation: "fedguard simulate", Round: 1, Cohort: cohort, BucketSize: size,
		ThresholdPercent: secureround.DefaultThresholdPercent, Params: params, WeightUnit: unit,
		NormClip: o.Aggregation.NormClip, PhaseTimeout: secureround.DefaultPhaseTimeout, Dim: dim,
	}
	if err := m.plan.Check(); err != nil {
		return nil, fmt.Errorf("%w: secure: %w", ErrOptions, err)
	}
	m.res = SecureResult{Buckets: SecureBuckets(o.Clients, o.Aggregation.Bucket), BucketSize: size, Clip: clip,
		QuantBits: params.QuantBits, WeightBits: params.WeightBits, WeightUnit: unit}
	return m, nil
}

// round turns the clients' updates of round r into the bucket means the
// rule aggregates, and returns with them each bucket's members.
func (m *secureMode) round(ctx context.Context, s *sim, r int, deltas [][]float32) ([]aggregation.Update, [][]int, error) {
	o := s.o
	plan := m.plan
	plan.Round = uint64(r)
	plan.Start = seedBytes(o.Seed, "secure-start", uint64(r))
	inputs := make([][]uint32, len(deltas))
	err := workers.Each(ctx, o.Workers, len(deltas), func(i int) error {
		rng := rand.NewChaCha8(seedBytes(o.Seed, "secagg-rounding", uint64(i), uint64(r)))
		in, err := plan.Input(deltas[i], uint64(len(s.clientY[i])), rng)
		if err != nil {
			return fmt.Errorf("simulation: round %d: client %d's secure input: %w", r, i, err)
		}
		inputs[i] = in
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	buckets := plan.Buckets()
	means := make([]aggregation.Update, len(buckets))
	members := make([][]int, len(buckets))
	for b, names := range buckets {
		sum := make([]uint32, plan.Dim+1)
		for _, name := range names {
			i := m.index[name]
			members[b] = append(members[b], i)
			for j, v := range inputs[i] {
				sum[j] += v // modulo 2^32, as the masked sum
			}
		}
		mean := make([]float32, plan.Dim)
		w, err := plan.Params.Decode(mean, sum)
		if err != nil {
			return nil, nil, fmt.Errorf("simulation: round %d: bucket %d: %w", r, b+1, err)
		}
		means[b] = aggregation.Update{ID: fmt.Sprintf("bucket-%d", b+1), Delta: mean, Samples: w}
	}
	return means, members, nil
}

// bucketIDs are the IDs of the bucket means.
func bucketIDs(means []aggregation.Update) []string {
	ids := make([]string, len(means))
	for i, m := range means {
		ids[i] = m.ID
	}
	return ids
}
