package simulation

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/partition"
)

// Data sets the simulator knows.
const (
	DatasetMNIST = "mnist"
	DatasetWDBC  = "wdbc"
)

// Defaults of Options: a zero field means its default.
const (
	// DefaultDataset is the data set of the main case.
	DefaultDataset = DatasetMNIST
	// DefaultModel is the model family.
	DefaultModel = "mlp"
	// DefaultHiddenMNIST and DefaultHiddenWDBC are the MLP's one hidden
	// layer: 784-64-10 on MNIST, 30-16-2 on WDBC.
	DefaultHiddenMNIST = 64
	DefaultHiddenWDBC  = 16
	// DefaultClients is the number of simulated participants.
	DefaultClients = 25
	// DefaultPartition deals the rows out uniformly at random.
	DefaultPartition = "iid"
	// DefaultRounds is the number of federated rounds.
	DefaultRounds = 30
	// DefaultLocalEpochs is the clients' passes over their rows per round.
	DefaultLocalEpochs = 1
	// DefaultLearningRate and DefaultBatchSize are the clients' SGD step
	// size and batch: with 25 IID clients and FedAvg they take the MLP
	// 784-64-10 to 96.7 % MNIST test accuracy in 30 rounds (0.1 reached
	// only 95.4 %; 0.5 reaches 97.5 % but leaves less margin against
	// attacks that enlarge updates).
	DefaultLearningRate = 0.2
	DefaultBatchSize    = 32
	// DefaultTestFraction is the share of WDBC rows held out for testing
	// (stratified). MNIST has its own test set.
	DefaultTestFraction = 0.2
)

// ErrOptions marks options Run or Grid refuse before simulating anything:
// an unknown data set, model, attack, rule or partition, a parameter out of
// range, or a rule whose preconditions the federation does not meet. The
// error also wraps the cause (attack.ErrUnknown, aggregation.ErrCohort, …).
var ErrOptions = errors.New("simulation: invalid options")

// Options.Init values.
const (
	InitGlorot = "glorot"
	InitTorch  = "pytorch"
)

// Options.BatchOrder values: how a client with LocalSteps > 0 picks its
// mini-batches from round to round. A convention switch for comparing with
// papers' PyTorch code; see batches and epochBatches.
const (
	// BatchFresh draws each round's mini-batches afresh from all of the
	// client's rows (without replacement within the round): every round's
	// batch is a uniform sample, independent of the last rounds'. The
	// default ("" is it).
	BatchFresh = "fresh"
	// BatchEpoch walks a shuffled copy of the client's rows without
	// replacement, batch after batch, and reshuffles when fewer than a
	// batch remain (the last partial batch dropped): a PyTorch
	// DataLoader over a shuffling sampler with drop_last, which is how
	// the bucketing paper's code feeds its workers
	// (epfml/byzantine-robust-noniid-optimizer, codes/worker.py
	// TorchWorker.compute_gradient; codes/sampler.py NONIIDLTSampler;
	// utils.py initialize_worker, drop_last=True). "epoch:K" also
	// restarts the walk, reshuffled, every K batches, as their trainer
	// does every MAX_BATCHES_PER_EPOCH = 30 iterations (codes/simulator.py
	// ParallelTrainer.train calls train_epoch_start, a fresh iterator, at
	// the start of each of its "epochs"; exp3.py).
	BatchEpoch = "epoch"
)

// Options configure a simulation. The JSON names are those of result.json.
type Options struct {
	// Dataset is "mnist" or "wdbc" ("" is DefaultDataset).
	Dataset string `json:"dataset"`
	// Model is "logreg" or "mlp" ("" is DefaultModel).
	Model string `json:"model"`
	// Hidden are the MLP's hidden layer widths (nil: DefaultHiddenMNIST
	// or DefaultHiddenWDBC); a logreg takes none.
	Hidden []int `json:"hidden,omitempty"`
	// Clients is the number of participants (0: DefaultClients), Byzantine
	// how many of them attack; they are chosen at random with the seed.
	Clients   int `json:"clients"`
	Byzantine int `json:"byzantine"`
	// Attack is what the Byzantine clients do (Name "" is none).
	Attack attack.Config `json:"attack"`
	// Aggregation is the rule, its parameters and pre-steps, used as
	// given: aggregation.Defaults fills the parameters of a rule name.
	Aggregation aggregation.Config `json:"aggregation"`
	// Partition splits the training rows among the clients: "iid",
	// "dirichlet:ALPHA" or "sorted" ("" is DefaultPartition).
	Partition string `json:"partition"`
	// PartitionHonest splits the rows by Partition among the honest
	// clients only, and gives the Byzantine ones IID shares, as the
	// bucketing paper's code does (epfml/byzantine-robust-noniid-optimizer,
	// utils.py, get_sampler_callback): with "sorted" and all clients in the
	// split, the Byzantine clients' label-sorted shares would be classes
	// no honest client holds.
	PartitionHonest bool `json:"partition_honest,omitempty"`
	// Rounds of federated training (0: DefaultRounds).
	Rounds int `json:"rounds"`
	// LocalEpochs, LearningRate, BatchSize and L2 are every client's
	// training plan (0: the Default constants; L2 0 is none).
	LocalEpochs  int     `json:"local_epochs"`
	LearningRate float64 `json:"learning_rate"`
	BatchSize    int     `json:"batch_size"`
	L2           float64 `json:"l2,omitempty"`
	// LocalSteps, when positive, replaces LocalEpochs: each round every
	// client takes LocalSteps SGD steps on mini-batches of BatchSize rows
	// drawn without replacement from its rows (the papers' set-up, where a
	// worker sends one stochastic gradient per round). 0: LocalEpochs full
	// passes.
	LocalSteps int `json:"local_steps,omitempty"`
	// Init is how an MLP's parameters start: InitGlorot ("" too: He
	// uniform for hidden layers, Glorot for the output, zero biases;
	// model.Init) or InitTorch (PyTorch nn.Linear's default, U(±1/√fan_in)
	// for weights and biases; model.InitTorch), a convention switch for
	// comparing with papers' PyTorch code.
	Init string `json:"init,omitempty"`
	// BatchOrder is how LocalSteps mini-batches are picked across rounds:
	// BatchFresh ("" too) or BatchEpoch, "epoch" or "epoch:K" (see the
	// constants). Ignored without LocalSteps.
	BatchOrder string `json:"batch_order,omitempty"`
	// WorkerMomentum is β of every client's momentum, kept across rounds:
	// a client sends its momentum instead of its fresh update (see
	// MomentumStyle). 0 is none.
	WorkerMomentum float64 `json:"worker_momentum,omitempty"`
	// ServerMomentum is the server's β: the global model moves by the
	// server's momentum of the aggregates (MomentumStyle's recursion)
	// instead of the aggregate. 0 is none.
	ServerMomentum float64 `json:"server_momentum,omitempty"`
	// MomentumStyle is MomentumEMA or MomentumHeavyBall ("" is
	// MomentumEMA when a momentum is set). Set with both momenta 0, the
	// recursions run with β = 0 and reproduce the runs without momentum
	// bit for bit.
	MomentumStyle string `json:"momentum_style,omitempty"`
	// ClippingCenter is where centered clipping starts each round:
	// CenterMedian (the production rule, stateless; "" is it) or
	// CenterPrevious (the previous aggregate, its authors' definition).
	ClippingCenter string `json:"clipping_center,omitempty"`
	// EvalEvery evaluates the global model every EvalEvery rounds and
	// after the last (0 or 1: every round). Rounds not evaluated are left
	// out of Result.Rounds.
	EvalEvery int `json:"eval_every,omitempty"`
	// Preset is the name of the preset these options came from, if any.
	Preset string `json:"preset,omitempty"`
	// Seed determines everything random: the data split, the partition,
	// the Byzantine clients, the initial model, the local shuffling, the
	// attacks' and the rule's randomness.
	Seed uint64 `json:"seed"`
	// DPEpsilon, when > 0, makes every honest client train with DP-SGD
	// (participant.TrainUpdateDP) at the noise multiplier that gives each
	// client record-level (DPEpsilon, DPDelta)-DP over all the rounds
	// (privacy.SigmaFor, at the client's sampling rate batch/rows).
	// DPNoiseMultiplier sets σ directly instead. DPClipNorm is the
	// clipping norm C (default 1). The noise comes from a generator seeded
	// from the seed, so a simulation stays reproducible (a hospital's
	// agent seeds it from crypto/rand).
	DPEpsilon         float64 `json:"dp_epsilon,omitempty"`
	DPDelta           float64 `json:"dp_delta,omitempty"`
	DPNoiseMultiplier float64 `json:"dp_noise_multiplier,omitempty"`
	DPClipNorm        float64 `json:"dp_clip_norm,omitempty"`
	// Secure runs the secure + robust mode the coordinator runs with
	// "secure": true (see secure.go): the clients' updates are clipped to
	// Aggregation.NormClip, quantized as SecAgg encodes them and summed
	// per bucket of the production split (Aggregation.Bucket is the
	// bucket size S, 0 or 1 one bucket), and the rule, without its
	// pre-steps, sees only the bucket means. SecureClip is SecAgg's
	// coordinate clip (0: DefaultSecureClip, the coordinator's default).
	Secure     bool    `json:"secure,omitempty"`
	SecureClip float64 `json:"secure_clip,omitempty"`
	// DPMechanism "distributed-discrete-gaussian" (MechanismDDP) makes the
	// DP budget the federation's, spent by noise the clients add inside
	// secure aggregation, instead of each client's DP-SGD (see ddp.go);
	// "central-gaussian" (MechanismCentral) spends it by noise the
	// coordinator adds to the mean of the clipped updates (central.go).
	DPMechanism string `json:"dp_mechanism,omitempty"`
	// MNISTDir is the folder of the MNIST IDX files ("" finds them in the
	// module cache).
	MNISTDir string `json:"-"`
	// Workers is the number of clients trained at once (0: GOMAXPROCS).
	// It does not change the results.
	Workers int `json:"-"`
}

// withDefaults returns o with its zero fields set to their defaults.
func (o Options) withDefaults() Options {
	o.Dataset = cmp.Or(o.Dataset, DefaultDataset)
	o.Model = cmp.Or(o.Model, DefaultModel)
	if o.Hidden == nil && strings.EqualFold(strings.TrimSpace(o.Model), "mlp") {
		switch o.Dataset {
		case DatasetWDBC:
			o.Hidden = []int{DefaultHiddenWDBC}
		default:
			o.Hidden = []int{DefaultHiddenMNIST}
		}
	}
	o.Hidden = slices.Clone(o.Hidden)
	o.Clients = cmp.Or(o.Clients, DefaultClients)
	o.Attack.Name = cmp.Or(o.Attack.Name, attack.NameNone)
	o.Aggregation.Rule = cmp.Or(o.Aggregation.Rule, aggregation.NameFedAvg)
	o.Partition = cmp.Or(o.Partition, DefaultPartition)
	o.Rounds = cmp.Or(o.Rounds, DefaultRounds)
	o.LocalEpochs = cmp.Or(o.LocalEpochs, DefaultLocalEpochs)
	o.LearningRate = cmp.Or(o.LearningRate, DefaultLearningRate)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MomentumStyle == "" && (o.WorkerMomentum != 0 || o.ServerMomentum != 0) {
		o.MomentumStyle = MomentumEMA
	}
	return o
}

// shape is what validation needs to know of the data set.
type shape struct{ features, classes int }

func datasetShape(name string) (shape, error) {
	switch name {
	case DatasetMNIST:
		return shape{features: 28 * 28, classes: 10}, nil
	case DatasetWDBC:
		return shape{features: 30, classes: 2}, nil
	}
	return shape{}, fmt.Errorf("unknown dataset %q (known: %s, %s)", name, DatasetMNIST, DatasetWDBC)
}

// checked is a validated Options with what validation built.
type checked struct {
	o      Options // with defaults
	spec   model.Spec
	plan   model.Plan
	scheme partition.Scheme
	order  batchOrder
	attack attack.Attack
	rule   aggregation.Rule
	// ruleConfig is the configuration rule was built from: o.Aggregation,
	// or in a secure run the rule over bucket means.
	ruleConfig aggregation.Config
}

// check fills in the defaults and validates o without loading any data.
// Errors wrap ErrOptions.
func check(o Options) (*checked, error) {
	o = o.withDefaults()
	bad := func(err error) (*checked, error) {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	sh, err := datasetShape(o.Dataset)
	if err != nil {
		return bad(err)
	}
	kind, err := model.ParseKind(o.Model)
	if err != nil {
		return bad(err)
	}
	spec := model.Spec{Kind: kind, Features: sh.features, Classes: sh.classes}
	if kind == model.MLP {
		spec.Hidden = o.Hidden
	} else if len(o.Hidden) > 0 {
		return bad(fmt.Errorf("a logreg model takes no hidden layers (got %v)", o.Hidden))
	}
	if err := spec.Validate(); err != nil {
		return bad(err)
	}
	plan := model.Plan{Epochs: o.LocalEpochs, LearningRate: o.LearningRate, BatchSize: o.BatchSize, L2: o.L2}
	if err := plan.Validate(); err != nil {
		return bad(err)
	}
	switch {
	case o.Clients < 1:
		return bad(fmt.Errorf("clients %d, want at least 1", o.Clients))
	case o.Byzantine < 0 || o.Byzantine >= o.Clients:
		return bad(fmt.Errorf("byzantine %d, want between 0 and clients−1 = %d", o.Byzantine, o.Clients-1))
	case o.Rounds < 1:
		return bad(fmt.Errorf("rounds %d, want at least 1", o.Rounds))
	case o.Workers < 1:
		return bad(fmt.Errorf("workers %d, want at least 1 (0: GOMAXPROCS)", o.Workers))
	case o.Init != "" && o.Init != InitGlorot && o.Init != InitTorch:
		return bad(fmt.Errorf("init %q, want %s or %s", o.Init, InitGlorot, InitTorch))
	case o.LocalSteps < 0:
		return bad(fmt.Errorf("local steps %d, want at least 0 (0: local epochs)", o.LocalSteps))
	case o.BatchOrder != "" && o.LocalSteps == 0:
		return bad(fmt.Errorf("batch order %q needs local steps (rounds of mini-batches); local epochs walk all rows", o.BatchOrder))
	case !(o.WorkerMomentum >= 0 && o.WorkerMomentum < 1):
		return bad(fmt.Errorf("worker momentum %v, want β in [0, 1)", o.WorkerMomentum))
	case !(o.ServerMomentum >= 0 && o.ServerMomentum < 1):
		return bad(fmt.Errorf("server momentum %v, want β in [0, 1)", o.ServerMomentum))
	case !(o.DPEpsilon >= 0) || !(o.DPNoiseMultiplier >= 0) || !(o.DPClipNorm >= 0) || !(o.DPDelta >= 0 && o.DPDelta < 1):
		return bad(fmt.Errorf("dp: ε %v, δ %v, σ %v, C %v: want ε, σ, C >= 0 and δ in [0, 1)", o.DPEpsilon, o.DPDelta, o.DPNoiseMultiplier, o.DPClipNorm))
	case o.DPEpsilon > 0 && o.DPNoiseMultiplier > 0:
		return bad(errors.New("dp: give the budget ε or the noise multiplier σ, not both"))
	case (o.DPEpsilon > 0 || o.DPNoiseMultiplier > 0) && o.LocalSteps > 0 && o.DPMechanism == "":
		return bad(errors.New("dp: DP-SGD trains by epochs: local steps are not supported"))
	case o.EvalEvery < 0:
		return bad(fmt.Errorf("eval every %d, want at least 0", o.EvalEvery))
	}
	if err := o.checkDPMechanism(); err != nil {
		return bad(err)
	}
	switch o.MomentumStyle {
	case "", MomentumEMA, MomentumHeavyBall:
	default:
		return bad(fmt.Errorf("momentum style %q, want %s or %s", o.MomentumStyle, MomentumEMA, MomentumHeavyBall))
	}
	switch o.ClippingCenter {
	case "", CenterMedian, CenterPrevious: // other rules than centered clipping ignore it
	default:
		return bad(fmt.Errorf("clipping center %q, want %s or %s", o.ClippingCenter, CenterMedian, CenterPrevious))
	}
	order, err := parseBatchOrder(o.BatchOrder)
	if err != nil {
		return bad(err)
	}
	scheme, err := partition.Parse(o.Partition)
	if err != nil {
		return bad(err)
	}
	atk, err := attack.New(o.Attack, sh.features)
	if err != nil {
		return bad(err)
	}
	if o.Attack.Name != attack.NameNone && o.Byzantine == 0 {
		return bad(fmt.Errorf("attack %s needs at least one Byzantine client", o.Attack.Name))
	}
	if bd, ok := atk.(attack.Backdoor); ok && (bd.Target() < 0 || bd.Target() >= sh.classes) {
		return bad(fmt.Errorf("attack %s: target class %d, want between 0 and %d", o.Attack.Name, bd.Target(), sh.classes-1))
	}
	ruleConfig, inputs, what := o.Aggregation, o.Clients, "clients"
	if o.Secure {
		if !(o.SecureClip >= 0) {
			return bad(fmt.Errorf("secure clip %v, want a number ≥ 0 (0: %v)", o.SecureClip, DefaultSecureClip))
		}
		ruleConfig, inputs, what = secureRuleConfig(o.Aggregation), SecureBuckets(o.Clients, o.Aggregation.Bucket), "secure buckets"
	}
	if err := ruleConfig.CheckCohort(inputs); err != nil {
		return bad(fmt.Errorf("%d %s: %w", inputs, what, err))
	}
	rule, err := aggregation.New(ruleConfig)
	if err != nil {
		return bad(err)
	}
	return &checked{o: o, spec: spec, plan: plan, scheme: scheme, order: order, attack: atk, rule: rule, ruleConfig: ruleConfig}, nil
}

// dpDeltaClip is the run's δ and ℓ2 clipping norm, with the defaults every
// mechanism shares: the hospital's default δ (participant.DefaultDPDelta)
// and a clip of 1.
func (o Options) dpDeltaClip() (delta, clip float64) {
	delta, clip = o.DPDelta, o.DPClipNorm
	delta = cmp.Or(delta, participant.DefaultDPDelta)
	clip = cmp.Or(clip, 1)
	return delta, clip
}
