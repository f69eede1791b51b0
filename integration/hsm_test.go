package integration

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/softhsm"
	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
)

// TestHSMFederation runs the enrolment and a federation with both
// long-lived keys in SoftHSM2, through the real binary: the CA's ECDSA
// P-256 key (ca init, issue, sign with -pkcs11-* flags, PIN from
// FEDGUARD_PKCS11_PIN) and the coordinator's Ed25519 signing key (config
// "pkcs11", PIN from its pin_file). The hospitals verify every manifest
// with the pinned signing.pub, the audit trail verifies, and cosign checks
// the last manifest with cosign.pub.
func TestHSMFederation(t *testing.T) {
	root := t.TempDir()
	const fed = "hsm-net"
	// One token, two keys: "ca" and "coordinator". SOFTHSM2_CONF is set for
	// every process this test starts.
	tok := softhsm.New(t, "fedguard-ci", "ca")
	ca := filepath.Join(root, "operator", "ca")
	op := filepath.Join(root, "operator")
	caKey := []string{"--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-key", "ca"}
	caCmd := func(args ...string) []string { return append(append([]string{"ca"}, args...), caKey...) }

	t.Setenv(keystore.PINEnv, "0000") // wrong
	_, errOut, err := runFedguard(t, 30*time.Second, caCmd("init", "--dir", ca, "--federation", fed)...)
	if err == nil || !strings.Contains(errOut, "refused the PIN") {
		t.Fatalf("ca init with a wrong PIN: err %v, stderr %q; want a refusal naming the PIN", err, errOut)
	}
	if _, err := os.Stat(ca); err == nil {
		t.Fatal("a refused ca init left a CA directory")
	}
	t.Setenv(keystore.PINEnv, softhsm.PIN)
	out := mustFedguard(t, caCmd("init", "--dir", ca, "--federation", fed)...)
	if !strings.Contains(out, `"ca" on PKCS #11 token "fedguard-ci"`) {
		t.Errorf("ca init does not say the key is on the token:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(ca, "ca.key")); err == nil {
		t.Fatal("ca init with a token key wrote ca.key")
	}
	mustFedguard(t, caCmd("issue", "--dir", ca, "--host", "127.0.0.1,localhost",
		"--out-cert", filepath.Join(op, "coordinator.crt"), "--out-key", filepath.Join(op, "coordinator.key"))...)
	// Without the token the CA cannot issue.
	if _, errOut, err := runFedguard(t, 30*time.Second, "ca", "list", "--dir", ca); err == nil || !strings.Contains(errOut, "ca.key") {
		t.Errorf("ca list without -pkcs11-*: err %v, stderr %q; want an error about ca.key", err, errOut)
	}
	if _, errOut, err := runFedguard(t, 30*time.Second, "ca", "list", "--dir", ca,
		"--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-key", "nope"); err == nil || !strings.Contains(errOut, `no key pair labelled "nope"`) {
		t.Errorf("ca list with a missing key label: err %v, stderr %q", err, errOut)
	}
	hospitals := []string{"st-mary", "city-general"}
	caCert, err := certs.LoadCertificate(filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hospitals {
		hdir := filepath.Join(root, h)
		mustFedguard(t, "participant", "init", "--name", h, "--federation", fed, "--dir", hdir)
		mustFedguard(t, caCmd("sign", "--dir", ca, "--csr", filepath.Join(hdir, h+".csr"), "--out", filepath.Join(hdir, h+".crt"))...)
		cert, err := certs.LoadCertificate(filepath.Join(hdir, h+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.CheckSignatureFrom(caCert); err != nil {
			t.Fatalf("%s's certificate, signed in the token: %v", h, err)
		}
		writeWDBCShare(t, filepath.Join(hdir, "data.csv"), i, len(hospitals))
	}
	t.Setenv(keystore.PINEnv, "") // the coordinator reads its pin_file

	cfg := operatorConfig(t, root, op, ca, fed, hospitals, 2)
	cfg.PKCS11 = tok
	cfg.PKCS11.KeyLabel = "coordinator"
	cfgPath := writeConfig(t, op, cfg)
	mustFedguard(t, "coordinator", "--config", cfgPath, "--check-config") // logs in to the token
	out = mustFedguard(t, "coordinator", "--config", cfgPath, "--init-keys")
	if !strings.Contains(out, `Ed25519 key "coordinator" on PKCS #11 token "fedguard-ci"`) {
		t.Errorf("coordinator --init-keys output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, manifest.KeyFile)); err == nil {
		t.Fatal("--init-keys with a token key wrote signing.key")
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, manifest.MLDSAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, want mode 0600", manifest.MLDSAKeyFile, err)
	}
	pub := filepath.Join(cfg.DataDir, manifest.PublicFile)
	coord := startCoordinator(t, cfgPath)
	var procs []*participantProc
	for _, h := range hospitals {
		hdir := filepath.Join(root, h)
		procs = append(procs, startParticipant(t, h,
			"--coordinator", coord.Addr, "--federation", fed, "--ca", filepath.Join(ca, "ca.crt"),
			"--cert", filepath.Join(hdir, h+".crt"), "--key", filepath.Join(hdir, h+".key"),
			"--data", filepath.Join(hdir, "data.csv"), "--ignore", "id", "--coordinator-key", pub))
	}
	for _, p := range procs {
		if err := p.wait(t, 90*time.Second); err != nil {
			t.Errorf("participant %s exited with %v, want 0", p.name, err)
		}
	}
	if err := coord.waitExit(30 * time.Second); err != nil {
		t.Fatalf("coordinator exited with %v after the last round, want 0", err)
	}
	// The hospitals accepted the manifests signed in the token, up to the
	// final model's, which WaitRound hands over with finished.
	for _, h := range hospitals {
		b, err := os.ReadFile(filepath.Join(root, h, h+".accepted.json"))
		if err != nil || !strings.Contains(string(b), `"round":2,`) {
			t.Errorf("%s.accepted.json = %s, %v; want the manifest of round 2, the final model's", h, b, err)
		}
	}
	checkAuditTrail(t, cfg.DataDir, 2)

	// The last manifest and model, checked with the repository's pinned
	// cosign against cosign.pub alone.
	exp := t.TempDir()
	mustFedguard(t, "audit", "model", "--data-dir", cfg.DataDir, "--key", pub, "--out", exp)
	name := manifest.SubjectName(fed, 2)
	keys, err := manifest.LoadPublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(filepath.Join(exp, name+".manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	model, err := os.ReadFile(filepath.Join(exp, name))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := manifest.Verify(env, keys, fed); err != nil || v.CheckModel(sha256.Sum256(model)) != nil {
		t.Fatalf("exported manifest of round 2: %v", err)
	}
	modRoot, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cosign := exec.CommandContext(ctx, "go", "tool", "-modfile="+filepath.Join(modRoot, "tools", "cosign", "go.mod"), "cosign",
		"verify-blob-attestation", "--key", filepath.Join(cfg.DataDir, manifest.CosignPublicFile), "--insecure-ignore-tlog",
		"--type", manifest.PredicateType, "--signature", filepath.Join(exp, name+".manifest.json"), filepath.Join(exp, name))
	cosign.Dir = modRoot
	if b, err := cosign.CombinedOutput(); err != nil || !strings.Contains(string(b), "Verified OK") {
		t.Errorf("cosign verify-blob-attestation of a manifest signed in the token: %v\n%s", err, b)
	}
}
