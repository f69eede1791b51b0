package certs

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Validity defaults. They are long because a federation of hospitals renews
// by hand: the CA outlives many studies, and a participant renews yearly.
const (
	// DefaultCAValidity is the lifetime of a new federation CA (10 years).
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is the lifetime of a participant or coordinator
	// certificate (1 year).
	DefaultCertValidity = 365 * 24 * time.Hour
	// DefaultCRLValidity is how far ahead each CRL's NextUpdate is set. The
	// coordinator reloads crl.pem whenever it changes, so NextUpdate is only
	// a hint for other tools and is set well ahead (1 year).
	DefaultCRLValidity = 365 * 24 * time.Hour
)

// clockSkew is how far NotBefore is backdated, so a certificate is usable at
// once by a peer whose clock runs a few minutes late.
const clockSkew = 5 * time.Minute

// Files of an Authority directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
	crlFile    = "crl.pem"
	issuedFile = "issued.jsonl"
)

// now is the package clock, replaced in tests.
var now = time.Now

// Authority is a federation CA kept in a directory (see the package doc for
// its files). Its methods are safe for concurrent use within one process;
// two processes must not modify the same directory at the same time.
type Authority struct {
	dir        string
	federation string
	cert       *x509.Certificate
	key        crypto.Signer

	mu sync.Mutex // serialises writes to crl.pem and issued.jsonl
}

// IssuedCert is one line of issued.jsonl: the CA's record of a certificate
// it issued, which is what makes RevokeName and `fedguard ca list` possible
// without keeping every certificate.
type IssuedCert struct {
	// Serial is the certificate serial in lowercase hex.
	Serial string `json:"serial"`
	// Identity is the certificate's identity URI.
	Identity string `json:"identity"`
	// NotAfter is the end of validity.
	NotAfter time.Time `json:"not_after"`
	// Fingerprint is the SHA-256 of the certificate DER, lowercase hex.
	Fingerprint string `json:"fingerprint"`
	// Revoked is filled by Issued from the current CRL; it is not stored.
	Revoked bool `json:"-"`
}

// Init creates a new federation CA in dir: a P-256 key (ca.key, 0600), a
// self-signed certificate (ca.crt) whose name constraints limit it to this
// federation's URIs, an empty CRL and an empty issued.jsonl. dir is created
// with mode 0700; Init refuses a dir that is not empty, so an existing CA is
// never overwritten. validity 0 means DefaultCAValidity.
func Init(dir, federation string, validity time.Duration) (*Authority, error) {
	return initAuthority(dir, federation, validity, nil)
}

// InitWithKey is [Init] with a CA key kept elsewhere, such as on a PKCS #11
// token (package keystore): the certificate is signed with key and no
// ca.key is written. Every later use of the CA opens it with
// [OpenWithKey] and the same key.
func InitWithKey(dir, federation string, validity time.Duration, key crypto.Signer) (*Authority, error) {
	if key == nil {
		return nil, errors.New("certs: init: no CA key")
	}
	return initAuthority(dir, federation, validity, key)
}

// initAuthority is Init, making a key file when key is nil.
func initAuthority(dir, federation string, validity time.Duration, key crypto.Signer) (*Authority, error) {
	if err := ValidateName(federation); err != nil {
		return nil, fmt.Errorf("certs: init: federation: %w", err)
	}
	validity = cmp.Or(validity, DefaultCAValidity)
	if validity < 0 {
		return nil, fmt.Errorf("certs: init: negative validity %v", validity)
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	var keyPEM []byte
	if key == nil {
		var err error
		if key, keyPEM, err = newKey(); err != nil {
			return nil, err
		}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"fedguard"}, CommonName: "fedguard " + federation + " CA"},
		NotBefore:             t.Add(-clockSkew),
		NotAfter:              t.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: federation}},
		PermittedURIDomains:   []string{federation},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: init: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: init: %w", err)
	}
	a := &Authority{dir: dir, federation: federation, cert: cert, key: key}
	if keyPEM != nil {
		if err := WritePrivateKey(filepath.Join(dir, caKeyFile), keyPEM); err != nil {
			return nil, fmt.Errorf("certs: init: %w", err)
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, caCertFile), pemEncode(pemCertificate, der), 0o644); err != nil {
		return nil, fmt.Errorf("certs: init: %w", err)
	}
	if err := a.writeCRL(big.NewInt(1), nil); err != nil {
		return nil, fmt.Errorf("certs: init: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, issuedFile), nil, 0o644); err != nil {
		return nil, fmt.Errorf("certs: init: %w", err)
	}
	return a, nil
}

// prepareDir creates dir with mode 0700, or accepts an existing empty
// directory (tightening it to 0700).
func prepareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("certs: init: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("certs: init: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("certs: init: %s is not empty (it holds %s); refusing to overwrite an existing CA", dir, entries[0].Name())
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("certs: init: %w", err)
	}
	return nil
}

// Open loads the CA kept in dir and checks that its key matches its
// certificate and that the certificate names a federation.
func Open(dir string) (*Authority, error) {
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("certs: open CA: %w", err)
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: open CA: %s: %w", caKeyFile, err)
	}
	return openAuthority(dir, key, caKeyFile)
}

// OpenWithKey is [Open] for a CA made by [InitWithKey]: its key is kept
// elsewhere, such as on a PKCS #11 token, and must match ca.crt.
func OpenWithKey(dir string, key crypto.Signer) (*Authority, error) {
	if key == nil {
		return nil, errors.New("certs: open CA: no CA key")
	}
	return openAuthority(dir, key, "the CA key")
}

// openAuthority loads ca.crt and checks it against key, named keyName in
// errors.
func openAuthority(dir string, key crypto.Signer, keyName string) (*Authority, error) {
	cert, err := LoadCertificate(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("certs: open CA: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: open CA: %s does not match %s", keyName, caCertFile)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 || cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("certs: open CA: %s is not a CA certificate that may sign certificates and CRLs", caCertFile)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].Scheme != "spiffe" || cert.URIs[0].Path != "" {
		return nil, fmt.Errorf("certs: open CA: %s does not name a federation (want one URI SAN spiffe://FEDERATION)", caCertFile)
	}
	fed := cert.URIs[0].Host
	if err := ValidateName(fed); err != nil {
		return nil, fmt.Errorf("certs: open CA: federation: %w", err)
	}
	return &Authority{dir: dir, federation: fed, cert: cert, key: key}, nil
}

// Federation returns the federation (trust domain) the CA serves.
func (a *Authority) Federation() string { return a.federation }

// Certificate returns the CA certificate, which every peer pins.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// IssueServer makes the coordinator's key and certificate: EKU serverAuth
// only, URI SAN spiffe://FEDERATION/coordinator, and a DNS or IP SAN for
// each of hosts (at least one, so TLS clients can check the host name).
// Unlike participants, the coordinator is run by the operator, so its key is
// made here. validity 0 means DefaultCertValidity.
func (a *Authority) IssueServer(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	validity, err = checkValidity(validity)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issue server certificate: %w", err)
	}
	if len(hosts) == 0 {
		return nil, nil, errors.New("certs: issue server certificate: no host names or IP addresses given")
	}
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := validateHost(h); err != nil {
			return nil, nil, fmt.Errorf("certs: issue server certificate: %w", err)
		}
		dns = append(dns, h)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	t := now()
	id := Identity{Federation: a.federation, Role: RoleCoordinator}
	certPEM, _, err = a.issue(key.Public(), id, dns, ips, t.Add(-clockSkew), t.Add(validity))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issue server certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// validateHost accepts DNS names made of letters, digits, '-', '.' and a
// leading "*." wildcard.
func validateHost(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(h) > 253 || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("bad host name %q", truncate(h))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bad host name %q: character %q", truncate(h), c)
		}
	}
	return nil
}

// checkValidity applies the default and refuses negative durations.
func checkValidity(v time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return DefaultCertValidity, nil
	case v < 0:
		return 0, fmt.Errorf("negative validity %v", v)
	}
	return v, nil
}

// Sign turns a participant's CSR into a certificate. It checks the CSR's
// signature (proof the requester holds the key), that the public key is
// ECDSA P-256, and that the CSR carries exactly one URI SAN naming a
// participant of this federation and no other SAN. The certificate copies
// only that URI and the public key — subject, extensions and key usages in
// the CSR are never trusted — and has EKU clientAuth only. validity 0 means
// DefaultCertValidity; the certificate never outlives the CA.
func (a *Authority) Sign(csrPEM []byte, validity time.Duration) (certPEM []byte, err error) {
	validity, err = checkValidity(validity)
	if err != nil {
		return nil, fmt.Errorf("certs: sign: %w", err)
	}
	csr, id, err := a.checkCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: sign: %w", err)
	}
	t := now()
	certPEM, _, err = a.issue(csr.PublicKey, id, nil, nil, t.Add(-clockSkew), t.Add(validity))
	if err != nil {
		return nil, fmt.Errorf("certs: sign %s: %w", id, err)
	}
	return certPEM, nil
}

// checkCSR validates a participant CSR and returns the identity it asks for.
func (a *Authority) checkCSR(csrPEM []byte) (*x509.CertificateRequest, Identity, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil {
		return nil, Identity{}, errors.New("no PEM block found in CSR")
	}
	if b.Type != pemCSR {
		return nil, Identity{}, fmt.Errorf("PEM block is %q, want %q", truncate(b.Type), pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, Identity{}, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, Identity{}, fmt.Errorf("CSR signature is invalid: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, Identity{}, fmt.Errorf("CSR public key is %T, want ECDSA P-256", csr.PublicKey)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return nil, Identity{}, fmt.Errorf("CSR has %d DNS, IP or e-mail SANs; a participant CSR must have only its URI SAN", n)
	}
	if len(csr.URIs) != 1 {
		return nil, Identity{}, fmt.Errorf("CSR has %d URI SANs, want exactly 1", len(csr.URIs))
	}
	id, err := parseIdentityURI(csr.URIs[0].String())
	if err != nil {
		return nil, Identity{}, fmt.Errorf("CSR: %w", err)
	}
	if id.Federation != a.federation {
		return nil, Identity{}, fmt.Errorf("CSR names federation %q, this CA serves %q", id.Federation, a.federation)
	}
	if id.Role != RoleParticipant {
		return nil, Identity{}, fmt.Errorf("CSR asks for role %q; only %q certificates are signed from CSRs", id.Role, RoleParticipant)
	}
	return csr, id, nil
}

// issue creates, records and returns a certificate for id. Tests use it
// directly to make certificates with unusual validity windows or identities.
// It does not validate id against a.federation: callers do.
func (a *Authority) issue(pub crypto.PublicKey, id Identity, dns []string, ips []net.IP, notBefore, notAfter time.Time) ([]byte, *x509.Certificate, error) {
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, nil, fmt.Errorf("empty validity window %v to %v (the CA expires %v)", notBefore, notAfter, a.cert.NotAfter)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(id.URI())
	if err != nil {
		return nil, nil, err
	}
	eku := x509.ExtKeyUsageClientAuth
	cn := id.Name
	if id.Role == RoleCoordinator {
		eku = x509.ExtKeyUsageServerAuth
		cn = RoleCoordinator
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"fedguard " + id.Federation}, CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(der)
	rec := IssuedCert{
		Serial:      serialHex(serial),
		Identity:    id.URI(),
		NotAfter:    cert.NotAfter.UTC(),
		Fingerprint: hex.EncodeToString(sum[:]),
	}
	if err := a.record(rec); err != nil {
		return nil, nil, err
	}
	return pemEncode(pemCertificate, der), cert, nil
}

// record appends rec to issued.jsonl and fsyncs it before the certificate
// is handed out, so no certificate exists that RevokeName cannot find.
func (a *Authority) record(rec IssuedCert) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.dir, issuedFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("record issued certificate: %w", err)
	}
	if err := writeClose(f, append(line, '\n')); err != nil {
		return fmt.Errorf("record issued certificate: %w", err)
	}
	return nil
}

// Issued returns every certificate the CA issued, oldest first, with
// Revoked set from the current CRL.
func (a *Authority) Issued() ([]IssuedCert, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.readIssued()
	if err != nil {
		return nil, err
	}
	_, revoked, err := a.readRevoked()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].Revoked = revoked[recs[i].Serial]
	}
	return recs, nil
}

// readRevoked reads the current CRL and the set of its serials (hex).
// Callers hold a.mu.
func (a *Authority) readRevoked() (*x509.RevocationList, map[string]bool, error) {
	crl, err := a.readCRL()
	if err != nil {
		return nil, nil, err
	}
	revoked := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[serialHex(e.SerialNumber)] = true
	}
	return crl, revoked, nil
}

// readIssued parses issued.jsonl. Callers hold a.mu.
func (a *Authority) readIssued() ([]IssuedCert, error) {
	data, err := os.ReadFile(filepath.Join(a.dir, issuedFile))
	if err != nil {
		return nil, fmt.Errorf("certs: read issued certificates: %w", err)
	}
	return parseIssued(data)
}

// parseIssued parses the lines of issued.jsonl.
func parseIssued(data []byte) ([]IssuedCert, error) {
	var recs []IssuedCert
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r IssuedCert
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("certs: %s line %d: %w", issuedFile, n, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("certs: read %s: %w", issuedFile, err)
	}
	return recs, nil
}

// ErrUnknownSerial is returned by Revoke for a serial the CA never issued
// (it is not in issued.jsonl): most likely a typing error, which must not
// look like a successful revocation.
var ErrUnknownSerial = errors.New("certs: revoke: this CA never issued a certificate with that serial")

// Revoke adds serial, which must be in issued.jsonl, to the CRL and
// rewrites crl.pem atomically with the next CRL number. Revoking a serial
// twice is not an error (the CRL is left unchanged), so an operator can
// safely repeat a command. An unknown serial is ErrUnknownSerial.
func (a *Authority) Revoke(serial *big.Int) error {
	if serial == nil || serial.Sign() <= 0 {
		return errors.New("certs: revoke: serial must be a positive integer")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.readIssued()
	if err != nil {
		return err
	}
	want := serialHex(serial)
	if !slices.ContainsFunc(recs, func(r IssuedCert) bool { return strings.EqualFold(r.Serial, want) }) {
		return fmt.Errorf("%w: %s (see fedguard ca list)", ErrUnknownSerial, want)
	}
	_, err = a.revokeLocked([]*big.Int{serial})
	return err
}

// RevokeCertificate revokes cert, which must carry this CA's signature,
// whether or not issued.jsonl lists it: the certificate itself proves the
// CA issued it.
func (a *Authority) RevokeCertificate(cert *x509.Certificate) error {
	if err := cert.CheckSignatureFrom(a.cert); err != nil {
		return fmt.Errorf("certs: revoke: the certificate was not issued by this CA: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.revokeLocked([]*big.Int{cert.SerialNumber})
	return err
}

// RevokeName revokes every certificate issued to participant name, as
// recorded in issued.jsonl, and returns the serials it newly revoked. It is
// an error if the CA never issued a certificate to that name.
func (a *Authority) RevokeName(name string) (revoked []*big.Int, err error) {
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("certs: revoke: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := a.readIssued()
	if err != nil {
		return nil, err
	}
	uri := Identity{Federation: a.federation, Role: RoleParticipant, Name: name}.URI()
	var serials []*big.Int
	for _, r := range recs {
		if r.Identity != uri {
			continue
		}
		s, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("certs: %s: bad serial %q", issuedFile, r.Serial)
		}
		serials = append(serials, s)
	}
	if len(serials) == 0 {
		return nil, fmt.Errorf("certs: revoke: no certificate was issued to %s", uri)
	}
	return a.revokeLocked(serials)
}

// revokeLocked adds serials not yet revoked to the CRL and returns them.
func (a *Authority) revokeLocked(serials []*big.Int) ([]*big.Int, error) {
	crl, have, err := a.readRevoked()
	if err != nil {
		return nil, err
	}
	entries := crl.RevokedCertificateEntries
	var added []*big.Int
	t := now().UTC()
	for _, s := range serials {
		if have[serialHex(s)] {
			continue
		}
		have[serialHex(s)] = true
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: t})
		added = append(added, s)
	}
	if len(added) == 0 {
		return nil, nil
	}
	next := new(big.Int).Add(crl.Number, big.NewInt(1))
	if err := a.writeCRL(next, entries); err != nil {
		return nil, fmt.Errorf("certs: revoke: %w", err)
	}
	return added, nil
}

// readCRL loads crl.pem and checks it was signed by this CA.
func (a *Authority) readCRL() (*x509.RevocationList, error) {
	data, err := os.ReadFile(filepath.Join(a.dir, crlFile))
	if err != nil {
		return nil, fmt.Errorf("certs: read CRL: %w", err)
	}
	crl, err := parseCRL(data, a.cert)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", crlFile, err)
	}
	return crl, nil
}

// writeCRL signs a CRL with the given number and entries and replaces
// crl.pem atomically.
func (a *Authority) writeCRL(number *big.Int, entries []x509.RevocationListEntry) error {
	t := now().UTC()
	der, err := x509.CreateRevocationList(crand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                t,
		NextUpdate:                t.Add(DefaultCRLValidity),
		RevokedCertificateEntries: entries,
	}, a.cert, a.key)
	if err != nil {
		return fmt.Errorf("create CRL: %w", err)
	}
	return WriteFileAtomic(filepath.Join(a.dir, crlFile), pemEncode(pemCRL, der), 0o644)
}

// parseCRL parses a PEM CRL and verifies it was issued and signed by ca.
func parseCRL(data []byte, ca *x509.Certificate) (*x509.RevocationList, error) {
	crl, err := parseFirst(data, pemCRL, "CRL", x509.ParseRevocationList)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
		return nil, errors.New("CRL was not issued by this CA (issuer name differs)")
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("CRL signature does not verify against the CA: %w", err)
	}
	if crl.Number == nil {
		return nil, errors.New("CRL has no CRL number")
	}
	return crl, nil
}

// NewParticipantRequest creates, at the hospital, a P-256 key and a CSR
// naming spiffe://FEDERATION/participant/NAME. The key stays at the
// hospital (write it with WritePrivateKey); only the CSR goes to the
// operator.
func NewParticipantRequest(federation, name string) (keyPEM, csrPEM []byte, err error) {
	id := Identity{Federation: federation, Role: RoleParticipant, Name: name}
	if err := id.validate(); err != nil {
		return nil, nil, fmt.Errorf("certs: new participant request: %w", err)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(id.URI())
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name},
		URIs:    []*url.URL{u},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CSR: %w", err)
	}
	return keyPEM, pemEncode(pemCSR, der), nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	for {
		s, err := crand.Int(crand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("certs: serial: %w", err)
		}
		if s.Sign() > 0 {
			return s, nil
		}
	}
}

// serialHex is the one spelling of a serial used in files and logs.
func serialHex(s *big.Int) string {
	if s == nil {
		return ""
	}
	return s.Text(16)
}

// ParseSerial parses a serial number written in hex, as printed by fedguard
// or openssl (optional "0x" prefix, optional ':' separators, any case).
func ParseSerial(s string) (*big.Int, error) {
	t := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	t = strings.TrimPrefix(t, "0x")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 || t == "" || strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		return nil, fmt.Errorf("certs: bad serial %q: want a positive hex number", truncate(s))
	}
	return n, nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
