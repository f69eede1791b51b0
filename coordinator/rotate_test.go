package coordinator_test

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
)

// signedFederation runs a coordinator until its initial model is signed
// (round 0), stops it, and returns its configuration.
func signedFederation(t *testing.T) coordinator.Config {
	t.Helper()
	f := newFederation(t, []string{"st-mary", "charite"})
	s, _ := f.startScaled(t, "st-mary", "charite")
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	return f.cfg
}

// TestRotateKeysResumes cuts a rotation off after its keys were staged (as
// a crash would), checks that the coordinator refuses to start until it is
// finished, that running RotateKeys again finishes it with the staged keys
// and records it once, and that the coordinator then starts with the new
// keys and checks its history, signed by the old ones, with the keyring.
func TestRotateKeysResumes(t *testing.T) {
	cfg := signedFederation(t)
	old, err := manifest.LoadSigner(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	// The dry run writes nothing.
	dry, err := coordinator.RotateKeys(cfg, coordinator.RotateOptions{DryRun: true})
	if err != nil || dry.OldFingerprint != old.Public().Fingerprint() || dry.SHA256 != "" || dry.AfterRound != 0 {
		t.Fatalf("RotateKeys(dry run) = %+v, %v", dry, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, manifest.PendingRotationDir)); !os.IsNotExist(err) {
		t.Fatalf("the dry run staged a rotation (%v)", err)
	}

	// A run cut off after staging: what RotateKeys writes first.
	next, err := manifest.GenerateSigner(nil)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := coordinator.ExportModel(cfg.DataDir, -1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := manifest.Digest(ex.Manifest)
	env, _, err := manifest.SignRotation(old, next, manifest.Rotation{Federation: cfg.Federation, Seq: 1, AfterRound: ex.Round, AfterManifest: hex.EncodeToString(d[:]), Rotated: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.StageRotation(cfg.DataDir, next, env); err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.New(cfg, coordinator.WithLogger(slog.New(slog.DiscardHandler))); !errors.Is(err, manifest.ErrPendingRotation) {
		t.Fatalf("coordinator.New with a pending rotation = %v, want ErrPendingRotation", err)
	}

	r, err := coordinator.RotateKeys(cfg, coordinator.RotateOptions{})
	if err != nil {
		t.Fatalf("RotateKeys (resuming) = %v", err)
	}
	if !r.Resumed || r.NewFingerprint != next.Public().Fingerprint() {
		t.Errorf("RotateKeys = %+v, want the staged rotation resumed", r)
	}
	if got := fedtest.AuditEvents(t, cfg, audit.KindKeyRotated); len(got) != 1 {
		t.Errorf("audit log has %d key_rotated events, want 1", len(got))
	}
	s := start(t, cfg)
	if !s.c.PublicKeys().Equal(next.Public()) {
		t.Errorf("the coordinator signs with %s, want the new keys", s.c.PublicKeys().Fingerprint())
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}

	// A second rotation chains onto the first.
	r2, err := coordinator.RotateKeys(cfg, coordinator.RotateOptions{})
	if err != nil || r2.Seq != 2 || r2.OldFingerprint != next.Public().Fingerprint() || r2.Resumed {
		t.Fatalf("second RotateKeys = %+v, %v", r2, err)
	}
	chain, err := manifest.LoadRotations(cfg.DataDir)
	if err != nil || len(chain) != 2 {
		t.Fatalf("LoadRotations = %d, %v; want 2", len(chain), err)
	}
	if got := fedtest.AuditEvents(t, cfg, audit.KindKeyRotated); len(got) != 2 {
		t.Errorf("audit log has %d key_rotated events, want 2", len(got))
	}
	if _, err := coordinator.CheckData(cfg); err != nil {
		t.Errorf("CheckData after two rotations = %v", err)
	}
}

// TestRotateKeysWhileRunning: rotate-keys on a running coordinator's
// directory told the operator to "stop it or export from a copy", the
// advice of `audit model`; a rotation made on a copy would fork the keys
// the hospitals follow. It must say to stop the coordinator, and nothing
// about a copy.
func TestRotateKeysWhileRunning(t *testing.T) {
	cfg := signedFederation(t)
	s := start(t, cfg)
	defer s.stop(t)
	_, err := coordinator.RotateKeys(cfg, coordinator.RotateOptions{DryRun: true})
	if !errors.Is(err, coordinator.ErrInUse) || !strings.Contains(err.Error(), "stop the coordinator first") || strings.Contains(err.Error(), "copy") {
		t.Errorf("RotateKeys on a running coordinator = %v, want ErrInUse saying to stop it first", err)
	}
	if _, err := coordinator.ExportModel(cfg.DataDir, -1); !errors.Is(err, coordinator.ErrInUse) {
		t.Errorf("ExportModel on a running coordinator = %v, want ErrInUse", err)
	}
}
