package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := Init(dir, "hospitals-eu", 0)
	if err != nil {
		t.Fatalf("Init = %v", err)
	}
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("dir mode = %v, want 0700", got)
	}
	if got := fileMode(t, filepath.Join(dir, caKeyFile)); got != 0o600 {
		t.Errorf("ca.key mode = %v, want 0600", got)
	}
	for _, f := range []string{caCertFile, crlFile, issuedFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("Init did not write %s: %v", f, err)
		}
	}
	ca := a.Certificate()
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCRLSign == 0 || !ca.MaxPathLenZero {
		t.Errorf("CA certificate: IsCA=%v KeyUsage=%v MaxPathLenZero=%v", ca.IsCA, ca.KeyUsage, ca.MaxPathLenZero)
	}
	if d := ca.NotAfter.Sub(ca.NotBefore); d < DefaultCAValidity {
		t.Errorf("CA validity = %v, want at least %v", d, DefaultCAValidity)
	}

	b, err := Open(dir)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if b.Federation() != "hospitals-eu" {
		t.Errorf("Open(...).Federation() = %q, want hospitals-eu", b.Federation())
	}
	if !b.Certificate().Equal(ca) {
		t.Error("Open(...).Certificate() differs from the one Init made")
	}
	// The reopened CA signs, and the empty CRL it reads is Init's.
	if _, _, cert := enrol(t, b, "st-mary"); cert.CheckSignatureFrom(ca) != nil {
		t.Error("certificate from reopened CA does not verify")
	}
	recs, err := b.Issued()
	if err != nil || len(recs) != 1 || recs[0].Identity != "spiffe://hospitals-eu/participant/st-mary" || recs[0].Revoked {
		t.Errorf("Issued() = %+v, %v", recs, err)
	}
}

func TestInitRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(dir string)
		fed     string
		wantErr string
	}{
		{"existing CA", func(dir string) {
			if _, err := Init(dir, "fed", 0); err != nil {
				t.Fatal(err)
			}
		}, "fed", "not empty"},
		{"stray file", func(dir string) {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)
		}, "fed", "not empty"},
		{"bad federation", func(string) {}, "Fed", "federation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			tt.setup(dir)
			before, _ := os.ReadFile(filepath.Join(dir, caKeyFile))
			_, err := Init(dir, tt.fed, 0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Init = %v, want error containing %q", err, tt.wantErr)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, caKeyFile)); !bytes.Equal(before, after) {
				t.Error("Init changed an existing ca.key")
			}
		})
	}

	t.Run("existing empty dir", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		if _, err := Init(dir, "fed", 0); err != nil {
			t.Fatalf("Init(empty dir) = %v", err)
		}
		if got := fileMode(t, dir); got != 0o700 {
			t.Errorf("dir mode = %v, want 0700", got)
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	a := newTestCA(t, "fed")
	b := newTestCA(t, "fed")
	// Mismatched key.
	os.Remove(filepath.Join(a.dir, caKeyFile))
	k, _ := os.ReadFile(filepath.Join(b.dir, caKeyFile))
	os.WriteFile(filepath.Join(a.dir, caKeyFile), k, 0o600)
	if _, err := Open(a.dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Open(mismatched key) = %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open(empty dir) = nil error")
	}
}

func TestSign(t *testing.T) {
	a := newTestCA(t, "fed")
	key := p256(t)
	good := makeCSR(t, key, []string{"spiffe://fed/participant/st-mary"}, nil)

	certPEM, err := a.Sign(good, 0)
	if err != nil {
		t.Fatalf("Sign(good) = %v", err)
	}
	cert, err := parseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity(cert)
	if err != nil || id != (Identity{"fed", RoleParticipant, "st-mary"}) {
		t.Errorf("ParseIdentity(signed) = %v, %v", id, err)
	}
	if cert.SerialNumber.BitLen() < 64 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial has %d bits, want a random 128-bit number", cert.SerialNumber.BitLen())
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d < DefaultCertValidity {
		t.Errorf("validity = %v, want at least %v", d, DefaultCertValidity)
	}

	mutated := func() []byte {
		b, _ := pem.Decode(good)
		der := bytes.Clone(b.Bytes)
		der[len(der)-1] ^= 0x01 // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
	}()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)

	tests := []struct {
		name    string
		csr     []byte
		wantErr string
	}{
		{"wrong federation", makeCSR(t, key, []string{"spiffe://other/participant/st-mary"}, nil), `names federation "other", this CA serves "fed"`},
		{"coordinator role", makeCSR(t, key, []string{"spiffe://fed/coordinator"}, nil), `asks for role "coordinator"`},
		{"two URIs", makeCSR(t, key, []string{"spiffe://fed/participant/a", "spiffe://fed/participant/b"}, nil), "2 URI SANs, want exactly 1"},
		{"no URI", makeCSR(t, key, nil, nil), "0 URI SANs, want exactly 1"},
		{"DNS SAN", makeCSR(t, key, []string{"spiffe://fed/participant/st-mary"}, []string{"evil.example"}), "1 DNS, IP or e-mail SANs"},
		{"bad name", makeCSR(t, key, []string{"spiffe://fed/participant/St-Mary"}, nil), "participant name"},
		{"not spiffe", makeCSR(t, key, []string{"https://fed/participant/st-mary"}, nil), "not a spiffe:// URI"},
		{"P-384 key", makeCSR(t, p384, []string{"spiffe://fed/participant/st-mary"}, nil), "want ECDSA P-256"},
		{"bad signature", mutated, "CSR signature is invalid"},
		{"garbage", []byte("this is not PEM"), "no PEM block found"},
		{"garbage in PEM", pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: []byte("junk")}), "parse CSR"},
		{"wrong PEM type", pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: []byte("junk")}), `PEM block is "CERTIFICATE"`},
		{"empty", nil, "no PEM block found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Sign(tt.csr, 0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Sign = %v, want error containing %q", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Sign returned a certificate on error")
			}
		})
	}
	if _, err := a.Sign(good, -time.Hour); err == nil {
		t.Error("Sign(validity -1h) = nil error")
	}
	recs, _ := a.Issued()
	if len(recs) != 1 {
		t.Errorf("Issued() has %d records, want only the good one", len(recs))
	}
}

// TestSignIgnoresCSRFields checks that nothing but the URI and the key is
// copied from a CSR: a CSR asking for a CA certificate, a subject and
// server usage gets a plain client certificate.
func TestSignIgnoresCSRFields(t *testing.T) {
	a := newTestCA(t, "fed")
	key := p256(t)
	u, _ := url.Parse("spiffe://fed/participant/st-mary")
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})
	der, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "coordinator", Organization: []string{"evil"}},
		URIs:    []*url.URL{u},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: eku},
		},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := a.Sign(pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), 0)
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	cert, _ := parseCertificatePEM(certPEM)
	if cert.IsCA || cert.Subject.CommonName != "st-mary" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "fedguard fed" {
		t.Errorf("cert copied CSR fields: IsCA=%v Subject=%v", cert.IsCA, cert.Subject)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v, want clientAuth only", cert.ExtKeyUsage)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("cert does not carry the CSR's public key")
	}
}

func TestIssueServer(t *testing.T) {
	a := newTestCA(t, "fed")
	certPEM, keyPEM, err := a.IssueServer([]string{"coord.example.org", "10.0.0.1", "::1"}, 48*time.Hour)
	if err != nil {
		t.Fatalf("IssueServer = %v", err)
	}
	cert, _ := parseCertificatePEM(certPEM)
	id, err := ParseIdentity(cert)
	if err != nil || id != (Identity{Federation: "fed", Role: RoleCoordinator}) {
		t.Errorf("ParseIdentity = %v, %v", id, err)
	}
	if len(cert.DNSNames) != 1 || len(cert.IPAddresses) != 2 {
		t.Errorf("SANs: DNS %v IP %v", cert.DNSNames, cert.IPAddresses)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d > 48*time.Hour+clockSkew {
		t.Errorf("validity = %v, want 48h", d)
	}
	if _, err := parsePrivateKeyPEM(keyPEM); err != nil || !bytes.Contains(keyPEM, []byte("BEGIN PRIVATE KEY")) {
		t.Errorf("key is not PKCS#8 PEM: %v", err)
	}
	for _, hosts := range [][]string{nil, {"bad host"}, {"a..b"}, {""}} {
		if _, _, err := a.IssueServer(hosts, 0); err == nil {
			t.Errorf("IssueServer(%q) = nil error", hosts)
		}
	}
}

func TestIssueClampsToCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := Init(dir, "fed", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, _, cert := enrol(t, a, "p")
	if cert.NotAfter.After(a.Certificate().NotAfter) {
		t.Errorf("cert NotAfter %v outlives CA %v", cert.NotAfter, a.Certificate().NotAfter)
	}
}

func TestRevoke(t *testing.T) {
	a := newTestCA(t, "fed")
	_, _, c1 := enrol(t, a, "st-mary")
	_, _, c2 := enrol(t, a, "st-mary") // renewal
	_, _, c3 := enrol(t, a, "st-john")

	crlNumber := func() *big.Int {
		crl, err := a.readCRL()
		if err != nil {
			t.Fatal(err)
		}
		return crl.Number
	}
	if n := crlNumber(); n.Cmp(big.NewInt(1)) != 0 {
		t.Errorf("initial CRL number = %v, want 1", n)
	}
	if err := a.Revoke(c3.SerialNumber); err != nil {
		t.Fatalf("Revoke = %v", err)
	}
	if err := a.Revoke(c3.SerialNumber); err != nil {
		t.Errorf("second Revoke = %v, want nil", err)
	}
	if n := crlNumber(); n.Cmp(big.NewInt(2)) != 0 {
		t.Errorf("CRL number = %v, want 2", n)
	}
	got, err := a.RevokeName("st-mary")
	if err != nil || len(got) != 2 {
		t.Fatalf("RevokeName = %v, %v; want 2 serials", got, err)
	}
	if n := crlNumber(); n.Cmp(big.NewInt(3)) != 0 {
		t.Errorf("CRL number = %v, want 3", n)
	}
	if got, err := a.RevokeName("st-mary"); err != nil || len(got) != 0 {
		t.Errorf("RevokeName again = %v, %v; want nothing new", got, err)
	}
	if _, err := a.RevokeName("nobody"); err == nil || !strings.Contains(err.Error(), "no certificate was issued") {
		t.Errorf("RevokeName(nobody) = %v", err)
	}
	// A serial the CA never issued is refused and the CRL left as it was
	// (before, it was added and reported revoked).
	before := crlNumber()
	if err := a.Revoke(big.NewInt(0xabc123)); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("Revoke(unknown serial) = %v, want ErrUnknownSerial", err)
	}
	if n := crlNumber(); n.Cmp(before) != 0 {
		t.Errorf("CRL number after refusing an unknown serial = %v, want %v", n, before)
	}
	for _, s := range []*big.Int{nil, big.NewInt(0), big.NewInt(-1)} {
		if err := a.Revoke(s); err == nil {
			t.Errorf("Revoke(%v) = nil error", s)
		}
	}
	recs, err := a.Issued()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !r.Revoked {
			t.Errorf("%s (%s) not marked revoked", r.Serial, r.Identity)
		}
	}
	rl, err := NewRevocationList(filepath.Join(a.dir, crlFile), a.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{c1, c2, c3} {
		if !rl.IsRevoked(c.SerialNumber) {
			t.Errorf("IsRevoked(%x) = false", c.SerialNumber)
		}
	}
	// Revoked lists the same serials, ordered, each with its time.
	var want []string
	for _, c := range []*x509.Certificate{c1, c2, c3} {
		want = append(want, c.SerialNumber.Text(16))
	}
	slices.Sort(want)
	listed := rl.Revoked()
	if len(listed) != len(want) {
		t.Fatalf("Revoked() has %d entries, want %d", len(listed), len(want))
	}
	for i, r := range listed {
		if r.Serial != want[i] || r.At.IsZero() || time.Since(r.At) > time.Hour {
			t.Errorf("Revoked()[%d] = %+v, want serial %s revoked just now", i, r, want[i])
		}
	}
}

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{{"ff", 255}, {"0xFF", 255}, {"01:00", 256}, {" 1a ", 26}, {"", -1}, {"0", -1}, {"-1", -1}, {"xyz", -1}, {"0x", -1}, {"+5", -1}}
	for _, tt := range tests {
		got, err := ParseSerial(tt.in)
		if tt.want < 0 {
			if err == nil {
				t.Errorf("ParseSerial(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got.Int64() != tt.want {
			t.Errorf("ParseSerial(%q) = %v, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.key")
	if err := WritePrivateKey(p, []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, p); got != 0o600 {
		t.Errorf("mode = %v, want 0600", got)
	}
	if err := WritePrivateKey(p, []byte("k2")); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("WritePrivateKey(existing) = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "k1" {
		t.Errorf("key overwritten: %q", b)
	}
	q := filepath.Join(dir, "y.pem")
	for i, data := range []string{"one", "two"} {
		if err := WriteFileAtomic(q, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(q); string(b) != data {
			t.Errorf("write %d: got %q", i, b)
		}
	}
	if got := fileMode(t, q); got != 0o640 {
		t.Errorf("mode = %v, want 0640", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	a := newTestCA(t, "fed")
	if c, err := LoadCertificate(filepath.Join(a.dir, caCertFile)); err != nil || !c.Equal(a.Certificate()) {
		t.Errorf("LoadCertificate(ca.crt) = %v", err)
	}
	for name, data := range map[string]string{"empty": "", "key only": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "junk cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		f := filepath.Join(dir, "c.pem")
		os.WriteFile(f, []byte(data), 0o644)
		if _, err := LoadCertificate(f); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("LoadCertificate(%s) = %v, want error naming the file", name, err)
		}
	}
	if _, err := LoadCertificate(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadCertificate(missing) = nil error")
	}
}

func TestNewParticipantRequest(t *testing.T) {
	if _, _, err := NewParticipantRequest("fed", "Bad"); err == nil {
		t.Error("NewParticipantRequest(bad name) = nil error")
	}
	if _, _, err := NewParticipantRequest("", "ok"); err == nil {
		t.Error("NewParticipantRequest(no federation) = nil error")
	}
	keyPEM, csrPEM, err := NewParticipantRequest("fed", "st-mary")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR does not parse or verify: %v", err)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil || !key.Public().(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Errorf("key does not match CSR: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://fed/participant/st-mary" {
		t.Errorf("CSR URIs = %v", csr.URIs)
	}
}
