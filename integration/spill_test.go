package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
)

// TestSpillSurvivesCoordinatorKill SIGKILLs a real coordinator whose
// rounds spill their updates to disk while round 1 holds two of its three
// updates in the spill file. The file is left behind, as after any crash;
// the restarted coordinator removes every spill file before it serves,
// re-runs round 1 and finishes the training, and leaves the spill folder
// empty when it exits.
func TestSpillSurvivesCoordinatorKill(t *testing.T) {
	dir, _, _ := demoFederation(t)
	hs := []string{"hospital-a", "hospital-b", "hospital-c"}
	cfg := fedConfig(t, dir, demo.Federation, hs, 3, 2)
	cfg.RoundTimeout = coordinator.Duration(20 * time.Second)
	cfg.Spill = coordinator.SpillConfig{Mode: coordinator.SpillAlways}
	cfgPath := writeConfig(t, dir, cfg)
	first := startCoordinator(t, cfgPath)
	addr := first.Addr
	spillDir := filepath.Join(cfg.DataDir, "spill")

	gate, wait := runGated(t, dir, addr, 60*time.Second)
	for _, h := range hs[:2] {
		first.waitLog(h+"'s update", 30*time.Second, func(m map[string]any) bool {
			return m["msg"] == "update received" && m["participant"] == h
		})
	}
	if err := first.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.waitExit(10 * time.Second); err == nil {
		t.Fatal("SIGKILLed coordinator exited 0")
	}
	left, err := os.ReadDir(spillDir)
	if err != nil || len(left) != 1 {
		t.Fatalf("after SIGKILL the spill folder holds %v (%v), want round 1's file", left, err)
	}
	fi, err := os.Stat(filepath.Join(spillDir, left[0].Name()))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("round 1's spill file: %v (%v), want mode 0600 holding the two updates", fi, err)
	}
	// An older crash's file too: every spill file goes at start-up.
	stale := filepath.Join(spillDir, "round-1-attempt-9.spill")
	if err := os.WriteFile(stale, []byte("a stale update"), 0o600); err != nil {
		t.Fatal(err)
	}

	second := startCoordinator(t, cfgPath, "--listen", addr)
	second.waitLog("resumed from database", 10*time.Second, func(m map[string]any) bool { return m["msg"] == "resumed from database" })
	if _, err := os.Stat(stale); err == nil {
		t.Error("the restarted coordinator left a stale spill file")
	}
	close(gate.release)
	wantFinished(t, wait(90*time.Second))
	second.finishedRounds(t, cfg, 2)
	if left, err := os.ReadDir(spillDir); err != nil || len(left) != 0 {
		t.Errorf("after the training the spill folder holds %v (%v), want nothing", left, err)
	}
}
