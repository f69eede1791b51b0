package coordinator_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/fedtest/hammer"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// decline sends a SecureDecline for asg's attempt and waits for the
// coordinator to end the stream.
func (p *participant) decline(t *testing.T, asg *fedguardv1.RoundAssignment, reason string) error {
	stream, err := p.svc.SecureAggregate(callCtx(t, 10*time.Second))
	if err != nil {
		return err
	}
	if err := stream.Send(&fedguardv1.SecureAggregateRequest{Round: asg.GetRound(), Attempt: asg.GetAttempt(),
		Body: &fedguardv1.SecureAggregateRequest_Decline{Decline: &fedguardv1.SecureDecline{Reason: reason}}}); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for err == nil {
		_, err = stream.Recv()
	}
	if err != io.EOF {
		return fmt.Errorf("%s: decline answered with %w", p.name, err)
	}
	return nil
}

// pollRounds has every participant of ps call WaitRound again and again,
// handing each assignment to onAssign (nil: dropped), until the returned
// function is called (more calls do nothing); it waits for them.
func pollRounds(t *testing.T, ps []*participant, onAssign func(*participant, *fedguardv1.RoundAssignment)) (stop func()) {
	return hammer.Start(len(ps), func(i int) bool {
		resp, err := ps[i].svc.WaitRound(callCtx(t, 2*time.Second), &fedguardv1.WaitRoundRequest{})
		if a := resp.GetAssignment(); err == nil && a != nil && onAssign != nil {
			onAssign(ps[i], a)
		}
		return true
	})
}

// TestSecureRoundWedgedByDeclines: every hospital declines round 1 as
// already revealed (as after the crash of issue 12 before hospitals could
// resume a session), and keeps asking for rounds as an agent does. The
// coordinator must not retry in a hot loop: it leaves the decliners out of
// later attempts, finds that too few are left, opens no attempt at all and
// says so in its status and metrics, while the audit log stops growing.
// Before the fix it opened a new attempt as fast as the hospitals declined
// it.
func TestSecureRoundWedgedByDeclines(t *testing.T) {
	t.Parallel()
	f := secureFederation(t)
	s, ps := f.startScaled(t, abcd...)

	var assigned atomic.Int32
	stopPolling := pollRounds(t, ps, func(p *participant, a *fedguardv1.RoundAssignment) {
		assigned.Add(1)
		if err := p.decline(t, a, secureround.DeclineAlreadyRevealed); err != nil {
			t.Error(err)
		}
	})
	defer stopPolling()

	deadline := time.Now().Add(20 * time.Second)
	var st coordinator.Status
	for st = s.c.Status(); st.Wedged == "" && time.Now().Before(deadline); st = s.c.Status() {
		time.Sleep(20 * time.Millisecond)
	}
	if st.Wedged == "" {
		t.Fatalf("not wedged after 20 s: %d assignments, %d failed attempts in a row (last: %s)", assigned.Load(), st.FailedAttempts, st.LastFailure)
	}
	t.Logf("wedged: %s", st.Wedged)
	if !slices.Equal(st.SittingOut, abcd) || st.FailedAttempts != 1 || st.Phase != "cohort" {
		t.Errorf("status: sitting out %v, %d failed attempts, phase %s; want %v, 1, cohort", st.SittingOut, st.FailedAttempts, st.Phase, abcd)
	}
	if g := gauge(t, s.c, "fedguard_round_wedged"); g != 1 {
		t.Errorf("fedguard_round_wedged = %v, want 1", g)
	}
	if g := gauge(t, s.c, "fedguard_round_failed_attempts"); g != 1 {
		t.Errorf("fedguard_round_failed_attempts = %v, want 1", g)
	}
	size := st.Audit.Size
	time.Sleep(3 * time.Second) // the hospitals keep asking
	if got := s.c.Status().Audit.Size; got != size {
		t.Errorf("the audit log grew from %d to %d events while the round was wedged", size, got)
	}
	if n := assigned.Load(); n != int32(len(abcd)) {
		t.Errorf("%d assignments, want %d (one attempt, declined by all)", n, len(abcd))
	}
	keys := s.c.PublicKeys()
	stopPolling()
	s.stop(t)
	kinds := auditKinds(t, f.cfg, keys)
	if kinds[audit.KindRoundOpened] != 1 || kinds[audit.KindRoundFailed] != 1 || kinds[audit.KindSecureDeclined] != len(abcd) {
		t.Errorf("audit log: %d round_opened, %d round_failed, %d secure_declined; want 1, 1, %d", kinds[audit.KindRoundOpened], kinds[audit.KindRoundFailed], kinds[audit.KindSecureDeclined], len(abcd))
	}
}

// TestSecureAttemptSurvivesRestart: a restarted coordinator offers the
// secure attempt it had opened again, to the same cohort (so that the
// hospitals can resume its sessions), and after a failed attempt goes on
// with the next attempt number, never reusing one. Before the fix a
// restart always began again at attempt 0, with whoever was ready.
func TestSecureAttemptSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := secureFederation(t)
	f.cfg.CohortTimeout = coordinator.Duration(30 * time.Second)
	s, ps := f.startScaled(t, abcd...)
	asgs := assignments(t, ps)
	if a := asgs[0]; a.GetAttempt() != 0 || !slices.Equal(a.GetSecure().GetCohort(), abcd) {
		t.Fatalf("first assignment: attempt %d cohort %v, want 0 and %v", a.GetAttempt(), a.GetSecure().GetCohort(), abcd)
	}
	s.stop(t)

	// Attempt 0 was open: the new process offers it again, to all four,
	// and waits for all four to be back.
	s = start(t, f.cfg)
	ps = f.connect(t, s, abcd...)
	early := make(chan *fedguardv1.RoundAssignment, 1)
	go func() {
		a, _ := ps[0].assignment(t, 2*time.Second, nil)
		early <- a
	}()
	if a := <-early; a != nil {
		t.Fatalf("the attempt to resume opened before all its cohort was back: attempt %d cohort %v", a.GetAttempt(), a.GetSecure().GetCohort())
	}
	asgs = assignments(t, ps)
	if a := asgs[0]; a.GetAttempt() != 0 || !slices.Equal(a.GetSecure().GetCohort(), abcd) {
		t.Fatalf("after a restart: attempt %d cohort %v, want the open attempt 0 and %v", a.GetAttempt(), a.GetSecure().GetCohort(), abcd)
	}
	// It fails (everyone declines, for a reason that is not final).
	for i, p := range ps {
		if err := p.decline(t, asgs[i], "not today"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.c.Status().FailedAttempts == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.c.Status(); st.FailedAttempts != 1 || st.Attempt != 1 || st.NextAttempt.IsZero() {
		t.Fatalf("after the failure: %d failed attempts, attempt %d, next attempt at %v; want 1, 1, a backoff", st.FailedAttempts, st.Attempt, st.NextAttempt)
	}
	s.stop(t)

	// The next process goes on at attempt 1, with whoever is ready: three
	// of the four. The cohort wait must outlast the three's first polls;
	// at 100 ms a loaded machine opened the attempt with one or two of
	// them and hospital-a found no assignment.
	f.cfg.CohortTimeout = coordinator.Duration(3 * time.Second)
	s = start(t, f.cfg)
	ps = f.connect(t, s, abcd[:3]...)
	asgs = assignments(t, ps)
	if a := asgs[0]; a.GetAttempt() != 1 {
		t.Fatalf("after a failed attempt 0 and a restart: attempt %d, want 1", a.GetAttempt())
	}
}

// TestRoundStallsAfterIdenticalFailures: the cohort is there but sends no
// update, so every attempt fails the same way. After three such failures
// the coordinator stops opening attempts (the audit log stops growing)
// and says why; a participant joining again allows one more attempt.
// Before the fix the attempts went on, one per round_timeout, for good.
func TestRoundStallsAfterIdenticalFailures(t *testing.T) {
	fedtest.SkipIfShort(t, "waits out three failed attempts and their backoffs")
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.RoundTimeout = coordinator.Duration(300 * time.Millisecond)
	f.cfg.CohortTimeout = coordinator.Duration(100 * time.Millisecond)
	f.cfg.LongPoll = coordinator.Duration(time.Second)
	s, ps := f.startScaled(t, abc...)
	defer pollRounds(t, ps, nil)()

	waitWedged := func(failures int) coordinator.Status {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := s.c.Status()
			if st.Wedged != "" && st.FailedAttempts == failures {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %d failed attempts, wedged %q; want %d and wedged", st.FailedAttempts, st.Wedged, failures)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	st := waitWedged(coordinator.StallAfter)
	if !strings.Contains(st.Wedged, "failed the same way") {
		t.Errorf("wedged: %q, want it to say the attempts failed the same way", st.Wedged)
	}
	if g := gauge(t, s.c, "fedguard_round_wedged"); g != 1 {
		t.Errorf("fedguard_round_wedged = %v, want 1", g)
	}
	size := st.Audit.Size
	time.Sleep(3 * time.Second)
	if got := s.c.Status().Audit.Size; got != size {
		t.Errorf("the audit log grew from %d to %d events while the round was stalled", size, got)
	}
	// A participant joins again: one more attempt, which fails the same
	// way and stalls the round again.
	if _, err := ps[0].svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	waitWedged(coordinator.StallAfter + 1)
}

// TestSecureAttemptRecordCorrupt: a malformed record of the open secure
// attempt stops the coordinator with ErrCorrupt rather than letting it
// guess an attempt number (and perhaps reuse one).
func TestSecureAttemptRecordCorrupt(t *testing.T) {
	t.Parallel()
	for name, rec := range map[string]string{
		"not a list":     `{"round":1}`,
		"too short":      `["1","0"]`,
		"bad round":      `["one","0","00"]`,
		"attempt range":  `["1","4294967296","00"]`,
		"negative round": `["-1","0","00"]`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := secureFederation(t)
			s := start(t, f.cfg)
			fixScaling(t, f.connect(t, s, abcd...))
			s.stop(t)
			db, err := bolt.Open(filepath.Join(f.cfg.DataDir, coordinator.StateFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Put([]byte("open_secure"), []byte(rec)) })
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := coordinator.New(f.cfg, coordinator.WithLogger(slog.New(slog.DiscardHandler)))
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, coordinator.ErrCorrupt) {
				t.Errorf("New with state/open_secure = %s: %v, want ErrCorrupt", rec, err)
			}
		})
	}
}
