package aggregation

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/fedguard/fedguard/model"
)

var (
	_ Randomized = NormClip{}
	_ Randomized = Bucketing{}
)

// Randomized is a Rule that uses randomness, or wraps one that may.
// WithRand returns a copy of the rule drawing from r; the original is
// unchanged, so one configured rule can serve many rounds.
type Randomized interface {
	Rule
	WithRand(r io.Reader) Rule
}

// WithRand returns rule drawing its randomness from r. Rules that use no
// randomness are returned unchanged. The coordinator calls it once per
// round with a reader derived from the round's seed, for example
// rand.NewChaCha8(seed), so that the round can be recomputed. A reader is
// used by one Aggregate call at a time.
func WithRand(rule Rule, r io.Reader) Rule {
	if x, ok := rule.(Randomized); ok {
		return x.WithRand(r)
	}
	return rule
}

// NormClip scales every update whose L2 norm exceeds Bound down to Bound
// before Rule aggregates them: x ← x·min(1, Bound/‖x‖).
type NormClip struct {
	// Bound is the L2 bound C > 0.
	Bound float64
	// Rule aggregates the clipped updates.
	Rule Rule
}

// Name implements Rule: "norm-clip+" and the inner rule's name.
func (c NormClip) Name() string { return "norm-clip+" + ruleName(c.Rule) }

// WithRand implements Randomized for the inner rule.
func (c NormClip) WithRand(r io.Reader) Rule {
	c.Rule = WithRand(c.Rule, r)
	return c
}

func (c NormClip) validate() error {
	if !(c.Bound > 0) || math.IsInf(c.Bound, 0) {
		return fmt.Errorf("%w: norm-clip bound %v must be positive and finite", ErrConfig, c.Bound)
	}
	if c.Rule == nil {
		return fmt.Errorf("%w: norm-clip has no rule", ErrConfig)
	}
	return nil
}

// Aggregate implements Rule. Entries are the inner rule's, with Clip set
// and the clipping noted in Reason.
func (c NormClip) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := c.validate(); err != nil {
		return Report{}, err
	}
	if err := checkLengths(len(dst), updates); err != nil {
		return Report{}, err
	}
	clipped := make([]Update, len(updates))
	norms := make([]float64, len(updates))
	factors := make([]float64, len(updates))
	sq := squaredDistancesTo(vectors(updates), make([]float32, len(dst)))
	// The norms are the finiteness test (see deferredFinite).
	if err := deferredFiniteDistances(sq, updates); err != nil {
		return Report{}, err
	}
	for i, u := range updates {
		clipped[i] = u
		norms[i] = math.Sqrt(sq[i])
		factors[i] = 1
		if norms[i] > c.Bound {
			f := c.Bound / norms[i]
			factors[i] = f
			x := make([]float32, len(u.Delta))
			for j, v := range u.Delta {
				x[j] = float32(float64(v) * f)
			}
			clipped[i].Delta = x
		}
	}
	rep, err := c.Rule.Aggregate(dst, clipped)
	if err != nil {
		return Report{}, err
	}
	rep.Rule = c.Name()
	for i := range rep.Entries {
		e := &rep.Entries[i]
		e.Clip = factors[i]
		if factors[i] < 1 {
			e.Reason = join(fmt.Sprintf("norm-clip: norm %.6g > %.6g, scaled by %.6g", norms[i], c.Bound, factors[i]), e.Reason)
		}
	}
	return rep, nil
}

// Bucketing averages random buckets of Size updates and lets Rule
// aggregate the bucket means (Karimireddy et al., ICLR 2022); see the
// package documentation for the permutation drawn from Rand.
type Bucketing struct {
	// Size is the bucket size s ≥ 1.
	Size int
	// Rule aggregates the bucket means.
	Rule Rule
	// Rand is the source of randomness; Aggregate fails with ErrNoRand
	// when it is nil.
	Rand io.Reader
}

// Name implements Rule: "bucket+" and the inner rule's name.
func (b Bucketing) Name() string { return "bucket+" + ruleName(b.Rule) }

// WithRand implements Randomized.
func (b Bucketing) WithRand(r io.Reader) Rule {
	b.Rand = r
	b.Rule = WithRand(b.Rule, r)
	return b
}

func (b Bucketing) validate() error {
	if b.Size < 1 {
		return fmt.Errorf("%w: bucket size %d must be at least 1", ErrConfig, b.Size)
	}
	if b.Rule == nil {
		return fmt.Errorf("%w: bucket has no rule", ErrConfig)
	}
	return nil
}

// buckets is the number of buckets of size s for n updates, ⌈n/s⌉.
func buckets(n, s int) int { return (n + s - 1) / s }

// Aggregate implements Rule. Each entry carries its bucket's score,
// selection and reason; its weight is its share of the bucket's weight.
func (b Bucketing) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := b.validate(); err != nil {
		return Report{}, err
	}
	// Finiteness is tested on the bucket means (or by fedavg) below; an
	// error before them is preceded by the test, as with Check.
	if err := checkLengths(len(dst), updates); err != nil {
		return Report{}, err
	}
	if b.Rand == nil {
		return Report{}, cmpErr(checkFinite(updates), ErrNoRand)
	}
	n := len(updates)
	perm, err := permutation(b.Rand, n)
	if err != nil {
		return Report{}, cmpErr(checkFinite(updates), err)
	}
	nb := buckets(n, b.Size)
	bucketOf := make([]int, n)
	members := make([][]int, nb)
	for p, i := range perm {
		t := p / b.Size
		bucketOf[i] = t
		members[t] = append(members[t], i)
	}

	if fa, ok := b.Rule.(FedAvg); ok {
		// The weighted mean of weighted bucket means is the weighted mean.
		rep, err := fa.Aggregate(dst, updates)
		if err != nil {
			return Report{}, err
		}
		rep.Rule = b.Name()
		for i := range rep.Entries {
			t := bucketOf[i]
			rep.Entries[i].Bucket = t + 1
			rep.Entries[i].Reason = join(fmt.Sprintf("bucket %d of %d", t+1, nb), rep.Entries[i].Reason)
		}
		return rep, nil
	}

	xs := vectors(updates)
	means := make([]Update, nb)
	for t, idx := range members {
		m := make([]float32, len(dst))
		meanOf(m, xs, idx)
		var samples uint64
		for _, i := range idx {
			samples = satAdd(samples, updates[i].Samples)
		}
		means[t] = Update{ID: fmt.Sprintf("bucket-%d", t+1), Delta: m, Samples: samples}
	}
	// A mean is finite unless a member holds a NaN or infinity (the float64
	// mean of finite float32 values lies between them): the finiteness
	// test, naming the update rather than its bucket.
	for _, m := range means {
		if !model.AllFinite(m.Delta) {
			if err := deferredFinite(updates); err != nil {
				return Report{}, err
			}
			break
		}
	}
	inner, err := b.Rule.Aggregate(dst, means)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Rule: b.Name(), Entries: make([]Entry, n)}
	for i, u := range updates {
		t := bucketOf[i]
		be := inner.Entries[t]
		rep.Entries[i] = Entry{
			ID:       u.ID,
			Weight:   be.Weight / float64(len(members[t])),
			Score:    be.Score,
			Selected: be.Selected,
			Reason:   join(fmt.Sprintf("bucket %d of %d", t+1, nb), be.Reason),
			Clip:     be.Clip,
			Bucket:   t + 1,
		}
	}
	return rep, nil
}

// permutation is the Fisher–Yates shuffle of 0..n-1 drawing from r as the
// package documentation describes.
func permutation(r io.Reader, n int) ([]int, error) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var buf [8]byte
	for i := n - 1; i > 0; i-- {
		bound := uint64(i + 1)
		rem := (math.MaxUint64%bound + 1) % bound // 2⁶⁴ mod bound
		for {
			if _, err := io.ReadFull(r, buf[:]); err != nil {
				return nil, fmt.Errorf("aggregation: bucket: read randomness: %w", err)
			}
			u := binary.LittleEndian.Uint64(buf[:])
			if u <= math.MaxUint64-rem {
				j := int(u % bound)
				p[i], p[j] = p[j], p[i]
				break
			}
		}
	}
	return p, nil
}

// cmpErr returns first when it is not nil, else second.
func cmpErr(first, second error) error {
	if first != nil {
		return first
	}
	return second
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

func ruleName(r Rule) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name()
}

// join joins reasons with "; ", skipping empty ones.
func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
