package aggregation

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Config is a rule and its parameters as they appear in configuration files.
// A parameter the rule does not use must be left zero. New builds the Rule;
// the pre-steps apply in the order norm-clip, bucket, rule.
type Config struct {
	// Rule is one of fedavg (the default when empty), median,
	// trimmed-mean, krum, multi-krum, bulyan, centered-clipping, rfa.
	Rule string `json:"rule"`
	// F is the assumed number of Byzantine participants, used by median,
	// trimmed-mean, krum, multi-krum, bulyan, centered-clipping and rfa.
	F int `json:"f,omitempty"`
	// M is multi-krum's number of averaged updates (required, ≥ 1).
	M int `json:"m,omitempty"`
	// Beta is trimmed-mean's fraction trimmed at each end, in [0, 0.5).
	Beta float64 `json:"beta,omitempty"`
	// Tau is centered-clipping's radius τ (required, > 0).
	Tau float64 `json:"tau,omitempty"`
	// Iterations is centered-clipping's L (0 means DefaultIterations) or
	// rfa's T (0 means DefaultRFAIterations, at most MaxRFAIterations).
	Iterations int `json:"iterations,omitempty"`
	// Nu is rfa's smoothing ν (0 means DefaultNu; else positive, finite).
	Nu float64 `json:"nu,omitempty"`
	// Start is rfa's starting point: mean (the default when empty) or
	// zero.
	Start string `json:"start,omitempty"`
	// MaxSamples is fedavg's and rfa's cap on each claimed sample count
	// (0 = none); 1 gives rfa uniform weights.
	MaxSamples uint64 `json:"max_samples,omitempty"`
	// NormClip is the pre-step clipping each update to this L2 norm
	// (0 = off).
	NormClip float64 `json:"norm_clip,omitempty"`
	// Bucket is the pre-step bucket size s (0 or 1 = off). A bucketing
	// rule needs randomness: see WithRand.
	Bucket int `json:"bucket,omitempty"`
}

// Rule names as they appear in configuration.
const (
	NameFedAvg           = "fedavg"
	NameMedian           = "median"
	NameTrimmedMean      = "trimmed-mean"
	NameKrum             = "krum"
	NameMultiKrum        = "multi-krum"
	NameBulyan           = "bulyan"
	NameCenteredClipping = "centered-clipping"
	NameRFA              = "rfa"
)

// ruleSpec is one rule's row in the table of rules: the Config
// parameters it reads (by their JSON names; any other set parameter is an
// error), how Config builds it, how Defaults fills its required
// parameters for n updates, and the largest f it accepts with n updates
// (nil: it takes no f).
type ruleSpec struct {
	name     string
	params   []string
	build    func(c Config) checked
	defaults func(c *Config, n int)
	maxF     func(n int) int
}

// rules is the table of rules, in the order error messages list them.
var rules = []ruleSpec{
	{name: NameFedAvg, params: []string{"max_samples"},
		build: func(c Config) checked { return fedAvgRule{FedAvg{MaxSamples: c.MaxSamples}} }},
	{name: NameMedian, params: []string{"f"}, maxF: majorityF,
		build: func(c Config) checked { return Median{F: c.F} }},
	{name: NameTrimmedMean, params: []string{"f", "beta"}, maxF: majorityF,
		build: func(c Config) checked { return TrimmedMean{Beta: c.Beta, F: c.F} },
		defaults: func(c *Config, n int) {
			if n > 0 {
				c.Beta = float64(c.F) / float64(n)
			}
		}},
	{name: NameKrum, params: []string{"f"}, maxF: krumF,
		build: func(c Config) checked { return Krum{F: c.F} }},
	{name: NameMultiKrum, params: []string{"f", "m"}, maxF: krumF,
		build:    func(c Config) checked { return MultiKrum{F: c.F, M: c.M} },
		defaults: func(c *Config, n int) { c.M = n - c.F }},
	{name: NameBulyan, params: []string{"f"}, maxF: func(n int) int { return (n - 3) / 4 },
		build: func(c Config) checked { return Bulyan{F: c.F} }},
	{name: NameCenteredClipping, params: []string{"f", "tau", "iterations"}, maxF: majorityF,
		build:    func(c Config) checked { return CenteredClipping{Tau: c.Tau, Iterations: c.Iterations, F: c.F} },
		defaults: func(c *Config, _ int) { c.Tau = DefaultTau }},
	{name: NameRFA, params: []string{"f", "iterations", "nu", "start", "max_samples"}, maxF: majorityF,
		build: func(c Config) checked {
			return RFA{Iterations: c.Iterations, Nu: c.Nu, Start: c.Start, MaxSamples: c.MaxSamples, F: c.F}
		}},
}

// majorityF is the largest f with 2f < n (median, trimmed-mean,
// centered-clipping, rfa); krumF the largest with n ≥ 2f+3 (krum,
// multi-krum).
func majorityF(n int) int { return (n - 1) / 2 }
func krumF(n int) int     { return (n - 3) / 2 }

// ruleNames lists the rules, for error messages.
var ruleNames = func() []string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.name
	}
	return names
}()

// lookupRule returns name's row of the table of rules.
func lookupRule(name string) (ruleSpec, bool) {
	i := slices.IndexFunc(rules, func(r ruleSpec) bool { return r.name == name })
	if i < 0 {
		return ruleSpec{}, false
	}
	return rules[i], true
}

// Validate checks the parameters that do not depend on the number of
// updates: a known rule, no parameter the rule does not use, and each
// parameter in range. Errors wrap ErrUnknownRule or ErrConfig.
func (c Config) Validate() error {
	_, err := c.base()
	return err
}

// New returns the rule c configures, after Validate. A rule with bucketing
// needs a source of randomness per round: see WithRand. It refuses (with
// ErrKernel) when FEDGUARD_KERNEL forces a kernel path the CPU lacks.
func New(c Config) (Rule, error) {
	if kernelErr != nil {
		return nil, kernelErr
	}
	r, err := c.base()
	if err != nil {
		return nil, err
	}
	var rule Rule = r
	if fa, ok := r.(fedAvgRule); ok {
		rule = fa.FedAvg
	}
	if c.Bucket > 1 {
		rule = Bucketing{Size: c.Bucket, Rule: rule}
	}
	if c.NormClip > 0 {
		rule = NormClip{Bound: c.NormClip, Rule: rule}
	}
	return rule, nil
}

// CheckCohort checks the preconditions that depend on the number n of
// updates aggregated together, after bucketing has turned them into ⌈n/s⌉
// bucket means: for example krum's n ≥ 2f+3. It checks exactly n (some
// preconditions, such as trimmed-mean's, are not monotone in n), so the
// coordinator calls it with each cohort size it may aggregate, at least the
// minimum cohort and the enrolled count. Errors wrap ErrCohort, or those of
// Validate.
func (c Config) CheckCohort(n int) error {
	r, err := c.base()
	if err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%w: no updates", ErrCohort)
	}
	m := n
	if c.Bucket > 1 {
		m = buckets(n, c.Bucket)
	}
	if err := r.cohort(m); err != nil {
		if m != n {
			return fmt.Errorf("%d updates in %d buckets of %d: %w", n, m, c.Bucket, err)
		}
		return err
	}
	return nil
}

// base validates c and returns its rule without pre-steps.
func (c Config) base() (checked, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	name := cmp.Or(c.Rule, NameFedAvg)
	spec, ok := lookupRule(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownRule, c.Rule, strings.Join(ruleNames, ", "))
	}
	r := spec.build(c)
	for _, p := range []struct {
		key string
		set bool
	}{
		{"f", c.F != 0}, {"m", c.M != 0}, {"beta", c.Beta != 0}, {"tau", c.Tau != 0},
		{"iterations", c.Iterations != 0}, {"max_samples", c.MaxSamples != 0},
		{"nu", c.Nu != 0}, {"start", c.Start != ""},
	} {
		if p.set && !slices.Contains(spec.params, p.key) {
			bad("%s is not a parameter of %s", p.key, name)
		}
	}
	if err := r.validate(); err != nil {
		errs = append(errs, err)
	}
	if !(c.NormClip >= 0) || math.IsInf(c.NormClip, 0) {
		bad("norm_clip %v must be a non-negative finite L2 bound", c.NormClip)
	}
	if c.Bucket < 0 {
		bad("bucket size %d must not be negative", c.Bucket)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// fedAvgRule gives FedAvg the checked methods without adding them to its
// exported method set. It is unwrapped by New.
type fedAvgRule struct{ FedAvg }

func (fedAvgRule) validate() error { return nil }

func (fedAvgRule) cohort(n int) error {
	if n < 1 {
		return fmt.Errorf("%w: fedavg needs at least one update", ErrCohort)
	}
	return nil
}

// DefaultTau is the centered-clipping radius τ that Defaults fills in. It
// is a radius in the units of the updates: suited to model updates of norm
// about 1, as local training rounds with learning rates near 0.1 give.
const DefaultTau = 1.0

// MaxF returns the largest f that rule accepts with n updates: (n−1)/2 for
// median, trimmed-mean, centered-clipping and rfa (2f < n), (n−3)/2 for krum and
// multi-krum (n ≥ 2f+3), (n−3)/4 for bulyan (n ≥ 4f+3), and 0 for fedavg
// and unknown rules (never negative).
func MaxF(rule string, n int) int {
	spec, ok := lookupRule(rule)
	if !ok || spec.maxF == nil {
		return 0
	}
	return max(spec.maxF(n), 0)
}

// Defaults returns the configuration of rule for n updates of which f are
// assumed Byzantine, with every parameter the rule requires filled in:
// F = f (a negative f means MaxF(rule, n); fedavg takes no f), multi-krum's
// M = n − f, trimmed-mean's Beta = f/n (so that it trims k = f values at
// each end) and centered-clipping's Tau = DefaultTau. An empty rule is
// fedavg. Defaults does not validate: an unknown rule comes back with only
// its name, for Validate to refuse, and an f too large for n is left for
// CheckCohort. With bucketing, n is the number of buckets the rule sees.
func Defaults(rule string, n, f int) Config {
	c := Config{Rule: rule}
	if rule == "" {
		c.Rule = NameFedAvg
	}
	spec, ok := lookupRule(c.Rule)
	if !ok || spec.maxF == nil {
		return c
	}
	if f < 0 {
		f = MaxF(c.Rule, n)
	}
	c.F = f
	if spec.defaults != nil {
		spec.defaults(&c, n)
	}
	return c
}
