// Package aggregation turns the participants' updates of one round into the
// update of the global model. Rules are plain functions over vectors: no
// gRPC, no storage, so the coordinator and the simulator run the same code.
//
// # Rules
//
// FedAvg is the weighted mean of McMahan et al., "Communication-Efficient
// Learning of Deep Networks from Decentralized Data" (AISTATS 2017): each
// update weighs its self-reported sample count. It is not robust: a single
// participant can move the mean arbitrarily far, and the sample count is
// only what the participant claims. Byzantine-robust rules implement the
// same Rule interface.
//
// # Reports
//
// Every call returns a Report with one Entry per input, saying what weight
// it got and whether it was used, so that the coordinator can keep the
// reasons with the round.
package aggregation

import (
	"errors"
	"fmt"

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
	ID       string  `json:"id"`
	Weight   float64 `json:"weight"`
	Score    float64 `json:"score,omitempty"`
	Selected bool    `json:"selected"`
	Reason   string  `json:"reason,omitempty"`
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
	// equal every update's. It never changes the updates.
	Aggregate(dst []float32, updates []Update) (Report, error)
}

// Errors for inputs no rule accepts.
var (
	ErrNoUpdates   = errors.New("aggregation: no updates")
	ErrLength      = errors.New("aggregation: update length differs from the model's")
	ErrNonFinite   = errors.New("aggregation: update has a NaN or infinite value")
	ErrZeroSamples = errors.New("aggregation: update claims zero samples")
)

// Check validates updates against a model of n parameters: at least one
// update, each of length n and finite.
func Check(n int, updates []Update) error {
	if len(updates) == 0 {
		return ErrNoUpdates
	}
	for _, u := range updates {
		if len(u.Delta) != n {
			return fmt.Errorf("%w: %q has %d, want %d", ErrLength, u.ID, len(u.Delta), n)
		}
		if err := model.CheckFinite(u.Delta); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrNonFinite, u.ID, err)
		}
	}
	return nil
}

// FedAvg is the sample-weighted mean.
type FedAvg struct{}

var _ Rule = FedAvg{}

// Name implements Rule.
func (FedAvg) Name() string { return "fedavg" }

// Aggregate implements Rule: dst = Σ nᵢ·Δᵢ / Σ nᵢ.
func (FedAvg) Aggregate(dst []float32, updates []Update) (Report, error) {
	if err := Check(len(dst), updates); err != nil {
		return Report{}, err
	}
	var total float64
	for _, u := range updates {
		if u.Samples == 0 {
			return Report{}, fmt.Errorf("%w: %q", ErrZeroSamples, u.ID)
		}
		total += float64(u.Samples)
	}
	rep := Report{Rule: "fedavg", Entries: make([]Entry, len(updates))}
	// dst = Σ wᵢ·Δᵢ accumulated in float64 over cache-sized blocks, each
	// update streaming through once. Each product is rounded before it is
	// added (the explicit conversion forbids a fused multiply-add), so the
	// result is the same bit for bit on every architecture: anyone can
	// recompute a round's model from its inputs.
	const block = 1 << 12
	var acc [block]float64
	w := make([]float64, len(updates))
	for i, u := range updates {
		w[i] = float64(u.Samples) / total
	}
	for lo := 0; lo < len(dst); lo += block {
		hi := min(lo+block, len(dst))
		a := acc[:hi-lo]
		clear(a)
		for j, u := range updates {
			axpy64(a, w[j], u.Delta[lo:hi])
		}
		for i, v := range a {
			dst[lo+i] = float32(v)
		}
	}
	for i, u := range updates {
		rep.Entries[i] = Entry{ID: u.ID, Weight: float64(u.Samples) / total, Selected: true}
	}
	return rep, nil
}

// axpy64 sets a[i] += w·x[i] in float64, four lanes per step.
func axpy64(a []float64, w float64, x []float32) {
	x = x[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		aa, xx := a[i:i+4:i+4], x[i:i+4:i+4]
		aa[0] += float64(w * float64(xx[0]))
		aa[1] += float64(w * float64(xx[1]))
		aa[2] += float64(w * float64(xx[2]))
		aa[3] += float64(w * float64(xx[3]))
	}
	for ; i < len(a); i++ {
		a[i] += float64(w * float64(x[i]))
	}
}

// New returns the rule with the given configuration name. Byzantine-robust
// rules are added here as they land.
func New(name string) (Rule, error) {
	switch name {
	case "fedavg", "":
		return FedAvg{}, nil
	default:
		return nil, fmt.Errorf("aggregation: unknown rule %q (known: fedavg)", name)
	}
}
