package certs

import (
	"context"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewRevocationList(t *testing.T) {
	a := newTestCA(t, "fed")
	if _, err := NewRevocationList(filepath.Join(t.TempDir(), "missing.pem"), a.Certificate()); err == nil {
		t.Error("NewRevocationList(missing file) = nil error")
	}
	if _, err := NewRevocationList("", nil); err == nil {
		t.Error("NewRevocationList(no CA) = nil error")
	}
	rl, err := NewRevocationList("", a.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	_, _, c := enrol(t, a, "p")
	a.Revoke(c.SerialNumber)
	if changed, err := rl.Reload(); changed || err != nil || rl.IsRevoked(c.SerialNumber) {
		t.Errorf(`path "": Reload = %v, %v; IsRevoked = %v; want nothing ever revoked`, changed, err, rl.IsRevoked(c.SerialNumber))
	}
	var nilList *RevocationList
	if nilList.IsRevoked(c.SerialNumber) {
		t.Error("nil list revokes")
	}
	// A first load has no previous list to keep: before, a certificate
	// named as the crl at start-up was refused "(keeping the previous
	// list)".
	notCRL := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notCRL, pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: a.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRevocationList(notCRL, a.Certificate()); err == nil || strings.Contains(err.Error(), "previous list") ||
		!strings.Contains(err.Error(), "certs: load CRL "+notCRL) {
		t.Errorf("NewRevocationList(a certificate) = %v, want a load error that names the file and keeps no previous list", err)
	}
}

// TestReloadKeepsPrevious checks that no bad file ever clears a revocation.
func TestReloadKeepsPrevious(t *testing.T) {
	a := newTestCA(t, "fed")
	path := filepath.Join(a.dir, crlFile)
	_, _, c := enrol(t, a, "st-mary")
	oldCRL, _ := os.ReadFile(path) // number 1, empty
	if err := a.Revoke(c.SerialNumber); err != nil {
		t.Fatal(err)
	}
	revokedCRL, _ := os.ReadFile(path)

	// Another CA with the same name (so the same issuer DN) but its own key.
	impostor := newTestCA(t, "fed")
	for range 3 { // a higher CRL number than ours
		_, _, x := enrol(t, impostor, "x")
		impostor.Revoke(x.SerialNumber)
	}
	forged, _ := os.ReadFile(filepath.Join(impostor.dir, crlFile))
	otherName := newTestCA(t, "other")
	otherCRL, _ := os.ReadFile(filepath.Join(otherName.dir, crlFile))
	// Validly signed, same CRL number as the loaded one, but the
	// revocation dropped.
	if err := a.writeCRL(big.NewInt(2), nil); err != nil {
		t.Fatal(err)
	}
	sameNumber, _ := os.ReadFile(path)
	WriteFileAtomic(path, revokedCRL, 0o644)

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"corrupt", []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), "parse CRL"},
		{"not PEM", []byte("garbage"), "no PEM"},
		{"empty", nil, "no PEM"},
		{"signed by another key", forged, "signature does not verify"},
		{"another issuer", otherCRL, "not issued by this CA"},
		{"rollback", oldCRL, "lower than the loaded"},
		{"number reused", sameNumber, "reused with different content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl, err := NewRevocationList(path, a.Certificate())
			if err != nil {
				t.Fatal(err)
			}
			if !rl.IsRevoked(c.SerialNumber) {
				t.Fatal("revoked serial not loaded")
			}
			if err := WriteFileAtomic(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			defer WriteFileAtomic(path, revokedCRL, 0o644)
			changed, err := rl.Reload()
			if err == nil || changed || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Reload = %v, %v; want error containing %q", changed, err, tt.wantErr)
			}
			if !rl.IsRevoked(c.SerialNumber) {
				t.Error("a bad CRL cleared the revocation")
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		rl, _ := NewRevocationList(path, a.Certificate())
		os.Remove(path)
		defer WriteFileAtomic(path, revokedCRL, 0o644)
		if _, err := rl.Reload(); err == nil || !rl.IsRevoked(c.SerialNumber) {
			t.Errorf("Reload(missing) = %v, IsRevoked = %v", err, rl.IsRevoked(c.SerialNumber))
		}
	})
}

func TestWatch(t *testing.T) {
	a := newTestCA(t, "fed")
	path := filepath.Join(a.dir, crlFile)
	rl, err := NewRevocationList(path, a.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	_, _, c := enrol(t, a, "st-mary")
	var changes, errs atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		rl.Watch(ctx, 5*time.Millisecond, func(error) { errs.Add(1) }, func() { changes.Add(1) })
		close(done)
	}()
	good, _ := os.ReadFile(path)
	WriteFileAtomic(path, []byte("garbage"), 0o644)
	waitFor(t, "error reported", func() bool { return errs.Load() >= 1 })
	time.Sleep(30 * time.Millisecond)
	if n := errs.Load(); n != 1 {
		t.Errorf("the same error was reported %d times, want once", n)
	}
	WriteFileAtomic(path, good, 0o644)
	if err := a.Revoke(c.SerialNumber); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation picked up", func() bool { return rl.IsRevoked(c.SerialNumber) })
	if changes.Load() < 1 {
		t.Error("onChange not called")
	}
	cancel()
	<-done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
