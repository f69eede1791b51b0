package aggregation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// robustConfigs are the robust rules for a cohort of n with f Byzantine.
func robustConfigs(n, f int) []Config {
	return []Config{
		{Rule: "median", F: f},
		{Rule: "trimmed-mean", Beta: float64(f) / float64(n), F: f},
		{Rule: "krum", F: f},
		{Rule: "multi-krum", F: f, M: n - f},
		{Rule: "multi-krum", F: f, M: 2},
		{Rule: "bulyan", F: f},
		{Rule: "centered-clipping", Tau: 0.5, F: f},
		{Rule: "centered-clipping", Tau: 0.5, Iterations: 10, F: f},
	}
}

func aggregate(t *testing.T, c Config, us []Update, seed uint64) ([]float32, Report) {
	t.Helper()
	rule, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	rule = WithRand(rule, rand.NewChaCha8([32]byte{byte(seed)}))
	dst := make([]float32, len(us[0].Delta))
	rep, err := rule.Aggregate(dst, us)
	if err != nil {
		t.Fatalf("%s Aggregate: %v", configString(c), err)
	}
	return dst, rep
}

// TestPermutationInvariance: shuffling the updates leaves the aggregate
// unchanged and permutes the report.
func TestPermutationInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sz := range []struct{ n, f, d int }{{7, 1, 9}, {11, 2, 130}, {15, 3, 33}} {
		us := randomCohort(rng, sz.n, sz.d)
		perm := rng.Perm(sz.n)
		shuffled := make([]Update, sz.n)
		for i, p := range perm {
			shuffled[i] = us[p]
		}
		cs := append(robustConfigs(sz.n, sz.f), Config{}, Config{Rule: "krum", F: sz.f, NormClip: 3})
		for _, c := range cs {
			t.Run(fmt.Sprintf("n=%d %s", sz.n, configString(c)), func(t *testing.T) {
				a, ra := aggregate(t, c, us, 1)
				b, rb := aggregate(t, c, shuffled, 1)
				if j, ok := closeTo(b, f64(a), 1e-6); !ok {
					t.Errorf("shuffled dst[%d] = %v, want %v", j, b[j], a[j])
				}
				for i, p := range perm {
					ea, eb := ra.Entries[p], rb.Entries[i]
					if ea.ID != eb.ID || ea.Selected != eb.Selected || math.Abs(ea.Score-eb.Score) > 1e-5*(ea.Score+1e-30) || math.Abs(ea.Weight-eb.Weight) > 1e-12 {
						t.Errorf("shuffled entry %d = %+v, want %+v", i, eb, ea)
					}
				}
			})
		}
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// TestTrimmedMeanBetaZeroIsMean: β = 0 trims nothing.
func TestTrimmedMeanBetaZeroIsMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sz := range []struct{ n, d int }{{1, 3}, {2, 17}, {5, 100}, {13, 1025}} {
		us := randomCohort(rng, sz.n, sz.d)
		got, _ := aggregate(t, Config{Rule: "trimmed-mean"}, us, 0)
		want := refMean(refVectors(us), allIdx(sz.n))
		if j, ok := closeTo(got, want, 1e-6); !ok {
			t.Errorf("n=%d d=%d: trimmed-mean β=0 dst[%d] = %v, want the mean %v", sz.n, sz.d, j, got[j], want[j])
		}
	}
}

// TestByzantineStayInHonestRange moves f updates 1e6 away and checks the
// robust rules' aggregate stays within the honest updates' coordinate-wise
// range.
func TestByzantineStayInHonestRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, sz := range []struct{ n, f, d int }{{7, 1, 5}, {11, 2, 64}, {15, 3, 17}, {19, 4, 300}, {8, 1, 1}} {
		for trial := range 5 {
			us := randomCohort(rng, sz.n, sz.d)
			// The last f are Byzantine: an honest update pushed 1e6 away,
			// in a random direction or all in one.
			for b := sz.n - sz.f; b < sz.n; b++ {
				x := slices.Clone(us[rng.IntN(sz.n-sz.f)].Delta)
				for j := range x {
					dir := float32(1)
					if trial%2 == 1 {
						dir = float32(rng.NormFloat64())
					}
					x[j] += 1e6 * dir
				}
				us[b].Delta = x
			}
			lo := slices.Clone(us[0].Delta)
			hi := slices.Clone(us[0].Delta)
			for _, u := range us[:sz.n-sz.f] {
				for j, v := range u.Delta {
					lo[j], hi[j] = min(lo[j], v), max(hi[j], v)
				}
			}
			for _, c := range robustConfigs(sz.n, sz.f) {
				if c.CheckCohort(sz.n) != nil {
					continue
				}
				got, _ := aggregate(t, c, us, uint64(trial))
				for j, v := range got {
					slack := 1e-6 * float32(max(-lo[j], hi[j], 1))
					if v < lo[j]-slack || v > hi[j]+slack {
						t.Errorf("n=%d f=%d trial %d %s: dst[%d] = %v outside honest [%v, %v]", sz.n, sz.f, trial, configString(c), j, v, lo[j], hi[j])
						break
					}
				}
			}
		}
	}
}

// TestSampleCountsBuyNoWeight: robust rules ignore claimed counts.
func TestSampleCountsBuyNoWeight(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	us := randomCohort(rng, 11, 40)
	greedy := slices.Clone(us)
	greedy[3].Samples = math.MaxUint64
	greedy[4].Samples = 0
	cs := append(robustConfigs(11, 2), Config{Rule: "krum", F: 1, Bucket: 2}, Config{Rule: "median", NormClip: 1})
	for _, c := range cs {
		a, ra := aggregate(t, c, us, 3)
		b, rb := aggregate(t, c, greedy, 3)
		if !slices.Equal(a, b) {
			t.Errorf("%s: claiming 2⁶⁴−1 samples changed the aggregate", configString(c))
		}
		for i := range ra.Entries {
			if ra.Entries[i] != rb.Entries[i] {
				t.Errorf("%s: entry %d = %+v, want %+v", configString(c), i, rb.Entries[i], ra.Entries[i])
			}
		}
	}
	// FedAvg's cap bounds what a claim buys.
	capped := FedAvg{MaxSamples: 1000}
	dst := make([]float32, 40)
	rep, err := capped.Aggregate(dst, []Update{{ID: "a", Delta: us[0].Delta, Samples: 1000}, {ID: "b", Delta: us[1].Delta, Samples: math.MaxUint64}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries[0].Weight != 0.5 || rep.Entries[1].Weight != 0.5 || !strings.Contains(rep.Entries[1].Reason, "capped at 1000") {
		t.Errorf("capped FedAvg entries = %+v, want equal weights and the cap in b's reason", rep.Entries)
	}
}

// TestFedAvgBitIdentical: FedAvg{} through New, with a cap nobody reaches,
// and behind bucketing gives the same bits as the plain FedAvg.
func TestFedAvgBitIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	us := randomCohort(rng, 9, 5000)
	want := make([]float32, 5000)
	if _, err := (FedAvg{}).Aggregate(want, us); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{}, {Rule: "fedavg", MaxSamples: 1 << 40}, {Bucket: 3}} {
		got, _ := aggregate(t, c, us, 1)
		if !slices.Equal(got, want) {
			t.Errorf("%s: not bit-identical to FedAvg{}", configString(c))
		}
	}
}

// TestRefusesBadInputs: every rule refuses empty, ragged and non-finite
// inputs.
func TestRefusesBadInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	cs := append(robustConfigs(7, 1), Config{}, Config{Rule: "krum", Bucket: 2}, Config{Rule: "median", NormClip: 1})
	for _, c := range cs {
		for _, tc := range []struct {
			name string
			mut  func([]Update) []Update
			want error
		}{
			{"empty", func([]Update) []Update { return nil }, ErrNoUpdates},
			{"ragged", func(us []Update) []Update { us[2].Delta = us[2].Delta[:3]; return us }, ErrLength},
			{"nan", func(us []Update) []Update { us[1].Delta[0] = float32(math.NaN()); return us }, ErrNonFinite},
			{"inf", func(us []Update) []Update { us[6].Delta[4] = float32(math.Inf(1)); return us }, ErrNonFinite},
			{"-inf", func(us []Update) []Update { us[0].Delta[3] = float32(math.Inf(-1)); return us }, ErrNonFinite},
		} {
			t.Run(configString(c)+"/"+tc.name, func(t *testing.T) {
				rule, err := New(c)
				if err != nil {
					t.Fatal(err)
				}
				rule = WithRand(rule, rand.NewChaCha8([32]byte{}))
				dst := []float32{7, 7, 7, 7, 7}
				_, err = rule.Aggregate(dst, tc.mut(randomCohort(rng, 7, 5)))
				if !errors.Is(err, tc.want) {
					t.Fatalf("Aggregate = %v, want %v", err, tc.want)
				}
			})
		}
	}
}

// TestPreconditions: each violated precondition is its sentinel, from
// Aggregate and from Config.CheckCohort alike.
func TestPreconditions(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, tc := range []struct {
		c    Config
		n    int
		want error
	}{
		{Config{Rule: "krum", F: 1}, 4, ErrCohort},
		{Config{Rule: "krum"}, 2, ErrCohort},
		{Config{Rule: "multi-krum", F: 1, M: 1}, 4, ErrCohort},
		{Config{Rule: "multi-krum", F: 1, M: 5}, 5, ErrCohort},
		{Config{Rule: "bulyan", F: 1}, 6, ErrCohort},
		{Config{Rule: "bulyan", F: 2}, 10, ErrCohort},
		{Config{Rule: "median", F: 2}, 4, ErrCohort},
		{Config{Rule: "trimmed-mean", Beta: 0.4}, 3, ErrCohort},         // k = 2, 2k ≥ n
		{Config{Rule: "trimmed-mean", Beta: 0.1, F: 2}, 10, ErrCohort},  // k = 1 < f
		{Config{Rule: "centered-clipping", Tau: 1, F: 3}, 6, ErrCohort}, // 2f ≥ n
		{Config{Rule: "krum", F: 1, Bucket: 2}, 8, ErrCohort},           // 4 buckets < 2f+3
		{Config{Rule: "krum", F: -1}, 5, ErrConfig},
		{Config{Rule: "multi-krum", F: 1}, 5, ErrConfig}, // m missing
		{Config{Rule: "trimmed-mean", Beta: 0.5}, 5, ErrConfig},
		{Config{Rule: "trimmed-mean", Beta: -0.1}, 5, ErrConfig},
		{Config{Rule: "trimmed-mean", Beta: math.NaN()}, 5, ErrConfig},
		{Config{Rule: "centered-clipping"}, 5, ErrConfig}, // tau missing
		{Config{Rule: "centered-clipping", Tau: math.Inf(1)}, 5, ErrConfig},
		{Config{Rule: "centered-clipping", Tau: 1, Iterations: -1}, 5, ErrConfig},
		{Config{Rule: "krum", Beta: 0.1}, 5, ErrConfig},
		{Config{Rule: "fedavg", F: 1}, 5, ErrConfig},
		{Config{Rule: "median", MaxSamples: 5}, 5, ErrConfig},
		{Config{Rule: "median", NormClip: -1}, 5, ErrConfig},
		{Config{Rule: "median", NormClip: math.NaN()}, 5, ErrConfig},
		{Config{Rule: "median", Bucket: -2}, 5, ErrConfig},
		{Config{Rule: "Krum"}, 5, ErrUnknownRule},
	} {
		t.Run(fmt.Sprintf("%s n=%d", configString(tc.c), tc.n), func(t *testing.T) {
			if err := tc.c.CheckCohort(tc.n); !errors.Is(err, tc.want) {
				t.Errorf("CheckCohort(%d) = %v, want %v", tc.n, err, tc.want)
			}
			rule, err := New(tc.c)
			if tc.want != ErrCohort {
				if !errors.Is(err, tc.want) || !errors.Is(tc.c.Validate(), tc.want) {
					t.Errorf("New = %v, Validate = %v, want %v", err, tc.c.Validate(), tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("New = %v", err)
			}
			rule = WithRand(rule, rand.NewChaCha8([32]byte{}))
			dst := make([]float32, 3)
			if _, err := rule.Aggregate(dst, randomCohort(rng, tc.n, 3)); !errors.Is(err, tc.want) {
				t.Errorf("Aggregate(%d updates) = %v, want %v", tc.n, err, tc.want)
			}
			if err := tc.c.CheckCohort(tc.n + 100); err != nil {
				t.Errorf("CheckCohort(%d) = %v, want nil", tc.n+100, err)
			}
		})
	}
	// The exported types check their own parameters too.
	dst := make([]float32, 3)
	us := randomCohort(rng, 9, 3)
	for _, r := range []Rule{
		Krum{F: -1}, MultiKrum{F: 1}, Bulyan{F: -2}, Median{F: -1}, TrimmedMean{Beta: 0.7},
		CenteredClipping{Tau: 0}, NormClip{Bound: 0, Rule: Median{}}, NormClip{Bound: 1},
		Bucketing{Size: 0, Rule: Median{}}, Bucketing{Size: 2}, Bucketing{Size: -1},
	} {
		if _, err := r.Aggregate(dst, us); !errors.Is(err, ErrConfig) {
			t.Errorf("%#v.Aggregate = %v, want %v", r, err, ErrConfig)
		}
	}
}

// TestBucketingRandomness: no reader is ErrNoRand, a short reader is its
// error, and the same bytes give the same buckets.
func TestBucketingRandomness(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	us := randomCohort(rng, 10, 8)
	rule, err := New(Config{Rule: "median", Bucket: 3})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 8)
	if _, err := rule.Aggregate(dst, us); !errors.Is(err, ErrNoRand) {
		t.Errorf("Aggregate without WithRand = %v, want %v", err, ErrNoRand)
	}
	if _, err := WithRand(rule, bytes.NewReader(make([]byte, 20))).Aggregate(dst, us); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Aggregate with 20 random bytes = %v, want %v", err, io.ErrUnexpectedEOF)
	}
	if _, ok := rule.(Randomized); !ok {
		t.Errorf("New(bucket) = %T, not Randomized", rule)
	}
	if r := WithRand(Median{}, nil); r != (Median{}) {
		t.Errorf("WithRand(Median{}) = %#v, want it unchanged", r)
	}
	seed := [32]byte{1, 2, 3}
	var reps []Report
	for range 2 {
		_, rep := aggregate(t, Config{Rule: "median", Bucket: 3, NormClip: 2}, us, 0)
		rep2, err := WithRand(rule, rand.NewChaCha8(seed)).Aggregate(dst, us)
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep, rep2)
	}
	if fmt.Sprint(reps[0]) != fmt.Sprint(reps[2]) || fmt.Sprint(reps[1]) != fmt.Sprint(reps[3]) {
		t.Error("the same seed gave different buckets")
	}
	sizes := map[int]int{}
	for _, e := range reps[1].Entries {
		sizes[e.Bucket]++
		if !strings.HasPrefix(e.Reason, fmt.Sprintf("bucket %d of 4; median:", e.Bucket)) {
			t.Errorf("entry %+v: reason lacks its bucket", e)
		}
	}
	if fmt.Sprint(sizes) != "map[1:3 2:3 3:3 4:1]" {
		t.Errorf("bucket sizes %v, want three of 3 and one of 1", sizes)
	}
	// Every permutation of 4 is reachable and roughly uniform.
	counts := map[string]int{}
	src := rand.NewChaCha8([32]byte{9})
	for range 2400 {
		p, err := permutation(src, 4)
		if err != nil {
			t.Fatal(err)
		}
		counts[fmt.Sprint(p)]++
	}
	if len(counts) != 24 {
		t.Errorf("%d of 24 permutations drawn", len(counts))
	}
	for p, c := range counts {
		if c < 50 || c > 150 {
			t.Errorf("permutation %s drawn %d times in 2400", p, c)
		}
	}
}

// TestReports checks the entries' reasons and weights.
func TestReports(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	us := randomCohort(rng, 9, 6)
	us[8].Delta = []float32{1e3, 1e3, 1e3, 1e3, 1e3, 1e3}
	check := func(c Config, want func(i int, e Entry) string) {
		t.Helper()
		_, rep := aggregate(t, c, us, 0)
		if rep.Rule == "" || len(rep.Entries) != len(us) {
			t.Fatalf("%s: report %+v", configString(c), rep)
		}
		for i, e := range rep.Entries {
			if msg := want(i, e); msg != "" {
				t.Errorf("%s: entry %d %+v: %s", configString(c), i, e, msg)
			}
		}
	}
	check(Config{Rule: "multi-krum", F: 1, M: 3}, func(i int, e Entry) string {
		if e.Selected != (e.Weight == 1.0/3) || e.Score <= 0 {
			return "weight 1/3 iff selected, positive score"
		}
		if i == 8 && (e.Selected || !strings.HasPrefix(e.Reason, "multi-krum: score ") || !strings.Contains(e.Reason, "not among the 3 lowest")) {
			return "outlier must be excluded as not among the 3 lowest"
		}
		return ""
	})
	check(Config{Rule: "krum", F: 1, NormClip: 10}, func(i int, e Entry) string {
		if i == 8 && (e.Clip >= 1 || !strings.HasPrefix(e.Reason, "norm-clip: norm 2449.49 > 10, scaled by 0.00408248; krum: score")) {
			return "outlier must be clipped and say so"
		}
		if e.Clip <= 0 || e.Clip > 1 {
			return "clip factor out of (0, 1]"
		}
		return ""
	})
	check(Config{Rule: "bulyan", F: 1}, func(i int, e Entry) string {
		if i == 8 && (e.Selected || !strings.HasPrefix(e.Reason, "bulyan: not among the 7 chosen")) {
			return "outlier must not be chosen"
		}
		return ""
	})
	check(Config{Rule: "centered-clipping", Tau: 1}, func(i int, e Entry) string {
		if i == 8 && !strings.Contains(e.Reason, "scaled by") {
			return "outlier must be clipped"
		}
		return ""
	})
	check(Config{Rule: "trimmed-mean", Beta: 0.2}, func(i int, e Entry) string {
		if !e.Selected || !strings.HasPrefix(e.Reason, "trimmed-mean: 2 lowest and 2 highest of 9 values dropped") {
			return "wrong reason"
		}
		return ""
	})
	var sum float64
	check(Config{Rule: "multi-krum", F: 1, M: 2, Bucket: 2}, func(i int, e Entry) string {
		sum += e.Weight
		if e.Bucket < 1 || e.Bucket > 5 || e.Selected != (e.Weight > 0) {
			return "bucketed weight must be positive iff selected"
		}
		return ""
	})
	if math.Abs(sum-1) > 1e-12 {
		t.Errorf("bucketed multi-krum weights sum to %v", sum)
	}
}

// TestTrimCount pins the rounding of k = ⌈β·n⌉.
func TestTrimCount(t *testing.T) {
	for _, tc := range []struct {
		beta float64
		n, k int
	}{{0, 10, 0}, {0.1, 30, 3}, {0.1, 31, 4}, {0.2, 5, 1}, {0.2, 6, 2}, {1.0 / 3, 9, 3}, {0.49, 100, 49}, {0.01, 1, 1}} {
		if k := trimCount(tc.beta, tc.n); k != tc.k {
			t.Errorf("trimCount(%v, %d) = %d, want %d", tc.beta, tc.n, k, tc.k)
		}
	}
}

// TestBulyanLastPassOutlierFirst: at f = 1 Bulyan's last Krum pass has 3
// updates left and n−f−2 = 0 neighbours to sum, so every score was 0 and
// the tie went to the smallest ID, here a far outlier. Each pass now sums
// at least its one nearest neighbour, so the two close updates outscore it.
func TestBulyanLastPassOutlierFirst(t *testing.T) {
	vals := []float32{1e6, 0, 1, 2, 3, 4, 5} // "a" is the outlier
	updates := make([]Update, len(vals))
	for i, v := range vals {
		updates[i] = Update{ID: string(rune('a' + i)), Delta: []float32{v, -v}, Samples: 1}
	}
	rule, err := New(Config{Rule: NameBulyan, F: 1})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 2)
	rep, err := rule.Aggregate(dst, updates)
	if err != nil {
		t.Fatal(err)
	}
	chosen := 0
	for _, e := range rep.Entries {
		if e.Selected {
			chosen++
		}
	}
	if a := rep.Entries[0]; a.Selected || chosen != 5 {
		t.Errorf("outlier a selected %v (%s), %d chosen, want a left out of the 5", a.Selected, a.Reason, chosen)
	}
	if !(dst[0] >= 0 && dst[0] <= 5 && dst[1] == -dst[0]) {
		t.Errorf("aggregate = %v, want within the honest values", dst)
	}
}
