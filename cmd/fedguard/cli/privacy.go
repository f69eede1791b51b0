package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/privacy"
)

// mechanismSampledGaussian names, for -mechanism, the accountant's
// Poisson-subsampled Gaussian (DP-SGD's steps, central DP's rounds with
// q = 1): the default.
const mechanismSampledGaussian = "sampled-gaussian"

// privacyFlags declares the accountant's flags on fs; each command picks the
// ones it takes.
type privacyFlags struct {
	name    string // for errors: "privacy epsilon"
	fs      *flag.FlagSet
	q       float64
	sigma   float64
	steps   int64
	delta   float64
	epsilon float64
	json    bool

	// The distributed discrete Gaussian's (privacy.DistributedDiscreteGaussian).
	mechanism string
	clients   int
	dim       int
	l2, l1    float64
}

func newPrivacyFlags(env *Env, name string, names ...string) *privacyFlags {
	p := &privacyFlags{name: name, fs: newFlagSet(env, name)}
	for _, n := range names {
		switch n {
		case "q":
			p.fs.Float64Var(&p.q, "q", 0, "Poisson sampling rate of each step, in (0, 1] (1: no sampling)")
		case "sigma":
			p.fs.Float64Var(&p.sigma, "sigma", 0, "noise multiplier: noise standard deviation over the clipping norm, > 0")
		case "steps":
			p.fs.Int64Var(&p.steps, "steps", 0, "number of steps (noisy gradient releases), >= 0")
		case "delta":
			p.fs.Float64Var(&p.delta, "delta", 0, "target δ, in (0, 1)")
		case "epsilon":
			p.fs.Float64Var(&p.epsilon, "epsilon", 0, "target ε, > 0")
		case "mechanism":
			// Only the shared flags this command takes: sigma computes
			// σ and steps the steps, so neither has that flag.
			var shared []string
			for _, s := range []string{"sigma", "steps"} {
				if slices.Contains(names, s) {
					shared = append(shared, "-"+s)
				}
			}
			p.fs.StringVar(&p.mechanism, "mechanism", mechanismSampledGaussian, "the mechanism: "+mechanismSampledGaussian+
				" (-q) or "+secagg.DDPMechanism+" (-clients, -dim, -l2, -l1: one release's parameters as a round manifest's privacy record holds them; "+
				strings.Join(shared, " and ")+" as for the other)")
		case "clients":
			p.fs.IntVar(&p.clients, "clients", 0, secagg.DDPMechanism+": the fewest clients whose noise is in a released sum, >= 1")
		case "dim":
			p.fs.IntVar(&p.dim, "dim", 0, secagg.DDPMechanism+": dimension of the (padded) integer vector each client adds, >= 1")
		case "l2":
			p.fs.Float64Var(&p.l2, "l2", 0, secagg.DDPMechanism+": ℓ2 sensitivity of the sum to one client, in grid units, > 0")
		case "l1":
			p.fs.Float64Var(&p.l1, "l1", 0, secagg.DDPMechanism+": ℓ1 sensitivity, in grid units (0: its bound from -l2 and -dim)")
		}
	}
	p.fs.BoolVar(&p.json, "json", false, "print the result as one JSON object")
	if f := p.fs.Lookup("sigma"); f != nil && p.fs.Lookup("mechanism") != nil {
		f.Usage = "noise multiplier: noise standard deviation over the clipping norm, > 0 (" + secagg.DDPMechanism +
			": each client's discrete Gaussian σ in grid units, >= 0.5)"
	}
	return p
}

// check requires the flags named in required (but -json, -mechanism and
// -l1, which are never required) and checks every flag given against its
// domain; a flag given that is in neither required nor the command's
// optional ones is refused, so that a flag of the other mechanism is not
// silently ignored.
func (p *privacyFlags) check(required []string) error {
	set := map[string]bool{}
	p.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	want := map[string]bool{"json": true, "mechanism": true}
	for _, n := range required {
		want[n] = true
	}
	var err error
	p.fs.VisitAll(func(f *flag.Flag) {
		if err != nil || f.Name == "json" || f.Name == "mechanism" {
			return
		}
		if !want[f.Name] {
			if set[f.Name] {
				err = usageError("%s: flag -%s does not apply to -mechanism %s", p.name, f.Name, p.mechanism)
			}
			return
		}
		if !set[f.Name] && f.Name != "l1" {
			err = usageError("%s: flag -%s is required", p.name, f.Name)
			return
		}
		switch f.Name {
		case "q":
			if !(p.q > 0 && p.q <= 1) {
				err = usageError("%s: -q %v: the sampling rate must be in (0, 1]", p.name, p.q)
			}
		case "sigma":
			if !(p.sigma > 0) || math.IsInf(p.sigma, 1) {
				err = usageError("%s: -sigma %v: the noise multiplier must be positive and finite", p.name, p.sigma)
			}
		case "steps":
			if p.steps < 0 {
				err = usageError("%s: -steps %d: the number of steps must not be negative", p.name, p.steps)
			}
		case "delta":
			if !(p.delta > 0 && p.delta < 1) {
				err = usageError("%s: -delta %v: δ must be in (0, 1)", p.name, p.delta)
			}
		case "epsilon":
			if !(p.epsilon > 0) || math.IsInf(p.epsilon, 1) {
				err = usageError("%s: -epsilon %v: ε must be positive and finite", p.name, p.epsilon)
			}
		case "clients":
			if p.clients < 1 || p.clients > privacy.MaxClients {
				err = usageError("%s: -clients %d: the number of clients must be in [1, %d]", p.name, p.clients, privacy.MaxClients)
			}
		case "dim":
			if p.dim < 1 {
				err = usageError("%s: -dim %d: the dimension must be at least 1", p.name, p.dim)
			}
		case "l2":
			if !(p.l2 > 0) || math.IsInf(p.l2, 1) {
				err = usageError("%s: -l2 %v: the ℓ2 sensitivity must be positive and finite", p.name, p.l2)
			}
		case "l1":
			if p.l1 != 0 && (!(p.l1 >= p.l2) || math.IsInf(p.l1, 1)) {
				err = usageError("%s: -l1 %v: the ℓ1 sensitivity must be 0 or a finite number at least -l2 (%v)", p.name, p.l1, p.l2)
			}
		}
	})
	return err
}

// privacyResult is the JSON the privacy commands print: the inputs and the
// answer, with the field names of the issue (`epsilon`) and of
// privacy.Event. Fields a command does not take are left out.
type privacyResult struct {
	Q       float64  `json:"q"`
	Sigma   float64  `json:"sigma"`
	Steps   int64    `json:"steps"`
	Delta   float64  `json:"delta"`
	Epsilon float64  `json:"epsilon"`
	Order   *float64 `json:"order,omitempty"` // the Rényi order that gave ε
}

// distributedResult is the JSON the privacy commands print with
// -mechanism distributed-discrete-gaussian: the mechanism's parameters with
// the names of privacy.DistributedDiscreteGaussian (those of a manifest's
// privacy record), δ, τ and ε — the answer of `privacy epsilon`, the
// target of `privacy sigma` (whose answer is `sigma`) and `privacy steps`
// (whose answer is `steps`). The Rényi order is `privacy epsilon`'s only.
type distributedResult struct {
	Mechanism string `json:"mechanism"`
	privacy.DistributedDiscreteGaussian
	Delta   float64  `json:"delta"`
	Tau     float64  `json:"tau"`
	Epsilon float64  `json:"epsilon"`
	Order   *float64 `json:"order,omitempty"`
}

// distributedFlags are the flags of the distributed discrete Gaussian's
// parameters but -sigma and -steps, which every command names itself.
var distributedFlags = []string{"clients", "dim", "l2", "l1"}

// mechanismFlags checks -mechanism and the flags it requires: sampled for the
// sampled Gaussian, sampled's flags but -q plus distributedFlags for the
// distributed discrete Gaussian. It reports whether the mechanism is the
// distributed one.
func (p *privacyFlags) mechanismFlags(sampled ...string) (distributed bool, err error) {
	switch p.mechanism {
	case mechanismSampledGaussian:
		return false, p.check(sampled)
	case secagg.DDPMechanism:
		required := slices.DeleteFunc(slices.Clone(sampled), func(n string) bool { return n == "q" })
		return true, p.check(append(required, distributedFlags...))
	default:
		return false, usageError("%s: -mechanism %q, want %s or %s", p.name, p.mechanism, mechanismSampledGaussian, secagg.DDPMechanism)
	}
}

// print writes a command's result: res as one JSON object with -json,
// else the line that format makes of a.
func (p *privacyFlags) print(env *Env, res any, format string, a ...any) error {
	if p.json {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stdout, format, a...)
	return nil
}

// parsePrivacy declares and parses the flags of the privacy command name:
// -mechanism, sampled (the sampled Gaussian's parameters it takes) and
// distributedFlags; then it checks them (mechanismFlags) and reports
// whether they ask for the distributed discrete Gaussian.
func parsePrivacy(env *Env, name string, args []string, sampled ...string) (p *privacyFlags, distributed bool, err error) {
	p = newPrivacyFlags(env, name, slices.Concat([]string{"mechanism"}, sampled, distributedFlags)...)
	if err := parseFlags(p.fs, args); err != nil {
		return nil, false, err
	}
	distributed, err = p.mechanismFlags(sampled...)
	return p, distributed, err
}

// distributedMechanism is the distributed discrete Gaussian the flags
// describe, checked (a usage error names what is wrong).
func (p *privacyFlags) distributedMechanism() (privacy.DistributedDiscreteGaussian, error) {
	m := privacy.DistributedDiscreteGaussian{Sigma: p.sigma, Clients: p.clients, Dim: p.dim, L2: p.l2, L1: p.l1, Steps: p.steps}
	if err := m.Validate(); err != nil {
		return m, usageError("%s: %v", p.name, err)
	}
	return m, nil
}

func runPrivacyEpsilon(_ context.Context, env *Env, args []string) error {
	p, distributed, err := parsePrivacy(env, "privacy epsilon", args, "q", "sigma", "steps", "delta")
	if err != nil {
		return err
	}
	if distributed {
		return distributedEpsilon(env, p)
	}
	g, err := privacy.Epsilon(p.delta, privacy.Event{Q: p.q, Sigma: p.sigma, Steps: p.steps})
	if err != nil {
		return fmt.Errorf("privacy epsilon: %w", err)
	}
	if math.IsInf(g.Epsilon, 1) {
		return fmt.Errorf("privacy epsilon: no finite ε at δ = %g: σ = %g is too small for every Rényi order", p.delta, p.sigma)
	}
	res := privacyResult{Q: p.q, Sigma: p.sigma, Steps: p.steps, Delta: p.delta, Epsilon: g.Epsilon, Order: &g.Order}
	return p.print(env, res,
		"ε = %.6g at δ = %g after %d steps with q = %g, σ = %g (Rényi order %g)\n",
		g.Epsilon, p.delta, p.steps, p.q, p.sigma, g.Order)
}

func runPrivacySigma(_ context.Context, env *Env, args []string) error {
	p, distributed, err := parsePrivacy(env, "privacy sigma", args, "q", "steps", "epsilon", "delta")
	if err != nil {
		return err
	}
	if distributed {
		return distributedSigma(env, p)
	}
	sigma, err := privacy.SigmaFor(p.q, p.steps, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("privacy sigma: %w", err)
	}
	return p.print(env, privacyResult{Q: p.q, Sigma: sigma, Steps: p.steps, Delta: p.delta, Epsilon: p.epsilon},
		"σ = %.6g keeps %d steps with q = %g within ε = %g at δ = %g\n", sigma, p.steps, p.q, p.epsilon, p.delta)
}

func runPrivacySteps(_ context.Context, env *Env, args []string) error {
	p, distributed, err := parsePrivacy(env, "privacy steps", args, "q", "sigma", "epsilon", "delta")
	if err != nil {
		return err
	}
	if distributed {
		return distributedSteps(env, p)
	}
	steps, err := privacy.MaxSteps(p.q, p.sigma, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("privacy steps: %w", err)
	}
	return p.print(env, privacyResult{Q: p.q, Sigma: p.sigma, Steps: steps, Delta: p.delta, Epsilon: p.epsilon},
		"%d steps with q = %g, σ = %g stay within ε = %g at δ = %g\n", steps, p.q, p.sigma, p.epsilon, p.delta)
}

// distributedEpsilon prints the (ε, δ) of -steps releases of the
// distributed discrete Gaussian the flags describe: the check of a secure
// federation's round manifest (its privacy record's parameters, with
// -steps the round) anyone can run.
func distributedEpsilon(env *Env, p *privacyFlags) error {
	m, err := p.distributedMechanism()
	if err != nil {
		return err
	}
	g, err := m.Epsilon(p.delta)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if math.IsInf(g.Epsilon, 1) {
		return fmt.Errorf("%s: no finite ε at δ = %g: σ = %g is too small for every Rényi order", p.name, p.delta, p.sigma)
	}
	return p.print(env, distributedResult{Mechanism: secagg.DDPMechanism, DistributedDiscreteGaussian: m,
		Delta: p.delta, Tau: m.Tau(), Epsilon: g.Epsilon, Order: &g.Order},
		"ε = %.6g at δ = %g after %d releases of the sum of %d clients' distributed discrete Gaussian noise (σ = %g each, dimension %d, ℓ2 sensitivity %g, τ = %.3g; Rényi order %g)\n",
		g.Epsilon, p.delta, p.steps, p.clients, p.sigma, p.dim, p.l2, m.Tau(), g.Order)
}

// distributedSigma prints the least σ each client must add for -steps
// releases of the distributed discrete Gaussian the flags describe to
// stay within (-epsilon, -delta): the noise a secure federation needs for
// a budget. secagg rounds σ² up to an integer; the federation's own
// calibration does so too.
func distributedSigma(env *Env, p *privacyFlags) error {
	p.sigma = 1 // any σ the mechanism takes: DistributedSigmaFor ignores it
	m, err := p.distributedMechanism()
	if err != nil {
		return err
	}
	sigma, err := privacy.DistributedSigmaFor(m, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	m.Sigma = sigma
	return p.print(env, distributedResult{Mechanism: secagg.DDPMechanism, DistributedDiscreteGaussian: m,
		Delta: p.delta, Tau: m.Tau(), Epsilon: p.epsilon},
		"σ = %.6g per client keeps %d releases of the sum of %d clients' distributed discrete Gaussian noise (dimension %d, ℓ2 sensitivity %g) within ε = %g at δ = %g\n",
		sigma, p.steps, p.clients, p.dim, p.l2, p.epsilon, p.delta)
}

// distributedSteps prints how many releases of the distributed discrete
// Gaussian the flags describe stay within (-epsilon, -delta): the rounds
// a secure federation's noise allows.
func distributedSteps(env *Env, p *privacyFlags) error {
	m, err := p.distributedMechanism()
	if err != nil {
		return err
	}
	steps, err := privacy.DistributedMaxSteps(m, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	m.Steps = steps
	return p.print(env, distributedResult{Mechanism: secagg.DDPMechanism, DistributedDiscreteGaussian: m,
		Delta: p.delta, Tau: m.Tau(), Epsilon: p.epsilon},
		"%d releases of the sum of %d clients' distributed discrete Gaussian noise (σ = %g each, dimension %d, ℓ2 sensitivity %g) stay within ε = %g at δ = %g\n",
		steps, p.clients, p.sigma, p.dim, p.l2, p.epsilon, p.delta)
}
