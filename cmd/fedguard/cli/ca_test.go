package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest/endless"
)

// caRun runs the command line and returns its exit code and output.
func caRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// cliStep is one command line of a scripted CLI test: its exit code, the
// substrings its stdout must contain, and one its stderr must contain.
type cliStep struct {
	name     string
	args     []string
	wantCode int
	wantOut  []string // substrings of stdout
	wantErr  string   // substring of stderr; "" checks nothing
}

// runSteps runs the steps in order, stopping at the first wrong exit code.
func runSteps(t *testing.T, steps []cliStep) {
	t.Helper()
	for _, st := range steps {
		code, out, errOut := caRun(t, st.args...)
		if code != st.wantCode {
			t.Fatalf("%s: fedguard %s = exit %d, want %d\nstdout: %s\nstderr: %s", st.name, strings.Join(st.args, " "), code, st.wantCode, out, errOut)
		}
		for _, w := range st.wantOut {
			if !strings.Contains(out, w) {
				t.Errorf("%s: stdout = %q, want it to contain %q", st.name, out, w)
			}
		}
		if st.wantErr != "" && !strings.Contains(errOut, st.wantErr) {
			t.Errorf("%s: stderr = %q, want it to contain %q", st.name, errOut, st.wantErr)
		}
	}
}

func caMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestCACommands walks the whole enrolment flow through the command line:
// ca init → ca issue → participant init → ca sign → ca revoke → ca list.
func TestCACommands(t *testing.T) {
	tmp := t.TempDir()
	caDir := filepath.Join(tmp, "ca")
	hosp := filepath.Join(tmp, "hospital")
	srvCert, srvKey := filepath.Join(tmp, "coord.crt"), filepath.Join(tmp, "coord.key")
	marysCSR, marysCert := filepath.Join(hosp, "st-mary.csr"), filepath.Join(hosp, "st-mary.crt")

	steps := []cliStep{
		{"init", []string{"ca", "init", "--dir", caDir, "--federation", "hospitals-eu"}, 0, []string{`federation "hospitals-eu"`, "ca.crt"}, ""},
		{"init again", []string{"ca", "init", "--dir", caDir, "--federation", "hospitals-eu"}, 1, nil, "not empty"},
		{"init bad federation", []string{"ca", "init", "--dir", filepath.Join(tmp, "x"), "--federation", "Bad_Name"}, 1, nil, "federation"},
		{"init missing flag", []string{"ca", "init", "--dir", caDir}, 2, nil, "-federation is required"},
		{"issue", []string{"ca", "issue", "--dir", caDir, "--out-cert", srvCert, "--out-key", srvKey, "--host", "127.0.0.1,coord.example.org"}, 0, []string{"spiffe://hospitals-eu/coordinator", "127.0.0.1, coord.example.org"}, ""},
		{"issue over key", []string{"ca", "issue", "--dir", caDir, "--out-cert", srvCert, "--out-key", srvKey, "--host", "127.0.0.1"}, 1, nil, "refusing to overwrite"},
		{"participant init", []string{"participant", "init", "--name", "st-mary", "--federation", "hospitals-eu", "--dir", hosp}, 0, []string{"st-mary.key", "send st-mary.csr to the federation operator", "fedguard ca sign", "signing.pub", "--coordinator-key " + filepath.Join(hosp, "signing.pub")}, ""},
		{"participant init again", []string{"participant", "init", "--name", "st-mary", "--federation", "hospitals-eu", "--dir", hosp}, 1, nil, "refusing to overwrite"},
		{"participant init bad name", []string{"participant", "init", "--name", "../evil", "--federation", "hospitals-eu", "--dir", hosp}, 2, nil, "-name"},
		{"participant init other", []string{"participant", "init", "--name", "st-john", "--federation", "hospitals-eu", "--dir", hosp}, 0, nil, ""},
		{"sign", []string{"ca", "sign", "--dir", caDir, "--csr", marysCSR, "--out", marysCert}, 0, []string{"signed spiffe://hospitals-eu/participant/st-mary serial "}, ""},
		{"sign st-john", []string{"ca", "sign", "--dir", caDir, "--csr", filepath.Join(hosp, "st-john.csr"), "--out", filepath.Join(hosp, "st-john.crt")}, 0, []string{"participant/st-john"}, ""},
		// Before, a CSR that never ends was read until memory ran out.
		{"sign endless CSR", []string{"ca", "sign", "--dir", caDir, "--csr", endless.File(t, tmp, "endless.csr"), "--out", filepath.Join(tmp, "x.crt")}, 1, nil, "endless.csr: larger than 1048576 bytes"},
		{"sign garbage", []string{"ca", "sign", "--dir", caDir, "--csr", srvCert, "--out", filepath.Join(tmp, "x.crt")}, 1, nil, `PEM block is "CERTIFICATE"`},
		{"revoke by cert", []string{"ca", "revoke", "--dir", caDir, "--cert", marysCert}, 0, []string{"revoked serial ", "(spiffe://hospitals-eu/participant/st-mary)"}, ""},
		{"revoke by cert again", []string{"ca", "revoke", "--dir", caDir, "--cert", marysCert}, 0, []string{"already revoked"}, ""},
		{"revoke by name", []string{"ca", "revoke", "--dir", caDir, "--name", "st-john"}, 0, []string{"participant/st-john)"}, ""},
		{"revoke unknown name", []string{"ca", "revoke", "--dir", caDir, "--name", "nobody"}, 1, nil, "no certificate was issued"},
		{"revoke two selectors", []string{"ca", "revoke", "--dir", caDir, "--name", "st-john", "--serial", "ff"}, 2, nil, "exactly one"},
		{"revoke bad serial", []string{"ca", "revoke", "--dir", caDir, "--serial", "zz"}, 2, nil, "bad serial"},
		// Before, an unknown serial was added to the CRL and reported revoked.
		{"revoke unknown serial", []string{"ca", "revoke", "--dir", caDir, "--serial", "abc123"}, 1, nil, "never issued a certificate with that serial"},
	}
	runSteps(t, steps)

	for path, want := range map[string]os.FileMode{
		caDir:                                0o700,
		filepath.Join(caDir, "ca.key"):       0o600,
		srvKey:                               0o600,
		filepath.Join(hosp, "st-mary.key"):   0o600,
		filepath.Join(hosp, "st-mary.csr"):   0o644,
		marysCert:                            0o644,
		filepath.Join(caDir, "issued.jsonl"): 0o644,
	} {
		if got := caMode(t, path); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}

	// The signed certificate matches the key made at the hospital.
	cert, err := certs.LoadCertificate(marysCert)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := certs.ParseIdentity(cert); err != nil || id.Name != "st-mary" {
		t.Errorf("ParseIdentity(st-mary.crt) = %v, %v", id, err)
	}

	// Revoke the coordinator by serial, as printed by ca list.
	srv, err := certs.LoadCertificate(srvCert)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := caRun(t, "ca", "revoke", "--dir", caDir, "--serial", srv.SerialNumber.Text(16))
	if code != 0 || !strings.Contains(out, "spiffe://hospitals-eu/coordinator") {
		t.Fatalf("revoke by serial = %d, %q, %q", code, out, errOut)
	}

	code, out, errOut = caRun(t, "ca", "list", "--dir", caDir)
	if code != 0 {
		t.Fatalf("ca list = %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^SERIAL\s+IDENTITY\s+NOT AFTER\s+REVOKED$`).MatchString(lines[0]) {
		t.Fatalf("ca list output:\n%s", out)
	}
	for _, want := range []string{"coordinator", "participant/st-mary", "participant/st-john"} {
		found := false
		for _, l := range lines[1:] {
			if strings.Contains(l, want) {
				found = true
				if !strings.HasSuffix(l, "yes") {
					t.Errorf("ca list: %s not shown revoked: %q", want, l)
				}
			}
		}
		if !found {
			t.Errorf("ca list does not show %s:\n%s", want, out)
		}
	}

	// The CA's own audit log holds the three issuances and three
	// revocations (one each for the coordinator and the two hospitals),
	// and its export verifies with the key beside it.
	export := filepath.Join(tmp, "ca-audit.jsonl")
	db := filepath.Join(caDir, "audit", "audit.db")
	if code, _, errOut := caRun(t, "audit", "export", "--db", db, "--out", export); code != 0 {
		t.Fatalf("audit export of the CA log = %d: %s", code, errOut)
	}
	code, out, errOut = caRun(t, "audit", "verify", "--key", filepath.Join(caDir, "audit", "signing.pub"), export)
	if code != 0 || !strings.Contains(out, "OK: 6 events of fedguard/hospitals-eu/ca") {
		t.Errorf("audit verify of the CA log = %d, %q, %q; want 6 events verified", code, out, errOut)
	}
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	for kind, n := range map[string]int{`"kind":"certificate_issued"`: 3, `"kind":"certificate_revoked"`: 3, `"identity":"spiffe://hospitals-eu/participant/st-mary"`: 2} {
		if got := strings.Count(string(b), kind); got != n {
			t.Errorf("CA log has %d lines with %s, want %d", got, kind, n)
		}
	}
	if got := caMode(t, filepath.Join(caDir, "audit", "signing.key")); got != 0o600 {
		t.Errorf("CA audit signing.key has mode %v, want 0600", got)
	}
}

// TestCAHelp checks that the new commands are registered where the
// dispatcher finds them, next to `participant run`.
func TestCAHelp(t *testing.T) {
	code, out, _ := caRun(t, "ca", "help")
	for _, sub := range []string{"init", "issue", "sign", "revoke", "list"} {
		if code != 0 || !strings.Contains(out, "  "+sub) {
			t.Errorf("fedguard ca help = %d, missing %q:\n%s", code, sub, out)
		}
	}
	if p := lookup(commands, "participant"); p == nil || lookup(p.sub, "init") == nil {
		t.Error("participant init is not registered")
	}
	if code, _, _ := caRun(t, "ca", "list"); code != 2 {
		t.Errorf("ca list without -dir = exit %d, want 2", code)
	}
}

// TestAuditModelHelpNamesCosign: `audit model --help` gives the exact
// cosign command that checks what it writes (before, nothing told a user
// how to run cosign on a round).
func TestAuditModelHelpNamesCosign(t *testing.T) {
	_, out, errOut := caRun(t, "audit", "model", "--help")
	for _, want := range []string{"cosign verify-blob-attestation --key cosign.pub --insecure-ignore-tlog",
		"--type https://fedguard.dev/round-manifest/v1", "--signature FED-model-round-000020.bin.manifest.json FED-model-round-000020.bin"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("audit model --help does not say %q:\n%s%s", want, out, errOut)
		}
	}
}

// TestCAInitAudit: a CA made before the CA audit log existed (certs.Init
// makes one without it) is refused by every ca command with the migration
// named, `ca init-audit` migrates it once, and then the commands work. On
// main before, `ca list` and `ca sign` on such a CA succeeded and the first
// issuance made a log implicitly, and `ca init-audit` did not exist.
func TestCAInitAudit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := certs.Init(dir, "hospitals-eu", 0); err != nil {
		t.Fatal(err)
	}
	steps := []cliStep{
		{"list refused", []string{"ca", "list", "--dir", dir}, 1, nil, "fedguard ca init-audit --dir " + dir},
		{"issue refused", []string{"ca", "issue", "--dir", dir, "--host", "localhost", "--out-cert", filepath.Join(dir, "..", "c.crt"), "--out-key", filepath.Join(dir, "..", "c.key")}, 1, nil, "has no audit log"},
		{"init-audit", []string{"ca", "init-audit", "--dir", dir}, 0, []string{
			"started the audit log of the CA of federation \"hospitals-eu\": " + filepath.Join(dir, "audit", "audit.db"),
			filepath.Join(dir, "audit", "signing.pub"),
			"the 0 issued before",
		}, ""},
		{"init-audit again", []string{"ca", "init-audit", "--dir", dir}, 1, nil, "already holds this CA's audit log"},
		{"list", []string{"ca", "list", "--dir", dir}, 0, []string{"SERIAL"}, ""},
	}
	runSteps(t, steps)
}
