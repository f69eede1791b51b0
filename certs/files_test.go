package certs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// TestReadsBounded: every file an operator names to this package — a
// certificate, a CA bundle, a key pair, a CRL — is read up to its bound
// and no further, so one that never ends is refused with the file's name
// and the bound instead of read until memory runs out, as each was when
// it was read with os.ReadFile (or tls.LoadX509KeyPair, which does).
func TestReadsBounded(t *testing.T) {
	a := newTestCA(t, "fed")
	certFile, keyFile, _ := enrol(t, a, "st-mary")
	_, _, revoked := enrol(t, a, "st-john")
	if err := a.Revoke(revoked.SerialNumber); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	endless := endless.File(t, dir, "endless.pem")
	crl := filepath.Join(dir, "crl.pem")
	good, err := os.ReadFile(filepath.Join(a.dir, crlFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crl, good, 0o644); err != nil {
		t.Fatal(err)
	}
	rl, err := NewRevocationList(crl, a.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		limit int
		load  func() error
	}{
		{"LoadCertificate", MaxPEMFileSize, func() error { _, err := LoadCertificate(endless); return err }},
		{"LoadCABundle", MaxPEMFileSize, func() error { _, err := LoadCABundle(endless); return err }},
		{"LoadKeyPair cert", MaxPEMFileSize, func() error { _, err := LoadKeyPair(endless, keyFile); return err }},
		{"LoadKeyPair key", MaxPEMFileSize, func() error { _, err := LoadKeyPair(certFile, endless); return err }},
		{"ReadPEMFile", MaxPEMFileSize, func() error { _, err := ReadPEMFile(endless); return err }},
		{"NewRevocationList", MaxCRLFileSize, func() error { _, err := NewRevocationList(endless, a.Certificate()); return err }},
		{"Reload", MaxCRLFileSize, func() error {
			if err := os.Remove(crl); err != nil {
				return err
			}
			if err := os.Symlink("/dev/zero", crl); err != nil {
				return err
			}
			_, err := rl.Reload()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load()
			if !errors.Is(err, strictjson.ErrTooLarge) {
				t.Fatalf("%s(/dev/zero) = %v, want an error wrapping strictjson.ErrTooLarge", tc.name, err)
			}
			if want := "larger than " + strconv.Itoa(tc.limit) + " bytes"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("%s(/dev/zero) = %q, want it to name the file and say %q", tc.name, err, want)
			}
		})
	}
	if !rl.IsRevoked(revoked.SerialNumber) {
		t.Error("after the refused reload, the revocation the loaded CRL holds is gone")
	}
}

// TestWriteJSONAtomic: the file holds v's JSON and a newline with the
// permission asked for, replacing what was there; a value JSON cannot
// encode leaves the old file in place and returns json.Marshal's error.
func TestWriteJSONAtomic(t *testing.T) {
	type rec struct {
		Round  uint64 `json:"round"`
		Digest string `json:"digest"`
	}
	state := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(state, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSONAtomic(state, rec{Round: 7, Digest: "ab"}, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(state)
	if want := "{\"round\":7,\"digest\":\"ab\"}\n"; err != nil || string(got) != want {
		t.Errorf("WriteJSONAtomic wrote %q (%v), want %q", got, err, want)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("WriteJSONAtomic: stat = %v, %v, want mode 0600", fi, err)
	}
	err = WriteJSONAtomic(state, make(chan int), 0o600)
	if err == nil || err.Error() != "json: unsupported type: chan int" {
		t.Errorf("WriteJSONAtomic(chan) = %v, want json.Marshal's unsupported-type error", err)
	}
	if again, _ := os.ReadFile(state); string(again) != string(got) {
		t.Errorf("after a failed write the file holds %q, want %q", again, got)
	}
}
