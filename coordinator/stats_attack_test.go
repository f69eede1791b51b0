package coordinator_test

import (
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/fedtest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestStatsAttack (issue 12, item 2): one enrolled hospital sending
// extreme statistics used to set the federation's scaling (mean ≈ 1e297
// with the 1e300 attack) so that every honest hospital diverged, and the
// audit log could not tell whose statistics did it. Before the fix both
// cases failed: the scaling mean came out at 2.5e299 and 2.5e149, and no
// event named hospital-c. Now impossible statistics are refused, possible
// but extreme ones are clipped to the honest band, the scaling stays in
// the honest range, and the log names the clipped hospital and holds the
// digest of what it sent.
func TestStatsAttack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bad  stats
		// refused: ReportStats answers InvalidArgument.
		refused bool
	}{
		{"the 1e300 attack", stats{count: 1, sum: []float64{1e300, 7}, sumSq: []float64{1e300, 49}}, true},
		{"extreme but possible", stats{count: 1, sum: []float64{1e150, 7}, sumSq: []float64{1e300, 49}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFederation(t, abc)
			f.cfg.LongPoll = coordinator.Duration(time.Second)
			f.cfg.StatsTimeout = coordinator.Duration(500 * time.Millisecond)
			s, ps := f.startConnected(t, abc...)
			_, err := ps[2].svc.ReportStats(callCtx(t, 10*time.Second), &fedguardv1.ReportStatsRequest{
				Stats: &fedguardv1.FeatureStats{Count: tt.bad.count, Sum: tt.bad.sum, SumSquares: tt.bad.sumSq},
			})
			if tt.refused {
				wantCode(t, "ReportStats(attack)", err, codes.InvalidArgument)
			} else if err != nil {
				t.Fatalf("ReportStats(extreme) = %v", err)
			}
			ps[0].reportStats(t, statsA)
			ps[1].reportStats(t, statsB)
			waitScalingFixed(t, ps[0], 10*time.Second)
			a := assignments(t, ps)[0]
			// The honest values of f1 are 1, 3 and 5.
			sc := a.GetScaling()
			if m, sd := sc.GetMean()[0], sc.GetStd()[0]; !(m > 0 && m < 20) || !(sd > 0 && sd < 20) || sc.GetMean()[1] != 7 || sc.GetStd()[1] != 1 {
				t.Errorf("scaling mean %v std %v; want f1 within the honest range (0, 20) and f2 = 7 ± 1", sc.GetMean(), sc.GetStd())
			}
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			fixed := fedtest.AuditEvents(t, f.cfg, audit.KindScalingFixed)
			if len(fixed) != 1 {
				t.Fatalf("%d scaling_fixed events, want 1", len(fixed))
			}
			var sf audit.ScalingFixed
			if err := json.Unmarshal(fixed[0].Payload, &sf); err != nil {
				t.Fatal(err)
			}
			if sf.Rule == "" {
				t.Errorf("scaling_fixed %+v names no rule", sf)
			}
			if tt.refused {
				if len(sf.Participants) != 2 || len(sf.Clipped) != 0 {
					t.Errorf("scaling_fixed %+v; want the two honest hospitals, none clipped", sf)
				}
				return
			}
			if len(sf.Clipped) != 1 || sf.Clipped[0].Participant != abc[2] {
				t.Errorf("scaling_fixed clipped %+v, want %s named", sf.Clipped, abc[2])
			}
			want := dataset.Stats{Count: tt.bad.count, Sum: tt.bad.sum, SumSquares: tt.bad.sumSq}.Digest()
			found := false
			for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindStatsReceived) {
				p := fedtest.Payload[audit.StatsReceived](t, e)
				if e.Actor == abc[2] {
					found = p.SHA256 == hex.EncodeToString(want[:])
				}
				if len(p.SHA256) != 64 {
					t.Errorf("stats_received of %s has digest %q", e.Actor, p.SHA256)
				}
			}
			if !found {
				t.Errorf("no stats_received of %s with the digest of what it sent", abc[2])
			}
		})
	}
}
