package coordinator_test

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
)

// ranFederation is the data directory of a federation that closed two
// rounds and was stopped, with a copy of it as it was after round 1.
type ranFederation struct {
	cfg    coordinator.Config
	data   string // final data directory
	after1 string // copy of the data directory after round 1
}

// twoRounds runs a federation of three hospitals through two rounds.
func twoRounds(t *testing.T) ranFederation {
	t.Helper()
	var ran ranFederation
	f := newFederation(t, abc)
	s, ps := f.startScaled(t, abc...)
	for round := uint64(1); round <= 2; round++ {
		assignments(t, ps)
		submitAll(t, round, ps, map[string]update{
			"hospital-a": {deltas(round*3 + 1), 10, nil},
			"hospital-b": {deltas(round*3 + 2), 20, nil},
			"hospital-c": {deltas(round*3 + 3), 30, nil},
		})
		waitRounds(t, s.c, int(round), 10*time.Second)
		if round == 1 {
			// A backup taken between the rounds, of a stopped
			// coordinator, so the copy is consistent.
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			ran.after1 = t.TempDir()
			fedtest.CopyDir(t, f.cfg.DataDir, ran.after1)
			s = start(t, f.cfg)
			ps = f.connect(t, s, abc...)
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	ran.cfg, ran.data = f.cfg, f.cfg.DataDir
	return ran
}

// TestStartupChecks is the regression test of issue 12 items 4 and 5: on
// main, a missing or empty state.db restarted the federation at round 0, a
// 0-byte audit.db became a new log, an older state.db or audit.db was
// taken as is, damaged files crashed the process, and a broken chain was
// appended to. Each case must now be refused, by New and by CheckData
// alike, with an error naming the fault; a sound directory starts.
func TestStartupChecks(t *testing.T) {
	fx := twoRounds(t)
	state := func(d string) string { return filepath.Join(d, coordinator.StateFile) }
	auditDB := func(d string) string { return filepath.Join(d, coordinator.AuditFile) }
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		init  bool  // New WithInit
		want  error // nil: starts
		says  string
	}{
		{"sound", func(*testing.T, string) {}, false, nil, ""},
		{"sound, with --init", func(*testing.T, string) {}, true, nil, ""},
		{"state.db missing", func(t *testing.T, d string) { os.Remove(state(d)) }, false, coordinator.ErrDataMismatch, "state.db is missing"},
		{"state.db missing, with --init", func(t *testing.T, d string) { os.Remove(state(d)) }, true, coordinator.ErrDataMismatch, "starting over at round 0 would fork it"},
		{"state.db empty", func(t *testing.T, d string) { os.Truncate(state(d), 0) }, true, coordinator.ErrCorrupt, "is empty (0 bytes)"},
		{"audit.db missing", func(t *testing.T, d string) { os.Remove(auditDB(d)) }, true, coordinator.ErrDataMismatch, "audit log"},
		{"audit.db empty", func(t *testing.T, d string) { os.Truncate(auditDB(d), 0) }, true, audit.ErrCorrupt, "is empty (0 bytes)"},
		{"state.db from the round-1 backup", func(t *testing.T, d string) { fedtest.CopyFile(t, state(fx.after1), state(d)) }, false, coordinator.ErrDataMismatch, "records coordinator_stopped of round 2"},
		{"audit.db from the round-1 backup", func(t *testing.T, d string) { fedtest.CopyFile(t, auditDB(fx.after1), auditDB(d)) }, false, coordinator.ErrDataMismatch, "audit.db is older than state.db"},
		{"state.db cut short", func(t *testing.T, d string) {
			fedtest.DamageFile(t, state(d), func(b []byte) []byte { return b[:len(b)/3] })
		}, false, coordinator.ErrCorrupt, "cut short"},
		{"audit.db cut short", func(t *testing.T, d string) {
			fedtest.DamageFile(t, auditDB(d), func(b []byte) []byte { return b[:len(b)/3] })
		}, false, audit.ErrCorrupt, "cut short"},
		{"state.db page of 0xFF", func(t *testing.T, d string) {
			fedtest.DamageFile(t, state(d), fedtest.FillPage(fedtest.UsedPages(t, state(d))[0], 0xFF))
		}, false, coordinator.ErrCorrupt, "damaged"},
		{"audit.db page of 0xFF", func(t *testing.T, d string) {
			fedtest.DamageFile(t, auditDB(d), fedtest.FillPage(fedtest.UsedPages(t, auditDB(d))[0], 0xFF))
		}, false, audit.ErrCorrupt, "damaged"},
		{"audit.db page zeroed", func(t *testing.T, d string) {
			ids := fedtest.UsedPages(t, auditDB(d))
			fedtest.DamageFile(t, auditDB(d), fedtest.FillPage(ids[len(ids)/2], 0))
		}, false, audit.ErrCorrupt, ""},
		{"audit.db meta pages zeroed", func(t *testing.T, d string) {
			fedtest.DamageFile(t, auditDB(d), func(b []byte) []byte { return fedtest.FillPage(1, 0)(fedtest.FillPage(0, 0)(b)) })
		}, false, audit.ErrCorrupt, "neither meta page is intact"},
		{"audit event changed in place", func(t *testing.T, d string) {
			// One flipped digit in an early event, inside a value: bbolt's
			// structure and the log's head stay sound.
			fedtest.DamageFile(t, auditDB(d), func(b []byte) []byte {
				i := strings.Index(string(b), `"federation":"`)
				if i < 0 {
					t.Fatal("no event with a federation field in audit.db")
				}
				b[i+len(`"federation":"`)] ^= 1
				return b
			})
		}, false, audit.ErrCorrupt, "does not match the event"},
		{"both missing", func(t *testing.T, d string) { os.Remove(state(d)); os.Remove(auditDB(d)) }, false, coordinator.ErrNoFederation, "run `fedguard coordinator init` once"},
		// A state.db that never fixed the scaling beside a log of signed
		// rounds is an old backup (or another federation's), however the
		// rule for a log signed only at a stop reads.
		{"state.db of a new federation", func(t *testing.T, d string) {
			cfg := fx.cfg
			cfg.DataDir = t.TempDir()
			c, err := coordinator.New(cfg, coordinator.WithInit(), coordinator.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			fedtest.CopyFile(t, state(cfg.DataDir), state(d))
		}, false, coordinator.ErrDataMismatch, "state.db has no signed round, but audit.db records"},
		{"both missing, with --init", func(t *testing.T, d string) { os.Remove(state(d)); os.Remove(auditDB(d)) }, true, nil, ""},
	}
	quiet := slog.New(slog.DiscardHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fx.cfg
			cfg.DataDir = t.TempDir()
			fedtest.CopyDir(t, fx.data, cfg.DataDir)
			tt.setup(t, cfg.DataDir)
			check := func(what string, err error) {
				t.Helper()
				if tt.want == nil {
					if err != nil {
						t.Fatalf("%s: %v, want a start", what, err)
					}
					return
				}
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("%s = %v, want an error wrapping %q that says %q", what, err, tt.want, tt.says)
				}
			}
			if tt.name != "both missing, with --init" {
				_, err := coordinator.CheckData(cfg)
				check("CheckData", err)
			}
			opts := []coordinator.Option{coordinator.WithLogger(quiet)}
			if tt.init {
				opts = append(opts, coordinator.WithInit())
			}
			c, err := coordinator.New(cfg, opts...)
			if err == nil {
				defer c.Close()
			}
			check("New", err)
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// TestRestartBeforeScaling: a coordinator stopped before the hospitals
// fixed the feature scaling (started, then restarted for a configuration
// change, say) signs its log at the stop, but state.db has no signed
// round yet. Before, every later start refused the pair as "state.db is
// older than the log" and told the operator to restore a backup that
// cannot exist. The pair must check out, and the federation go on.
func TestRestartBeforeScaling(t *testing.T) {
	f := newFederation(t, abc)
	for range 2 {
		s := start(t, f.cfg)
		if err := s.stop(t); err != nil {
			t.Fatal(err)
		}
		if _, err := coordinator.CheckData(f.cfg); err != nil {
			t.Fatalf("CheckData after a stop before the scaling: %v", err)
		}
	}
	s, ps := f.startScaled(t, abc...)
	assignments(t, ps)
	submitAll(t, 1, ps, map[string]update{
		"hospital-a": {deltas(1), 10, nil},
		"hospital-b": {deltas(2), 20, nil},
		"hospital-c": {deltas(3), 30, nil},
	})
	waitRounds(t, s.c, 1, 10*time.Second)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.CheckData(f.cfg); err != nil {
		t.Fatalf("CheckData after round 1: %v", err)
	}
}

// TestRestartAfterUnpublishedClose stops a coordinator between recording
// round 2's close (the log has its verdict, checkpoint and manifest) and
// committing it, as a crash there would. The restart must accept the pair
// (state.db one round behind the log is that window, not an old backup),
// run round 2 again, and the provenance report must report the published
// close: the regression test of issue 12 item 6 on a real log, where the
// report showed the unpublished close as the round's model, the real
// attempt as open and the real manifest as "NOT the round's model".
func TestRestartAfterUnpublishedClose(t *testing.T) {
	f := newFederation(t, abc)
	s, ps := f.startScaled(t, abc...)
	updates := func(round uint64) map[string]update {
		return map[string]update{
			"hospital-a": {deltas(round*3 + 1), 10, nil},
			"hospital-b": {deltas(round*3 + 2), 20, nil},
			"hospital-c": {deltas(round*3 + 3), 30, nil},
		}
	}
	assignments(t, ps)
	submitAll(t, 1, ps, updates(1))
	waitRounds(t, s.c, 1, 10*time.Second)

	coordinator.FailCommits(s.c, 1, errors.New("injected: the process died before the commit"))
	assignments(t, ps)
	submitAll(t, 2, ps, updates(2))
	if err := s.waitServe(t, 20*time.Second); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Serve after the failed commit = %v, want the injected error", err)
	}
	s.stop(t)

	// The restart resumes after round 1, and round 2 runs again with
	// other updates (hospital-c sits it out): another model.
	if _, err := coordinator.CheckData(f.cfg); err != nil {
		t.Fatalf("CheckData after a crash before the commit: %v", err)
	}
	f.cfg.CohortTimeout = coordinator.Duration(500 * time.Millisecond)
	s = start(t, f.cfg)
	ps = f.connect(t, s, "hospital-a", "hospital-b")
	if got := assignments(t, ps); got[0].GetRound() != 2 {
		t.Fatalf("after the restart the coordinator opened round %d, want 2 again", got[0].GetRound())
	}
	rerun := updates(2)
	delete(rerun, "hospital-c")
	submitAll(t, 2, ps, rerun)
	recs := waitRounds(t, s.c, 2, 20*time.Second)
	keys := s.c.PublicKeys()
	s.stop(t)

	r := reportedRound(t, f.cfg, keys, 2)
	if r.Status != report.RoundStatusClosed || r.ModelSHA256 != recs[1].ModelSHA256 {
		t.Errorf("round 2 reported %s with model %s, want closed with the committed model %s", r.Status, r.ModelSHA256, recs[1].ModelSHA256)
	}
	if r.ManifestModelSHA256 != recs[1].ModelSHA256 || r.Signature != report.SignatureVerified {
		t.Errorf("round 2's manifest names model %s (signature %s), want the committed model %s, verified", r.ManifestModelSHA256, r.Signature, recs[1].ModelSHA256)
	}
	if len(r.Attempts) != 2 || r.Attempts[0].Outcome != report.AttemptInterrupted || !strings.Contains(r.Attempts[0].Reason, "never published") || r.Attempts[1].Outcome != report.AttemptClosed {
		t.Errorf("round 2's attempts = %+v, want the unpublished close interrupted, then the published one closed", r.Attempts)
	}
	if len(r.Notes) > 0 {
		t.Errorf("round 2's notes: %q", r.Notes)
	}
}

// reportedRound is round's section of the provenance report of a stopped
// coordinator's audit log, its manifests checked with keys.
func reportedRound(t *testing.T, cfg coordinator.Config, keys manifest.PublicKeys, round uint64) report.RoundReport {
	t.Helper()
	rep, err := report.Build(fedtest.AuditEvents(t, cfg, ""), report.Options{Round: round, VerifyManifest: func(env []byte) error {
		_, err := manifest.Verify(env, keys, cfg.Federation)
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 {
		t.Fatalf("report has %d rounds, want round %d alone", len(rep.Rounds), round)
	}
	return rep.Rounds[0]
}

// TestFailedStartIsRecordedAsStopped: a coordinator records its start when
// it opens its files (New), before Run listens. One that then could not
// listen (the port taken: a second coordinator, or the old one still
// stopping) left a coordinator_started with no stop and no checkpoint over
// it, which an auditor reads as a crash of a running coordinator. The
// failure must close the record: a coordinator_stopped naming the error,
// signed by a checkpoint.
func TestFailedStartIsRecordedAsStopped(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	f := newFederation(t, abc)
	cfg := f.cfg
	cfg.Listen = taken.Addr().String()
	c, err := coordinator.New(cfg, coordinator.WithInit(), coordinator.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	runErr := c.Run(t.Context())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "listen on") {
		t.Fatalf("Run on a taken port = %v, want a listen error", runErr)
	}
	events := fedtest.AuditEvents(t, cfg, "")
	last := events[len(events)-1]
	if last.Kind != audit.KindCoordinatorStopped || !strings.Contains(fedtest.Payload[audit.CoordinatorStopped](t, last).Reason, "listen on") {
		t.Errorf("last audit event = %s %s, want coordinator_stopped naming the listen error", last.Kind, last.Payload)
	}
	d, err := coordinator.CheckData(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Audit.Covered != d.Audit.Events {
		t.Errorf("the last checkpoint covers %d of %d events, want all", d.Audit.Covered, d.Audit.Events)
	}
}
