package coordinator_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// path. It needs root: skipped without, unless CI is set, where it fails.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "" {
			t.Skip("mounting a tmpfs needs root")
		}
		t.Fatal("mounting a tmpfs needs root, and CI is set")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// fill writes path until the file system is full (ENOSPC).
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v, want ENOSPC", err)
	}
	// The last blocks, in case the file system had less than a buffer left.
	for _, err = f.Write(buf[:1]); err == nil; _, err = f.Write(buf[:1]) {
	}
}

// checkDataAt runs CheckData (what `fedguard coordinator --check-data` runs) on
// cfg's data directory, when the test says, and wants its last closed
// round to be last.
func checkDataAt(t *testing.T, cfg coordinator.Config, last uint64, when string) {
	t.Helper()
	check, err := coordinator.CheckData(cfg)
	if err != nil {
		t.Fatalf("CheckData %s: %v", when, err)
	}
	if check.LastRound != last {
		t.Fatalf("CheckData %s: last round %d, want %d", when, check.LastRound, last)
	}
}

// TestDiskFullPauses (issue 12, "full disk"): a disk that fills between
// two checks of the free-space guard makes the round loop's own audit
// write fail with ENOSPC. The coordinator must pause (calls refused with
// ResourceExhausted, fedguard_disk_paused 1), not exit, and once space is
// freed resume on its own and close the remaining rounds, leaving a data
// directory that passes --check-data and an audit log that verifies. The
// disk fills once between rounds and once during training (held full past
// the round's deadline). On main before the fix Serve returned "audit
// log: … no space left on device" as soon as round 2 tried to open.
func TestDiskFullPauses(t *testing.T) {
	fedtest.SkipIfShort(t, "fills a tmpfs twice and holds it full past a round deadline")
	// Parallel: the tmpfs is the test's own, and most of its 20 s is spent
	// holding it full past a deadline.
	t.Parallel()
	mnt := smallDisk(t, "16m")
	names := []string{"a", "b"}
	f := newFederation(t, names)
	f.cfg.DataDir = filepath.Join(mnt, "data")
	f.cfg.MinFreeBytes = 1 << 20
	f.cfg.RoundTimeout = coordinator.Duration(4 * time.Second)
	s, ps := f.startScaled(t, names...)
	u := update{delta: []float32{0.1, -0.1, 0.2, 0, 0.05, -0.2}, samples: 4}
	runRound := func(round uint64) {
		t.Helper()
		for i, a := range assignmentsWhere(t, ps, func(a *fedguardv1.RoundAssignment) bool { return a.GetRound() == round }) {
			if _, err := ps[i].submit(t, a.GetRound(), u); err != nil {
				t.Fatalf("%s: submit round %d: %v", ps[i].name, round, err)
			}
		}
		s.waitObserved(t, round, 20*time.Second)
	}
	runRound(1)

	filler := filepath.Join(mnt, "filler")
	exited := func() {
		t.Helper()
		select {
		case <-s.Done():
			t.Fatalf("the coordinator exited on a full disk: Serve = %v", s.Err())
		default:
		}
	}
	// fullDisk fills the disk, runs write (which makes the coordinator
	// write to it before the guard's next check), checks that the
	// coordinator pauses and stays up, holds the disk full for hold, frees
	// it and waits until the coordinator resumes.
	fullDisk := func(write func(), hold time.Duration) {
		t.Helper()
		fill(t, filler)
		write()
		deadline := time.Now().Add(15 * time.Second)
		for gauge(t, s.c, "fedguard_disk_paused") != 1 {
			exited()
			if time.Now().After(deadline) {
				t.Fatal("fedguard_disk_paused did not become 1 on a full disk")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(hold)
		exited()
		_, err := ps[0].svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
		wantCode(t, "Join on a full disk", err, codes.ResourceExhausted)
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(20 * time.Second)
		for {
			_, err := ps[0].svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still refused %v after the disk was freed: %v", 20*time.Second, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := gauge(t, s.c, "fedguard_disk_paused"); got != 0 {
			t.Errorf("fedguard_disk_paused = %v after resuming, want 0", got)
		}
	}

	// Between rounds: the participants ask for round 2, and opening it is
	// the write that meets the full disk.
	fullDisk(func() {
		for _, p := range ps {
			go func() { _, _ = p.waitRound(t) }()
		}
	}, 500*time.Millisecond)
	runRound(2)

	// During training: the update's record meets the full disk, and the
	// round's deadline passes while it is full, so its failure cannot be
	// written either; the round is retried once the disk has room.
	assignmentsWhere(t, ps, func(a *fedguardv1.RoundAssignment) bool { return a.GetRound() == 3 })
	fullDisk(func() {
		if _, err := ps[0].submit(t, 3, u); err == nil {
			t.Error("an update was accepted on a full disk")
		}
	}, time.Duration(f.cfg.RoundTimeout)+time.Second)
	runRound(3)
	if err := s.waitServe(t, 20*time.Second); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	checkDataAt(t, f.cfg, 3, "after the full disk")
	keys, err := manifest.LoadPublicKeys(filepath.Join(f.cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	// As `fedguard audit verify` does, over the export.
	// Rounds 1, 2 and two attempts of 3 opened (the opening of round 2
	// that met the full disk stored nothing); three closed.
	if k := auditKinds(t, f.cfg, keys); k[audit.KindRoundClosed] != 3 || k[audit.KindRoundOpened] != 4 {
		t.Errorf("audit log: %d round_opened, %d round_closed, want 4 and 3 (all: %v)", k[audit.KindRoundOpened], k[audit.KindRoundClosed], k)
	}

	// Start-up on a full disk is refused with an error that says so.
	fill(t, filler)
	if c, err := coordinator.New(f.cfg, coordinator.WithLogger(slog.New(slog.DiscardHandler))); err == nil {
		c.Close()
		t.Error("New on a full disk succeeded")
	} else if !strings.Contains(err.Error(), "disk is full") {
		t.Errorf("New on a full disk = %v, want it to say the disk is full", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.CheckData(f.cfg); err != nil {
		t.Fatalf("CheckData after a refused start on a full disk: %v", err)
	}
}

// TestDiskFullBetweenAuditAndCommit (issue 12, "full disk"): the disk
// fills exactly between the audit append of a round's close (its verdict,
// checkpoint and signed manifest are in audit.db) and the bbolt commit of
// the round to state.db, which then fails with ENOSPC. Nothing may be
// half-written: state.db still ends at the previous round (bbolt writes
// its meta page last, so a failed commit leaves the old tree), the
// coordinator pauses instead of exiting, and once space is freed it runs
// the round again as a new attempt and finishes the training. The log
// then holds the unpublished close of the failed attempt; the start-up
// cross-checks accept that pair as designed (state.db one round behind a
// log that recorded, but never published, the next round), --check-data
// passes, and the provenance report reads the failed attempt as
// interrupted, "never published", and the re-run as the round's model.
// It runs twice: the coordinator resumes on its own once space is freed,
// or it is stopped while paused (its stop event fails on the full disk
// too) and restarted on that pair, which --check-data accepts first.
func TestDiskFullBetweenAuditAndCommit(t *testing.T) {
	fedtest.SkipIfShort(t, "fills a tmpfs during a round's commit")
	t.Parallel() // each run on a tmpfs of its own, mostly waiting
	for _, restart := range []bool{false, true} {
		name := "resume"
		if restart {
			name = "stop while paused, restart"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			diskFullBetweenAuditAndCommit(t, restart)
		})
	}
}

func diskFullBetweenAuditAndCommit(t *testing.T, restart bool) {
	mnt := smallDisk(t, "16m")
	names := []string{"a", "b"}
	f := newFederation(t, names)
	f.cfg.DataDir = filepath.Join(mnt, "data")
	f.cfg.MinFreeBytes = 1 << 20
	// Every model is kept, so each commit writes the new model to pages
	// past the file's end, which a full tmpfs cannot give.
	f.cfg.KeepModels = 10
	f.cfg.Model = coordinator.ModelConfig{Kind: "mlp", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"}, Hidden: []int{128, 128}}
	logs := &fedtest.LogBuffer{}
	s := startWith(t, f.cfg, coordinator.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	ps := f.connect(t, s, names...)
	fixScaling(t, ps)
	submitRound := func(round uint64) {
		t.Helper()
		for i, a := range assignmentsWhere(t, ps, func(a *fedguardv1.RoundAssignment) bool { return a.GetRound() == round }) {
			delta := make([]float32, a.GetModel().GetNumParams())
			for i := range delta {
				delta[i] = float32(i%7-3) / 100
			}
			if _, err := ps[i].submit(t, a.GetRound(), update{delta: delta, samples: 4}); err != nil {
				t.Fatalf("%s: submit round %d: %v", ps[i].name, round, err)
			}
		}
	}
	submitRound(1)
	s.waitObserved(t, 1, 20*time.Second)

	filler := filepath.Join(mnt, "filler")
	coordinator.BeforeCommit(s.c, func() { fill(t, filler) })
	submitRound(2)
	deadline := time.Now().Add(15 * time.Second)
	for gauge(t, s.c, "fedguard_disk_paused") != 1 {
		select {
		case <-s.Done():
			t.Fatalf("the coordinator exited when the commit met a full disk: Serve = %v", s.Err())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fedguard_disk_paused did not become 1 when the commit met a full disk; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The pause was the commit's ENOSPC, after the log had the round.
	if out := logs.String(); !strings.Contains(out, "commit round 2") || !strings.Contains(out, "no space left on device") {
		t.Fatalf("the pause was not the commit of round 2 meeting ENOSPC; log:\n%s", out)
	}
	recs, err := s.c.Rounds()
	if err != nil {
		t.Fatalf("Rounds after the failed commit: %v", err)
	}
	if len(recs) != 1 || recs[0].Round != 1 {
		t.Fatalf("state.db holds rounds %+v after the failed commit of round 2, want round 1 alone", recs)
	}
	if restart {
		// Stopped while paused: its stop event meets the full disk too,
		// which the stop may report; what counts is the files it leaves.
		if err := s.stop(t); err != nil {
			t.Logf("stop on a full disk: %v", err)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if restart {
		// The window's pair: state.db at round 1, the log one close ahead.
		checkDataAt(t, f.cfg, 1, "on the pair a failed commit left")
		s = startWith(t, f.cfg, coordinator.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		ps = f.connect(t, s, names...)
	}
	deadline = time.Now().Add(20 * time.Second)
	for gauge(t, s.c, "fedguard_disk_paused") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("still paused 20s after the disk was freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The round runs again, as a new attempt, and the training finishes.
	submitRound(2)
	s.waitObserved(t, 2, 20*time.Second)
	submitRound(3)
	s.waitObserved(t, 3, 20*time.Second)
	if err := s.waitServe(t, 20*time.Second); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	keys := s.c.PublicKeys()
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	checkDataAt(t, f.cfg, 3, "after the failed commit")
	// Four closes in the log (round 2 twice), three published.
	if k := auditKinds(t, f.cfg, keys); k[audit.KindRoundClosed] != 4 {
		t.Errorf("audit log: %d round_closed, want 4 (all: %v)", k[audit.KindRoundClosed], k)
	}
	r := reportedRound(t, f.cfg, keys, 2)
	if r.Status != report.RoundStatusClosed || r.Signature != report.SignatureVerified || r.ManifestModelSHA256 != r.ModelSHA256 {
		t.Errorf("round 2 reported %s, model %s, manifest's model %s (signature %s); want closed on the re-run's verified manifest", r.Status, r.ModelSHA256, r.ManifestModelSHA256, r.Signature)
	}
	if len(r.Attempts) != 2 || r.Attempts[0].Outcome != report.AttemptInterrupted || !strings.Contains(r.Attempts[0].Reason, "never published") || r.Attempts[1].Outcome != report.AttemptClosed {
		t.Errorf("round 2's attempts = %+v, want the close whose commit failed interrupted, then the re-run closed", r.Attempts)
	}
}
