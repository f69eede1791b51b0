package simulation

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fedguard/fedguard/privacy"
)

// MechanismCentral is Options.DPMechanism for central DP, what a plain
// federation's coordinator runs with central_dp (McMahan, Ramage, Talwar,
// Zhang, ICLR 2018; coordinator.CentralDPConfig, whose manifest record
// names it the same): every client's update is clipped to ℓ2 norm
// DPClipNorm, the clipped updates are averaged with equal weights over all
// the clients (the sensitivity of the mean to one client is C/m), and
// N(0, (σC/m)²) is added to every coordinate. The budget (DPEpsilon,
// DPDelta over Rounds) is the federation's, user level; each round is one
// Gaussian mechanism with q = 1, as the coordinator accounts it (the cohort
// is every client, not a sample), and σ is the least that keeps Rounds of
// them within the budget (privacy.SigmaFor). The rule must be fedavg, as
// the coordinator requires. The Byzantine clients' updates are clipped
// like any other: the coordinator cannot tell them apart.
const MechanismCentral = "central-gaussian"

// centralSim is a simulation's central DP: the noise multiplier and
// clipping norm, and the privacy they give.
type centralSim struct {
	sigma, clip float64
	res         *DPResult
}

// centralSetup calibrates the central DP of a run; nil without it.
func centralSetup(o Options) (*centralSim, error) {
	if o.DPMechanism != MechanismCentral {
		return nil, nil
	}
	delta, clip := o.dpDeltaClip()
	sigma, err := privacy.SigmaFor(1, int64(o.Rounds), o.DPEpsilon, delta)
	if err != nil {
		return nil, fmt.Errorf("%w: dp: %w", ErrOptions, err)
	}
	g, err := privacy.Epsilon(delta, privacy.Event{Q: 1, Sigma: sigma, Steps: int64(o.Rounds)})
	if err != nil {
		return nil, fmt.Errorf("simulation: dp: %w", err)
	}
	return &centralSim{sigma: sigma, clip: clip, res: &DPResult{Mechanism: MechanismCentral, Epsilon: g.Epsilon, Delta: delta,
		ClipNorm: clip, SigmaMin: sigma, SigmaMax: sigma}}, nil
}

// aggregate writes to dst the equal-weight mean of the clipped deltas plus
// the round's Gaussian noise. The noise comes from a generator seeded from
// the run's seed and the round, so that a simulation is reproducible (the
// coordinator seeds its own from crypto/rand).
func (d *centralSim) aggregate(dst []float32, deltas [][]float32, seed uint64, r int) {
	m := float64(len(deltas))
	sum := make([]float64, len(dst))
	for _, delta := range deltas {
		var ss float64
		for _, v := range delta {
			ss += float64(v) * float64(v)
		}
		scale := 1.0
		if n := math.Sqrt(ss); n > d.clip {
			scale = d.clip / n
		}
		for j, v := range delta {
			sum[j] += float64(v) * scale
		}
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed, "central-dp", uint64(r))))
	std := d.sigma * d.clip / m
	for j, s := range sum {
		dst[j] = float32(s/m + std*rng.NormFloat64())
	}
}
