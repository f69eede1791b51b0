package coordinator

import (
	"io"
	"sync"

	"github.com/fedguard/fedguard/aggregation"
)

// RuleGate holds c's aggregations until the test releases them, so that a
// test can look at the coordinator while a rule runs. The real rule runs
// once the gate opens: nothing is faked.
type RuleGate struct {
	// Entered is closed when the first aggregation reaches the gate.
	Entered chan struct{}
	// Release is closed by the test to let every aggregation through.
	Release chan struct{}
	once    sync.Once
}

// GateRules puts a RuleGate in front of c's rules (plain and secure). Call
// it before c serves.
func GateRules(c *Coordinator) *RuleGate {
	g := &RuleGate{Entered: make(chan struct{}), Release: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rule = gatedRule{Rule: c.rule, g: g}
	if c.secureRule != nil {
		c.secureRule = gatedRule{Rule: c.secureRule, g: g}
	}
	return g
}

// gatedRule is a rule that waits at its gate before it aggregates.
type gatedRule struct {
	aggregation.Rule
	g *RuleGate
}

func (r gatedRule) Aggregate(dst []float32, updates []aggregation.Update) (aggregation.Report, error) {
	r.g.once.Do(func() { close(r.g.Entered) })
	<-r.g.Release
	return r.Rule.Aggregate(dst, updates)
}

// WithRand keeps the inner rule's randomness (bucketing) behind the gate.
func (r gatedRule) WithRand(rd io.Reader) aggregation.Rule {
	return gatedRule{Rule: aggregation.WithRand(r.Rule, rd), g: r.g}
}
