package simulation

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// Preset is a set-up that mirrors a paper's experiment: the base options
// and the grid of attacks and rules the paper reports. docs/reproductions.md
// sets each preset's numbers beside the paper's.
type Preset struct {
	// Name selects the preset (`fedguard simulate --preset NAME`).
	Name string
	// Paper and Source say what is mirrored and where each
	// hyper-parameter comes from.
	Paper, Source string
	// Options are the base options; a single run takes Attacks[0] and
	// Rules[0] unless told otherwise.
	Options Options
	// Attacks and Rules are the preset's grid.
	Attacks []attack.Config
	Rules   []aggregation.Config
}

// Karimireddy et al. 2022's MNIST set-up, as their code runs it
// (epfml/byzantine-robust-noniid-optimizer at 0e27349):
//
//   - n = 25, f = 5, non-IID: run.sh run_exp3 (-n 25 -f 5 --noniid); the
//     honest workers' rows sorted by label and cut into contiguous shards,
//     the Byzantine workers' IID (utils.py get_sampler_callback,
//     codes/sampler.py NONIIDLTSampler with alpha False, beta 1);
//   - 600 iterations of one mini-batch of 32 rows per worker (exp3.py:
//     EPOCHS = 20 × MAX_BATCHES_PER_EPOCH = 30; utils.py BATCH_SIZE = 32),
//     evaluated every 30 iterations (once per "epoch");
//   - SGD learning rate 0.01 on the server (utils.py LR), worker momentum
//     β = 0.9 or 0 (run.sh: --momentum 0 0.9) as PyTorch's heavy-ball
//     buffer (codes/worker.py MomentumWorker);
//   - ALIE with the code's z (codes/attacks/alittle.py:
//     Φ⁻¹((n−f−s)/(n−f)), attack.ZRuleBucketing, computed from the run's
//     n and f, 0.2533 for 25 and 5) and IPM with ε = 0.1 (utils.py
//     initialize_worker), both over the honest workers' momenta only.
//     Their ALIE sends μ − z·σ of the momenta of gradients (alittle.py
//     omniscient_callback: mu - std * z_max); the simulator's clients
//     send updates, −lr times those momenta, where that vector is
//     μ + z·σ: hence attack.ZSignGradients. With the sign of updates
//     instead, ALIE costs CM nothing here (docs/reproductions.md, "The
//     ALIE gap");
//   - CM, Krum (m = 1, over ⌈n/s⌉ inputs), CClip (τ = 10 on gradients, 3
//     iterations, centered on the previous aggregate: utils.py
//     _get_aggregator, --clip-tau default 10, codes/aggregator/clipping.py),
//     RFA (T = 8, ν = 0.1, uniform weights, from zero: utils.py
//     _get_aggregator, codes/aggregator/rfa.py), each with and without
//     bucketing s = 2.
//
// The simulator's updates are −lr·(momentum of gradients), so τ becomes
// lr·τ = 0.1 and ν becomes lr·ν = 0.001 in update space (with ν scaled
// too, RFA commutes with the scaling). The MLP starts as PyTorch's
// nn.Linear does, U(±1/√fan_in) for weights and biases (InitTorch): their
// code keeps PyTorch's default, and TestPresetMatchesAuthorsCode runs it
// from this start; --init glorot gives the simulator's own start. What
// differs: the model (their Net is a 2-conv CNN, codes/tasks/mnist.py;
// this is the simulator's MLP 784-64-10) and the batch draw (theirs walks
// a shuffled shard without replacement per epoch; this draws each
// round's batch afresh).
func karimireddy2022(name string, beta float64) Preset {
	const lr = 0.01
	o := Options{
		Dataset: DatasetMNIST, Model: "mlp", Hidden: []int{DefaultHiddenMNIST},
		Clients: 25, Byzantine: 5, Partition: "sorted", PartitionHonest: true,
		Rounds: 600, LocalSteps: 1, BatchSize: 32, LearningRate: lr,
		WorkerMomentum: beta, MomentumStyle: MomentumHeavyBall,
		ClippingCenter: CenterPrevious, EvalEvery: 30, Seed: 1, Preset: name,
		Init: InitTorch,
	}
	attacks := []attack.Config{
		// z from the run's n and f, by the code's formula, in gradient space.
		{Name: attack.NameALIE, ZRule: attack.ZRuleBucketing, ZSign: attack.ZSignGradients, HonestStats: true},
		{Name: attack.NameIPM, Epsilon: 0.1, HonestStats: true},
	}
	var rules []aggregation.Config
	for _, s := range []int{0, 2} {
		for _, r := range []aggregation.Config{
			{Rule: aggregation.NameMedian},
			{Rule: aggregation.NameKrum, F: o.Byzantine},
			{Rule: aggregation.NameCenteredClipping, Tau: 10 * lr, Iterations: 3},
			{Rule: aggregation.NameRFA, Iterations: 8, Nu: 0.1 * lr, Start: aggregation.RFAStartZero, MaxSamples: 1},
		} {
			r.Bucket = s
			rules = append(rules, r)
		}
	}
	return Preset{
		Name:  name,
		Paper: "Karimireddy, He, Jaggi, Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing, ICLR 2022: MNIST, non-IID, n = 25, f = 5",
		Source: "github.com/epfml/byzantine-robust-noniid-optimizer (commit 0e27349): run.sh run_exp3, exp3.py, utils.py, " +
			"codes/worker.py, codes/aggregator/clipping.py, codes/attacks/alittle.py and xie.py",
		Options: o, Attacks: attacks, Rules: rules,
	}
}

// Baruch et al. 2019's MNIST set-up as its authors' code runs it
// (github.com/moranant/attacking_distributed_learning, main.py, its
// command-line defaults): n = 51 users of which int(0.24·51) = 12
// Byzantine (-m 0.24, -n 51), IID shards (user.py: DistributedSampler),
// the MLP 784-100-10 (data_sets.py MnistNet), 300 rounds of one
// mini-batch of 128 rows per user (-e 300, -c 128), learning rate 0.1
// (-l 0.1; its 1/(1 + t/10000) fading, ≤ 3 % over 300 rounds, is not
// mirrored), raw gradients from the users and server momentum 0.9 as
// v ← 0.9·v − lr·g (server.py Server.defend), evaluated every 5 rounds
// (TEST_STEP = 5; "Max accuracy" is what it prints), ALIE with z = 1.5
// (-z default 1.5), against no defence, trimmed mean, Krum and Bulyan.
// Their ALIE (malicious.py DriftAttack, as copied in
// shaneson0/attacking_federate_learning; main.py calls it) takes μ and σ
// over the malicious users' own gradients (OwnOnly) and sends μ − z·σ of
// gradients, which is μ + z·σ of the updates the simulator's clients
// send: hence z = 1.5 with attack.ZSignGradients (their z is a fixed
// flag, not derived from n and f; their σ divides by m, package attack's
// by m − 1: a factor √(12/11) ≈ 1.04 on σ).
// Their trimmed mean averages the n−f−1 values closest to the median
// (defences.py, as copied in shaneson0/attacking_federate_learning);
// package aggregation's is Yin et al.'s, β = f/n at each end.
// Their code is PyTorch too, but MnistNet does not keep PyTorch's start:
// it draws fc1's weights Xavier-uniform, U(±√(6/884)) = ±0.082, and keeps
// nn.Linear's default for fc1's biases and fc2 (U(±1/√fan_in)). Neither
// of the simulator's starts is that (glorot: fc1 ±0.087, fc2 ±0.234,
// zero biases; pytorch: fc1 ±0.036), so the preset keeps the default.
func baruch2019(name string) Preset {
	const n, f = 51, 12
	o := Options{
		Dataset: DatasetMNIST, Model: "mlp", Hidden: []int{100},
		Clients: n, Byzantine: f, Partition: "iid",
		Rounds: 300, LocalSteps: 1, BatchSize: 128, LearningRate: 0.1,
		ServerMomentum: 0.9, MomentumStyle: MomentumHeavyBall, EvalEvery: 5, Seed: 1, Preset: name,
	}
	return Preset{
		Name:    name,
		Paper:   "Baruch, Baruch, Goldberg, A Little Is Enough: Circumventing Defenses For Distributed Learning, NeurIPS 2019: MNIST, n = 51, f = 12",
		Source:  "github.com/moranant/attacking_distributed_learning (commit ed79e98): main.py, server.py, user.py, data_sets.py",
		Options: o,
		Attacks: []attack.Config{{Name: attack.NameNone}, {Name: attack.NameALIE, Z: 1.5, ZSign: attack.ZSignGradients, OwnOnly: true}},
		Rules: []aggregation.Config{
			{Rule: aggregation.NameFedAvg},
			{Rule: aggregation.NameTrimmedMean, F: f, Beta: float64(f) / n},
			{Rule: aggregation.NameKrum, F: f},
			{Rule: aggregation.NameBulyan, F: f},
		},
	}
}

// Presets are the set-ups `fedguard simulate --preset` knows, by name.
var Presets = map[string]Preset{}

func init() {
	for _, p := range []Preset{
		karimireddy2022("karimireddy2022-mnist", 0.9),
		karimireddy2022("karimireddy2022-mnist-m0", 0),
		baruch2019("baruch2019-mnist"),
	} {
		Presets[p.Name] = p
	}
}

// PresetNames are the presets' names, sorted.
func PresetNames() []string {
	var names []string
	for n := range Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// LookupPreset returns the preset called name; the error wraps ErrOptions.
func LookupPreset(name string) (Preset, error) {
	p, ok := Presets[name]
	if !ok {
		return Preset{}, fmt.Errorf("%w: unknown preset %q (known: %s)", ErrOptions, name, strings.Join(PresetNames(), ", "))
	}
	p.Options.Hidden = slices.Clone(p.Options.Hidden)
	p.Attacks = slices.Clone(p.Attacks)
	p.Rules = slices.Clone(p.Rules)
	return p, nil
}
