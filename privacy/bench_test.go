package privacy

import (
	"fmt"
	"testing"

	"github.com/fedguard/fedguard/internal/cputime"
)

// BenchmarkEpsilon measures the target — 10⁵ steps accounted in at
// most 10 ms — for the reference configurations: the cost is one per-step
// RDP evaluation over the 156 default orders, then a multiplication.
func BenchmarkEpsilon(b *testing.B) {
	for _, e := range []Event{
		{Q: 0.01, Sigma: 1.1, Steps: 100_000},
		{Q: 0.001, Sigma: 0.5, Steps: 100_000},
		{Q: 0.004, Sigma: 4, Steps: 100_000},
		{Q: 0.02, Sigma: 10, Steps: 100_000},
		{Q: 0.25, Sigma: 1.5, Steps: 100_000},
		{Q: 0.5, Sigma: 5, Steps: 100_000},
		{Q: 1, Sigma: 1, Steps: 100_000},
	} {
		b.Run(fmt.Sprintf("q=%v/sigma=%v/steps=%d", e.Q, e.Sigma, e.Steps), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := Epsilon(1e-5, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEpsilonLedger measures a heterogeneous ledger: 10⁵ one-step
// events (one per round, say) drawn from 10 configurations, as a hospital
// that changes its batch size and noise between rounds would record.
func BenchmarkEpsilonLedger(b *testing.B) {
	events := make([]Event, 100_000)
	for i := range events {
		k := i % 10
		events[i] = Event{Q: 0.001 * float64(1+k), Sigma: 0.8 + 0.3*float64(k), Steps: 1}
	}
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := Epsilon(1e-5, events...); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU adds the metric cpu-ms/op: the process's CPU time per
// operation, which unlike ns/op does not grow when other processes share
// the CPU. Call as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := cputime.Process()
	return func() {
		end := cputime.Process()
		if end > start && b.N > 0 {
			b.ReportMetric(float64(end-start)/1e6/float64(b.N), "cpu-ms/op")
		}
	}
}

// distinctLedger is n one-round events whose (q, σ) all differ slightly,
// as an exec trainer that reports its own sampling rate and noise would
// record them: the worst case for Compose, which evaluates each distinct
// mechanism once per call.
func distinctLedger(n int) []Event {
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{Q: 0.01 * (1 + float64(i)/1e4), Sigma: 1.1 + float64(i)/1e5, Steps: 300}
	}
	return events
}

// BenchmarkLedgerDistinct measures what the agent pays to account for one
// more round once its ledger holds 1,000 events of distinct (q, σ): before
// Composition, the ε of the whole ledger with the new event (Epsilon over
// all of it, which evaluates every mechanism again — what the agent did
// twice a round); with it, the
// ε of the Composition the agent keeps with the new event peeked at, and
// that event added (one evaluation). Each op's new event is one the ledger
// has not seen. "build" is the whole of a 1,000-round ledger kept by a
// Composition the way the agent keeps it (peek, peek, add per round);
// before Composition that was the sum over rounds of "recompose" at each
// ledger size, about 500 times "recompose" at 1,000.
func BenchmarkLedgerDistinct(b *testing.B) {
	const n = 1000
	ledger := distinctLedger(n + 1_000_000)
	base := ledger[:n]
	// composed is a Composition of base, for the subbenchmarks that start
	// from a ledger of n events.
	composed := func(b *testing.B) *Composition {
		c, err := NewComposition(defaultOrders)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Add(base...); err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("recompose", func(b *testing.B) {
		defer reportCPU(b)()
		i := n
		for b.Loop() {
			if _, err := Epsilon(1e-5, append(base[:n:n], ledger[i])...); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("composition", func(b *testing.B) {
		c := composed(b)
		defer reportCPU(b)()
		i := n
		for b.Loop() {
			if _, err := c.Epsilon(1e-5, ledger[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("composition-add", func(b *testing.B) {
		c := composed(b)
		defer reportCPU(b)()
		i := n
		for b.Loop() {
			if err := c.Add(ledger[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("build", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			c, err := NewComposition(defaultOrders)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range base {
				for range 2 {
					if _, err := c.Epsilon(1e-5, e); err != nil {
						b.Fatal(err)
					}
				}
				if err := c.Add(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
