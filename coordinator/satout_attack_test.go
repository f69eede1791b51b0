package coordinator_test

import (
	"strconv"
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

// TestReportSatOutAttacks tries ReportSatOut as one enrolled hospital would
// abuse it, over real mTLS: sitting out before any round is open, a flood
// of malformed sit-outs (long, non-token and control-character reasons and
// details), and a sit-out from a revoked certificate. Every refusal gets
// its code; the flood causes at most AuditEventsPerMinute audit events,
// the rest counted in one events_suppressed event; no audit payload or
// log line echoes more than a bounded piece of what was sent, nor a
// control character; another hospital's calls are unaffected.
func TestReportSatOutAttacks(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s, logs := startLogged(t, f.cfg)
	ps := f.connect(t, s, abc...)
	attacker, victim := ps[0], ps[2]
	sitOut := func(p *participant, req *fedguardv1.ReportSatOutRequest) error {
		_, err := p.svc.ReportSatOut(callCtx(t, 5*time.Second), req)
		return err
	}
	// No round is open yet (statistics phase).
	wantCode(t, "ReportSatOut before round 1", sitOut(attacker, &fedguardv1.ReportSatOutRequest{Round: 1, Attempt: 1, Reason: "trainer_crash"}), codes.FailedPrecondition)
	wantCode(t, "ReportSatOut for a future round", sitOut(attacker, &fedguardv1.ReportSatOutRequest{Round: 1 << 62, Attempt: 1 << 31, Reason: "trainer_crash"}), codes.FailedPrecondition)

	// A bidirectional override or a line separator would make the
	// status page, a terminal or the manifest show other text than what
	// is recorded.
	for _, d := range []string{"see trainer.log\u202egol.exe", "oom\u2028forged line", "zero\u200bwidth"} {
		wantCode(t, "ReportSatOut with detail "+strconv.Quote(d), sitOut(attacker, &fedguardv1.ReportSatOutRequest{Round: 1, Attempt: 1, Reason: "trainer_crash", Detail: d}), codes.InvalidArgument)
		_, err := attacker.svc.ReportRefusal(callCtx(t, 5*time.Second), &fedguardv1.ReportRefusalRequest{ManifestRound: 0, Reason: "malformed", Detail: d})
		wantCode(t, "ReportRefusal with detail "+strconv.Quote(d), err, codes.InvalidArgument)
	}

	huge := strings.Repeat("\x1b[2J\r\nforged", 10_000) // 130 kB
	bad := []*fedguardv1.ReportSatOutRequest{
		{Round: 1, Attempt: 1, Reason: huge},
		{Round: 1, Attempt: 1, Reason: "trainer_crash", Detail: huge},
		{Round: 1, Attempt: 1, Reason: "trainer_crash", Detail: "a\x00b"},
		{Round: 1, Attempt: 1, Reason: "trainer\ncrash"},
		{Round: 1, Attempt: 1, Reason: "trainer_crash\u2028", Detail: "\u202e"},
	}
	const calls = 150
	for i := range calls {
		err := sitOut(attacker, bad[i%len(bad)])
		wantCode(t, "malformed ReportSatOut", err, codes.InvalidArgument)
	}
	if err := sitOut(victim, &fedguardv1.ReportSatOutRequest{Round: 1, Attempt: 1, Reason: "trainer_crash"}); err == nil {
		t.Error("the other hospital sat out a round that is not open")
	}
	f.Revoke(t, ps[1].name)
	// The CRL is reloaded within seconds: until then the call is refused
	// as any other hospital's.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := sitOut(ps[1], &fedguardv1.ReportSatOutRequest{Round: 1, Attempt: 1, Reason: "trainer_crash"})
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if err == nil || time.Now().After(deadline) {
			t.Fatalf("ReportSatOut of a revoked hospital = %v, want PermissionDenied", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	k := countKinds(t, f.cfg)
	if got := k[audit.KindCallRefused+"/"+attacker.name]; got != coordinator.AuditEventsPerMinute {
		t.Errorf("%d call_refused events of %s, want %d", got, attacker.name, coordinator.AuditEventsPerMinute)
	}
	if k[audit.KindRoundSatOut+"/"+attacker.name] != 0 {
		t.Errorf("the attacker's refused sit-outs were recorded as sit-outs: %v", k)
	}
	var sup []audit.EventsSuppressed
	for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindEventsSuppressed) {
		sup = append(sup, fedtest.Payload[audit.EventsSuppressed](t, e))
	}
	want := uint64(calls + 2 + 6 - coordinator.AuditEventsPerMinute)
	if len(sup) != 1 || sup[0].Participant != attacker.name || sup[0].Total != want {
		t.Errorf("events_suppressed = %+v, want one for %s counting %d", sup, attacker.name, want)
	}
	revoked := 0
	for _, e := range fedtest.AuditEvents(t, f.cfg, "") {
		// JSON escapes control characters; what is echoed is bounded.
		if len(e.Payload) > 1024 || strings.Count(string(e.Payload), "forged") > 8 {
			t.Errorf("%s event of %s echoes the attacker's input: %.200s", e.Kind, e.Actor, e.Payload)
		}
		if e.Kind == audit.KindCallRefused && e.Actor == ps[1].name && fedtest.Payload[audit.CallRefused](t, e).Code == "PermissionDenied" {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("%d call_refused events of the revoked hospital, want 1", revoked)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if len(l) > 1024 || strings.Count(l, "forged") > 8 || strings.ContainsAny(l, "\x1b\r\x00") {
			t.Errorf("log line echoes the attacker's input: %.200s", l)
		}
	}
}
