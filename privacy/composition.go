package privacy

// MaxCachedMechanisms bounds the per-step RDP vectors a Composition keeps:
// one vector of the order grid (1.25 KB over the 156 default orders) per
// distinct (Q, Sigma), so at most 5 MB. A mechanism past the bound is not
// cached, and a later event that repeats it — the only case that needs
// the vectors of earlier mechanisms again — recomputes its vector, as
// Compose does for every mechanism on every call.
const MaxCachedMechanisms = 4096

// Composition is the composition of a growing sequence of events — a
// hospital's privacy ledger — kept so that accounting for one more event
// costs what that event adds, not the whole sequence again.
//
// Compose returns, for events with mechanisms m₁ … m_K (distinct (Q,
// Sigma), in the order first seen) and S_k steps of m_k in all, the sum
// S₁·r(m₁) + … + S_K·r(m_K) of the per-step RDP vectors r over the order
// grid, added up in that order. Evaluating r(m) is the cost (a few
// milliseconds over the default orders for a subsampled mechanism: two
// series per fractional order), so a ledger that Compose is asked about
// after every round costs K evaluations each time. A Composition keeps
// that sum and the steps of each mechanism:
//
//   - an event of a mechanism not seen before adds S·r(m) to the sum: one
//     evaluation, one vector added, and the very additions Compose makes,
//     in the same order (it adds that mechanism last), so the sum is the
//     same bit for bit;
//   - an event that repeats a mechanism changes one S_k in the middle of
//     the sum, which floating-point addition cannot undo exactly: the sum
//     is added up again, as Compose does, from the vectors it keeps (at
//     most MaxCachedMechanisms), without evaluating any of them again.
//
// So its RDP, and the ε EpsilonFromRDP converts it to, are always what
// Compose and Epsilon give for the same events in the same order, bit for
// bit (TestCompositionMatchesCompose). A Composition is not safe for
// concurrent use.
type Composition struct {
	orders []float64
	seen   []mechanism       // first-seen order
	steps  []float64         // steps[k] belongs to seen[k]
	index  map[mechanism]int // into seen
	total  []float64         // Σ steps[k]·r(seen[k]), added up in k order
	cache  map[mechanism][]float64
}

// mechanism is what one step's RDP depends on.
type mechanism struct{ q, sigma float64 }

// NewComposition returns an empty composition over orders (DefaultOrders
// for the ε Epsilon reports).
func NewComposition(orders []float64) (*Composition, error) {
	if err := ValidateOrders(orders); err != nil {
		return nil, err
	}
	return &Composition{
		orders: append([]float64(nil), orders...), index: map[mechanism]int{},
		total: make([]float64, len(orders)), cache: map[mechanism][]float64{},
	}, nil
}

// growth is what adding events would do to a Composition: steps added to
// mechanisms it has (more, by index), mechanisms it has not seen (fresh,
// in first-seen order, with their steps), and the resulting sum.
type growth struct {
	more       map[int]float64
	fresh      []mechanism
	freshSteps []float64
	total      []float64
}

// grow computes what adding events would do, without changing c (but its
// cache of vectors).
func (c *Composition) grow(events []Event) (growth, error) {
	var g growth
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return growth{}, wrapEvent(i, err)
		}
	}
	for _, e := range events {
		if e.Steps == 0 {
			continue
		}
		m := mechanism{e.Q, e.Sigma}
		if k, ok := c.index[m]; ok {
			if g.more == nil {
				g.more = map[int]float64{}
			}
			g.more[k] += float64(e.Steps)
			continue
		}
		// Few events are added at a time: a scan of them is enough.
		if j := indexOf(g.fresh, m); j >= 0 {
			g.freshSteps[j] += float64(e.Steps)
			continue
		}
		g.fresh, g.freshSteps = append(g.fresh, m), append(g.freshSteps, float64(e.Steps))
	}
	g.total = make([]float64, len(c.orders))
	if len(g.more) == 0 {
		copy(g.total, c.total)
	} else {
		// A repeated mechanism: add everything up again, in order.
		for k, m := range c.seen {
			steps := c.steps[k]
			if s, ok := g.more[k]; ok {
				steps += s
			}
			addScaled(g.total, steps, c.vector(m))
		}
	}
	for j, m := range g.fresh {
		addScaled(g.total, g.freshSteps[j], c.vector(m))
	}
	return g, nil
}

// indexOf is slices.Index for mechanisms.
func indexOf(ms []mechanism, m mechanism) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return -1
}

// vector returns one step's RDP of m over c's orders, from the cache or
// evaluated (and cached while there is room).
func (c *Composition) vector(m mechanism) []float64 {
	if v, ok := c.cache[m]; ok {
		return v
	}
	v := make([]float64, len(c.orders))
	stepRDP(m.q, m.sigma, c.orders, v)
	if len(c.cache) < MaxCachedMechanisms {
		c.cache[m] = v
	}
	return v
}

// Add adds events to the composition: all of them, or, when one is
// invalid (the error names it by its index in events), none.
func (c *Composition) Add(events ...Event) error {
	g, err := c.grow(events)
	if err != nil {
		return err
	}
	for k, s := range g.more {
		c.steps[k] += s
	}
	for j, m := range g.fresh {
		c.index[m] = len(c.seen)
		c.seen, c.steps = append(c.seen, m), append(c.steps, g.freshSteps[j])
	}
	c.total = g.total
	return nil
}

// RDP returns the RDP at each of the composition's orders: what Compose
// returns for the events added, in the order added.
func (c *Composition) RDP() []float64 {
	return append([]float64(nil), c.total...)
}

// Epsilon returns the (ε, δ) guarantee of the composition followed by
// more, which are not added: what a ledger would reach with one more
// round. With the default orders and no more it is what Epsilon returns
// for the events added.
func (c *Composition) Epsilon(delta float64, more ...Event) (Guarantee, error) {
	if err := ValidateDelta(delta); err != nil {
		return Guarantee{}, err
	}
	total := c.total
	if len(more) > 0 {
		g, err := c.grow(more)
		if err != nil {
			return Guarantee{}, err
		}
		total = g.total
	}
	return guarantee(c.orders, total, delta)
}

// addScaled adds s·v to total, element by element: the one place both
// Compose and Composition form their sums, so that both compile to the
// same arithmetic (a fused multiply-add, where the compiler fuses, in
// both or in neither).
func addScaled(total []float64, s float64, v []float64) {
	for i, r := range v {
		total[i] += s * r
	}
}
