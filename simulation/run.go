package simulation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/internal/workers"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/partition"
	"github.com/fedguard/fedguard/privacy"
)

// RoundResult is the global model's quality after one round, on the test
// rows no client holds. The JSON names are those of `fedguard simulate
// --json`.
type RoundResult struct {
	// Round counts from 1.
	Round int `json:"round"`
	// Accuracy and Loss are the test accuracy and mean cross-entropy.
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	// AttackSuccess is a backdoor attack's success rate: the share of the
	// test rows whose label is not the attack's target that the model puts
	// in the target class once the trigger is applied. Nil for the other
	// attacks.
	AttackSuccess *float64 `json:"attack_success,omitempty"`
	// Diverged counts the clients whose local training diverged (from a
	// global model an attack had blown up); each sent a zero update.
	Diverged int `json:"diverged,omitempty"`
	// Seconds is the round's wall time, evaluation included.
	Seconds float64 `json:"seconds"`
}

// Result is a whole simulation.
type Result struct {
	// Options are the options run, with the defaults filled in.
	Options Options       `json:"options"`
	Rounds  []RoundResult `json:"rounds,omitempty"`
	// Accuracy, Loss and AttackSuccess are those of the last round.
	Accuracy      float64  `json:"final_accuracy"`
	Loss          float64  `json:"final_loss"`
	AttackSuccess *float64 `json:"final_attack_success,omitempty"`
	// ByzantineClients are the indices (from 0) of the attacking clients.
	ByzantineClients []int `json:"byzantine_clients,omitempty"`
	// ModelSHA256 is the hex model.Digest of the final global model: the
	// same options and seed give the same digest on any machine.
	ModelSHA256 string `json:"model_sha256"`
	// Seconds is the wall time of the run, data loading included.
	Seconds float64 `json:"seconds"`
	// DP is the record-level privacy of the clients' DP-SGD, when
	// Options asked for it.
	DP *DPResult `json:"dp,omitempty"`
	// Secure is the layout of a secure run (Options.Secure).
	Secure *SecureResult `json:"secure,omitempty"`
	// Detection is how often the coordinator's anomaly heuristics flagged
	// the Byzantine and the honest clients' updates over all the rounds.
	Detection Detection `json:"detection"`
}

// DPResult is what DP-SGD gave the clients: the largest ε any client
// spent over the run at δ, and the range of noise multipliers used.
type DPResult struct {
	// Mechanism is MechanismDDP for distributed DP (the federation's ε;
	// σ is each client's, in grid units) or MechanismCentral for central
	// DP (the federation's ε; σ is the noise multiplier); empty for
	// DP-SGD.
	Mechanism string  `json:"mechanism,omitempty"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
	SigmaMin  float64 `json:"sigma_min"`
	SigmaMax  float64 `json:"sigma_max"`
	ClipNorm  float64 `json:"clip_norm"`
}

// Run simulates a federation of o.Clients participants, o.Byzantine of
// them attacking, for o.Rounds rounds, and calls onRound (if not nil) after
// each round. Options it refuses wrap ErrOptions.
//
// Every client trains through participant.TrainUpdate, the participants'
// own training code, and the global model moves by the aggregate of
// aggregation.New(o.Aggregation), the coordinator's rule, as
// global ← global + aggregate (saturating at ±MaxFloat32, as the
// coordinator does). Clients train in parallel on o.Workers goroutines;
// each client's shuffling comes from participant.RoundRand(client, seed,
// round) and the rule's randomness from the seed and the round, and every
// client writes its own slot, so the results do not depend on o.Workers or
// the number of cores.
func Run(ctx context.Context, o Options, onRound func(RoundResult)) (Result, error) {
	start := time.Now()
	c, err := check(o)
	if err != nil {
		return Result{}, err
	}
	d, err := load(c.o)
	if err != nil {
		return Result{}, err
	}
	return run(ctx, c, d, start, onRound)
}

// sim is one simulation's state.
type sim struct {
	*checked
	d *data
	// clientX and clientY are each client's rows (the Byzantine clients'
	// after attack.Poison).
	clientX [][][]float64
	clientY [][]int
	byz     []bool
	byzIdx  []int
	// trigX and trigY are the backdoor's test rows: those of another
	// class with the trigger applied, labelled with the target.
	trigX [][]float64
	trigY []int
}

func run(ctx context.Context, c *checked, d *data, start time.Time, onRound func(RoundResult)) (Result, error) {
	s, err := setup(c, d)
	if err != nil {
		return Result{}, err
	}
	o := c.o
	res := Result{Options: o, ByzantineClients: s.byzIdx}
	initial := model.Init
	if o.Init == InitTorch {
		initial = model.InitTorch
	}
	global := initial(c.spec, derive(o.Seed, "init"))
	deltas := make([][]float32, o.Clients)
	diverged := make([]bool, o.Clients)
	updates := make([]aggregation.Update, o.Clients)
	agg := make([]float32, len(global))
	// The momenta run whenever a style is set, so that β = 0 can be
	// checked to reproduce the runs without momentum bit for bit.
	var worker *momentum
	var velocity []float32
	if o.MomentumStyle != "" {
		worker = newMomentum(o.MomentumStyle, o.WorkerMomentum, o.Clients)
		velocity = make([]float32, len(global))
	}
	baseRule := c.rule
	if sr := statefulRule(c.ruleConfig, o.ClippingCenter); sr != nil {
		baseRule = sr // a fresh state for every run
	}
	var dps []model.DP
	var dpRes *DPResult
	ddp, err := ddpSetup(o, len(global))
	if err != nil {
		return Result{}, err
	}
	central, err := centralSetup(o)
	if err != nil {
		return Result{}, err
	}
	switch {
	case ddp != nil:
		dpRes = ddp.res
	case central != nil:
		dpRes = central.res
	default:
		if dps, dpRes, err = dpSetup(c, s); err != nil {
			return Result{}, err
		}
	}
	res.DP = dpRes
	det, err := newDetector(s)
	if err != nil {
		return Result{}, err
	}
	ids := make([]string, o.Clients)
	for i := range ids {
		ids[i] = clientID(i)
	}
	var secure *secureMode
	if o.Secure {
		if secure, err = newSecure(s, len(global)); err != nil {
			return Result{}, err
		}
		res.Secure = &secure.res
	}
	for r := 1; r <= o.Rounds; r++ {
		t0 := time.Now()
		err := workers.Each(ctx, o.Workers, o.Clients, func(i int) error {
			rng := participant.RoundRand(uint64(i), o.Seed, uint64(r))
			x, y, plan := s.clientX[i], s.clientY[i], c.plan
			if o.LocalSteps > 0 {
				x, y, plan = s.batches(i, r, rng, plan)
			}
			var delta []float32
			var err error
			if dps != nil {
				dp := dps[i]
				dp.Rand = rand.New(rand.NewChaCha8(seedBytes(o.Seed, "dp-sgd", uint64(i), uint64(r))))
				delta, err = participant.TrainUpdateDP(c.spec, global, x, y, plan, dp)
			} else {
				delta, err = participant.TrainUpdate(c.spec, global, x, y, plan, rng)
			}
			diverged[i] = errors.Is(err, model.ErrDiverged)
			if diverged[i] {
				delta, err = make([]float32, len(global)), nil
			}
			if err != nil {
				return fmt.Errorf("simulation: round %d client %d: %w", r, i, err)
			}
			if worker != nil {
				delta = worker.step(i, delta)
			}
			deltas[i] = delta
			return nil
		})
		if err != nil {
			return Result{}, err
		}
		if err := s.craft(r, global, deltas); err != nil {
			return Result{}, err
		}
		for i := range updates {
			updates[i] = aggregation.Update{ID: clientID(i), Delta: deltas[i], Samples: uint64(len(s.clientY[i]))}
		}
		rule := aggregation.WithRand(baseRule, rand.NewChaCha8(seedBytes(o.Seed, "aggregation", uint64(r))))
		switch {
		case ddp != nil:
			// Distributed DP: the coordinator sees only the noisy sum,
			// as in a secure round, so only drift is checked.
			if err := ddp.aggregate(agg, deltas, o.Seed, r); err != nil {
				return Result{}, fmt.Errorf("simulation: round %d: %w", r, err)
			}
			det.round(nil, make([]bool, o.Clients))
		case central != nil:
			// Central DP: the coordinator sees every update, clips them,
			// averages and adds the noise.
			central.aggregate(agg, deltas, o.Seed, r)
			det.round(updates, make([]bool, o.Clients))
		case secure == nil:
			report, err := rule.Aggregate(agg, updates)
			if err != nil {
				return Result{}, fmt.Errorf("simulation: round %d: %w", r, err)
			}
			det.round(updates, excludedBy(report, ids))
		default:
			means, members, err := secure.round(ctx, s, r, deltas)
			if err != nil {
				return Result{}, err
			}
			report, err := rule.Aggregate(agg, means)
			if err != nil {
				return Result{}, fmt.Errorf("simulation: round %d: %w", r, err)
			}
			excluded := make([]bool, o.Clients)
			for b, out := range excludedBy(report, bucketIDs(means)) {
				for _, i := range members[b] {
					excluded[i] = out
				}
			}
			det.round(nil, excluded)
		}
		step := agg
		if velocity != nil {
			model.Fold(velocity, agg, o.MomentumStyle, float32(o.ServerMomentum))
			step = velocity
		}
		for i, v := range step {
			global[i] = model.Saturate(global[i] + v)
		}
		if o.EvalEvery > 1 && r%o.EvalEvery != 0 && r != o.Rounds {
			continue
		}
		rr, err := s.evaluate(global)
		if err != nil {
			return Result{}, fmt.Errorf("simulation: round %d: %w", r, err)
		}
		rr.Round = r
		for _, dv := range diverged {
			if dv {
				rr.Diverged++
			}
		}
		rr.Seconds = time.Since(t0).Seconds()
		res.Rounds = append(res.Rounds, rr)
		if onRound != nil {
			onRound(rr)
		}
	}
	res.Detection = det.d
	last := res.Rounds[len(res.Rounds)-1]
	res.Accuracy, res.Loss, res.AttackSuccess = last.Accuracy, last.Loss, last.AttackSuccess
	dg := model.Digest(global)
	res.ModelSHA256 = fmt.Sprintf("%x", dg[:])
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// setup splits the training rows among the clients, picks the Byzantine
// ones and poisons their rows once.
func setup(c *checked, d *data) (*sim, error) {
	o := c.o
	if o.Clients > len(d.trainY) {
		return nil, fmt.Errorf("%w: %d clients but only %d training rows", ErrOptions, o.Clients, len(d.trainY))
	}
	byzIdx := derive(o.Seed, "byzantine").Perm(o.Clients)[:o.Byzantine]
	slices.Sort(byzIdx)
	parts, err := split(c, d, byzIdx)
	if err != nil {
		return nil, err
	}
	s := &sim{checked: c, d: d,
		clientX: make([][][]float64, o.Clients), clientY: make([][]int, o.Clients), byz: make([]bool, o.Clients)}
	for i, idx := range parts {
		if len(idx) == 0 {
			return nil, fmt.Errorf("simulation: partition %s left client %d without rows", o.Partition, i)
		}
		s.clientX[i] = make([][]float64, len(idx))
		s.clientY[i] = make([]int, len(idx))
		for k, j := range idx {
			s.clientX[i][k], s.clientY[i][k] = d.trainX[j], d.trainY[j]
		}
	}
	s.byzIdx = byzIdx
	for _, i := range s.byzIdx {
		s.byz[i] = true
		s.clientX[i], s.clientY[i] = c.attack.Poison(s.clientX[i], s.clientY[i], d.classes, derive(o.Seed, "poison", uint64(i)))
		if len(s.clientX[i]) == 0 || len(s.clientX[i]) != len(s.clientY[i]) {
			return nil, fmt.Errorf("simulation: attack %s poisoned client %d into %d rows and %d labels", o.Attack.Name, i, len(s.clientX[i]), len(s.clientY[i]))
		}
	}
	if bd, ok := c.attack.(attack.Backdoor); ok {
		for i, y := range d.testY {
			if y != bd.Target() {
				s.trigX = append(s.trigX, bd.Trigger(d.testX[i]))
				s.trigY = append(s.trigY, bd.Target())
			}
		}
	}
	return s, nil
}

// split deals the training rows out to the clients: all of them by
// o.Partition, or with o.PartitionHonest the honest clients (in index
// order) by o.Partition and Byzantine client k (in index order) the k-th
// share, modulo N−F, of an IID split into N−F shares.
func split(c *checked, d *data, byzIdx []int) ([][]int, error) {
	o := c.o
	if !o.PartitionHonest || o.Byzantine == 0 {
		parts, err := partition.Split(d.trainY, d.classes, o.Clients, c.scheme, derive(o.Seed, "partition"))
		if err != nil {
			return nil, fmt.Errorf("%w: partition %s: %w", ErrOptions, o.Partition, err)
		}
		if len(parts) != o.Clients {
			return nil, fmt.Errorf("simulation: partition %s returned %d parts for %d clients", o.Partition, len(parts), o.Clients)
		}
		return parts, nil
	}
	good := o.Clients - o.Byzantine
	honest, err := partition.Split(d.trainY, d.classes, good, c.scheme, derive(o.Seed, "partition"))
	if err != nil {
		return nil, fmt.Errorf("%w: partition %s: %w", ErrOptions, o.Partition, err)
	}
	iid, err := partition.Split(d.trainY, d.classes, good, partition.Scheme{Kind: partition.KindIID}, derive(o.Seed, "partition", 1))
	if err != nil {
		return nil, fmt.Errorf("%w: partition iid: %w", ErrOptions, err)
	}
	if len(honest) != good || len(iid) != good {
		return nil, fmt.Errorf("simulation: partition %s returned %d and %d parts for %d honest clients", o.Partition, len(honest), len(iid), good)
	}
	parts := make([][]int, o.Clients)
	h, b := 0, 0
	for i := range parts {
		if b < len(byzIdx) && byzIdx[b] == i {
			parts[i] = iid[b%good]
			b++
			continue
		}
		parts[i] = honest[h]
		h++
	}
	return parts, nil
}

// craft replaces the Byzantine clients' updates with the attack's.
func (s *sim) craft(r int, global []float32, deltas [][]float32) error {
	o := s.o
	if o.Byzantine == 0 {
		return nil
	}
	var honest, own [][]float32
	for i, dl := range deltas {
		if s.byz[i] {
			own = append(own, dl)
		} else if !o.Attack.OwnOnly {
			honest = append(honest, dl)
		}
	}
	crafted, err := s.attack.Craft(attack.Round{
		Honest: honest, Own: own, Global: global, Rule: o.Aggregation,
		N: o.Clients, F: o.Byzantine, Rng: derive(o.Seed, "attack", uint64(r)),
	})
	if err != nil {
		return fmt.Errorf("simulation: round %d: %w", r, err)
	}
	if len(crafted) != o.Byzantine {
		return fmt.Errorf("simulation: round %d: attack %s crafted %d updates for %d Byzantine clients", r, o.Attack.Name, len(crafted), o.Byzantine)
	}
	for k, i := range s.byzIdx {
		if len(crafted[k]) != len(global) {
			return fmt.Errorf("simulation: round %d: attack %s crafted an update of %d values, want %d", r, o.Attack.Name, len(crafted[k]), len(global))
		}
		deltas[i] = crafted[k]
	}
	return nil
}

// evalChunk is the number of test rows evaluated per task. It is fixed, so
// the sums, and so the metrics, do not depend on the number of workers.
const evalChunk = 1000

// evaluate measures global on the test rows and, for a backdoor, the
// attack success rate.
func (s *sim) evaluate(global []float32) (RoundResult, error) {
	m, err := evaluate(s.spec, global, s.d.testX, s.d.testY, s.o.Workers)
	if err != nil {
		return RoundResult{}, err
	}
	rr := RoundResult{Accuracy: m.Accuracy, Loss: m.Loss}
	if s.trigY != nil {
		bm, err := evaluate(s.spec, global, s.trigX, s.trigY, s.o.Workers)
		if err != nil {
			return RoundResult{}, err
		}
		rr.AttackSuccess = &bm.Accuracy
	}
	return rr, nil
}

// evaluate is model.Evaluate over chunks of evalChunk rows in parallel,
// combined in chunk order.
func evaluate(spec model.Spec, params []float32, x [][]float64, y []int, limit int) (model.Metrics, error) {
	chunks := (len(x) + evalChunk - 1) / evalChunk
	ms := make([]model.Metrics, chunks)
	err := workers.Each(context.Background(), limit, chunks, func(i int) error {
		lo, hi := i*evalChunk, min((i+1)*evalChunk, len(x))
		m, err := model.Evaluate(spec, params, x[lo:hi], y[lo:hi])
		ms[i] = m
		return err
	})
	if err != nil {
		return model.Metrics{}, err
	}
	var loss, correct float64
	for _, m := range ms {
		loss += m.Loss * float64(m.Count)
		correct += math.Round(m.Accuracy * float64(m.Count))
	}
	n := float64(len(x))
	loss /= n
	if math.IsNaN(loss) || loss > math.MaxFloat64 {
		loss = math.MaxFloat64 // keep JSON valid for a blown-up model
	}
	return model.Metrics{Count: len(x), Loss: loss, Accuracy: correct / n}, nil
}

func clientID(i int) string { return fmt.Sprintf("client-%04d", i) }

// dpSetup returns each client's DP-SGD parameters (nil without DP) and
// the privacy they give: with Options.DPEpsilon, the σ that gives a
// client of its number of rows that ε over all the rounds.
func dpSetup(c *checked, s *sim) ([]model.DP, *DPResult, error) {
	o := c.o
	if o.DPEpsilon == 0 && o.DPNoiseMultiplier == 0 {
		return nil, nil, nil
	}
	delta, clip := o.dpDeltaClip()
	res := &DPResult{Delta: delta, ClipNorm: clip, SigmaMin: math.Inf(1)}
	type key struct{ n int }
	sigmas := map[key]float64{}
	dps := make([]model.DP, o.Clients)
	for i := range dps {
		n := len(s.clientX[i])
		q := model.DPRate(c.plan.BatchSize, n)
		steps := int64(o.Rounds) * model.DPSteps(c.plan.Epochs, q)
		sigma, ok := sigmas[key{n}]
		if !ok {
			sigma = o.DPNoiseMultiplier
			if o.DPEpsilon > 0 {
				var err error
				if sigma, err = privacy.SigmaFor(q, steps, o.DPEpsilon, delta); err != nil {
					return nil, nil, fmt.Errorf("simulation: dp: client %d: %w", i, err)
				}
			}
			g, err := privacy.Epsilon(delta, privacy.Event{Q: q, Sigma: sigma, Steps: steps})
			if err != nil {
				return nil, nil, fmt.Errorf("simulation: dp: client %d: %w", i, err)
			}
			res.Epsilon = max(res.Epsilon, g.Epsilon)
			sigmas[key{n}] = sigma
		}
		res.SigmaMin, res.SigmaMax = min(res.SigmaMin, sigma), max(res.SigmaMax, sigma)
		dps[i] = model.DP{Q: q, Sigma: sigma, Clip: clip}
	}
	return dps, res, nil
}
