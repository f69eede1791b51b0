package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"

	"github.com/fedguard/fedguard/privacy"
)

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
		}
	}
	p.fs.BoolVar(&p.json, "json", false, "print the result as one JSON object")
	return p
}

// parse parses args, requires every accountant flag the command declared and
// checks each against its domain, naming the flag in the error.
func (p *privacyFlags) parse(args []string) error {
	if err := parseFlags(p.fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	p.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	p.fs.VisitAll(func(f *flag.Flag) {
		if err != nil || f.Name == "json" {
			return
		}
		if !set[f.Name] {
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

func runPrivacyEpsilon(_ context.Context, env *Env, args []string) error {
	p := newPrivacyFlags(env, "privacy epsilon", "q", "sigma", "steps", "delta")
	if err := p.parse(args); err != nil {
		return err
	}
	g, err := privacy.Epsilon(p.delta, privacy.Event{Q: p.q, Sigma: p.sigma, Steps: p.steps})
	if err != nil {
		return fmt.Errorf("privacy epsilon: %w", err)
	}
	if math.IsInf(g.Epsilon, 1) {
		return fmt.Errorf("privacy epsilon: no finite ε at δ = %g: σ = %g is too small for every Rényi order", p.delta, p.sigma)
	}
	res := privacyResult{Q: p.q, Sigma: p.sigma, Steps: p.steps, Delta: p.delta, Epsilon: g.Epsilon, Order: &g.Order}
	if p.json {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stdout, "ε = %.6g at δ = %g after %d steps with q = %g, σ = %g (Rényi order %g)\n",
		g.Epsilon, p.delta, p.steps, p.q, p.sigma, g.Order)
	return nil
}

func runPrivacySigma(_ context.Context, env *Env, args []string) error {
	p := newPrivacyFlags(env, "privacy sigma", "q", "steps", "epsilon", "delta")
	if err := p.parse(args); err != nil {
		return err
	}
	sigma, err := privacy.SigmaFor(p.q, p.steps, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("privacy sigma: %w", err)
	}
	if p.json {
		return json.NewEncoder(env.Stdout).Encode(privacyResult{Q: p.q, Sigma: sigma, Steps: p.steps, Delta: p.delta, Epsilon: p.epsilon})
	}
	fmt.Fprintf(env.Stdout, "σ = %.6g keeps %d steps with q = %g within ε = %g at δ = %g\n", sigma, p.steps, p.q, p.epsilon, p.delta)
	return nil
}

func runPrivacySteps(_ context.Context, env *Env, args []string) error {
	p := newPrivacyFlags(env, "privacy steps", "q", "sigma", "epsilon", "delta")
	if err := p.parse(args); err != nil {
		return err
	}
	steps, err := privacy.MaxSteps(p.q, p.sigma, p.epsilon, p.delta)
	if err != nil {
		return fmt.Errorf("privacy steps: %w", err)
	}
	if p.json {
		return json.NewEncoder(env.Stdout).Encode(privacyResult{Q: p.q, Sigma: p.sigma, Steps: steps, Delta: p.delta, Epsilon: p.epsilon})
	}
	fmt.Fprintf(env.Stdout, "%d steps with q = %g, σ = %g stay within ε = %g at δ = %g\n", steps, p.q, p.sigma, p.epsilon, p.delta)
	return nil
}
