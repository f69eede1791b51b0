package privacy

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveCompose is the sum Compose's doc defines, S₁·r(m₁) + … + S_K·r(m_K)
// over the mechanisms m_k in the order first seen, written as plainly as
// it can be and independently of Compose's bookkeeping: for each event
// whose mechanism no earlier event had, the steps of that mechanism over
// all events, times one step's RDP. It costs a scan of the events per
// event, which a reference may. The events must be valid.
func naiveCompose(orders []float64, events ...Event) []float64 {
	total := make([]float64, len(orders))
	step := make([]float64, len(orders))
	same := func(a, b Event) bool { return a.Steps > 0 && b.Steps > 0 && a.Q == b.Q && a.Sigma == b.Sigma }
	for i, e := range events {
		if e.Steps == 0 || slices.ContainsFunc(events[:i], func(p Event) bool { return same(p, e) }) {
			continue
		}
		var steps float64
		for _, o := range events[i:] {
			if same(o, e) {
				steps += float64(o.Steps)
			}
		}
		stepRDP(e.Q, e.Sigma, orders, step)
		for j, r := range step {
			total[j] += steps * r
		}
	}
	return total
}

// sameBits reports whether a and b hold the same float64 values bit for
// bit.
func sameBits(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

// TestCompositionMatchesCompose grows ledgers event by event (one at a
// time, or several per Add as an exec trainer reports them) — every event
// new, a few configurations repeated, zero-step events, and a mix — and
// checks after every step that the Composition's RDP is bit for bit what
// Compose gives for the whole ledger, that its ε (with and without events
// peeked at) is Epsilon's, and that peeking changes nothing; and at the
// end that its RDP is the sum Compose's doc defines (naiveCompose, which
// shares no code with Compose or Composition but the per-step RDP).
func TestCompositionMatchesCompose(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	drift := func(i int) Event {
		return Event{Q: 0.01 * (1 + rng.Float64()), Sigma: 0.7 + 2*rng.Float64(), Steps: 1 + rng.Int64N(500)}
	}
	configs := []Event{{Q: 0.01, Sigma: 1.1, Steps: 300}, {Q: 0.02, Sigma: 0.9, Steps: 150}, {Q: 1, Sigma: 4, Steps: 1}}
	for _, tt := range []struct {
		name  string
		event func(i int) Event
		batch int
	}{
		{"every event new", drift, 1},
		{"a few configurations", func(i int) Event { return configs[rng.IntN(len(configs))] }, 1},
		{"mixed", func(i int) Event {
			switch i % 4 {
			case 0:
				return configs[rng.IntN(len(configs))]
			case 1:
				return Event{Q: 0.05, Sigma: 1.3, Steps: 0}
			}
			return drift(i)
		}, 1},
		{"batches", func(i int) Event {
			if i%3 == 0 {
				return configs[0]
			}
			return drift(i)
		}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewComposition(defaultOrders)
			if err != nil {
				t.Fatal(err)
			}
			var ledger []Event
			for n := 0; n < 25; n++ {
				batch := make([]Event, tt.batch)
				for i := range batch {
					batch[i] = tt.event(len(ledger) + i)
				}
				peeked, err := c.Epsilon(1e-5, batch...)
				if err != nil {
					t.Fatal(err)
				}
				before := c.RDP()
				if err := c.Add(batch...); err != nil {
					t.Fatal(err)
				}
				if sameBits(before, c.RDP()) && batch[0].Steps > 0 {
					t.Fatalf("event %d: Add changed nothing", len(ledger))
				}
				ledger = append(ledger, batch...)
				want, err := Compose(defaultOrders, ledger...)
				if err != nil {
					t.Fatal(err)
				}
				if !sameBits(c.RDP(), want) {
					t.Fatalf("after %d events: RDP differs from Compose's", len(ledger))
				}
				eps, order, err := EpsilonFromRDP(defaultOrders, want, 1e-5)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.Epsilon(1e-5)
				if err != nil {
					t.Fatal(err)
				}
				if g := (Guarantee{Epsilon: eps, Delta: 1e-5, Order: order}); got != g || peeked != g {
					t.Fatalf("after %d events: ε %v (peeked before adding: %v), Compose's %v", len(ledger), got, peeked, g)
				}
			}
			// Once at the end (each costs every mechanism again): Epsilon,
			// and the sum as Compose's doc defines it.
			if !sameBits(c.RDP(), naiveCompose(defaultOrders, ledger...)) {
				t.Errorf("after %d events: RDP differs from the naive sum's", len(ledger))
			}
			if g, got := must(Epsilon(1e-5, ledger...)), must(c.Epsilon(1e-5)); g != got {
				t.Errorf("after %d events: ε %v, Epsilon %v", len(ledger), got, g)
			}
			t.Logf("%d events, %d mechanisms: ε = %v", len(ledger), len(c.seen), must(c.Epsilon(1e-5)).Epsilon)
		})
	}
}

// TestCompositionRefusals: an invalid event is refused by index, and
// neither Add nor Epsilon changes the composition then.
func TestCompositionRefusals(t *testing.T) {
	if _, err := NewComposition(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewComposition(nil) = %v, want ErrInvalid", err)
	}
	c, err := NewComposition(defaultOrders)
	if err != nil {
		t.Fatal(err)
	}
	good := Event{Q: 0.01, Sigma: 1.1, Steps: 10}
	if err := c.Add(good); err != nil {
		t.Fatal(err)
	}
	before := c.RDP()
	for _, bad := range []Event{{Q: 0, Sigma: 1, Steps: 1}, {Q: 0.1, Sigma: math.NaN(), Steps: 1}, {Q: 0.1, Sigma: 1, Steps: -1}} {
		if err := c.Add(good, bad); !errors.Is(err, ErrInvalid) || err.Error()[:7] != "event 1" {
			t.Errorf("Add(good, %+v) = %v, want ErrInvalid naming event 1", bad, err)
		}
		if _, err := c.Epsilon(1e-5, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Epsilon(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := c.Epsilon(0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Epsilon(δ = 0) = %v, want ErrInvalid", err)
	}
	if !sameBits(before, c.RDP()) {
		t.Error("a refused Add changed the composition")
	}
	if g, _ := c.Epsilon(1e-5); g != must(Epsilon(1e-5, good)) {
		t.Errorf("ε %v after refusals, want %v", g, must(Epsilon(1e-5, good)))
	}
}

func must(g Guarantee, err error) Guarantee {
	if err != nil {
		panic(err)
	}
	return g
}

// TestCompositionBeyondCache: past MaxCachedMechanisms, repeating a
// mechanism that was not cached still gives Compose's sum.
func TestCompositionBeyondCache(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates MaxCachedMechanisms+2 mechanisms")
	}
	orders := []float64{1.5, 2, 8, 32}
	c, err := NewComposition(orders)
	if err != nil {
		t.Fatal(err)
	}
	var ledger []Event
	for i := range MaxCachedMechanisms + 2 {
		ledger = append(ledger, Event{Q: 0.01, Sigma: 1 + float64(i)/1e4, Steps: 1})
	}
	if err := c.Add(ledger...); err != nil {
		t.Fatal(err)
	}
	last := ledger[len(ledger)-1] // not cached
	ledger = append(ledger, last, ledger[0])
	if err := c.Add(last, ledger[0]); err != nil {
		t.Fatal(err)
	}
	if want := naiveCompose(orders, ledger...); !sameBits(c.RDP(), want) || len(c.cache) != MaxCachedMechanisms {
		t.Errorf("RDP differs from the naive sum past the cache (%d cached)", len(c.cache))
	}
}
