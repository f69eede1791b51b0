package secureround_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/secureround"
)

func cohort(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("hospital-%03d", i)
	}
	return out
}

func plan(n, bucket int) secureround.Plan {
	return secureround.Plan{
		Federation: "demo", Round: 3, Attempt: 1, Start: [32]byte{1, 2, 3},
		Cohort: cohort(n), BucketSize: bucket, ThresholdPercent: secureround.DefaultThresholdPercent,
		Params:     secagg.Params{Clip: 1, QuantBits: 16, WeightBits: 10},
		WeightUnit: 1, PhaseTimeout: time.Second, Dim: 10,
	}
}

func TestBuckets(t *testing.T) {
	for _, tt := range []struct {
		n, s  int
		sizes []int // sorted
	}{
		{4, 0, []int{4}},
		{4, 2, []int{2, 2}},
		{5, 2, []int{2, 3}},
		{6, 2, []int{2, 2, 2}},
		{7, 3, []int{3, 4}},
		{10, 4, []int{5, 5}},
		{3, 3, []int{3}},
	} {
		t.Run(fmt.Sprintf("n=%d,s=%d", tt.n, tt.s), func(t *testing.T) {
			p := plan(tt.n, tt.s)
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
			buckets := p.Buckets()
			var sizes []int
			var all []string
			for _, b := range buckets {
				sizes = append(sizes, len(b))
				if !slices.IsSorted(b) {
					t.Errorf("bucket %v is not sorted", b)
				}
				all = append(all, b...)
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("bucket sizes %v, want %v", sizes, tt.sizes)
			}
			slices.Sort(all)
			if !slices.Equal(all, p.Cohort) {
				t.Errorf("buckets hold %v, want the cohort %v", all, p.Cohort)
			}
			if !cmp.Equal(buckets, p.Buckets()) {
				t.Errorf("Buckets is not deterministic")
			}
			for b, members := range buckets {
				for i, m := range members {
					gb, gm, id, ok := p.Bucket(m)
					if !ok || gb != b || id != uint32(i+1) || !slices.Equal(gm, members) {
						t.Errorf("Bucket(%s) = %d, %v, %d, %v; want %d, %v, %d", m, gb, gm, id, ok, b, members, i+1)
					}
				}
			}
		})
	}
	if _, _, _, ok := plan(4, 2).Bucket("stranger"); ok {
		t.Errorf("Bucket(stranger) found a bucket")
	}
}

// The split depends on the start manifest, round and attempt, and nothing
// the coordinator chooses besides the cohort: different seeds give
// different splits (checked over several so that one coincidence cannot
// pass).
func TestBucketsFollowSeed(t *testing.T) {
	base := plan(12, 2)
	variants := map[string]func(*secureround.Plan){
		"attempt":    func(p *secureround.Plan) { p.Attempt++ },
		"round":      func(p *secureround.Plan) { p.Round++ },
		"start":      func(p *secureround.Plan) { p.Start[31] ^= 1 },
		"federation": func(p *secureround.Plan) { p.Federation = "other" },
	}
	for name, mutate := range variants {
		p := base
		mutate(&p)
		if cmp.Equal(p.Buckets(), base.Buckets()) {
			t.Errorf("changing the %s leaves the split unchanged", name)
		}
		if slices.Equal(p.Session(0).Session, base.Session(0).Session) {
			t.Errorf("changing the %s leaves the session identifier unchanged", name)
		}
	}
}

func TestSessionConfig(t *testing.T) {
	for _, tt := range []struct {
		name                string
		n, bucket, degree   int
		percent             int
		wantN, wantT, wantD int
	}{
		{"complete, default threshold", 4, 0, 0, 67, 4, 3, 0},
		{"bucket of two needs both", 4, 2, 0, 67, 2, 2, 0},
		{"more than half whatever the percent", 10, 0, 0, 10, 10, 6, 0},
		{"all", 5, 0, 0, 100, 5, 5, 0},
		{"degree beyond the bucket means complete", 6, 0, 9, 67, 6, 5, 0},
		{"odd degree on odd bucket rounds up", 9, 0, 3, 67, 9, 4, 4},
		{"k-regular threshold counts the neighbourhood", 20, 0, 6, 67, 20, 5, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(tt.n, tt.bucket)
			p.Degree, p.ThresholdPercent = tt.degree, tt.percent
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
			c := p.Session(0)
			if c.N != tt.wantN || c.Threshold != tt.wantT || c.Degree != tt.wantD || c.Dim != p.Dim+1 {
				t.Errorf("Session(0) = N %d T %d degree %d dim %d, want %d %d %d %d", c.N, c.Threshold, c.Degree, c.Dim, tt.wantN, tt.wantT, tt.wantD, p.Dim+1)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Session(0).Validate() = %v", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*secureround.Plan)
		want   string
	}{
		{"cohort of one", func(p *secureround.Plan) { p.Cohort = p.Cohort[:1] }, "cohort of 1"},
		{"unsorted cohort", func(p *secureround.Plan) { p.Cohort[0], p.Cohort[1] = p.Cohort[1], p.Cohort[0] }, "not sorted"},
		{"duplicate member", func(p *secureround.Plan) { p.Cohort[1] = p.Cohort[0] }, "duplicates"},
		{"bad name", func(p *secureround.Plan) { p.Cohort[0] = "Hospital A" }, "cohort member 0"},
		{"bucket of one", func(p *secureround.Plan) { p.BucketSize = 1 }, "bucket size 1"},
		{"bucket larger than cohort", func(p *secureround.Plan) { p.BucketSize = 5 }, "bucket size 5"},
		{"threshold percent zero", func(p *secureround.Plan) { p.ThresholdPercent = 0 }, "threshold_percent 0"},
		{"weight unit zero", func(p *secureround.Plan) { p.WeightUnit = 0 }, "weight_unit 0"},
		{"negative norm clip", func(p *secureround.Plan) { p.NormClip = -1 }, "norm_clip -1"},
		{"no phase timeout", func(p *secureround.Plan) { p.PhaseTimeout = 0 }, "phase timeout"},
		{"no parameters", func(p *secureround.Plan) { p.Dim = 0 }, "0 parameters"},
		{"budget", func(p *secureround.Plan) { p.Params.QuantBits = 21 }, "bit budget"},
		{"clip zero", func(p *secureround.Plan) { p.Params.Clip = 0 }, "Clip"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(4, 0)
			tt.mutate(&p)
			err := p.Check()
			if !errors.Is(err, secureround.ErrPlan) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check() = %v, want ErrPlan naming %q", err, tt.want)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	p := plan(5, 2)
	p.NormClip, p.Degree = 3.5, 0
	got, err := secureround.FromProto(p.Federation, p.Start, p.Round, p.Attempt, p.Dim, p.Proto())
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got, p) {
		t.Errorf("FromProto(Proto()) differs:\n%s", cmp.Diff(p, got))
	}
	if _, err := secureround.FromProto("demo", p.Start, 1, 0, 10, nil); !errors.Is(err, secureround.ErrPlan) {
		t.Errorf("FromProto(nil) = %v, want ErrPlan", err)
	}
}

func TestWeight(t *testing.T) {
	p := plan(4, 0)
	p.WeightUnit = 10
	for _, tt := range []struct{ samples, want uint64 }{
		{0, 1}, {1, 1}, {10, 1}, {11, 2}, {10240, 1024}, {1 << 40, 1024},
	} {
		if got := p.Weight(tt.samples); got != tt.want {
			t.Errorf("Weight(%d) = %d, want %d", tt.samples, got, tt.want)
		}
	}
}

func TestThreshold(t *testing.T) {
	for _, tt := range []struct{ m, percent, want int }{
		{2, 67, 2}, {3, 67, 3}, {4, 67, 3}, {6, 67, 5}, {6, 50, 4}, {100, 67, 67}, {100, 1, 51}, {7, 100, 7},
	} {
		if got := secureround.Threshold(tt.m, tt.percent); got != tt.want {
			t.Errorf("Threshold(%d, %d) = %d, want %d", tt.m, tt.percent, got, tt.want)
		}
	}
}

// TestLargestBucket checks LargestBucket against the buckets Buckets
// draws: never smaller than the largest, and reached.
func TestLargestBucket(t *testing.T) {
	for _, s := range []int{0, 2, 3, 5} {
		reached := false
		for n := max(2, s); n <= 30; n++ {
			largest := 0
			for _, b := range plan(n, s).Buckets() {
				largest = max(largest, len(b))
			}
			got := secureround.LargestBucket(n, s)
			if largest > got {
				t.Errorf("LargestBucket(%d, %d) = %d, but Buckets gives one of %d", n, s, got, largest)
			}
			reached = reached || largest == got
		}
		if !reached {
			t.Errorf("LargestBucket(·, %d) is never reached for n ≤ 30", s)
		}
	}
}

// TestInput checks that the inputs of a bucket, summed modulo 2^32 as the
// unmasked SecAgg sum is, decode to the weighted mean of the members'
// updates clipped to NormClip.
func TestInput(t *testing.T) {
	p := plan(4, 0)
	p.Dim = 2
	p.NormClip = 1
	deltas := [][]float32{{0.3, 0.4}, {-6, 8}} // the second is clipped to norm 1: (−0.6, 0.8)
	samples := []uint64{1, 3}
	sum := make([]uint32, p.Dim+1)
	for i, d := range deltas {
		in, err := p.Input(d, samples[i], rand.NewChaCha8([32]byte{byte(i)}))
		if err != nil {
			t.Fatalf("Input(%v): %v", d, err)
		}
		for j, v := range in {
			sum[j] += v
		}
	}
	mean := make([]float32, p.Dim)
	w, err := p.Params.Decode(mean, sum)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{(0.3 - 3*0.6) / 4, (0.4 + 3*0.8) / 4}
	for j := range want {
		if d := math.Abs(float64(mean[j]) - want[j]); w != 4 || d > p.Params.ErrorBound(2) {
			t.Errorf("decoded mean %v with weight %d, want %v with weight 4 (error bound %g)", mean, w, want, p.Params.ErrorBound(2))
		}
	}
	if _, err := p.Input([]float32{float32(math.NaN()), 0}, 1, rand.NewChaCha8([32]byte{})); !errors.Is(err, secagg.ErrInput) {
		t.Errorf("Input(NaN) = %v, want secagg.ErrInput", err)
	}
}
