//go:build cgo

package coordinator_test

import (
	"bytes"
	stded25519 "crypto/ed25519"
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
	"github.com/fedguard/fedguard/internal/softhsm"
	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestSigningKeyOnToken runs a federation whose coordinator signs its
// manifests and audit checkpoints with an Ed25519 key in SoftHSM2, and
// checks them with the hospitals' and the auditors' verification.
func TestSigningKeyOnToken(t *testing.T) {
	f := newFederation(t, abc)
	f.cfg.PKCS11 = softhsm.New(t, "fedguard-coordinator", "manifest-signing")
	f.cfg.Training.Rounds = 1
	s, ps := f.startScaled(t, abc...)
	assignments(t, ps)
	submitAll(t, 1, ps, map[string]update{
		"hospital-a": {deltas(1), 10, nil}, "hospital-b": {deltas(2), 20, nil}, "hospital-c": {deltas(3), 30, nil},
	})
	waitRounds(t, s.c, 1, 10*time.Second)

	pinned, err := manifest.LoadPublicKeys(filepath.Join(f.cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	for round := range uint64(2) {
		got, err := ps[0].svc.GetManifest(callCtx(t, 5*time.Second), &fedguardv1.GetManifestRequest{Round: round})
		if err != nil {
			t.Fatalf("GetManifest(%d): %v", round, err)
		}
		if v, err := manifest.Verify(got.GetManifest(), pinned, fedName); err != nil || v.Round.Round != round {
			t.Errorf("manifest %d does not verify with the pinned signing.pub: %v", round, err)
		}
		if !softhsm.CosignVerifies(t, filepath.Join(f.cfg.DataDir, manifest.CosignPublicFile), got.GetManifest()) {
			t.Errorf("manifest %d: the Ed25519 signature does not verify with cosign.pub", round)
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	// The checkpoints, signed in the token, verify with the pinned key.
	if kinds := auditKinds(t, f.cfg, pinned); kinds["manifest_signed"] != 2 {
		t.Errorf("audit log has %d manifest_signed events, want 2", kinds["manifest_signed"])
	}
	if _, err := os.Stat(filepath.Join(f.cfg.DataDir, manifest.KeyFile)); err == nil {
		t.Error("the coordinator wrote signing.key although its Ed25519 key is on the token")
	}
	// The pinned Ed25519 key is the token's.
	tok, err := keystore.Open(f.cfg.PKCS11)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.Ed25519(f.cfg.PKCS11.KeyLabel)
	tok.Close()
	if err != nil || !bytes.Equal(k.Public().(stded25519.PublicKey), pinned.Ed25519) {
		t.Fatalf("token key %v; signing.pub does not hold it", err)
	}

	// Misconfigured tokens are refused with a message that names the
	// problem, and the federation is untouched.
	quiet := coordinator.WithLogger(slog.New(slog.DiscardHandler))
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrongPIN, []byte("0000"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*keystore.PKCS11)
		is     error
		says   string
	}{
		{"wrong PIN", func(p *keystore.PKCS11) { p.PINFile = wrongPIN }, keystore.ErrPIN, "refused the PIN"},
		{"missing key label", func(p *keystore.PKCS11) { p.KeyLabel = "no-such-key" }, keystore.ErrKeyNotFound, "restore them from a backup"},
		{"missing module", func(p *keystore.PKCS11) { p.Module = "/nonexistent/libpkcs11.so" }, keystore.ErrModule, "/nonexistent/libpkcs11.so"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.cfg
			tc.change(&cfg.PKCS11)
			c, err := coordinator.New(cfg, coordinator.WithInit(), quiet)
			if err == nil {
				c.Close()
				t.Fatal("coordinator started")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %q, want %v mentioning %q", err, tc.is, tc.says)
			}
			// Restoring keys from a backup fixes a missing key, not a
			// token that cannot be reached.
			if restore := strings.Contains(err.Error(), "restore them from a backup"); restore != (tc.is == keystore.ErrKeyNotFound) {
				t.Errorf("err %q: advice to restore the keys is wrong here", err)
			}
		})
	}
	// --check-config logs in to the token.
	if err := coordinator.CheckFiles(f.cfg); err != nil {
		t.Errorf("CheckFiles with the token: %v", err)
	}
	for _, tc := range []struct {
		change func(*keystore.PKCS11)
		is     error
	}{
		{func(p *keystore.PKCS11) { p.PINFile = wrongPIN }, keystore.ErrPIN},
		{func(p *keystore.PKCS11) { p.KeyLabel = "no-such-key" }, keystore.ErrKeyNotFound},
	} {
		cfg := f.cfg
		tc.change(&cfg.PKCS11)
		if err := coordinator.CheckFiles(cfg); !errors.Is(err, tc.is) {
			t.Errorf("CheckFiles: err %v, want %v", err, tc.is)
		}
	}
	// And with the right configuration it resumes, signing with the token.
	c, err := coordinator.New(f.cfg, quiet)
	if err != nil {
		t.Fatalf("resume with the token key: %v", err)
	}
	if !c.PublicKeys().Equal(pinned) {
		t.Error("resumed coordinator has other keys")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTokenKeyNotMade: a key_label that names no key is an error, never a
// new identity, unless a federation is being created from nothing.
func TestTokenKeyNotMade(t *testing.T) {
	f := newFederation(t, abc)
	f.cfg.PKCS11 = softhsm.New(t, "fedguard-coordinator", "manifest-signing")
	keys, err := coordinator.InitKeys(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := coordinator.InitKeys(f.cfg); err != nil || !again.Equal(keys) {
		t.Fatalf("second InitKeys: %v, same keys %v", err, again.Equal(keys))
	}
	start(t, f.cfg).stop(t) // a federation without signed rounds yet
	quiet := coordinator.WithLogger(slog.New(slog.DiscardHandler))
	cfg := f.cfg
	cfg.PKCS11.KeyLabel = "misspelt"
	for _, tc := range []struct {
		name string
		opts []coordinator.Option
		says string
	}{
		{"resume", []coordinator.Option{quiet}, "--init or --init-keys"},
		{"--init", []coordinator.Option{quiet, coordinator.WithInit()}, "holds the public keys of an existing identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := coordinator.New(cfg, tc.opts...)
			if err == nil {
				c.Close()
				t.Fatal("started with a misspelt key label")
			}
			if !errors.Is(err, keystore.ErrKeyNotFound) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %q, want ErrKeyNotFound mentioning %q", err, tc.says)
			}
		})
	}
	tok, err := keystore.Open(cfg.PKCS11)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if _, err := tok.Ed25519("misspelt"); !errors.Is(err, keystore.ErrKeyNotFound) {
		t.Fatalf("a misspelt label made a key on the token (%v)", err)
	}
}

// TestRotateKeysRefusesToken: rotate-keys, dry run or not, refuses a
// coordinator whose Ed25519 key is on a token, and writes nothing: no
// staged rotation, no key_rotated event, the same public keys. Before, it
// went looking for signing.key and failed without saying why (or, with a
// stale signing.key beside the token configuration, rotated that file).
func TestRotateKeysRefusesToken(t *testing.T) {
	f := newFederation(t, abc)
	f.cfg.PKCS11 = softhsm.New(t, "fedguard-coordinator", "manifest-signing")
	s, _ := f.startScaled(t, abc...)
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(f.cfg.DataDir, manifest.PublicFile)
	before, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		_, err := coordinator.RotateKeys(f.cfg, coordinator.RotateOptions{DryRun: dry})
		if !errors.Is(err, coordinator.ErrRotateToken) || !strings.Contains(err.Error(), `"manifest-signing" is on token "fedguard-coordinator"`) {
			t.Errorf("RotateKeys(dry run %v) = %v, want ErrRotateToken naming the key and token", dry, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.cfg.DataDir, manifest.PendingRotationDir)); !os.IsNotExist(err) {
		t.Errorf("a refused rotation was staged (%v)", err)
	}
	if got := fedtest.AuditEvents(t, f.cfg, audit.KindKeyRotated); len(got) != 0 {
		t.Errorf("audit log has %d key_rotated events after a refusal", len(got))
	}
	if after, err := os.ReadFile(pub); err != nil || !bytes.Equal(after, before) {
		t.Errorf("signing.pub changed after a refused rotation (%v)", err)
	}
}
