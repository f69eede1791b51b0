package simulation

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
)

// MechanismDDP is Options.DPMechanism for distributed DP inside secure
// aggregation: every client encodes its update with secagg.DDP (clipping,
// rotation, conditional rounding and its share of discrete Gaussian
// noise) and the round's aggregate is the decoded sum of all clients'
// encodings, as a coordinator unmasks it in a secure round. The budget
// (DPEpsilon, DPDelta over Rounds, DPClipNorm the ℓ2 clip) is the
// federation's, user level, accounted with all clients in every sum (a
// simulation has no dropouts). The rule must be fedavg: secure
// aggregation reveals only the sum.
const MechanismDDP = secagg.DDPMechanism

// checkDPMechanism checks Options.DPMechanism against the other options.
func (o Options) checkDPMechanism() error {
	switch o.DPMechanism {
	case "":
		return nil
	case MechanismDDP, MechanismCentral:
	default:
		return fmt.Errorf("dp mechanism %q, want %q or %q (or none: DP-SGD with dp_epsilon)", o.DPMechanism, MechanismDDP, MechanismCentral)
	}
	mech := o.DPMechanism
	switch {
	case o.DPEpsilon <= 0:
		return errors.New("dp mechanism " + mech + " needs dp_epsilon, the federation's budget over the run")
	case o.DPNoiseMultiplier > 0:
		return errors.New("dp mechanism " + mech + " calibrates its noise from dp_epsilon: dp_noise_multiplier is DP-SGD's")
	case o.Secure && mech == MechanismDDP:
		return errors.New("dp mechanism " + MechanismDDP + " simulates its own secure sum: not with the secure + robust mode")
	case o.Secure:
		return errors.New("dp mechanism " + MechanismCentral + " needs plain mode: in secure mode the coordinator never sees an update to clip")
	case (o.Aggregation.Rule != aggregation.NameFedAvg || o.Aggregation.Bucket > 1) && mech == MechanismDDP:
		return fmt.Errorf("dp mechanism %s sums the updates under secure aggregation: the rule must be fedavg, not %s", MechanismDDP, o.Aggregation.Rule)
	case o.Aggregation.Rule != aggregation.NameFedAvg || o.Aggregation.Bucket > 1:
		return fmt.Errorf("dp mechanism %s calibrates its noise to an equal-weight mean of clipped updates: the rule must be fedavg, not %s", MechanismCentral, o.Aggregation.Rule)
	case o.MomentumStyle != "":
		return fmt.Errorf("dp mechanism %s: momentum is not supported", mech)
	}
	return nil
}

// ddpSim is a simulation's distributed DP: the encoding and the privacy
// it gives.
type ddpSim struct {
	p   secagg.DDP
	res *DPResult
}

// ddpSetup calibrates the distributed DP of a run over dim parameters;
// nil without it.
func ddpSetup(o Options, dim int) (*ddpSim, error) {
	if o.DPMechanism != MechanismDDP {
		return nil, nil
	}
	delta, clip := o.dpDeltaClip()
	p := secagg.DefaultDDP(dim, clip, seedBytes(o.Seed, "ddp-rotation"))
	p, m, err := p.Calibrate(o.Clients, o.Clients, int64(o.Rounds), o.DPEpsilon, delta)
	if err != nil {
		return nil, fmt.Errorf("%w: dp: %w", ErrOptions, err)
	}
	m.Steps = int64(o.Rounds)
	g, err := m.Epsilon(delta)
	if err != nil {
		return nil, fmt.Errorf("simulation: dp: %w", err)
	}
	return &ddpSim{p: p, res: &DPResult{Mechanism: MechanismDDP, Epsilon: g.Epsilon, Delta: delta, ClipNorm: clip,
		SigmaMin: p.Sigma(), SigmaMax: p.Sigma()}}, nil
}

// aggregate writes to dst the decoded sum of the clients' encodings of
// deltas in round r: the mean of the clipped updates plus the noise. The
// noise comes from generators seeded from the run's seed, so that a
// simulation is reproducible (a hospital seeds them from crypto/rand).
func (d *ddpSim) aggregate(dst []float32, deltas [][]float32, seed uint64, r int) error {
	sum := make([]uint32, d.p.Words())
	enc := make([]uint32, d.p.Words())
	for i, delta := range deltas {
		s := seedBytes(seed, "ddp-noise", uint64(i), uint64(r))
		stream := rand.NewChaCha8(s)
		var b []byte
		for range 4 * 64 { // up to 64 workers' 32-byte seeds
			b = binary.LittleEndian.AppendUint64(b, stream.Uint64())
		}
		seeds := bytes.NewReader(b)
		e, err := d.p.NewEncoderFrom(seeds)
		if err != nil {
			return err
		}
		if err := e.Encode(enc, delta); err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		for j, v := range enc {
			sum[j] += v
		}
	}
	_, err := d.p.Decode(dst, sum)
	return err
}
