package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// TestKeyRotation rotates the coordinator's signing keys twice between
// runs of a real federation (the fedguard binary, real mTLS, agents
// pinning the keys of enrolment): the hospitals follow each rotation
// without anyone re-pinning, one of them after missing both (old → mid →
// new in one catch-up), and the audit log verifies across both rotations
// with the first public key alone.
func TestKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation three times")
	}
	dir := t.TempDir()
	if _, err := demo.Setup(dir, 1); err != nil {
		t.Fatal(err)
	}
	hospitals := []string{"hospital-a", "hospital-b", "hospital-c"}
	cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, 2)
	dataDir := cfg.DataDir
	cfgPath := writeConfig(t, dir, cfg)
	mustFedguard(t, "coordinator", "--config", cfgPath, "--init-keys")
	pub := filepath.Join(dataDir, manifest.PublicFile)
	firstKeys, err := manifest.LoadPublicKeys(pub)
	if err != nil {
		t.Fatalf("the hospitals pin the coordinator's key: %v", err)
	}
	firstPub := filepath.Join(t.TempDir(), "first-signing.pub")
	if err := os.WriteFile(firstPub, firstKeys.MarshalPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	state := func(h string) string { return filepath.Join(dir, h, "accepted.json") }
	// phase runs the federation up to rounds with the hospitals named,
	// every one of them pinning the keys of enrolment.
	phase := func(rounds int, names ...string) {
		t.Helper()
		cfg.Training.Rounds = rounds
		c := startCoordinator(t, writeConfig(t, dir, cfg))
		agents := map[string]*participant.Agent{}
		for _, h := range names {
			agents[h] = pinnedAgent(t, dir, h, c.Addr, nil, firstKeys, state(h))
		}
		for h, err := range runAgents(t, context.Background(), agents)(120 * time.Second) {
			if err != nil {
				t.Fatalf("phase up to round %d: %s: Run = %v, want nil", rounds, h, err)
			}
		}
		if err := c.waitExit(30 * time.Second); err != nil {
			t.Fatalf("coordinator exited with %v, want 0", err)
		}
	}
	rotate := func(args ...string) string {
		t.Helper()
		return mustFedguard(t, append([]string{"coordinator", "rotate-keys", "--config", cfgPath}, args...)...)
	}

	phase(2, hospitals...)

	// A dry run says what would change and writes nothing.
	keyBefore, err := os.ReadFile(filepath.Join(dataDir, manifest.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	out := rotate("--dry-run")
	for _, want := range []string{"dry run", firstKeys.Fingerprint(), "new keys: sha256:", filepath.Join(dataDir, manifest.RetiredDir, "000001")} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate-keys --dry-run printed no %q:\n%s", want, out)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dataDir, manifest.KeyFile)); !bytes.Equal(after, keyBefore) {
		t.Errorf("rotate-keys --dry-run changed signing.key")
	}
	for _, d := range []string{manifest.RotationsDir, manifest.RetiredDir, manifest.PendingRotationDir} {
		if _, err := os.Stat(filepath.Join(dataDir, d)); !os.IsNotExist(err) {
			t.Errorf("rotate-keys --dry-run made %s (%v)", d, err)
		}
	}

	// The real rotation: new keys (0600) in place, old ones retired.
	out = rotate()
	t.Logf("rotate-keys printed:\n%s", out)
	mid, err := manifest.LoadSigner(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if mid.Public().Equal(firstKeys) || !strings.Contains(out, mid.Public().Fingerprint()) {
		t.Fatalf("after rotate-keys signing.key holds %s; it printed:\n%s", mid.Public().Fingerprint(), out)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, manifest.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new signing.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if retired, err := os.ReadFile(filepath.Join(dataDir, manifest.RetiredDir, "000001", manifest.KeyFile)); err != nil || !bytes.Equal(retired, keyBefore) {
		t.Errorf("the old signing.key is not kept in retired/000001 (%v)", err)
	}

	// hospital-c misses the rounds after the first rotation.
	phase(4, "hospital-a", "hospital-b")
	rotate()
	phase(6, hospitals...)

	last, err := manifest.LoadSigner(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hospitals {
		b, err := os.ReadFile(state(h))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Rotations []struct {
				Old string `json:"old_fingerprint"`
				New string `json:"new_fingerprint"`
			} `json:"rotations"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Rotations) != 2 || st.Rotations[0].Old != firstKeys.Fingerprint() || st.Rotations[1].New != last.Public().Fingerprint() {
			t.Errorf("%s state file records rotations %+v, want %s → %s → %s", h, st.Rotations,
				firstKeys.Fingerprint(), mid.Public().Fingerprint(), last.Public().Fingerprint())
		}
	}
	checkContiguous(t, readRounds(t, cfg), 6)

	// The audit log verifies across both rotations with the first key.
	export, _, lines := exportAudit(t, dataDir)
	if out := mustFedguard(t, "audit", "verify", "--key", firstPub, export); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify --key <first key> printed %q, want OK", out)
	}
	for _, args := range [][]string{
		{"audit", "check", "--db", filepath.Join(dataDir, "audit.db"), "--key", firstPub},
		{"audit", "report", "--db", filepath.Join(dataDir, "audit.db"), "--key", firstPub},
		{"audit", "model", "--data-dir", dataDir, "--round", "3", "--key", firstPub, "--out", t.TempDir()},
		{"audit", "model", "--data-dir", dataDir, "--round", "5", "--key", firstPub, "--out", t.TempDir()},
	} {
		out := mustFedguard(t, args...)
		if strings.Contains(out, "NOT VERIFIED") || strings.Contains(out, "FAILED") || strings.Contains(out, "INVALID") {
			t.Errorf("fedguard %s with the first key across rotations:\n%s", strings.Join(args[:2], " "), out)
		}
	}
	rotated := 0
	for _, l := range lines {
		if l.Kind == "key_rotated" {
			rotated++
		}
	}
	if rotated != 2 {
		t.Errorf("the audit log records %d key rotations, want 2", rotated)
	}
	// The coordinator checks its own data across the rotations too.
	out = mustFedguard(t, "coordinator", "--config", cfgPath, "--check-data")
	if !strings.HasPrefix(out, "OK: ") {
		t.Errorf("coordinator --check-data after two rotations printed %q, want OK", out)
	}
}
