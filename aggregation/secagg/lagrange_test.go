package secagg

import (
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/math/polynomial"
)

// TestLagrangeAtZero: the batched coefficients are circl's
// polynomial.LagrangeBase at 0, for holder sets of the sizes thresholds
// take (1, small, a SecAgg+ neighbourhood, a large complete graph), in
// increasing and scattered order.
func TestLagrangeAtZero(t *testing.T) {
	zero := group.Ristretto255.NewScalar()
	for _, ids := range [][]uint32{
		{7},
		{1, 2},
		{3, 1, 2},
		{1000, 5, 999, 17, 2, 640},
		{4294967295, 1, 4294967294, 65536, 3}, // factors near 2³²: the 64-bit pieces overflow at once
		seq(1, 21),
		seq(100, 767),
	} {
		xs := make([]group.Scalar, len(ids))
		for i, id := range ids {
			xs[i] = idScalar(id)
		}
		got := lagrangeAtZero(ids)
		for j := range xs {
			if want := polynomial.LagrangeBase(uint(j), xs, zero); !got[j].IsEqual(want) {
				t.Fatalf("%d points: coefficient %d = %v, want %v", len(xs), j, got[j], want)
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
