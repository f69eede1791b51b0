package secagg

import (
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/math/polynomial"
)

// TestLagrangeBases: the batched coefficients are circl's
// polynomial.LagrangeBase at 0, for holder sets of the sizes thresholds
// take (1, small, a SecAgg+ neighbourhood, a large complete graph), in
// increasing and scattered order, computed together (one inversion for
// all the sets), each set alone, and none.
func TestLagrangeBases(t *testing.T) {
	zero := group.Ristretto255.NewScalar()
	sets := [][]uint32{
		{7},
		{1, 2},
		{3, 1, 2},
		{1000, 5, 999, 17, 2, 640},
		{4294967295, 1, 4294967294, 65536, 3}, // factors near 2³²: the 64-bit pieces overflow at once
		seq(1, 21),
		seq(100, 767),
	}
	if got := lagrangeBases(nil); len(got) != 0 {
		t.Fatalf("lagrangeBases(nil) = %v", got)
	}
	together := lagrangeBases(sets)
	for k, ids := range sets {
		xs := make([]group.Scalar, len(ids))
		for i, id := range ids {
			xs[i] = idScalar(id)
		}
		alone := lagrangeBases([][]uint32{ids})[0]
		for j := range xs {
			want := polynomial.LagrangeBase(uint(j), xs, zero)
			if !together[k][j].IsEqual(want) || !alone[j].IsEqual(want) {
				t.Fatalf("%d points: coefficient %d = %v (together), %v (alone), want %v", len(xs), j, together[k][j], alone[j], want)
			}
		}
	}
}

// seq is lo, lo+1, ..., hi.
func seq(lo, hi uint32) []uint32 {
	var out []uint32
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}
