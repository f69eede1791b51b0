// Package secureround is the layout of a secure round, shared by the
// coordinator and the participant agent: which bucket each cohort member is
// in, each bucket's SecAgg session (package aggregation/secagg) and the
// fixed-point encoding. The mapping between secagg's messages and the wire
// messages of SecureAggregate is in package wire.
//
// Everything in a Plan is derived from the round assignment and from the
// digest of the signed manifest the round starts from, which every
// participant has verified before it takes part. A participant recomputes
// its bucket and its session itself, so a coordinator cannot pick the split
// (and with it who shares a sum with whom), reuse a session, or give two
// members of one bucket different views of it.
package secureround

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// ErrPlan is wrapped by every error FromProto and Plan.Check return.
var ErrPlan = errors.New("secure round layout")

// Defaults of the coordinator's secure configuration.
const (
	// DefaultThresholdPercent makes a session need two thirds of a
	// bucket: it survives a third of its members dropping out, and
	// colluders need a third of it to break a member's privacy.
	DefaultThresholdPercent = 67
	// DefaultPhaseTimeout bounds each phase of a session but the masked
	// input (which waits for local training, until the round deadline).
	DefaultPhaseTimeout = 30 * time.Second
	// MaxPhaseTimeout bounds the phase timeout a participant accepts.
	MaxPhaseTimeout = time.Hour
	// MaxCohort bounds the cohort of a secure round.
	MaxCohort = secagg.MaxParticipants
)

// DeclineAlreadyRevealed is the reason a participant gives, in a
// SecureDecline, for sitting out a secure session that starts from a model
// for which it already revealed its shares in another session. It will
// decline every other session from that model, so the coordinator leaves
// it out of the round's later attempts instead of asking again.
const DeclineAlreadyRevealed = "already revealed shares for a session starting from this model"

// Plan is one secure round attempt as every party derives it.
type Plan struct {
	Federation string
	Round      uint64
	Attempt    uint32
	// Start is the digest of the signed manifest the round starts from.
	Start [32]byte
	// Cohort is sorted and without duplicates.
	Cohort []string
	// BucketSize is s (0: one bucket of the whole cohort).
	BucketSize       int
	ThresholdPercent int
	Degree           int
	Params           secagg.Params
	WeightUnit       uint64
	NormClip         float64
	// PhaseTimeout bounds each phase but the masked input's.
	PhaseTimeout time.Duration
	// Dim is the number of model parameters; a session adds up Dim+1
	// words (the weight travels as the last one).
	Dim int
	// DP, when set, is the distributed discrete Gaussian encoding that
	// replaces Params, WeightUnit and NormClip: its Dim and Seed are the
	// plan's (see DDP); only ClipNorm, Scale, Sigma2 and Beta travel.
	DP *secagg.DDP
}

// FromProto builds and checks the Plan of an assignment's SecureRound.
func FromProto(federation string, start [32]byte, round uint64, attempt uint32, dim int, p *fedguardv1.SecureRound) (Plan, error) {
	if p == nil {
		return Plan{}, fmt.Errorf("%w: missing", ErrPlan)
	}
	pl := Plan{
		Federation: federation, Round: round, Attempt: attempt, Start: start,
		Cohort:           p.GetCohort(),
		BucketSize:       int(min(p.GetBucketSize(), math.MaxInt32)),
		ThresholdPercent: int(min(p.GetThresholdPercent(), math.MaxInt32)),
		Degree:           int(min(p.GetDegree(), math.MaxInt32)),
		Params:           secagg.Params{Clip: p.GetClip(), QuantBits: uint(p.GetQuantBits()), WeightBits: uint(p.GetWeightBits())},
		WeightUnit:       p.GetWeightUnit(),
		NormClip:         p.GetNormClip(),
		PhaseTimeout:     time.Duration(min(p.GetPhaseTimeoutMillis(), uint64(MaxPhaseTimeout/time.Millisecond))) * time.Millisecond,
		Dim:              dim,
	}
	if d := p.GetDp(); d != nil {
		if d.GetMechanism() != secagg.DDPMechanism {
			return Plan{}, fmt.Errorf("%w: DP mechanism %q, want %q", ErrPlan, d.GetMechanism(), secagg.DDPMechanism)
		}
		pl.DP = &secagg.DDP{ClipNorm: d.GetClipNorm(), Scale: d.GetScale(), Sigma2: d.GetSigma2(), Beta: d.GetBeta()}
	}
	return pl, pl.Check()
}

// Proto is the wire form of p's public parameters.
func (p Plan) Proto() *fedguardv1.SecureRound {
	var dp *fedguardv1.SecureDP
	if p.DP != nil {
		dp = &fedguardv1.SecureDP{Mechanism: secagg.DDPMechanism, ClipNorm: p.DP.ClipNorm, Scale: p.DP.Scale, Sigma2: p.DP.Sigma2, Beta: p.DP.Beta}
	}
	return &fedguardv1.SecureRound{
		Dp:                 dp,
		Cohort:             p.Cohort,
		BucketSize:         uint32(p.BucketSize),
		ThresholdPercent:   uint32(p.ThresholdPercent),
		Degree:             uint32(p.Degree),
		Clip:               p.Params.Clip,
		QuantBits:          uint32(p.Params.QuantBits),
		WeightBits:         uint32(p.Params.WeightBits),
		WeightUnit:         p.WeightUnit,
		NormClip:           p.NormClip,
		PhaseTimeoutMillis: uint64(p.PhaseTimeout / time.Millisecond),
	}
}

// Check reports whether p describes a round that can run: a sorted cohort
// of valid, distinct names, buckets of at least two, a threshold over half
// of every neighbourhood, an encoding whose bit budget holds for the
// largest bucket, and a session configuration secagg accepts.
func (p Plan) Check() error {
	n := len(p.Cohort)
	if n < 2 || n > MaxCohort {
		return fmt.Errorf("%w: cohort of %d, want 2 to %d", ErrPlan, n, MaxCohort)
	}
	for i, name := range p.Cohort {
		if err := certs.ValidateName(name); err != nil {
			return fmt.Errorf("%w: cohort member %d: %v", ErrPlan, i, err)
		}
		if i > 0 && name <= p.Cohort[i-1] {
			return fmt.Errorf("%w: cohort not sorted or with duplicates at %q", ErrPlan, name)
		}
	}
	switch {
	case p.BucketSize == 1 || p.BucketSize > n:
		return fmt.Errorf("%w: bucket size %d for a cohort of %d: want 0 (one bucket) or 2 to %d", ErrPlan, p.BucketSize, n, n)
	case p.ThresholdPercent < 1 || p.ThresholdPercent > 100:
		return fmt.Errorf("%w: threshold_percent %d, want 1 to 100", ErrPlan, p.ThresholdPercent)
	case p.WeightUnit < 1:
		return fmt.Errorf("%w: weight_unit 0", ErrPlan)
	case !(p.NormClip >= 0) || math.IsInf(p.NormClip, 0):
		return fmt.Errorf("%w: norm_clip %v", ErrPlan, p.NormClip)
	case p.PhaseTimeout < time.Millisecond || p.PhaseTimeout > MaxPhaseTimeout:
		return fmt.Errorf("%w: phase timeout %v, want 1ms to %v", ErrPlan, p.PhaseTimeout, MaxPhaseTimeout)
	case p.Dim < 1 || p.Dim >= secagg.MaxDim:
		return fmt.Errorf("%w: %d parameters, want 1 to %d", ErrPlan, p.Dim, secagg.MaxDim-1)
	}
	buckets, sessions := p.Layout()
	largest := 0
	for _, m := range buckets {
		largest = max(largest, len(m))
	}
	if p.DP != nil {
		if err := p.DDP().Check(largest); err != nil {
			return fmt.Errorf("%w: %w", ErrPlan, err)
		}
	} else if err := p.Params.Check(largest); err != nil {
		return fmt.Errorf("%w: %w", ErrPlan, err)
	}
	for b, s := range sessions {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: bucket %d: %w", ErrPlan, b, err)
		}
	}
	return nil
}

// seed is the public randomness of the round attempt: the split and the
// neighbour graphs are functions of it.
func (p Plan) seed() [32]byte {
	b := []byte("fedguard secure round v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(p.Federation)))
	b = append(b, p.Federation...)
	b = append(b, p.Start[:]...)
	b = binary.BigEndian.AppendUint64(b, p.Round)
	b = binary.BigEndian.AppendUint32(b, p.Attempt)
	return sha256.Sum256(b)
}

// Buckets splits the cohort: a permutation drawn from the round's seed, cut
// into ⌊n/s⌋ buckets whose sizes differ by at most one (so none is smaller
// than s: a bucket of one would reveal an update). Members of a bucket are
// sorted; a member's session id is its position plus one.
func (p Plan) Buckets() [][]string {
	n := len(p.Cohort)
	k := 1
	if p.BucketSize > 0 {
		k = max(1, n/p.BucketSize)
	}
	perm := slices.Clone(p.Cohort)
	rng := rand.New(rand.NewChaCha8(p.seed()))
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	out := make([][]string, k)
	at := 0
	for b := range k {
		size := n / k
		if b < n%k {
			size++
		}
		out[b] = slices.Sorted(slices.Values(perm[at : at+size]))
		at += size
	}
	return out
}

// Bucket returns the index of name's bucket, its members and name's session
// id; ok is false when name is not in the cohort.
func (p Plan) Bucket(name string) (index int, members []string, id uint32, ok bool) {
	for b, m := range p.Buckets() {
		if i, found := slices.BinarySearch(m, name); found {
			return b, m, uint32(i + 1), true
		}
	}
	return 0, nil, 0, false
}

// Session is the SecAgg configuration of bucket b. The session identifier
// binds the federation, round, attempt, bucket, start manifest and members,
// so nothing of one session is valid in another, and a retry is a new
// session.
func (p Plan) Session(b int) secagg.Config { return p.session(b, p.Buckets()[b]) }

// Layout is the bucket split and every bucket's session, the split drawn
// once (Session draws it again for each call).
func (p Plan) Layout() (buckets [][]string, sessions []secagg.Config) {
	buckets = p.Buckets()
	sessions = make([]secagg.Config, len(buckets))
	for b, members := range buckets {
		sessions[b] = p.session(b, members)
	}
	return buckets, sessions
}

// session is the configuration of bucket b with the given members.
func (p Plan) session(b int, members []string) secagg.Config {
	m := len(members)
	h := sha256.New()
	seed := p.seed()
	h.Write([]byte("fedguard secure session v1\x00"))
	h.Write(seed[:])
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(b)))
	for _, name := range members {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(name))))
		h.Write([]byte(name))
	}
	session := h.Sum(nil)
	degree := p.Degree
	if degree >= m-1 {
		degree = 0
	} else if degree%2 == 1 && m%2 == 1 {
		degree++ // no odd-degree regular graph on an odd number of vertices
		if degree >= m-1 {
			degree = 0
		}
	}
	hood := m
	if degree > 0 {
		hood = degree + 1
	}
	return secagg.Config{
		Session:   session,
		N:         m,
		Threshold: Threshold(hood, p.ThresholdPercent),
		Degree:    degree,
		GraphSeed: sha256.Sum256(append([]byte("fedguard secure graph v1\x00"), session...)),
		Dim:       p.words(),
	}
}

// words is the length of an encoded update: the fixed-point encoding's
// Dim+1, or the DP encoding's padded dimension plus one.
func (p Plan) words() int {
	if p.DP != nil {
		return p.DDP().Words()
	}
	return p.Dim + 1
}

// DDP returns the round's DP encoding, nil without DP: p.DP with the
// plan's Dim and the rotation seed, which every member and the coordinator
// derive from the round (as the buckets), so the coordinator cannot choose
// it after seeing anything.
func (p Plan) DDP() *secagg.DDP {
	if p.DP == nil {
		return nil
	}
	d := *p.DP
	d.Dim = p.Dim
	seed := p.seed()
	d.Seed = sha256.Sum256(append([]byte("fedguard dp rotation v1\x00"), seed[:]...))
	return &d
}

// MinSurvivors returns the fewest members any bucket's sum may be
// unmasked with: the least session threshold (a session fails below its
// threshold). With DP, that is the number of noise shares the account
// must assume.
func (p Plan) MinSurvivors() int {
	_, sessions := p.Layout()
	least := 0
	for i, s := range sessions {
		if i == 0 || s.Threshold < least {
			least = s.Threshold
		}
	}
	return least
}

// Threshold is the number of shares that reconstruct a secret in a
// neighbourhood of m: ⌈m·percent/100⌉, but always more than half of m (the
// condition under which an honest participant never helps reveal both
// secrets of another) and at most m.
func Threshold(m, percent int) int {
	t := (m*percent + 99) / 100
	return min(m, max(t, m/2+1))
}

// LargestBucket is the size of the largest bucket Buckets can give a
// cohort of n with bucket size s (0 or 1: one bucket of the whole cohort):
// min(n, 2s−1), since the ⌊n/s⌋ buckets differ in size by at most one.
// The encoding's bit budget must hold for it.
func LargestBucket(n, s int) int {
	if s <= 1 {
		return n
	}
	return min(n, 2*s-1)
}

// Input is a member's input to its bucket's session: delta clipped to
// NormClip in L2 norm (when NormClip > 0), then encoded by Params with the
// member's weight for samples (see secagg.Params.Encode), rng driving the
// stochastic rounding. The participant agent sends it masked; the
// simulator sums it unmasked, which gives the same sum.
//
// Under distributed DP (p.DP) the clipped delta is encoded by the round's
// secagg.DDP instead, this member's share of the noise included. That
// encoder seeds itself from crypto/rand and never uses rng: noise a
// seed could predict would protect nothing.
func (p Plan) Input(delta []float32, samples uint64, rng *rand.ChaCha8) ([]uint32, error) {
	return p.input(delta, samples, rng, nil)
}

// Prepared is a member's input prepared before its update exists: under
// distributed DP, the encoder and its share of the noise, drawn in the
// background (secagg.DDPEncoder.DrawNoise). The noise depends on neither
// the update nor the round's seed, only on σ² and d′, so a hospital draws
// it while it trains and its round does not wait for the sampler.
type Prepared struct {
	p    Plan
	done chan struct{}
	enc  *secagg.DDPEncoder // with its noise drawn, once done is closed
	err  error
	used bool
}

// Prepare starts preparing the member's input: under distributed DP it
// makes the encoder and draws its noise on another goroutine, at once;
// without, there is nothing to prepare. Prepared.Input then finishes it.
// Abandoning a Prepared is safe: the goroutine ends on its own.
func (p Plan) Prepare() *Prepared {
	pr := &Prepared{p: p, done: make(chan struct{})}
	d := p.DDP()
	if d == nil {
		close(pr.done)
		return pr
	}
	go func() {
		defer close(pr.done)
		if pr.enc, pr.err = d.NewEncoder(); pr.err == nil {
			pr.enc.DrawNoise()
		}
	}()
	return pr
}

// Input is Plan.Input with the prepared encoder: it waits until the noise
// is drawn. A Prepared gives one input only; a second call is an error
// wrapping ErrPlan, since the same noise twice would cancel in a
// difference.
func (pr *Prepared) Input(delta []float32, samples uint64, rng *rand.ChaCha8) ([]uint32, error) {
	<-pr.done
	if pr.used {
		return nil, fmt.Errorf("%w: a prepared input was used already", ErrPlan)
	}
	pr.used = true
	if pr.err != nil {
		return nil, fmt.Errorf("distributed DP: %w", pr.err)
	}
	return pr.p.input(delta, samples, rng, pr.enc)
}

// input is Input with the DP encoder enc, or a new one if enc is nil.
func (p Plan) input(delta []float32, samples uint64, rng *rand.ChaCha8, enc *secagg.DDPEncoder) ([]uint32, error) {
	if p.NormClip > 0 {
		if n := model.Norm(delta); n > p.NormClip {
			clipped := make([]float32, len(delta))
			f := p.NormClip / n
			for i, v := range delta {
				clipped[i] = float32(float64(v) * f)
			}
			delta = clipped
		}
	}
	if d := p.DDP(); d != nil {
		if enc == nil {
			var err error
			if enc, err = d.NewEncoder(); err != nil {
				return nil, fmt.Errorf("distributed DP: %w", err)
			}
		}
		input := make([]uint32, d.Words())
		if err := enc.Encode(input, delta); err != nil {
			return nil, fmt.Errorf("encode with distributed DP: %w", err)
		}
		return input, nil
	}
	input := make([]uint32, len(delta)+1)
	if err := p.Params.Encode(input, delta, p.Weight(samples), rng); err != nil {
		return nil, err
	}
	return input, nil
}

// Weight is the integer weight a participant with this many training
// samples gives its update: ⌈samples/unit⌉, between 1 and 2^WeightBits.
func (p Plan) Weight(samples uint64) uint64 {
	w := samples / p.WeightUnit
	if samples%p.WeightUnit != 0 {
		w++
	}
	return min(max(w, 1), uint64(1)<<p.Params.WeightBits)
}
