package coordinator_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
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

// TestReportSatOutAfterFailedAttempt (trial): a member of the attempt that
// failed last may still say why it left it. A member of a secure session
// that finds a bad share reports it once it has checked its shares, after
// its training; by then the session may have failed because the others
// left, and the report was refused as for a round not open, so the
// accusation was lost. It is now recorded (audit log) and changes no
// round; a report for an older attempt, another round, or from a
// participant outside the failed attempt's cohort is still refused.
func TestReportSatOutAfterFailedAttempt(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Training.Rounds = 1
	f.cfg.MinParticipants = 2
	f.cfg.RoundTimeout = coordinator.Duration(time.Second) // no update comes: attempt 0 fails
	f.cfg.StatsTimeout = coordinator.Duration(time.Second) // hospital-c joins later
	f.cfg.CohortTimeout = coordinator.Duration(time.Second)
	s, ps := f.startScaled(t, abc[:2]...)
	first := assignments(t, ps)[0]
	round := first.GetRound()
	// Attempt 0 fails at its deadline; the next needs two members ready,
	// and none asks.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, err := ps[0].getModel(t, round)
		if status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "no round is") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt %d of round %d did not fail: GetModel = %v", first.GetAttempt(), round, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	third := f.connect(t, s, abc[2])[0]
	for _, tt := range []struct {
		name string
		p    *participant
		req  *fedguardv1.ReportSatOutRequest
		want codes.Code
	}{
		{"the failed attempt", ps[1], &fedguardv1.ReportSatOutRequest{Round: round, Attempt: first.GetAttempt(), Reason: "secure_bad_share", Detail: "the share of hospital-a failed"}, codes.OK},
		{"another round", ps[1], &fedguardv1.ReportSatOutRequest{Round: round + 1, Attempt: first.GetAttempt(), Reason: "secure_bad_share"}, codes.FailedPrecondition},
		{"not in its cohort", third, &fedguardv1.ReportSatOutRequest{Round: round, Attempt: first.GetAttempt(), Reason: "secure_bad_share"}, codes.FailedPrecondition},
	} {
		_, err := tt.p.svc.ReportSatOut(callCtx(t, 5*time.Second), tt.req)
		wantCode(t, "ReportSatOut: "+tt.name, err, tt.want)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindRoundSatOut) {
		p := fedtest.Payload[audit.RoundSatOut](t, e)
		got = append(got, fmt.Sprintf("%s %d %s", e.Actor, p.Attempt, p.Reason))
	}
	if want := []string{fmt.Sprintf("%s %d secure_bad_share", ps[1].name, first.GetAttempt())}; !slices.Equal(got, want) {
		t.Errorf("round_sat_out events %q, want %q", got, want)
	}
}
