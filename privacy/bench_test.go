package privacy

import (
	"fmt"
	"testing"
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
	start, ok := cpuTime()
	return func() {
		end, _ := cpuTime()
		if ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/1e6/float64(b.N), "cpu-ms/op")
		}
	}
}
