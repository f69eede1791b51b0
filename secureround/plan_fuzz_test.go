package secureround_test

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/internal/fedtest/protofuzz"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// FuzzFromProto feeds FromProto whole SecureRound messages, as a
// coordinator (or whoever speaks for it) could send them in a round
// assignment. It must never panic, every refusal must wrap ErrPlan, and a
// plan it accepts must pass Check, survive the round trip through Proto,
// and split its cohort into buckets of at least two that hold every
// member exactly once. (FuzzPlanDP varies only the DP parameters.)
func FuzzFromProto(f *testing.F) {
	dp := plan(4, 0)
	dp.DP = &secagg.DDP{ClipNorm: 1, Scale: 512, Sigma2: 400, Beta: 0.6}
	protofuzz.Seed(f,
		plan(4, 0).Proto(), plan(7, 3).Proto(), plan(10, 4).Proto(), dp.Proto(),
		&fedguardv1.SecureRound{},
		&fedguardv1.SecureRound{Cohort: []string{"b", "a"}, BucketSize: 1, ThresholdPercent: 101},
	)
	protofuzz.Fuzz(f, func(t *testing.T, m *fedguardv1.SecureRound) {
		const dim = 10
		p, err := secureround.FromProto("demo", [32]byte{1, 2, 3}, 3, 1, dim, m)
		if err != nil {
			if !errors.Is(err, secureround.ErrPlan) {
				t.Fatalf("FromProto refused with %v, which does not wrap ErrPlan", err)
			}
			return
		}
		if err := p.Check(); err != nil {
			t.Fatalf("accepted a plan Check refuses: %v", err)
		}
		again, err := secureround.FromProto("demo", [32]byte{1, 2, 3}, 3, 1, dim, p.Proto())
		if err != nil {
			t.Fatalf("FromProto(Proto()) of an accepted plan: %v", err)
		}
		if !proto.Equal(again.Proto(), p.Proto()) {
			t.Fatalf("round trip changed the plan: %v → %v", p.Proto(), again.Proto())
		}
		var seen []string
		for b, members := range p.Buckets() {
			if len(members) < 2 {
				t.Fatalf("bucket %d has %d members", b, len(members))
			}
			seen = append(seen, members...)
		}
		slices.Sort(seen)
		if !slices.Equal(seen, p.Cohort) {
			t.Fatalf("buckets hold %v, the cohort is %v", seen, p.Cohort)
		}
	})
}
