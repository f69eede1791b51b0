//go:build cgo

package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/softhsm"
	"github.com/fedguard/fedguard/keystore"
)

// TestAuthorityKeyOnToken runs a CA whose ECDSA P-256 key is in SoftHSM2:
// init, issue a participant's and the coordinator's certificates, reopen
// from the token, revoke, and an mTLS handshake with what it issued.
func TestAuthorityKeyOnToken(t *testing.T) {
	cfg := softhsm.New(t, "fedguard-ca", "ca")
	tok, err := keystore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateECDSA(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := InitWithKey(dir, "fed", 0, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, caKeyFile)); err == nil {
		t.Fatal("a CA with its key on a token wrote ca.key")
	}
	if err := a.Certificate().CheckSignatureFrom(a.Certificate()); err != nil {
		t.Fatalf("self-signed CA certificate: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open without the token's key succeeded")
	}
	tok.Close()

	// A later command reopens the token and finds the key by label.
	tok, err = keystore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err = tok.ECDSA(cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	a, err = OpenWithKey(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, cert := enrol(t, a, "hospital-a")
	if err := cert.CheckSignatureFrom(a.Certificate()); err != nil {
		t.Fatalf("participant certificate from the token CA: %v", err)
	}
	srvCert, srvKey := serverFiles(t, a)
	server := mustServer(t, ServerOptions{CA: a.Certificate(), CertFile: srvCert, KeyFile: srvKey, Federation: "fed"})
	client := mustClient(t, ClientOptions{CA: a.Certificate(), CertFile: cliCert, KeyFile: cliKey, Federation: "fed", ServerName: "127.0.0.1"})
	if serr, cerr := handshake(t, server, client); serr != nil || cerr != nil {
		t.Fatalf("mTLS with certificates from the token CA: server %v, client %v", serr, cerr)
	}
	if err := a.RevokeCertificate(cert); err != nil {
		t.Fatalf("revoke (CRL signed in the token): %v", err)
	}
	if _, err := a.readCRL(); err != nil {
		t.Fatalf("CRL signed in the token does not verify: %v", err)
	}

	other, err := tok.GenerateECDSA("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWithKey(dir, other); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("OpenWithKey with another token key: err %v", err)
	}
}
