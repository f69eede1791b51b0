package participant

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// DefaultHoldout is the fraction of local rows a [LocalTrainer] keeps out of
// training to evaluate each round's starting model: enough rows for a useful
// accuracy estimate at a typical hospital, few enough not to starve training.
const DefaultHoldout = 0.2

// NoHoldout, as LocalTrainer.Holdout, keeps every row for training (the
// zero value means DefaultHoldout). The agent then reports an empty holdout
// evaluation.
const NoHoldout = -1

var _ Trainer = (*LocalTrainer)(nil)

// LocalTrainer trains on a CSV file at the hospital. At Prepare it reads the
// file with the federation's feature and label columns and holds out a
// stratified fraction of the rows (split by a rng seeded from Seed, so the
// same file always gives the same split). Each round it standardizes with the
// assignment's federation scaling (cached while the scaling does not change),
// evaluates the starting model on the holdout rows, trains with the
// assignment's plan and a rng seeded from (Seed, assignment seed, round), and
// returns trained − start.
//
// Its fields must not change after the first call to Prepare. Its methods are
// safe for concurrent use.
type LocalTrainer struct {
	// DataFile is the hospital's CSV file, with a header row.
	DataFile string
	// Ignore names columns to skip (for example a record id).
	Ignore []string
	// Holdout is the fraction of rows kept for evaluation, in (0, 1);
	// 0 means DefaultHoldout and NoHoldout means none.
	Holdout float64
	// Seed makes the holdout split and the local shuffling reproducible.
	Seed uint64
	// DP, when set, makes every round train with DP-SGD (record-level
	// differential privacy, see [model.TrainDP]) instead of plain SGD.
	DP *DPSettings
	// Momentum is the worker momentum β in [0, 1) (0: none). With β > 0
	// the trainer sends, instead of each round's update u, the momentum m
	// of its successive updates in MomentumStyle's recursion
	// ([model.Momentum]): the worker momentum of Karimireddy, He, Jaggi
	// (ICML 2021, ICLR 2022), under which robust rules such as centered
	// clipping are analysed.
	//
	// The state lives in memory only and starts again from m = 0 when the
	// agent restarts, on purpose:
	//   - losing it costs one warm-up, the same as the federation's first
	//     round: the update sent is u (heavy-ball) or (1−β)·u (EMA), and
	//     the momentum is back to its steady size within about 1/(1−β)
	//     rounds;
	//   - a copy on disk would be a second store of training signal
	//     (a weighted sum of every past update, which secure aggregation
	//     exists to keep from the coordinator) with its own protection,
	//     format and parser, and it would go stale: after a restart the
	//     federation may have moved on many rounds, changed its model, or
	//     the hospital its data, and a momentum from then points the wrong
	//     way with weight β^k;
	//   - the papers' workers keep it in memory too.
	// The state advances once per round the hospital trains (rounds it
	// sits out leave it unchanged) and restarts at m = 0 when the model's
	// length changes. DP-SGD updates are folded in after training: the
	// momentum is post-processing of DP outputs and costs no budget.
	Momentum float64
	// MomentumStyle is model.MomentumEMA (the default when empty) or
	// model.MomentumHeavyBall.
	MomentumStyle string

	mu      sync.Mutex
	mom     model.Momentum
	spec    model.Spec
	train   *dataset.Table // unscaled
	test    *dataset.Table // unscaled
	trainY  []int
	testY   []int
	scaling dataset.Scaling // scaling of the cached tables below
	strain  *dataset.Table
	stest   *dataset.Table
	data    *lineage.Description // what Prepare read and selected
	rows    int                  // rows of the data file Prepare read
}

// DPSettings are a hospital's DP-SGD parameters. The sampling rate of a
// round is the plan's batch size over the training rows (capped at 1), and
// its steps are the plan's epochs times ⌈1/q⌉ (see [model.DPSteps]).
type DPSettings struct {
	// NoiseMultiplier is σ, > 0.
	NoiseMultiplier float64
	// ClipNorm is the per-row clipping norm C, > 0.
	ClipNorm float64
	// Rand, when set, draws the samples and the noise (tests only); nil
	// means a fresh generator seeded from crypto/rand each round
	// ([model.NewNoiseRand]): noise that is not secret protects no one.
	Rand *rand.Rand
}

// Validate checks the settings.
func (d *DPSettings) Validate() error {
	if !(d.NoiseMultiplier > 0) || math.IsInf(d.NoiseMultiplier, 0) {
		return fmt.Errorf("participant: DP noise multiplier %v, want a positive finite number", d.NoiseMultiplier)
	}
	if !(d.ClipNorm > 0) || math.IsInf(d.ClipNorm, 0) {
		return fmt.Errorf("participant: DP clipping norm %v, want a positive finite number", d.ClipNorm)
	}
	return nil
}

// dp returns the model.DP of a round on n rows with plan p.
func (d *DPSettings) dp(p model.Plan, n int) model.DP {
	return model.DP{Q: model.DPRate(p.BatchSize, n), Sigma: d.NoiseMultiplier, Clip: d.ClipNorm, Rand: d.Rand}
}

var _ DPTrainer = (*LocalTrainer)(nil)

// DPEvent implements [DPTrainer]: what training for a will cost, from the
// plan and the number of training rows; ok is false without t.DP.
func (t *LocalTrainer) DPEvent(a *fedguardv1.RoundAssignment) (privacy.Event, bool, error) {
	if t.DP == nil {
		return privacy.Event{}, false, nil
	}
	if err := t.DP.Validate(); err != nil {
		return privacy.Event{}, false, err
	}
	t.mu.Lock()
	n := len(t.trainY)
	t.mu.Unlock()
	if n == 0 {
		return privacy.Event{}, false, errors.New("participant: DPEvent called before Prepare")
	}
	plan := planOf(a)
	if err := plan.Validate(); err != nil {
		return privacy.Event{}, false, err
	}
	d := t.DP.dp(plan, n)
	return privacy.Event{Q: d.Q, Sigma: d.Sigma, Steps: model.DPSteps(plan.Epochs, d.Q)}, true, nil
}

// planOf returns the model.Plan of an assignment (zero without one).
func planOf(a *fedguardv1.RoundAssignment) model.Plan {
	p := a.GetPlan()
	return model.Plan{
		Epochs:       int(p.GetLocalEpochs()),
		LearningRate: p.GetLearningRate(),
		BatchSize:    int(p.GetBatchSize()),
		L2:           p.GetL2(),
	}
}

// Prepare reads and checks the local data for spec and returns the
// aggregates of the training rows. Errors that mean the data cannot serve
// this federation wrap [ErrIncompatible].
func (t *LocalTrainer) Prepare(spec *fedguardv1.ModelSpec) (dataset.Stats, error) {
	holdout := t.Holdout
	switch holdout {
	case 0:
		holdout = DefaultHoldout
	case NoHoldout:
		holdout = 0
	}
	if !(holdout >= 0 && holdout < 1) {
		return dataset.Stats{}, fmt.Errorf("participant: holdout fraction %v outside [0, 1)", t.Holdout)
	}
	s, err := wire.SpecFromProto(spec)
	if err != nil {
		return dataset.Stats{}, fmt.Errorf("%w: %w", ErrIncompatible, err)
	}
	if s.Kind == model.Tensors {
		return dataset.Stats{}, fmt.Errorf("%w: the federation's model is a tensor layout (%d tensors, %d parameters), which the built-in trainer cannot train: run the hospital's own trainer (--trainer exec, docs/trainer.md): %w",
			ErrIncompatible, len(s.Tensors), s.NumParams(), model.ErrNotBuiltIn)
	}
	if spec.GetLabel() == "" {
		return dataset.Stats{}, fmt.Errorf("%w: the specification names no label column", ErrIncompatible)
	}
	tbl, fileSum, err := readHashed(t.DataFile, dataset.ReadOptions{
		Label:    spec.GetLabel(),
		Features: spec.GetFeatures(),
		Ignore:   t.Ignore,
		Classes:  spec.GetClasses(),
	})
	if err != nil {
		if errors.Is(err, dataset.ErrSchema) || errors.Is(err, dataset.ErrUnknownLabel) {
			return dataset.Stats{}, fmt.Errorf("%w: %w", ErrIncompatible, err)
		}
		return dataset.Stats{}, fmt.Errorf("participant: read %s: %w", t.DataFile, err)
	}
	if !slices.Equal(tbl.Features, spec.GetFeatures()) {
		return dataset.Stats{}, fmt.Errorf("%w: %s has features %q, the federation wants %q", ErrIncompatible, t.DataFile, tbl.Features, spec.GetFeatures())
	}
	y, err := tbl.Encode(spec.GetClasses())
	if err != nil {
		return dataset.Stats{}, fmt.Errorf("%w: %w", ErrIncompatible, err)
	}
	trainIdx, testIdx := stratify(y, len(spec.GetClasses()), holdout, rand.New(rand.NewPCG(t.Seed, 0x686f6c646f7574))) // "holdout"
	if len(trainIdx) == 0 {
		return dataset.Stats{}, fmt.Errorf("%w: %s leaves no training row after the holdout", ErrIncompatible, t.DataFile)
	}
	train, test := tbl.Subset(trainIdx), tbl.Subset(testIdx)

	t.mu.Lock()
	defer t.mu.Unlock()
	t.spec = s
	t.train, t.test = train, test
	t.trainY, t.testY = pick(y, trainIdx), pick(y, testIdx)
	t.scaling, t.strain, t.stest = dataset.Scaling{}, nil, nil
	t.data = &lineage.Description{FileSHA256: fileSum, Columns: append(slices.Clone(tbl.Features), spec.GetLabel()), Rows: slices.Sorted(slices.Values(trainIdx))}
	t.rows = tbl.Len()
	return train.Stats(), nil
}

// stratify splits the row indices so that each class keeps about the same
// share of holdout rows: round(holdout × class size), at least one when the
// class has two rows or more and holdout > 0, never the whole class.
// Indices come back in ascending order.
func stratify(y []int, classes int, holdout float64, rng *rand.Rand) (train, test []int) {
	byClass := make([][]int, classes)
	for i, c := range y {
		byClass[c] = append(byClass[c], i)
	}
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		k := int(math.Round(holdout * float64(len(idx))))
		if holdout > 0 && k == 0 && len(idx) >= 2 {
			k = 1
		}
		k = min(k, len(idx)-1)
		k = max(k, 0)
		test = append(test, idx[:k]...)
		train = append(train, idx[k:]...)
	}
	slices.Sort(train)
	slices.Sort(test)
	return train, test
}

func pick(y, idx []int) []int {
	out := make([]int, len(idx))
	for i, j := range idx {
		out[i] = y[j]
	}
	return out
}

// scaled returns the training and holdout tables standardized with sc,
// computing them only when sc differs from the last one.
func (t *LocalTrainer) scaled(sc dataset.Scaling) (train, test *dataset.Table, err error) {
	if t.strain != nil && slices.Equal(t.scaling.Mean, sc.Mean) && slices.Equal(t.scaling.Std, sc.Std) {
		return t.strain, t.stest, nil
	}
	train, test = clone(t.train), clone(t.test)
	if err := train.Standardize(sc); err != nil {
		return nil, nil, fmt.Errorf("participant: standardize: %w", err)
	}
	if err := test.Standardize(sc); err != nil {
		return nil, nil, fmt.Errorf("participant: standardize: %w", err)
	}
	t.scaling = dataset.Scaling{Mean: slices.Clone(sc.Mean), Std: slices.Clone(sc.Std)}
	t.strain, t.stest = train, test
	return train, test, nil
}

func clone(tbl *dataset.Table) *dataset.Table {
	x := make([][]float64, len(tbl.X))
	for i, row := range tbl.X {
		x[i] = slices.Clone(row)
	}
	return &dataset.Table{Features: tbl.Features, X: x, Labels: tbl.Labels}
}

// roundSeed derives the two PCG seeds of a round from the trainer's seed,
// the assignment's seed and the round, so that neither party alone picks
// the shuffling and every round shuffles differently.
func roundSeed(seed, asgSeed, round uint64) (uint64, uint64) {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], seed)
	binary.LittleEndian.PutUint64(b[8:], asgSeed)
	binary.LittleEndian.PutUint64(b[16:], round)
	h := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(h[0:]), binary.LittleEndian.Uint64(h[8:])
}

// RoundRand returns the rng that shuffles the local rows of one round: a
// PCG seeded from the trainer's seed, the assignment's seed and the round by
// SHA-256 (see [LocalTrainer]). The simulator derives its clients' rngs
// with it too, from the client, the simulation's seed and the round.
func RoundRand(seed, asgSeed, round uint64) *rand.Rand {
	s1, s2 := roundSeed(seed, asgSeed, round)
	return rand.New(rand.NewPCG(s1, s2))
}

// TrainUpdate is one participant's local training: it trains spec from
// start on the rows (x, y) with plan, shuffling with rng, and returns the
// update trained − start. It does not modify start. [LocalTrainer] and the
// simulator both train through it. Errors are those of [model.Train]
// (including [model.ErrDiverged]) and a start of the wrong length.
func TrainUpdate(spec model.Spec, start []float32, x [][]float64, y []int, plan model.Plan, rng *rand.Rand) ([]float32, error) {
	if len(start) != spec.NumParams() {
		return nil, fmt.Errorf("participant: starting model has %d parameters, want %d", len(start), spec.NumParams())
	}
	trained, err := model.Train(spec, start, x, y, plan, rng)
	if err != nil {
		return nil, fmt.Errorf("participant: local training: %w", err)
	}
	if len(trained) != len(start) {
		return nil, fmt.Errorf("participant: training returned %d parameters, want %d", len(trained), len(start))
	}
	for i := range trained {
		trained[i] -= start[i]
	}
	return trained, nil
}

// TrainUpdateDP is TrainUpdate with DP-SGD ([model.TrainDP]) in place of
// plain SGD; the simulator trains its DP clients through it too.
func TrainUpdateDP(spec model.Spec, start []float32, x [][]float64, y []int, plan model.Plan, dp model.DP) ([]float32, error) {
	if len(start) != spec.NumParams() {
		return nil, fmt.Errorf("participant: starting model has %d parameters, want %d", len(start), spec.NumParams())
	}
	trained, err := model.TrainDP(spec, start, x, y, plan, dp)
	if err != nil {
		return nil, fmt.Errorf("participant: local training (DP-SGD): %w", err)
	}
	for i := range trained {
		trained[i] -= start[i]
	}
	return trained, nil
}

// Train evaluates start on the holdout rows, trains from it on the training
// rows and returns the difference. It does not modify start.
func (t *LocalTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.train == nil {
		return Result{}, errors.New("participant: Train called before Prepare")
	}
	if len(start) != t.spec.NumParams() {
		return Result{}, fmt.Errorf("participant: starting model has %d parameters, want %d", len(start), t.spec.NumParams())
	}
	p := a.GetPlan()
	if p == nil {
		return Result{}, errors.New("participant: assignment has no training plan")
	}
	sc, err := wire.ScalingFromProto(a.GetScaling(), t.spec.Features)
	if err != nil {
		return Result{}, err
	}
	train, test, err := t.scaled(sc)
	if err != nil {
		return Result{}, err
	}
	var res Result
	if len(t.testY) > 0 {
		if res.Holdout, err = model.Evaluate(t.spec, start, test.X, t.testY); err != nil {
			return Result{}, fmt.Errorf("participant: evaluate starting model: %w", err)
		}
	}
	plan := planOf(a)
	var delta []float32
	if t.DP != nil {
		if err := t.DP.Validate(); err != nil {
			return Result{}, err
		}
		delta, err = TrainUpdateDP(t.spec, start, train.X, t.trainY, plan, t.DP.dp(plan, len(t.trainY)))
	} else {
		delta, err = TrainUpdate(t.spec, start, train.X, t.trainY, plan, RoundRand(t.Seed, a.GetSeed(), a.GetRound()))
	}
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if t.Momentum > 0 {
		t.mom.Beta, t.mom.Style = t.Momentum, t.MomentumStyle
		if err := t.mom.Validate(); err != nil {
			return Result{}, fmt.Errorf("participant: %w", err)
		}
		t.mom.Step(delta)
	}
	res.Delta = delta
	res.Samples = uint64(len(t.trainY))
	return res, nil
}
