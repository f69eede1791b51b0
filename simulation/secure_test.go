package simulation

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
)

// TestSecureRound checks the bucket means a secure round hands the rule:
// the production split (⌊n/S⌋ buckets holding every client once), each
// mean the weighted mean of its members' updates after the norm clip and
// the coordinate clip, within the quantization's error bound.
func TestSecureRound(t *testing.T) {
	const clients, dim = 7, 3
	o := Options{Clients: clients, Workers: 2, Seed: 5, Secure: true,
		Aggregation: aggregation.Config{Rule: aggregation.NameMedian, Bucket: 2, NormClip: 10}}
	s := &sim{checked: &checked{o: o}, clientY: make([][]int, clients)}
	deltas := make([][]float32, clients)
	for i := range clients {
		s.clientY[i] = make([]int, 100*(i+1)) // weights 100 … 700 rows
		deltas[i] = []float32{float32(i) / 10, -0.5, 0}
	}
	deltas[3] = []float32{0, 0, 50}  // norm 50: clipped to 10, then the coordinate to 1
	deltas[4] = []float32{0, 0, 2.5} // under the norm clip: only the coordinate clip
	m, err := newSecure(s, dim)
	if err != nil {
		t.Fatalf("newSecure: %v", err)
	}
	if m.res.Buckets != 3 || m.res.WeightUnit != 1 || m.res.QuantBits != 20 {
		t.Errorf("layout %+v, want 3 buckets, weight unit 1, 20 quantization bits (largest bucket 3)", m.res)
	}
	clipped := func(i int) []float64 {
		out := make([]float64, dim)
		f := 1.0
		if n := math.Sqrt(float64(deltas[i][0]*deltas[i][0] + deltas[i][1]*deltas[i][1] + deltas[i][2]*deltas[i][2])); n > 10 {
			f = 10 / n
		}
		for j, v := range deltas[i] {
			out[j] = max(-1, min(1, float64(v)*f))
		}
		return out
	}
	for r := 1; r <= 3; r++ {
		means, members, err := m.round(context.Background(), s, r, deltas)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		var all []int
		for b, mem := range members {
			all = append(all, mem...)
			if len(mem) < 2 || len(mem) > 3 {
				t.Errorf("round %d: bucket %d has %d members, want 2 or 3", r, b+1, len(mem))
			}
			want := make([]float64, dim)
			var w uint64
			for _, i := range mem {
				w += uint64(len(s.clientY[i]))
				for j, v := range clipped(i) {
					want[j] += float64(len(s.clientY[i])) * v
				}
			}
			if means[b].Samples != w {
				t.Errorf("round %d: bucket %d weighs %d, want %d", r, b+1, means[b].Samples, w)
			}
			for j := range want {
				if d := math.Abs(float64(means[b].Delta[j]) - want[j]/float64(w)); d > m.plan.Params.ErrorBound(len(mem)) {
					t.Errorf("round %d: bucket %d mean %v, want %v", r, b+1, means[b].Delta, want)
				}
			}
		}
		slices.Sort(all)
		if !slices.Equal(all, []int{0, 1, 2, 3, 4, 5, 6}) {
			t.Errorf("round %d: buckets hold clients %v, want each once", r, all)
		}
	}
}

// TestRunSecure runs the secure mode end to end: it is deterministic and
// independent of the workers, one bucket with FedAvg stays within the
// quantization noise of plain FedAvg, and the rule over few buckets is
// checked against their number.
func TestRunSecure(t *testing.T) {
	o := wdbcOptions()
	o.Clients, o.Byzantine, o.Rounds = 8, 2, 4
	o.Attack = attack.Config{Name: attack.NameSignFlip}
	plain, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Secure = true
	sec, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Run(secure): %v", err)
	}
	if math.Abs(sec.Accuracy-plain.Accuracy) > 0.02 || sec.Secure == nil || sec.Secure.Buckets != 1 {
		t.Errorf("secure FedAvg: accuracy %v, layout %+v; want within 0.02 of plain %v with one bucket", sec.Accuracy, sec.Secure, plain.Accuracy)
	}
	if sec.Detection.Byzantine.Norm+sec.Detection.Byzantine.Cosine+sec.Detection.Honest.Norm+sec.Detection.Honest.Cosine != 0 {
		t.Errorf("secure run flagged norm or cosine (%+v): the coordinator sees no single update", sec.Detection)
	}
	o.Workers = 1
	again, err := Run(context.Background(), o, nil)
	if err != nil || again.ModelSHA256 != sec.ModelSHA256 {
		t.Errorf("Run(secure, 1 worker) = %s, %v, want %s", again.ModelSHA256, err, sec.ModelSHA256)
	}

	o.Aggregation = aggregation.Defaults(aggregation.NameMedian, 4, 1)
	o.Aggregation.Bucket = 2
	bucketed, err := Run(context.Background(), o, nil)
	if err != nil || bucketed.Secure.Buckets != 4 {
		t.Errorf("Run(secure, bucket 2, median) = %+v, %v, want 4 buckets", bucketed.Secure, err)
	}
	// Krum keeps one of the 4 buckets: the 6 clients of the 3 others are
	// excluded, every round.
	o.Aggregation = aggregation.Defaults(aggregation.NameKrum, 4, 0)
	o.Aggregation.Bucket = 2
	krum, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Run(secure, bucket 2, krum): %v", err)
	}
	if got := krum.Detection.Byzantine.Excluded + krum.Detection.Honest.Excluded; got != 6*o.Rounds {
		t.Errorf("secure Krum over 4 buckets excluded %d client updates in %d rounds, want %d", got, o.Rounds, 6*o.Rounds)
	}
	o.Aggregation = aggregation.Defaults(aggregation.NameMedian, 4, 2) // f = 2 of 4 buckets
	o.Aggregation.Bucket = 2
	if _, err := Run(context.Background(), o, nil); !errors.Is(err, ErrOptions) || !errors.Is(err, aggregation.ErrCohort) {
		t.Errorf("Run(secure, median f=2 over 4 buckets) = %v, want ErrOptions and aggregation.ErrCohort", err)
	}
	o.Aggregation.F, o.SecureClip = 1, -1
	if _, err := Run(context.Background(), o, nil); !errors.Is(err, ErrOptions) {
		t.Errorf("Run(secure clip -1) = %v, want ErrOptions", err)
	}
	o.SecureClip = 0
	o.Aggregation.Bucket = 9 // larger than the cohort
	if _, err := Run(context.Background(), o, nil); !errors.Is(err, ErrOptions) {
		t.Errorf("Run(secure, bucket 9 of 8 clients) = %v, want ErrOptions", err)
	}
}
