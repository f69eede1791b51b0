// Package softhsm makes throw-away SoftHSM2 tokens for tests of the
// PKCS #11 key backend (package keystore).
//
// Each token lives in a temporary directory with its own softhsm2.conf,
// which the test process (and any child process it starts) finds through
// SOFTHSM2_CONF. SoftHSM2 is the Debian package softhsm2, which .ci/run
// installs; without it a test skips, except in CI (CI set), where it fails.
//
// CosignVerifies checks a DSSE envelope the way cosign does, for the token
// tests of manifest and coordinator.
package softhsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/keystore"
)

// modulePaths are where Debian and other distributions put the SoftHSM2
// library.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// Test PINs. A token exists only for one test.
const (
	PIN   = "1234-test-pin"
	SOPIN = "5678-test-so-pin"
)

// Module returns the path of libsofthsm2.so, or "" if none is installed.
func Module() string {
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" {
		return m
	}
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// need skips t, or fails it in CI, when SoftHSM2 is missing.
func need(t testing.TB) (module, util string) {
	t.Helper()
	module = Module()
	util, err := exec.LookPath("softhsm2-util")
	_, merr := os.Stat(module)
	if module != "" && merr == nil && err == nil {
		return module, util
	}
	msg := "SoftHSM2 is not installed (no libsofthsm2.so or softhsm2-util): apt-get install softhsm2 (.ci/run does)"
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" && merr != nil {
		msg = fmt.Sprintf("SOFTHSM2_MODULE=%s: %v", m, merr)
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

// New initialises a token labelled label in a new temporary directory,
// points SOFTHSM2_CONF at it for the rest of the test (so t must not be
// parallel), and returns a configuration for it with key label key and the
// user PIN in a 0600 pin file.
func New(t testing.TB, label, key string) keystore.PKCS11 {
	t.Helper()
	module, util := need(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keystore.PKCS11{Module: module, TokenLabel: label, KeyLabel: key, PINFile: pinFile}
}

// Import puts the PKCS #8 PEM private key keyPEM (Ed25519, ECDSA or RSA)
// on the token cfg names, as a key pair labelled label, with
// `softhsm2-util --import`: how an operator moves a file key into a token.
func Import(t testing.TB, cfg keystore.PKCS11, keyPEM []byte, label string) {
	t.Helper()
	_, util := need(t)
	path := filepath.Join(t.TempDir(), "import.pem")
	if err := os.WriteFile(path, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%x", label)
	cmd := exec.Command(util, "--import", path, "--token", cfg.TokenLabel, "--label", label, "--id", id, "--pin", PIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --import: %v\n%s", err, out)
	}
}
