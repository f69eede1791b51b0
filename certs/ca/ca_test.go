package ca_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/certs/ca"
	"github.com/fedguard/fedguard/manifest"
	"golang.org/x/mod/sumdb/note"
)

// newCA makes an audited CA of federation "fed" in a temporary directory.
func newCA(t *testing.T) (*ca.Authority, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := ca.Init(dir, "fed", 0)
	if err != nil {
		t.Fatalf("Init = %v", err)
	}
	return a, dir
}

// events reads the CA's audit log (reopened read-only, as a verifier
// would) and checks that its latest checkpoint covers every event and is
// signed by the key in audit/signing.pub.
func events(t *testing.T, dir string) []audit.Event {
	t.Helper()
	l, err := audit.Open(filepath.Join(ca.AuditDir(dir), "audit.db"), audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []audit.Event
	if err := l.Events(0, func(e audit.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	pub, err := manifest.LoadPublicKeys(filepath.Join(ca.AuditDir(dir), manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pub.NoteVerifier(ca.AuditOrigin("fed"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Check(note.VerifierList(v)); err != nil {
		t.Errorf("CA audit log does not check with audit/signing.pub: %v", err)
	}
	return out
}

func participantCSR(t *testing.T, name string) []byte {
	t.Helper()
	_, csr, err := certs.NewParticipantRequest("fed", name)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestIssuedAreRecorded: each certificate the CA hands out is an event of
// the CA's signed log, naming exactly that certificate, and is on disk.
func TestIssuedAreRecorded(t *testing.T) {
	a, dir := newCA(t)
	out := t.TempDir()
	srv, srvID, err := a.IssueServer([]string{"localhost", "127.0.0.1"}, 0, filepath.Join(out, "srv.crt"), filepath.Join(out, "srv.key"))
	if err != nil {
		t.Fatalf("IssueServer = %v", err)
	}
	hosp, hospID, err := a.Sign(participantCSR(t, "st-mary"), 0, filepath.Join(out, "st-mary.crt"))
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	if srvID.Role != certs.RoleCoordinator || hospID.Name != "st-mary" {
		t.Errorf("identities = %v, %v", srvID, hospID)
	}
	if fi, err := os.Stat(filepath.Join(out, "srv.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("srv.key: %v, %v; want mode 0600", fi, err)
	}
	for _, f := range []string{"srv.crt", "st-mary.crt"} {
		if _, err := certs.LoadCertificate(filepath.Join(out, f)); err != nil {
			t.Errorf("LoadCertificate(%s) = %v", f, err)
		}
	}
	evs := events(t, dir)
	if len(evs) != 2 {
		t.Fatalf("CA log has %d events, want 2", len(evs))
	}
	for i, c := range []*x509.Certificate{srv, hosp} {
		var p audit.CertificateIssued
		if err := json.Unmarshal(evs[i].Payload, &p); err != nil {
			t.Fatal(err)
		}
		fp := sha256.Sum256(c.Raw)
		id, _ := certs.ParseIdentity(c)
		if evs[i].Kind != audit.KindCertificateIssued || evs[i].Actor != audit.ActorCA ||
			p.Serial != c.SerialNumber.Text(16) || p.SHA256 != hex.EncodeToString(fp[:]) || p.Identity != id.URI() {
			t.Errorf("event %d = %s %s %+v, want the issuance of %s serial %x", i, evs[i].Kind, evs[i].Actor, p, id, c.SerialNumber)
		}
	}
}

// TestRefusalsLeaveNoTrace: a request the CA refuses issues nothing and
// records nothing, and its error says which refusal it is.
func TestRefusalsLeaveNoTrace(t *testing.T) {
	a, dir := newCA(t)
	out := t.TempDir()
	key := filepath.Join(out, "srv.key")
	if err := os.WriteFile(key, []byte("an existing key"), 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := newCA(t)
	otherCert, _, err := other.Sign(participantCSR(t, "x"), 0, filepath.Join(out, "other.crt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		check func(error) bool
	}{
		{"existing key", func() error {
			_, _, err := a.IssueServer([]string{"localhost"}, 0, filepath.Join(out, "srv.crt"), key)
			return err
		}, func(err error) bool {
			var kerr *ca.KeyFileError
			return errors.As(err, &kerr) && errors.Is(err, fs.ErrExist)
		}},
		// Before, the CA signed and recorded the certificate, then failed
		// to write it (or wrote the server's key and not its
		// certificate): a certificate in the log that nobody holds.
		{"certificate into a missing directory", func() error {
			_, _, err := a.Sign(participantCSR(t, "st-mary"), 0, filepath.Join(out, "missing", "st-mary.crt"))
			return err
		}, func(err error) bool { var f *ca.OutputFileError; return errors.As(err, &f) }},
		{"server certificate into a missing directory", func() error {
			_, _, err := a.IssueServer([]string{"localhost"}, 0, filepath.Join(out, "missing", "srv.crt"), filepath.Join(out, "new.key"))
			return err
		}, func(err error) bool { var f *ca.OutputFileError; return errors.As(err, &f) }},
		{"server key into a missing directory", func() error {
			_, _, err := a.IssueServer([]string{"localhost"}, 0, filepath.Join(out, "srv.crt"), filepath.Join(out, "missing", "new.key"))
			return err
		}, func(err error) bool { var f *ca.OutputFileError; return errors.As(err, &f) }},
		{"bad CSR", func() error {
			_, _, err := a.Sign([]byte("not a CSR"), 0, filepath.Join(out, "x.crt"))
			return err
		}, func(err error) bool { var r *ca.RequestError; return errors.As(err, &r) }},
		{"CSR of another federation", func() error {
			_, csr, err := certs.NewParticipantRequest("elsewhere", "x")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = a.Sign(csr, 0, filepath.Join(out, "x.crt"))
			return err
		}, func(err error) bool { var r *ca.RequestError; return errors.As(err, &r) }},
		{"foreign certificate", func() error {
			_, _, err := a.RevokeCertificate(otherCert)
			return err
		}, func(err error) bool { return errors.Is(err, ca.ErrForeign) }},
		{"unknown serial", func() error {
			_, _, err := a.Revoke(big.NewInt(0xabcdef))
			return err
		}, func(err error) bool { return errors.Is(err, certs.ErrUnknownSerial) }},
		{"unknown name", func() error {
			_, err := a.RevokeName("nobody")
			return err
		}, func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !tt.check(err) {
				t.Errorf("error = %v (%T), not the expected refusal", err, err)
			}
			if issued, err := a.Issued(); err != nil || len(issued) != 0 {
				t.Errorf("Issued() = %d records, %v; want none", len(issued), err)
			}
			if evs := events(t, dir); len(evs) != 0 {
				t.Errorf("CA log has %d events after a refusal, want none", len(evs))
			}
		})
	}
	if b, err := os.ReadFile(key); err != nil || string(b) != "an existing key" {
		t.Errorf("existing key file = %q, %v; want it untouched", b, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "new.key")); err == nil {
		t.Errorf("a refused IssueServer wrote the server's key")
	}
}

// TestRevocationsAreRecorded: each serial newly revoked is one event with
// its identity; repeating a revocation changes and records nothing.
func TestRevocationsAreRecorded(t *testing.T) {
	a, dir := newCA(t)
	out := t.TempDir()
	var hosp []*x509.Certificate
	for i := range 3 {
		c, _, err := a.Sign(participantCSR(t, "st-mary"), 0, filepath.Join(out, "c"+string(rune('0'+i))+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		hosp = append(hosp, c)
	}
	const uri = "spiffe://fed/participant/st-mary"
	steps := []struct {
		name        string
		revoke      func() ([]ca.Revoked, bool, error)
		wantSerials []*big.Int
		wantAlready bool
	}{
		{"serial", func() ([]ca.Revoked, bool, error) {
			r, already, err := a.Revoke(hosp[0].SerialNumber)
			return []ca.Revoked{r}, already, err
		}, []*big.Int{hosp[0].SerialNumber}, false},
		{"serial again", func() ([]ca.Revoked, bool, error) {
			r, already, err := a.Revoke(hosp[0].SerialNumber)
			return []ca.Revoked{r}, already, err
		}, []*big.Int{hosp[0].SerialNumber}, true},
		{"certificate", func() ([]ca.Revoked, bool, error) {
			r, already, err := a.RevokeCertificate(hosp[1])
			return []ca.Revoked{r}, already, err
		}, []*big.Int{hosp[1].SerialNumber}, false},
		{"name", func() ([]ca.Revoked, bool, error) {
			rs, err := a.RevokeName("st-mary")
			return rs, false, err
		}, []*big.Int{hosp[2].SerialNumber}, false},
		{"name again", func() ([]ca.Revoked, bool, error) {
			rs, err := a.RevokeName("st-mary")
			return rs, false, err
		}, nil, false},
	}
	var want []string // serials the log must list, in order
	for _, s := range steps {
		rs, already, err := s.revoke()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if already != s.wantAlready || len(rs) != len(s.wantSerials) {
			t.Fatalf("%s: %d revoked, already %v; want %d, %v", s.name, len(rs), already, len(s.wantSerials), s.wantAlready)
		}
		for i, r := range rs {
			if r.Serial.Cmp(s.wantSerials[i]) != 0 || r.Identity != uri {
				t.Errorf("%s: revoked %x (%s), want %x (%s)", s.name, r.Serial, r.Identity, s.wantSerials[i], uri)
			}
			if !already {
				want = append(want, r.Serial.Text(16))
			}
		}
	}
	evs := events(t, dir)[3:] // after the three issuances
	if len(evs) != len(want) {
		t.Fatalf("CA log has %d revocations, want %d", len(evs), len(want))
	}
	for i, e := range evs {
		var p audit.CertificateRevoked
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if e.Kind != audit.KindCertificateRevoked || p.Serial != want[i] || p.Identity != uri || p.RevokedAt == "" {
			t.Errorf("revocation event %d = %s %+v, want serial %s of %s", i, e.Kind, p, want[i], uri)
		}
	}
	issued, err := a.Issued()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range issued {
		if !r.Revoked {
			t.Errorf("serial %s is not revoked in the CRL", r.Serial)
		}
	}
}

// TestAuditLogNeverImplicit (issue 12, "an empty or missing file is never
// a new history unless an explicit init says so", for the CA): ca.Init is
// the only place a CA's log is made. A CA without its log (one made before
// the CA log existed, here by certs.Init) is refused by Open with the
// migration command named, and is migrated only by InitAudit; a CA whose
// log, log key or audit directory was lost is refused with the advice to
// restore it, and nothing re-creates it. Before this test's change Open
// accepted both and the next issuance made a new, empty log (and, with
// signing.key gone, a new key): a second history that verified.
func TestAuditLogNeverImplicit(t *testing.T) {
	older := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "ca")
		if _, err := certs.Init(dir, "fed", 0); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	audited := func(lose ...string) func(t *testing.T) string {
		return func(t *testing.T) string {
			_, dir := newCA(t)
			for _, name := range lose {
				if err := os.RemoveAll(filepath.Join(ca.AuditDir(dir), name)); err != nil {
					t.Fatal(err)
				}
			}
			return dir
		}
	}
	emptied := func(t *testing.T) string {
		_, dir := newCA(t)
		if err := os.Truncate(filepath.Join(ca.AuditDir(dir), "audit.db"), 0); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name        string
		make        func(t *testing.T) string
		wantOpen    string // substring of Open's error
		wantMigrate string // substring of InitAudit's error; "" if it succeeds
	}{
		{"older CA", older, "fedguard ca init-audit --dir", ""},
		{"log lost", audited("audit.db"), "restore", "restore"},
		{"log emptied", emptied, "empty", "restore"},
		{"log key lost", audited(manifest.KeyFile), "restore", "restore"},
		{"audited", audited(), "", "already holds this CA's audit log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.make(t)
			before := dirListing(t, dir)
			a, err := ca.Open(dir)
			if tt.wantOpen == "" {
				if err != nil {
					t.Fatalf("Open = %v", err)
				}
			} else if !errors.Is(err, ca.ErrNoAuditLog) || !strings.Contains(err.Error(), tt.wantOpen) {
				t.Fatalf("Open = %v, want ErrNoAuditLog saying %q", err, tt.wantOpen)
			}
			if a == nil {
				if got := dirListing(t, dir); !slices.Equal(got, before) {
					t.Fatalf("a refused Open changed the CA directory: %q, was %q", got, before)
				}
			}
			m, err := ca.InitAudit(dir)
			if tt.wantMigrate != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMigrate) {
					t.Fatalf("InitAudit = %v, want an error saying %q", err, tt.wantMigrate)
				}
				return
			}
			if err != nil {
				t.Fatalf("InitAudit = %v", err)
			}
			if _, _, err := m.Sign(participantCSR(t, "st-mary"), 0, filepath.Join(t.TempDir(), "st-mary.crt")); err != nil {
				t.Fatalf("Sign after InitAudit = %v", err)
			}
			if evs := events(t, dir); len(evs) != 1 || evs[0].Kind != audit.KindCertificateIssued {
				t.Errorf("the migrated CA's log holds %d events, want the one issuance", len(evs))
			}
			if _, err := ca.Open(dir); err != nil {
				t.Errorf("Open after InitAudit = %v", err)
			}
		})
	}

	// A log removed while the CA is open is refused at the write, not
	// re-created.
	a, dir := newCA(t)
	if err := os.Remove(filepath.Join(ca.AuditDir(dir), "audit.db")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Sign(participantCSR(t, "st-mary"), 0, filepath.Join(t.TempDir(), "st-mary.crt")); !errors.Is(err, ca.ErrNoAuditLog) {
		t.Errorf("Sign with the log removed = %v, want ErrNoAuditLog", err)
	}
	if _, err := os.Stat(filepath.Join(ca.AuditDir(dir), "audit.db")); err == nil {
		t.Error("Sign re-created the removed audit log")
	}
}

// dirListing lists the files under dir, relative to it, sorted.
func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
