package aggregation

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAggregateWritesAllOfDst: every rule, with bucketing and norm
// clipping, and the out-of-core paths, write every coordinate of dst: the
// aggregate into a dst full of NaN has the bits of the aggregate into a
// zeroed one. The coordinator's close relies on it to skip clearing its
// model-sized aggregate first.
func TestAggregateWritesAllOfDst(t *testing.T) {
	configs := []Config{
		{Rule: NameFedAvg}, {Rule: NameFedAvg, MaxSamples: 30},
		{Rule: NameMedian}, {Rule: NameMedian, F: 1},
		{Rule: NameTrimmedMean, Beta: 0.2},
		{Rule: NameKrum, F: 1}, {Rule: NameMultiKrum, F: 1, M: 3},
		{Rule: NameBulyan, F: 1},
		{Rule: NameCenteredClipping, F: 1, Tau: 1},
		{Rule: NameRFA, F: 1},
		{Rule: NameFedAvg, NormClip: 0.5}, {Rule: NameMedian, Bucket: 2},
		{Rule: NameKrum, F: 1, Bucket: 2, NormClip: 1},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, d := range []int{1, 7, colChunk + 5} {
		us := randomUpdates(rng, 9, d)
		for _, c := range configs {
			rule, err := New(c)
			if err != nil {
				t.Fatalf("New(%+v) = %v", c, err)
			}
			seeded := func() Rule { return WithRand(rule, bytes.NewReader(bytes.Repeat([]byte{7}, 1<<16))) }
			want := make([]float32, d)
			if _, err := seeded().Aggregate(want, us); err != nil {
				t.Fatalf("%+v d=%d: Aggregate = %v", c, d, err)
			}
			dirty := make([]float32, d)
			for i := range dirty {
				dirty[i] = float32(math.NaN())
			}
			if _, err := seeded().Aggregate(dirty, us); err != nil {
				t.Fatalf("%+v d=%d: Aggregate into NaN = %v", c, d, err)
			}
			same(t, c, d, "", dirty, want)
			if !SupportsOutOfCore(rule) {
				continue
			}
			for i := range dirty {
				dirty[i] = float32(math.NaN())
			}
			headers := make([]Update, len(us))
			for i, u := range us {
				headers[i] = Update{ID: u.ID, Samples: u.Samples}
			}
			if _, err := AggregateOutOfCore(rule, dirty, headers, OutOfCore{Rows: &memRows{xs: vectors(us), failRow: -1}}); err != nil {
				t.Fatalf("%+v d=%d: AggregateOutOfCore into NaN = %v", c, d, err)
			}
			same(t, c, d, "out of core ", dirty, want)
		}
	}
}

func same(t *testing.T, c Config, d int, path string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%+v d=%d: %scoordinate %d into a NaN-filled dst is %v, into a zeroed one %v", c, d, path, i, got[i], want[i])
		}
	}
}
