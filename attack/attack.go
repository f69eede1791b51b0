// Package attack crafts the updates of Byzantine participants for the
// simulator: model poisoning (the attacker sends a crafted vector) and data
// poisoning (the attacker trains, through the real training path, on rows it
// changed). Attacks are plain functions over vectors, like the rules in
// package aggregation that they are measured against.
//
// # Setting
//
// In a round, N participants send updates (trained model minus the round's
// starting model; see aggregation.Update), F of them Byzantine. Every
// Byzantine participant first trains honestly (on its own rows, poisoned by
// Poison for data poisoning attacks): those are Round.Own. The simulator
// also gives the attackers the N−F honest updates, Round.Honest, unless
// Config.OwnOnly is set. Craft returns the F updates the Byzantine
// participants send instead of Own.
//
// The statistics-based attacks (alie, ipm, min-max, min-sum, fang-trim)
// compute their statistics over the benign updates the attackers know: the
// honest updates and their own honestly trained ones together (the
// "full-knowledge" setting of the papers, in which all n before-attack
// updates are known), or only Own when the attackers see no honest update
// (OwnOnly, the "partial-knowledge" setting). With OwnOnly, Craft ignores
// Round.Honest even when it is not empty. fang-krum, which simulates Krum
// over what the server will receive, plays its crafted updates against
// the honest updates, or against Own when it sees none.
//
// Notation: B is that benign set (m vectors b₁…b_m), μ its coordinate-wise
// mean and σ its coordinate-wise standard deviation with the m−1
// denominator (torch.std's default, which Shejwalkar & Houmansadr's code
// uses); σ = 0 when m = 1. Statistics are
// computed in float64 and the crafted updates rounded to float32, saturating
// at ±math.MaxFloat32, so Craft never returns a NaN or an infinity.
//
// # Attacks: the simple ones
//
//   - none: every Byzantine participant sends its own update unchanged
//     (a copy of Own). The baseline.
//   - sign-flip: Byzantine participant i sends −Own[i], the sign-flipping
//     attack of Li et al., "RSA: Byzantine-Robust Stochastic Aggregation
//     Methods for Distributed Learning from Heterogeneous Datasets" (AAAI
//     2019). Variants send −c·own with c > 1 (RSA has a magnitude
//     parameter) or −μ; this package sends the common −1·own, which needs
//     no knowledge of the other updates.
//   - gaussian: each Byzantine participant sends an independent vector of
//     N(0, σ²) coordinates, σ = Config.Sigma, by default DefaultSigma =
//     200, the "Gaussian Byzantine workers" of Blanchard et al., "Machine
//     Learning with Adversaries: Byzantine Tolerant Gradient Descent"
//     (NeurIPS 2017). The noise is centred on 0, not on the honest mean.
//     Draws come from Round.Rng (NormFloat64), attacker by attacker,
//     coordinate by coordinate.
//   - label-flip: data poisoning. Poison maps every label y in
//     [0, classes) to classes−1−y, the label flipping attack of Fang et
//     al. 2020 (below); Tolpegin et al., "Data Poisoning Attacks Against
//     Federated Learning Systems" (ESORICS 2020) flip one source class to
//     one target class instead. All the attacker's rows are flipped. Craft
//     returns Own, which the simulator trained on the flipped rows through
//     the real training path.
//   - ipm: Inner Product Manipulation, Xie et al., "Fall of Empires:
//     Breaking Byzantine-tolerant SGD by Inner Product Manipulation" (UAI
//     2019). Every Byzantine participant sends −ε·μ, ε = Config.Epsilon,
//     by default DefaultEpsilon = 0.1. The paper studies a small ε, which
//     keeps the Byzantine updates close enough to the honest ones for
//     Krum to select them, and a large one (e.g. 100), which drags every
//     coordinate of the mean-like and median-like aggregates to the other
//     side of 0; the default is the small, stealthier one.
//
// # Attacks: A Little Is Enough
//
// alie is from Baruch et al., "A Little Is Enough: Circumventing Defenses
// For Distributed Learning" (NeurIPS 2019). Every Byzantine participant
// sends
//
//	μ − z·σ
//
// with z = Config.Z or, by default, the paper's z_max for the round's n =
// N and f = F (see DefaultZ):
//
//	s = ⌊n/2 + 1⌋ − f        (supporters needed; taken as 1 when smaller)
//	z_max = Φ⁻¹((n − s)/n)   (Φ the standard normal CDF; 0 if negative)
//
// For n = 50, f = 10: s = 16 and z_max = Φ⁻¹(0.68) ≈ 0.4677. The paper
// shows that any value in (μ − zσ, μ + zσ) escapes detection and its
// analysis is symmetric in the sign; the common implementations send
// μ − z·σ, as this package does, and a negative Config.Z gives μ + |z|·σ.
// Those implementations exchange gradients, where μ − z·σ is μ + z·σ of
// the updates this package crafts; Config.ZSign = ZSignGradients sends
// that, with Config.Z or the default z for the round's n and f.
// s < 1 means a Byzantine majority, which the paper does not consider.
//
// # Attacks: min-max and min-sum
//
// min-max and min-sum are the AGR-agnostic attacks of Shejwalkar &
// Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning
// Attacks and Defenses for Federated Learning" (NDSS 2021). Every
// Byzantine participant sends μ + γ·p with the perturbation p chosen by
// Config.Perturbation:
//
//	std (default)  p = −σ       (+σ with Config.ZSign = ZSignGradients)
//	unit           p = −μ/‖μ‖   (0 when μ = 0)
//	sign           p = −sign(μ) (0 where μ_j = 0)
//
// Their code (vrt1shjwlkr/NDSS21-Model-Poisoning, our_attack_dist and
// our_attack_score in every notebook) exchanges gradients and sends
// μ − γ·∇p with ∇p the gradients' μ/‖μ‖, sign(μ) or σ. An update is −lr
// times a gradient, so for unit and sign that is μ + γ·p above in update
// space, but for std it is μ + γ·σ of the updates: the other direction
// from the default, which takes the paper's p = −σ in update space.
// ZSignGradients sends theirs, as it does for ALIE.
//
// and γ the largest value such that
//
//	min-max:  maxᵢ ‖μ + γp − bᵢ‖²  ≤  max_{i,j} ‖bᵢ − bⱼ‖²
//	min-sum:  Σᵢ ‖μ + γp − bᵢ‖²    ≤  maxⱼ Σᵢ ‖bⱼ − bᵢ‖²
//
// Both hold at γ = 0 (μ lies in the benign set's convex hull and minimises
// the sum of squares) and the left sides are convex quadratics in γ, so
// the γ ≥ 0 that satisfy them form an interval [0, γ*]. γ* is found as in
// the paper's Algorithm 1 by a search from γ_init = DefaultGammaInit (10,
// the value of their code): the bound is doubled while it satisfies the
// constraint, then the bracket is bisected until it is narrower than
// GammaTolerance (1e-5) relative to its upper end. Their loop uses an
// absolute τ = 1e-5 and never exceeds 2·γ_init; doubling and a relative τ
// give the maximal γ whatever the scale of the updates. The quadratics'
// coefficients are computed once, and the largest benign pairwise
// distance once (O(m²d)), so each search step is O(m). If p = 0 the
// attackers send μ.
//
// # Attacks: Fang et al.
//
// fang-krum and fang-trim are the full-knowledge attacks of Fang et al.,
// "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning"
// (USENIX Security 2020), written in update space (their local models
// minus the round's starting model w_Re). s is the sign vector of the
// direction in which the global model would change without attack,
// estimated as s = sign(μ).
//
// fang-krum (their attack on Krum): every Byzantine participant sends −λ·s
// (the paper's w'₁ = w_Re − λ·s; the paper lets the c−1 others lie in a
// small ball around w'₁, this package sends identical copies). Let K be
// the updates Krum will see besides the crafted ones (Honest, or Own when
// no honest update is visible), m = |K| + F, c = F and d the model's
// length. λ starts at the upper bound of their Theorem 1,
//
//	λ = 1/((m−2c−1)·√d) · min_{i∈K} Σ_{l∈Γᵢ} ‖bₗ − bᵢ‖ + 1/√d · max_{i∈K} ‖bᵢ‖
//
// with Γᵢ the m−c−2 updates of K nearest to bᵢ and m−2c−1 taken as at
// least 1, and is halved until Krum over the F crafted copies and K selects
// a crafted one, or until λ < FangThreshold (1e-5), in which case −λ·s
// with that last λ is sent. Krum is simulated as package aggregation
// computes it: scores sum the squared distances to the n−f−2 nearest
// other updates, with f = Round.Rule.F when set, else F. A crafted update
// must score strictly lower than every update of K, since the rule breaks
// ties by ID, which the attackers do not know. Some papers and
// implementations use n−f−1 neighbours; the pre-steps of Round.Rule
// (norm-clip, bucket) are not simulated.
//
// fang-trim (their attack on trimmed mean, also used against median): per
// coordinate j, with w_max,j and w_min,j the largest and smallest benign
// values and b = FangB = 2, each Byzantine participant draws its value
// uniformly, independently, between
//
//	s_j > 0, w_min,j > 0:  w_min,j/b and w_min,j
//	s_j > 0, w_min,j ≤ 0:  b·w_min,j and w_min,j
//	s_j < 0, w_max,j > 0:  w_max,j and b·w_max,j
//	s_j < 0, w_max,j ≤ 0:  w_max,j/b and w_max,j
//	s_j = 0:               μ_j (no direction to push against)
//
// so that every value lies beyond the benign extreme on the side opposite
// to s_j. When no honest update is visible (OwnOnly) the paper's
// partial-knowledge variant applies, with μ, σ and s over Own:
//
//	s_j > 0:  between μ_j − 4σ_j and μ_j − 3σ_j
//	s_j < 0:  between μ_j + 3σ_j and μ_j + 4σ_j
//
// One Rng.Float64 is drawn per attacker and coordinate, attacker by
// attacker.
//
// # Attacks: backdoor
//
// backdoor is the model replacement attack of Bagdasaryan et al., "How To
// Backdoor Federated Learning" (AISTATS 2020). Poison stamps the trigger
// on ⌈DefaultPoisonFraction·rows⌉ (half) of the attacker's rows, chosen
// uniformly by the rng, and relabels them Target (Config.Target, default
// class 0); the other rows stay clean, as the paper mixes backdoored and
// clean inputs to keep the main task accurate. Craft sends Scale·Own[i],
// with Scale = Config.Scale or, by default, N/F: the paper's replacement
// factor γ = n/η with fedguard's global learning rate η = 1, shared among
// the F attackers so that together they replace the mean. The trigger
// (Trigger) is, for rows of 784 features (MNIST's 28×28 pixels in [0, 1]),
// a 4×4 square of value 1 in the bottom-right corner (rows and columns
// 24–27); for other rows (standardized features), the last min(3,
// features) features set to TriggerValue (3.0).
//
// # Determinism
//
// Only gaussian, fang-trim and backdoor's Poison draw randomness, from the
// *rand.Rand they are given; everything else is a function of its inputs.
// Given the same inputs and a generator in the same state, every attack
// returns the same bits.
//
// # Errors
//
// New refuses an unknown name (ErrUnknown) and a parameter out of range or
// not used by the attack (ErrConfig). Craft refuses a round that does not
// hold together (ErrRound): negative counts, F > N, len(Own) ≠ F, more
// than N−F honest updates, vectors of different lengths, a NaN or infinity
// in an update, a nil Rng for an attack that draws. With F = 0 Craft
// returns an empty slice.
package attack

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/fedguard/fedguard/aggregation"
)

// Names of the attacks, as on the command line.
const (
	NameNone      = "none"
	NameSignFlip  = "sign-flip"
	NameGaussian  = "gaussian"
	NameLabelFlip = "label-flip"
	NameALIE      = "alie"
	NameIPM       = "ipm"
	NameMinMax    = "min-max"
	NameMinSum    = "min-sum"
	NameFangKrum  = "fang-krum"
	NameFangTrim  = "fang-trim"
	NameBackdoor  = "backdoor"
)

// Names lists every attack, in the order of the documentation.
var Names = []string{NameNone, NameSignFlip, NameGaussian, NameLabelFlip, NameALIE, NameIPM, NameMinMax, NameMinSum, NameFangKrum, NameFangTrim, NameBackdoor}

// Errors of New and Craft.
var (
	ErrUnknown = errors.New("attack: unknown attack")
	ErrConfig  = errors.New("attack: invalid parameters")
	ErrRound   = errors.New("attack: invalid round")
)

// Perturbations of min-max and min-sum (Config.Perturbation).
const (
	PerturbationStd  = "std"
	PerturbationUnit = "unit"
	PerturbationSign = "sign"
)

// Defaults and constants of the attacks; see the package documentation for
// their sources.
const (
	// DefaultSigma is gaussian's σ (Blanchard et al. 2017).
	DefaultSigma = 200.0
	// DefaultEpsilon is ipm's ε (Xie et al. 2019, small-ε variant).
	DefaultEpsilon = 0.1
	// DefaultPerturbation is min-max and min-sum's p.
	DefaultPerturbation = PerturbationStd
	// DefaultGammaInit is the first γ min-max and min-sum try
	// (Shejwalkar & Houmansadr 2021).
	DefaultGammaInit = 10.0
	// GammaTolerance is the relative width at which the γ search stops.
	GammaTolerance = 1e-5
	// FangB is fang-trim's b (Fang et al. 2020).
	FangB = 2.0
	// FangThreshold is the λ below which fang-krum stops halving.
	FangThreshold = 1e-5
	// DefaultPoisonFraction is the share of its rows a backdoor attacker
	// stamps with the trigger.
	DefaultPoisonFraction = 0.5
	// TriggerValue is the value the backdoor trigger writes into
	// standardized (non-image) rows.
	TriggerValue = 3.0
	// mnistFeatures is the row length that gets the image trigger.
	mnistFeatures = 28 * 28
)

// Config selects an attack and its parameters; zero values mean the
// documented defaults.
type Config struct {
	// Name is one of Names; empty means none.
	Name string `json:"name"`
	// Sigma is gaussian's standard deviation.
	Sigma float64 `json:"sigma,omitempty"`
	// Z is ALIE's z; 0 means the z_max of ZRule for n and f.
	Z float64 `json:"z,omitempty"`
	// ZRule is the formula of ALIE's default z: ZRuleBaruch ("" is it)
	// or ZRuleBucketing (see DefaultZFor).
	ZRule string `json:"z_rule,omitempty"`
	// ZSign is the space ALIE subtracts z·σ in: ZSignUpdates ("" is it),
	// μ − z·σ of the updates the participants send, or ZSignGradients,
	// μ − z·σ of gradients as the papers' code computes it, which is
	// μ + z·σ of the updates (an update is −lr times a gradient). It
	// applies to Z and to the default z alike, so a preset can mirror
	// the papers' code with the z derived from the run's own n and f.
	// min-max and min-sum take it too, for the space their μ − γ·∇p is
	// taken in: with ZSignGradients the perturbation std is +σ of the
	// updates, as Shejwalkar & Houmansadr's code (which exchanges
	// gradients) sends it; unit and sign are the same in both spaces.
	ZSign string `json:"z_sign,omitempty"`
	// HonestStats computes the statistics-based attacks' μ and σ over the
	// honest updates only, not over the honest and the attackers' own
	// honestly trained ones, as the bucketing paper's code does
	// (epfml/byzantine-robust-noniid-optimizer, codes/attacks/alittle.py
	// and xie.py loop over the non-Byzantine workers). Ignored with
	// OwnOnly, or when no honest update is visible.
	HonestStats bool `json:"honest_stats,omitempty"`
	// Epsilon is IPM's ε.
	Epsilon float64 `json:"epsilon,omitempty"`
	// Perturbation is min-max/min-sum's deviation direction: "std"
	// (default), "unit" or "sign".
	Perturbation string `json:"perturbation,omitempty"`
	// Scale is backdoor's boost of the attacker's update (model
	// replacement); 0 means n/f.
	Scale float64 `json:"scale,omitempty"`
	// Target is the backdoor's target class (and label-flip's mapping
	// is y → classes−1−y).
	Target int `json:"target,omitempty"`
	// OwnOnly limits the attackers to their own updates: they do not see
	// the honest updates of the round.
	OwnOnly bool `json:"own_only,omitempty"`
}

// Round is what the attackers know when they craft their updates.
type Round struct {
	// Honest are the honest participants' updates of the round; empty
	// when the attackers see only their own.
	Honest [][]float32
	// Own are the Byzantine participants' updates, trained honestly on
	// their own (for data poisoning: poisoned) rows.
	Own [][]float32
	// Global is the model the round started from.
	Global []float32
	// Rule is the aggregation the attack faces (Fang et al.'s attacks
	// adapt to it).
	Rule aggregation.Config
	// N is the number of participants in the round, F of them Byzantine.
	N, F int
	Rng  *rand.Rand
}

// Attack is one attack.
type Attack interface {
	Name() string
	// Poison returns a Byzantine participant's training rows, changed
	// for data poisoning (a copy; x and y are not modified); model
	// poisoning attacks return them unchanged.
	Poison(x [][]float64, y []int, classes int, rng *rand.Rand) ([][]float64, []int)
	// Craft returns the F updates the Byzantine participants send.
	Craft(r Round) ([][]float32, error)
}

// Backdoor is implemented by attacks with a trigger; the simulator
// measures their attack success rate: the share of test rows of another
// class that the model puts in Target once the trigger is applied.
type Backdoor interface {
	Attack
	// Trigger returns a copy of row x with the trigger applied.
	Trigger(x []float64) []float64
	Target() int
}

// New returns the attack c names, with its defaults filled in, for rows of
// the given number of features (the trigger's shape depends on it). Errors
// wrap ErrUnknown or ErrConfig.
func New(c Config, features int) (Attack, error) {
	name := cmp.Or(c.Name, NameNone)
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	uses := map[string]bool{}
	switch name {
	case NameGaussian:
		uses["sigma"] = true
	case NameALIE:
		uses["z"], uses["z_rule"], uses["z_sign"] = true, true, true
	case NameIPM:
		uses["epsilon"] = true
	case NameMinMax, NameMinSum:
		uses["perturbation"], uses["z_sign"] = true, true
	case NameBackdoor:
		uses["scale"], uses["target"] = true, true
	case NameNone, NameSignFlip, NameLabelFlip, NameFangKrum, NameFangTrim:
	default:
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknown, c.Name, strings.Join(Names, ", "))
	}
	for _, p := range []struct {
		key string
		set bool
	}{
		{"sigma", c.Sigma != 0}, {"z", c.Z != 0}, {"z_rule", c.ZRule != ""}, {"z_sign", c.ZSign != ""}, {"epsilon", c.Epsilon != 0},
		{"perturbation", c.Perturbation != ""}, {"scale", c.Scale != 0}, {"target", c.Target != 0},
	} {
		if p.set && !uses[p.key] {
			bad("%s is not a parameter of %s", p.key, name)
		}
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if !finite(c.Sigma) || c.Sigma < 0 {
		bad("sigma %v must be a non-negative finite standard deviation", c.Sigma)
	}
	if !finite(c.Z) {
		bad("z %v must be finite", c.Z)
	}
	switch c.ZRule {
	case "", ZRuleBaruch, ZRuleBucketing:
	default:
		bad("z rule %q is not one of %s, %s", c.ZRule, ZRuleBaruch, ZRuleBucketing)
	}
	switch c.ZSign {
	case "", ZSignUpdates, ZSignGradients:
	default:
		bad("z sign %q is not one of %s, %s", c.ZSign, ZSignUpdates, ZSignGradients)
	}
	if !finite(c.Epsilon) || c.Epsilon < 0 {
		bad("epsilon %v must be a positive finite number (0 means %v)", c.Epsilon, DefaultEpsilon)
	}
	switch c.Perturbation {
	case "", PerturbationStd, PerturbationUnit, PerturbationSign:
	default:
		bad("perturbation %q is not one of %s, %s, %s", c.Perturbation, PerturbationStd, PerturbationUnit, PerturbationSign)
	}
	if !finite(c.Scale) || c.Scale < 0 {
		bad("scale %v must be a positive finite factor (0 means n/f)", c.Scale)
	}
	if c.Target < 0 {
		bad("target class %d must not be negative", c.Target)
	}
	if features < 0 {
		bad("%d features must not be negative", features)
	} else if name == NameBackdoor && features == 0 {
		bad("backdoor needs rows with at least one feature for its trigger")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	b := base{name: name, ownOnly: c.OwnOnly, honestStats: c.HonestStats}
	switch name {
	case NameNone:
		return none{b}, nil
	case NameSignFlip:
		return signFlip{b}, nil
	case NameGaussian:
		sigma := cmp.Or(c.Sigma, DefaultSigma)
		return gaussian{b, sigma}, nil
	case NameLabelFlip:
		return labelFlip{none{b}}, nil
	case NameALIE:
		return alie{b, c.Z, c.ZRule, c.ZSign == ZSignGradients}, nil
	case NameIPM:
		eps := cmp.Or(c.Epsilon, DefaultEpsilon)
		return ipm{b, eps}, nil
	case NameMinMax, NameMinSum:
		p := cmp.Or(c.Perturbation, DefaultPerturbation)
		return minMax{b, p, name == NameMinSum, c.ZSign == ZSignGradients}, nil
	case NameFangKrum:
		return fangKrum{b}, nil
	case NameFangTrim:
		return fangTrim{b}, nil
	default: // NameBackdoor
		return &backdoor{base: b, scale: c.Scale, target: c.Target, features: features}, nil
	}
}

// base holds what every attack shares: its name, OwnOnly, and the model
// poisoning Poison that leaves the rows alone.
type base struct {
	name        string
	ownOnly     bool
	honestStats bool
}

// Name implements Attack.
func (a base) Name() string { return a.name }

// Poison implements Attack: model poisoning attacks train on their rows
// unchanged, and x and y are returned as they are (not copied).
func (base) Poison(x [][]float64, y []int, _ int, _ *rand.Rand) ([][]float64, []int) {
	return x, y
}

// view is a validated round: the model's length, the benign set the
// statistics are computed over, and the updates a simulated rule sees
// besides the crafted ones.
type view struct {
	d      int
	f      int
	benign [][]float32 // Honest ++ Own, or Own under OwnOnly
	others [][]float32 // Honest, or Own under OwnOnly (or when Honest is empty)
	full   bool        // honest updates are visible
}

// check validates r (see the package documentation's Errors) and returns
// its view. With F = 0 the view is valid and the attack returns nothing.
func (a base) check(r Round) (view, error) {
	if r.N < 0 || r.F < 0 {
		return view{}, fmt.Errorf("%w: negative counts N=%d F=%d", ErrRound, r.N, r.F)
	}
	if r.F > r.N {
		return view{}, fmt.Errorf("%w: F=%d Byzantine participants of N=%d", ErrRound, r.F, r.N)
	}
	if len(r.Own) != r.F {
		return view{}, fmt.Errorf("%w: %d own updates for F=%d", ErrRound, len(r.Own), r.F)
	}
	if len(r.Honest) > r.N-r.F {
		return view{}, fmt.Errorf("%w: %d honest updates for N−F=%d", ErrRound, len(r.Honest), r.N-r.F)
	}
	d := len(r.Global)
	switch {
	case len(r.Own) > 0:
		d = len(r.Own[0])
	case len(r.Honest) > 0:
		d = len(r.Honest[0])
	}
	if len(r.Global) != 0 && len(r.Global) != d {
		return view{}, fmt.Errorf("%w: global model has %d parameters, updates %d", ErrRound, len(r.Global), d)
	}
	for _, set := range []struct {
		what string
		vs   [][]float32
	}{{"honest", r.Honest}, {"own", r.Own}} {
		for i, v := range set.vs {
			if len(v) != d {
				return view{}, fmt.Errorf("%w: %s update %d has %d parameters, want %d", ErrRound, set.what, i, len(v), d)
			}
			if j := nonFinite(v); j >= 0 {
				return view{}, fmt.Errorf("%w: %s update %d has %v at %d", ErrRound, set.what, i, v[j], j)
			}
		}
	}
	v := view{d: d, f: r.F, benign: r.Own, others: r.Own}
	if !a.ownOnly && len(r.Honest) > 0 {
		v.full = true
		v.others = r.Honest
		v.benign = make([][]float32, 0, len(r.Honest)+len(r.Own))
		v.benign = append(v.benign, r.Honest...)
		if !a.honestStats {
			v.benign = append(v.benign, r.Own...)
		}
	}
	return v, nil
}

// prepare is the prologue of every Craft that crafts new updates: it
// checks r and returns its view, or nil when the attack has nothing to do:
// r is invalid (the error says why) or F = 0. An attack that draws
// (needRand) needs r.Rng, but not when F = 0. Craft then returns
// nothing(err).
func (a base) prepare(r Round, needRand bool) (*view, error) {
	v, err := a.check(r)
	switch {
	case err != nil:
		return nil, err
	case r.F == 0:
		return nil, nil
	case needRand && r.Rng == nil:
		return nil, errNoRand(a.name)
	}
	return &v, nil
}

// nothing is Craft's result when prepare returned no view: the error, or
// no updates.
func nothing(err error) ([][]float32, error) {
	if err != nil {
		return nil, err
	}
	return [][]float32{}, nil
}

// nonFinite returns the index of the first NaN or infinity in v, or −1.
// It tests the exponent bits, all ones exactly for NaN and ±Inf.
func nonFinite(v []float32) int {
	const exp = 0x7f800000
	for j, x := range v {
		if math.Float32bits(x)&exp == exp {
			return j
		}
	}
	return -1
}

// errNoRand is Craft's error for an attack that draws without a generator.
func errNoRand(name string) error {
	return fmt.Errorf("%w: %s needs Round.Rng", ErrRound, name)
}
