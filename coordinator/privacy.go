package coordinator

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// MechanismCentralGaussian names central DP in the manifest's Privacy
// record: the coordinator clips every update and adds Gaussian noise to
// the aggregate (McMahan et al. 2018).
const MechanismCentralGaussian = "central-gaussian"

// DefaultCentralDPDelta is central DP's δ when the configuration sets none.
const DefaultCentralDPDelta = 1e-5

// CentralDPConfig turns on central differential privacy for a plain
// federation that trusts its coordinator (McMahan, Ramage, Talwar, Zhang,
// "Learning Differentially Private Recurrent Language Models", ICLR 2018):
// user-level DP, the unit of privacy being one hospital's whole update in
// a round. The names follow the participants' dp_* settings.
//
// Each round the coordinator clips every update to ℓ2 norm ClipNorm,
// averages them with equal weights over the cohort the round opened with
// (the fixed denominator m: an update that does not arrive adds zero, so
// the sensitivity of the average to one hospital is ClipNorm/m), and adds
// N(0, (NoiseMultiplier·ClipNorm/m)²) to every coordinate. The cohort is
// every ready participant, not a random sample, so each round is accounted
// as one Gaussian mechanism (q = 1) with multiplier NoiseMultiplier: no
// amplification by subsampling is claimed.
type CentralDPConfig struct {
	// NoiseMultiplier σ: the noise's standard deviation over the
	// sensitivity ClipNorm/m.
	NoiseMultiplier float64 `json:"noise_multiplier"`
	// ClipNorm C bounds every update's ℓ2 norm.
	ClipNorm float64 `json:"clip_norm"`
	// Epsilon is the federation's ε budget at Delta: no round opens that
	// would take the ε of all rounds past it. 0: no budget (ε is still
	// accounted and recorded).
	Epsilon float64 `json:"epsilon,omitempty"`
	// Delta is the budget's δ (default DefaultCentralDPDelta).
	Delta float64 `json:"delta,omitempty"`
}

// validate checks the settings and the rest of the configuration they
// need: plain mode and the fedavg rule without bucketing.
func (d *CentralDPConfig) validate(c Config) error {
	if d == nil {
		return nil
	}
	switch {
	case !(d.NoiseMultiplier > 0) || math.IsInf(d.NoiseMultiplier, 0):
		return fmt.Errorf("central_dp.noise_multiplier %v: want a positive finite number", d.NoiseMultiplier)
	case !(d.ClipNorm > 0) || math.IsInf(d.ClipNorm, 0):
		return fmt.Errorf("central_dp.clip_norm %v: want a positive finite number", d.ClipNorm)
	case !(d.Epsilon >= 0) || math.IsInf(d.Epsilon, 0):
		return fmt.Errorf("central_dp.epsilon %v: want a positive finite number, or 0 for no budget", d.Epsilon)
	case d.Delta != 0 && privacy.ValidateDelta(d.Delta) != nil:
		return fmt.Errorf("central_dp.delta %v: want a number in (0, 1)", d.Delta)
	case c.Secure:
		return errors.New("central_dp needs plain mode: in a secure federation the coordinator never sees an update to clip (secure rounds use distributed DP)")
	case c.Aggregation.Rule != "" && c.Aggregation.Rule != aggregation.NameFedAvg:
		return fmt.Errorf("central_dp composes with the fedavg rule only, not %q: its noise is calibrated to the sensitivity of an equal-weight mean of clipped updates, which a robust rule's output does not have (see docs/privacy.md)", c.Aggregation.Rule)
	case c.Aggregation.Bucket > 0:
		return errors.New("central_dp does not compose with aggregation.bucket: the noise is calibrated to one equal-weight mean of all clipped updates")
	}
	return nil
}

// delta is the configured δ or its default.
func (d *CentralDPConfig) delta() float64 {
	if d.Delta == 0 {
		return DefaultCentralDPDelta
	}
	return d.Delta
}

// centralParameters are the Parameters of a central-gaussian Privacy
// record: the round's settings and the federation's whole ledger, grouped
// by (q, σ), from which a restarted coordinator (or an auditor with the
// manifest alone) recomputes ε.
type centralParameters struct {
	NoiseMultiplier float64         `json:"noise_multiplier"`
	ClipNorm        float64         `json:"clip_norm"`
	Budget          float64         `json:"budget,omitempty"`
	Cohort          int             `json:"cohort"`
	Ledger          []privacy.Event `json:"ledger"`
}

// centralDP is the coordinator's central DP state: the ledger of rounds
// closed with noise, and whether the budget stopped the federation.
type centralDP struct {
	cfg       CentralDPConfig
	ledger    []privacy.Event // grouped by (q, σ)
	spent     float64
	exhausted bool // the refusal to open is audited once per run
}

// newCentralDP reads the ledger back from the last round's signed
// manifest (the record is in every central round's manifest, so the last
// one holds the whole ledger).
func newCentralDP(cfg *CentralDPConfig, last *manifest.Round) (*centralDP, error) {
	if cfg == nil {
		return nil, nil
	}
	d := &centralDP{cfg: *cfg}
	if last != nil && last.Privacy != nil && last.Privacy.Mechanism == MechanismCentralGaussian {
		var p centralParameters
		if err := json.Unmarshal(last.Privacy.Parameters, &p); err != nil {
			return nil, fmt.Errorf("central DP ledger in the manifest of round %d: %w", last.Round, err)
		}
		for _, e := range p.Ledger {
			if err := e.Validate(); err != nil {
				return nil, fmt.Errorf("central DP ledger in the manifest of round %d: %w", last.Round, err)
			}
		}
		d.ledger = p.Ledger
	}
	var err error
	d.spent, err = d.epsilon(d.ledger)
	return d, err
}

// epsilon is the ε of ledger at the configured δ.
func (d *centralDP) epsilon(ledger []privacy.Event) (float64, error) {
	if len(ledger) == 0 {
		return 0, nil
	}
	g, err := privacy.Epsilon(d.cfg.delta(), ledger...)
	if err != nil {
		return 0, fmt.Errorf("central DP accounting: %w", err)
	}
	return g.Epsilon, nil
}

// next returns the ledger with one more round and its ε.
func (d *centralDP) next() ([]privacy.Event, float64, error) {
	ev := privacy.Event{Q: 1, Sigma: d.cfg.NoiseMultiplier, Steps: 1}
	ledger := slices.Clone(d.ledger)
	if i := slices.IndexFunc(ledger, func(e privacy.Event) bool { return e.Q == ev.Q && e.Sigma == ev.Sigma }); i >= 0 {
		ledger[i].Steps++
	} else {
		ledger = append(ledger, ev)
	}
	eps, err := d.epsilon(ledger)
	return ledger, eps, err
}

// budget is the configured budget, +Inf for none.
func (d *centralDP) budget() float64 {
	if d.cfg.Epsilon == 0 {
		return math.Inf(1)
	}
	return d.cfg.Epsilon
}

// centralOutcome is what the noise step of a round made: the Privacy
// record and the ledger to keep once the round commits.
type centralOutcome struct {
	record *manifest.Privacy
	ledger []privacy.Event
	spent  float64
}

// clipForCentralDP clips every update to the configured norm and gives it
// weight one, before the rule (fedavg) averages them.
func (d *centralDP) clip(updates []aggregation.Update) {
	for i := range updates {
		u := &updates[i]
		var ss float64
		for _, v := range u.Delta {
			ss += float64(v) * float64(v)
		}
		if n := math.Sqrt(ss); n > d.cfg.ClipNorm {
			s := float32(d.cfg.ClipNorm / n)
			for j := range u.Delta {
				u.Delta[j] *= s
			}
		}
		u.Samples = 1
	}
}

// noise turns fedavg's mean of the n clipped updates in agg into the
// fixed-denominator mean over the cohort of m and adds the Gaussian noise
// of standard deviation σC/m to every coordinate. The generator is
// ChaCha8 seeded from crypto/rand: nobody, the coordinator's operators
// included, can predict or replay the noise from the round's public seed.
func (d *centralDP) noise(agg []float32, n, m int) (centralOutcome, error) {
	if m <= 0 || n > m {
		return centralOutcome{}, fmt.Errorf("central DP: %d updates from a cohort of %d", n, m)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return centralOutcome{}, fmt.Errorf("central DP noise seed: %w", err)
	}
	return d.noiseWith(agg, n, m, rand.New(rand.NewChaCha8(seed)))
}

// noiseWith is noise with the generator given (tests).
func (d *centralDP) noiseWith(agg []float32, n, m int, rng *rand.Rand) (centralOutcome, error) {
	ledger, eps, err := d.next()
	if err != nil {
		return centralOutcome{}, err
	}
	scale := float64(n) / float64(m)
	std := d.cfg.NoiseMultiplier * d.cfg.ClipNorm / float64(m)
	for i, v := range agg {
		agg[i] = float32(float64(v)*scale + std*rng.NormFloat64())
	}
	params, err := json.Marshal(centralParameters{
		NoiseMultiplier: d.cfg.NoiseMultiplier, ClipNorm: d.cfg.ClipNorm, Budget: d.cfg.Epsilon, Cohort: m, Ledger: ledger,
	})
	if err != nil {
		return centralOutcome{}, err
	}
	return centralOutcome{
		record: &manifest.Privacy{Mechanism: MechanismCentralGaussian, Parameters: params, Epsilon: eps, Delta: d.cfg.delta()},
		ledger: ledger, spent: eps,
	}, nil
}

// hospitalPrivacy is the manifest's form of a reported ledger.
func hospitalPrivacy(name string, p *fedguardv1.PrivacyLedger) *manifest.HospitalPrivacy {
	if p == nil {
		return nil
	}
	return &manifest.HospitalPrivacy{Name: name, Epsilon: p.GetEpsilon(), Delta: p.GetDelta(), Budget: p.GetBudget()}
}

// privacyRecord is the round's Privacy record for its manifest and its
// privacy_spent event: the federation-level mechanism's record (central
// DP, set when the round closed) and the ledgers of the included
// participants that reported one, by name. nil when there is neither.
func privacyRecord(rec *RoundRecord) *manifest.Privacy {
	var p manifest.Privacy
	if rec.Privacy != nil {
		p = *rec.Privacy
		p.Hospitals, p.HospitalsDistributed = nil, nil
	}
	selected := map[string]bool{}
	for _, e := range rec.Report.Entries {
		selected[e.ID] = e.Selected
	}
	for _, pr := range rec.Participants {
		if pr.Privacy == nil && pr.DistributedPrivacy == nil {
			continue
		}
		key := pr.Name
		if pr.Bucket > 0 {
			key = bucketID(pr.Bucket - 1)
		}
		if sel, ok := selected[key]; ok && !sel {
			continue // excluded by the rule: its update is not in the model
		}
		if pr.Privacy != nil {
			p.Hospitals = append(p.Hospitals, *pr.Privacy)
		}
		if pr.DistributedPrivacy != nil {
			p.HospitalsDistributed = append(p.HospitalsDistributed, *pr.DistributedPrivacy)
		}
	}
	slices.SortFunc(p.Hospitals, func(a, b manifest.HospitalPrivacy) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(p.HospitalsDistributed, func(a, b manifest.HospitalDistributedPrivacy) int { return strings.Compare(a.Name, b.Name) })
	if p.Mechanism == "" && len(p.Hospitals) == 0 && len(p.HospitalsDistributed) == 0 {
		return nil
	}
	return &p
}

// privacySpentEvent is the audit payload of a round's Privacy record.
func privacySpentEvent(attempt uint32, p *manifest.Privacy) audit.PrivacySpent {
	return audit.PrivacySpent{Attempt: attempt, Privacy: *p}
}

// PrivacyStatus is the federation-level DP mechanism's account on the
// status page: the ε spent by every round up to Round, at Delta, against
// the budget (0: none), and why no round opens when the budget is spent.
type PrivacyStatus struct {
	Mechanism string  `json:"mechanism"`
	Round     uint64  `json:"round"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
	Budget    float64 `json:"budget,omitempty"`
	Remaining float64 `json:"remaining,omitempty"`
	Exhausted string  `json:"exhausted,omitempty"`
}

// HospitalPrivacyStatus is a participant's record-level or
// federation-level ledger on the status page, as it reported it with its
// update or masked input of Round: its own claim. Releases is the
// federation-level ledger's number of released sums (0 for the
// record-level one).
type HospitalPrivacyStatus struct {
	Round     uint64  `json:"round"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
	Budget    float64 `json:"budget,omitempty"`
	Remaining float64 `json:"remaining,omitempty"`
	Releases  uint64  `json:"releases,omitempty"`
}

// privacyMetrics are the coordinator's DP gauges.
type privacyMetrics struct {
	spent, budget *prometheus.GaugeVec // by mechanism
	exhausted     prometheus.Gauge
	// The hospitals' ledgers, summarized without names (the metrics name
	// no participant; the status page does): the largest ε, the smallest
	// budget left, and how many hospitals have reported a ledger.
	hospitalSpent     prometheus.Gauge
	hospitalRemaining prometheus.Gauge
	hospitals         prometheus.Gauge
	// The same for the hospitals' federation-level (distributed DP)
	// ledgers.
	distributedSpent     prometheus.Gauge
	distributedRemaining prometheus.Gauge
	distributed          prometheus.Gauge
}

func newPrivacyMetrics() privacyMetrics {
	return privacyMetrics{
		spent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fedguard_privacy_epsilon_spent",
			Help: "Federation-level ε (at the mechanism's δ) spent by every round so far, by mechanism (central-gaussian, distributed-discrete-gaussian), as the last manifest records it.",
		}, []string{"mechanism"}),
		budget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fedguard_privacy_epsilon_budget",
			Help: "The federation-level ε budget, by mechanism (+Inf: none).",
		}, []string{"mechanism"}),
		exhausted: newGauge("fedguard_privacy_budget_exhausted",
			"1 while no round opens because the next would take the federation-level ε past its budget, else 0."),
		hospitalSpent: newGauge("fedguard_participants_privacy_epsilon_max",
			"The largest record-level ε any participant reported with its last update that went into a model (their own claims; 0 before any)."),
		hospitalRemaining: newGauge("fedguard_participants_privacy_remaining_min",
			"The smallest record-level ε budget left any participant reported (budget − ε; +Inf when none reported a budget). The status page has each participant's."),
		hospitals: newGauge("fedguard_participants_privacy_reporting",
			"Participants whose record-level privacy ledger the coordinator has received."),
		distributedSpent: newGauge("fedguard_participants_distributed_privacy_epsilon_max",
			"The largest federation-level (distributed DP) ε any participant reported with its last masked input that went into a model (their own claims; 0 before any)."),
		distributedRemaining: newGauge("fedguard_participants_distributed_privacy_remaining_min",
			"The smallest federation-level (distributed DP) ε budget left any participant reported (budget − ε; +Inf when none reported a budget). The status page has each participant's."),
		distributed: newGauge("fedguard_participants_distributed_privacy_reporting",
			"Participants whose federation-level (distributed DP) privacy ledger the coordinator has received."),
	}
}

// init makes every series exist from the start: the central mechanism's
// (0 spent, no budget, until central DP says otherwise).
func (m privacyMetrics) init() {
	m.spent.WithLabelValues(MechanismCentralGaussian)
	m.budget.WithLabelValues(MechanismCentralGaussian).Set(math.Inf(1))
	m.hospitalRemaining.Set(math.Inf(1))
	m.distributedRemaining.Set(math.Inf(1))
}

// loadCentralDP sets up central DP from the configuration and the last
// round's manifest.
func (c *Coordinator) loadCentralDP() (*centralDP, error) {
	c.metrics.privacy.init()
	if c.cfg.CentralDP == nil {
		return nil, nil
	}
	var last *manifest.Round
	if c.manifest != nil && c.lastRound > 0 {
		m, _, err := c.keyring.Open(c.manifest)
		if err != nil {
			return nil, fmt.Errorf("manifest of round %d: %w", c.lastRound, err)
		}
		last = &m
	}
	d, err := newCentralDP(c.cfg.CentralDP, last)
	if err != nil {
		return nil, err
	}
	c.metrics.privacy.spent.WithLabelValues(MechanismCentralGaussian).Set(d.spent)
	c.metrics.privacy.budget.WithLabelValues(MechanismCentralGaussian).Set(d.budget())
	c.status.privacy = &PrivacyStatus{Mechanism: MechanismCentralGaussian, Round: c.lastRound, Epsilon: d.spent, Delta: d.cfg.delta(),
		Budget: d.cfg.Epsilon, Remaining: max(d.cfg.Epsilon-d.spent, 0)}
	return d, nil
}

// centralExhaustedLocked reports whether central DP's budget forbids the
// next round: its ε after one more round would exceed the budget. The
// first time, it records a privacy_exhausted event, logs it and raises
// fedguard_privacy_budget_exhausted; the coordinator then opens no round
// (the status page says why) until restarted with a larger budget.
func (c *Coordinator) centralExhaustedLocked(ctx context.Context) (bool, error) {
	d := c.central
	if d == nil {
		return false, nil
	}
	if d.exhausted {
		return true, nil
	}
	_, eps, err := d.next()
	if err != nil {
		return false, err
	}
	if eps <= d.budget() {
		return false, nil
	}
	ev := audit.PrivacyExhausted{Mechanism: MechanismCentralGaussian, Epsilon: eps, Budget: d.cfg.Epsilon, Delta: d.cfg.delta()}
	if err := c.record(ctx, event(audit.KindPrivacyExhausted, c.lastRound+1, ev)); err != nil {
		return false, err
	}
	d.exhausted = true
	c.metrics.privacy.exhausted.Set(1)
	why := fmt.Sprintf("no round opens: round %d would take ε to %.4g, past the budget %.4g at δ = %g", c.lastRound+1, eps, d.cfg.Epsilon, d.cfg.delta())
	if c.status.privacy != nil {
		c.status.privacy.Exhausted = why
	}
	c.opts.log.ErrorContext(ctx, "privacy budget exhausted", "round", c.lastRound+1, "epsilon", eps, "budget", d.cfg.Epsilon, "delta", d.cfg.delta())
	c.broadcastLocked()
	return true, nil
}

// notePrivacyLocked updates the status page and the metrics from the
// Privacy record of a round's signed manifest, whatever mechanism filled
// it: the federation's ε, and the ledger each included participant
// reported. c.mu must be held.
func (c *Coordinator) notePrivacyLocked(envelope []byte) {
	m, _, err := c.keyring.Open(envelope)
	if err != nil || m.Privacy == nil {
		return
	}
	p := m.Privacy
	if p.Mechanism != "" {
		st := &PrivacyStatus{Mechanism: p.Mechanism, Round: m.Round, Epsilon: p.Epsilon, Delta: p.Delta}
		budget := math.Inf(1)
		if p.Mechanism == MechanismCentralGaussian && c.central != nil {
			st.Budget, budget = c.central.cfg.Epsilon, c.central.budget()
		}
		if st.Budget > 0 {
			st.Remaining = max(st.Budget-st.Epsilon, 0)
		}
		c.status.privacy = st
		c.metrics.privacy.spent.WithLabelValues(p.Mechanism).Set(p.Epsilon)
		c.metrics.privacy.budget.WithLabelValues(p.Mechanism).Set(budget)
	}
	for _, h := range p.Hospitals {
		ps := c.status.participants[h.Name]
		if ps == nil {
			continue
		}
		hs := &HospitalPrivacyStatus{Round: m.Round, Epsilon: h.Epsilon, Delta: h.Delta, Budget: h.Budget}
		if h.Budget > 0 {
			hs.Remaining = max(h.Budget-h.Epsilon, 0)
		}
		ps.Privacy = hs
	}
	for _, h := range p.HospitalsDistributed {
		ps := c.status.participants[h.Name]
		if ps == nil {
			continue
		}
		hs := &HospitalPrivacyStatus{Round: m.Round, Epsilon: h.Epsilon, Delta: h.Delta, Budget: h.Budget, Releases: h.Releases}
		if h.Budget > 0 {
			hs.Remaining = max(h.Budget-h.Epsilon, 0)
		}
		ps.DistributedPrivacy = hs
	}
	n, most, least := ledgerSummary(c.status.participants, func(ps *ParticipantStatus) *HospitalPrivacyStatus { return ps.Privacy })
	c.metrics.privacy.hospitals.Set(float64(n))
	c.metrics.privacy.hospitalSpent.Set(most)
	c.metrics.privacy.hospitalRemaining.Set(least)
	n, most, least = ledgerSummary(c.status.participants, func(ps *ParticipantStatus) *HospitalPrivacyStatus { return ps.DistributedPrivacy })
	c.metrics.privacy.distributed.Set(float64(n))
	c.metrics.privacy.distributedSpent.Set(most)
	c.metrics.privacy.distributedRemaining.Set(least)
}

// ledgerSummary is what the metrics say of one kind of the participants'
// ledgers (ledger picks it from a status): how many reported one, the
// largest ε, and the smallest budget left among those with a budget
// (+Inf if none has one).
func ledgerSummary(participants map[string]*ParticipantStatus, ledger func(*ParticipantStatus) *HospitalPrivacyStatus) (n int, most, least float64) {
	least = math.Inf(1)
	for _, ps := range participants {
		if hs := ledger(ps); hs != nil {
			n++
			most = max(most, hs.Epsilon)
			if hs.Budget > 0 {
				least = min(least, hs.Remaining)
			}
		}
	}
	return n, most, least
}

// memberLedger is the ledger (record-level or federation-level) member
// reported with its masked input in a secure session, in the manifest's
// form; nil if it reported none. The session keys each ledger by the name
// it carries.
func memberLedger[L manifest.HospitalPrivacy | manifest.HospitalDistributedPrivacy](ledgers map[string]L, member string) *L {
	l, ok := ledgers[member]
	if !ok {
		return nil
	}
	return &l
}
