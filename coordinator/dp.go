package coordinator

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/privacy"
)

// Distributed differential privacy (issue 15). With dp_mechanism
// "distributed-discrete-gaussian" every secure round's hospitals add
// their own share of discrete Gaussian noise to their update before they
// mask it (secagg.DDP), so the sum the coordinator unmasks is
// differentially private without trusting the coordinator with the noise.
// The coordinator only chooses the noise level, once, from the
// configured budget:
//
//   - the account is for the whole federation (user level: a hospital's
//     whole update is the unit of privacy), over training.rounds releases;
//   - each release is the sum of the fewest survivors any bucket of any
//     admissible cohort may be unmasked with (the least session threshold
//     from min_participants to all enrolled), since dropouts after
//     masking take their noise out of the sum: that is the worst case the
//     protocol allows;
//   - the noise is calibrated (privacy.DistributedSigmaFor) so that
//     training.rounds such releases are (dp_epsilon, dp_delta)-DP, and the
//     32-bit ring must hold the sum of the largest bucket with it
//     (secagg.DDP.Check); a configuration that fails either is refused.
//
// Each round's manifest carries the mechanism, its parameters and the ε
// spent by the rounds up to it (privacyRecord).

// DPConfig is the federation-level differential privacy of a coordinator
// configuration; its fields sit at the top level of the configuration, as
// the hospital's dp_* settings do in theirs.
type DPConfig struct {
	// DPMechanism is the federation-level mechanism: "" for none, or
	// "distributed-discrete-gaussian" (needs secure: true).
	DPMechanism string `json:"dp_mechanism,omitempty"`
	// DPEpsilon is the ε the federation may spend over training.rounds
	// rounds, at DPDelta.
	DPEpsilon float64 `json:"dp_epsilon,omitempty"`
	DPDelta   float64 `json:"dp_delta,omitempty"`
	// DPClipNorm is the ℓ2 norm every hospital clips its update to before
	// it is encoded and noised: the mechanism's sensitivity.
	DPClipNorm float64 `json:"dp_clip_norm,omitempty"`
}

// federationDP is the distributed DP of a federation: the encoding every
// secure round uses (its Dim and Seed are set per round by the plan) and
// one release as the accountant reads it.
type federationDP struct {
	ddp   secagg.DDP
	mech  privacy.DistributedDiscreteGaussian
	delta float64
}

// distributedDP calibrates the federation's distributed DP; nil without
// dp_mechanism.
func (c Config) distributedDP() (*federationDP, error) {
	if c.DPMechanism == "" {
		if c.DPEpsilon != 0 || c.DPDelta != 0 || c.DPClipNorm != 0 {
			return nil, fmt.Errorf("dp_epsilon, dp_delta and dp_clip_norm need dp_mechanism (%q)", secagg.DDPMechanism)
		}
		return nil, nil
	}
	switch {
	case c.DPMechanism != secagg.DDPMechanism:
		return nil, fmt.Errorf("dp_mechanism %q: the only federation-level mechanism is %q", c.DPMechanism, secagg.DDPMechanism)
	case !c.Secure:
		return nil, fmt.Errorf("dp_mechanism %q adds the noise inside secure aggregation: set secure: true", c.DPMechanism)
	case !(c.DPEpsilon > 0) || math.IsInf(c.DPEpsilon, 1):
		return nil, fmt.Errorf("dp_epsilon %v, want a finite number > 0", c.DPEpsilon)
	case !(c.DPDelta > 0 && c.DPDelta < 1):
		return nil, fmt.Errorf("dp_delta %v outside (0, 1)", c.DPDelta)
	case !(c.DPClipNorm > 0) || math.IsInf(c.DPClipNorm, 1):
		return nil, fmt.Errorf("dp_clip_norm %v, want a finite number > 0", c.DPClipNorm)
	case c.MinParticipants < 2 || c.MinParticipants > len(c.Enrolled):
		return nil, fmt.Errorf("dp_mechanism needs min_participants between 2 and the %d enrolled", len(c.Enrolled))
	}
	spec, err := c.spec()
	if err != nil {
		return nil, fmt.Errorf("dp_mechanism: model: %w", err)
	}
	fewest, largest := 0, 0
	for n := c.MinParticipants; n <= len(c.Enrolled); n++ {
		cohort := make([]string, n)
		for i := range cohort {
			cohort[i] = fmt.Sprintf("p%06d", i)
		}
		plan := c.securePlan(cohort)
		if m := plan.MinSurvivors(); fewest == 0 || m < fewest {
			fewest = m
		}
		for _, b := range plan.Buckets() {
			largest = max(largest, len(b))
		}
	}
	ddp := secagg.DefaultDDP(spec.NumParams(), c.DPClipNorm, [32]byte{})
	ddp, mech, err := ddp.Calibrate(fewest, largest, int64(c.Training.Rounds), c.DPEpsilon, c.DPDelta)
	if err != nil {
		return nil, fmt.Errorf("dp_mechanism %s with dp_epsilon %v, dp_delta %v over %d rounds, at least %d survivors per sum and at most %d: %w",
			c.DPMechanism, c.DPEpsilon, c.DPDelta, c.Training.Rounds, fewest, largest, err)
	}
	return &federationDP{ddp: ddp, mech: mech, delta: c.DPDelta}, nil
}

// checkDP adds distributedDP's refusal, if any, to Validate's errors.
func (c Config) checkDP(add func(string, ...any)) {
	if _, err := c.distributedDP(); err != nil {
		add("%w", err)
	}
}

// distributedPrivacy is the privacy record of round under distributed DP
// (nil without it): the mechanism, one release's parameters as the
// accountant reads them, and the ε spent by rounds 1 to round. Rounds are
// counted, not attempts: a hospital answers the unmasking of at most one
// session per starting model, so its update is in at most one released
// sum per round, except if it left after sending its masked input and the
// round was retried (see docs/privacy.md).
func (c *Coordinator) distributedPrivacy(round uint64) (*manifest.Privacy, error) {
	if c.dp == nil {
		return nil, nil
	}
	params, err := json.Marshal(c.dp.mech)
	if err != nil {
		return nil, err
	}
	m := c.dp.mech
	m.Steps = int64(min(round, math.MaxInt64))
	g, err := m.Epsilon(c.dp.delta)
	if err != nil {
		return nil, fmt.Errorf("privacy record of round %d: %w", round, err)
	}
	return &manifest.Privacy{Mechanism: secagg.DDPMechanism, Parameters: params, Epsilon: g.Epsilon, Delta: c.dp.delta}, nil
}
