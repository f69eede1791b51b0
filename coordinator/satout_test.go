package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/fedtest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestReportSatOut: only a member of the open attempt's cohort that sent
// no update may sit it out; a valid sit-out is audited once under the
// caller's name, the coordinator stops offering it the attempt and refuses
// its update, and the round closes without waiting for it.
func TestReportSatOut(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Training.Rounds = 1
	f.cfg.RoundTimeout = 60_000_000_000 // a minute: the round must close sooner
	s, ps := f.startScaled(t, abc...)
	as := assignments(t, ps)
	round, attempt := as[0].GetRound(), as[0].GetAttempt()
	sitOut := func(p int, req *fedguardv1.ReportSatOutRequest) error {
		_, err := ps[p].svc.ReportSatOut(callCtx(t, 5*time.Second), req)
		return err
	}
	if _, err := ps[0].submit(t, round, update{delta: deltas(1), samples: 5}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		p    int
		req  *fedguardv1.ReportSatOutRequest
		want codes.Code
	}{
		{"no reason", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt}, codes.InvalidArgument},
		{"reason not a token", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "Trainer crashed!"}, codes.InvalidArgument},
		{"detail too long", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "trainer_crash", Detail: strings.Repeat("x", 1025)}, codes.InvalidArgument},
		{"control characters", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "trainer_crash", Detail: "a\x1b[2Jb"}, codes.InvalidArgument},
		{"another round", 2, &fedguardv1.ReportSatOutRequest{Round: round + 1, Attempt: attempt, Reason: "trainer_crash"}, codes.FailedPrecondition},
		{"another attempt", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt + 1, Reason: "trainer_crash"}, codes.FailedPrecondition},
		{"after its update", 0, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "trainer_crash"}, codes.AlreadyExists},
		{"valid", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "trainer_timeout", Detail: "killed after 30m"}, codes.OK},
		{"twice", 2, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: attempt, Reason: "trainer_timeout"}, codes.FailedPrecondition},
	} {
		wantCode(t, "ReportSatOut: "+tt.name, sitOut(tt.p, tt.req), tt.want)
	}
	_, err := ps[2].submit(t, round, update{delta: deltas(3), samples: 5})
	wantCode(t, "an update after sitting out", err, codes.FailedPrecondition)
	if _, err := ps[1].submit(t, round, update{delta: deltas(2), samples: 5}); err != nil {
		t.Fatal(err)
	}
	recs := waitRounds(t, s.c, 1, 20*time.Second)
	if r := recs[0]; len(r.SatOut) != 1 || r.SatOut[0].Name != "hospital-c" || r.SatOut[0].Reason != "trainer_timeout: killed after 30m" {
		t.Errorf("round 1 sat out %+v, want hospital-c's trainer_timeout", r.SatOut)
	}
	s.stop(t)
	evs := fedtest.AuditEvents(t, f.cfg, audit.KindRoundSatOut)
	if len(evs) != 1 || evs[0].Actor != "hospital-c" || evs[0].Round != round || !strings.Contains(string(evs[0].Payload), `"reason":"trainer_timeout"`) {
		t.Errorf("round_sat_out events = %+v, want one by hospital-c", evs)
	}
}
