package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"weak"
)

// Reasons a peer certificate is refused, as found in Refusal.Reason. They are
// stable strings, meant for metric labels and audit records.
const (
	// ReasonUnknownAuthority: the chain does not lead to the federation CA.
	ReasonUnknownAuthority = "unknown_authority"
	// ReasonExpired: the certificate's NotAfter has passed.
	ReasonExpired = "expired"
	// ReasonNotYetValid: the certificate's NotBefore is still ahead.
	ReasonNotYetValid = "not_yet_valid"
	// ReasonRevoked: the serial is on the CRL.
	ReasonRevoked = "revoked"
	// ReasonWrongRole: the certificate is valid but for the other role
	// (for example the coordinator's certificate used as a client).
	ReasonWrongRole = "wrong_role"
	// ReasonNotEnrolled: the identity is valid but the coordinator's
	// Authorize hook refused it.
	ReasonNotEnrolled = "not_enrolled"
	// ReasonBadIdentity: the certificate's identity is malformed or belongs
	// to another federation, or the host name does not match.
	ReasonBadIdentity = "bad_identity"
	// ReasonNoCertificate: the peer presented no certificate.
	ReasonNoCertificate = "no_certificate"
	// ReasonOther: any other handshake failure (protocol version, cipher
	// suites, network).
	ReasonOther = "handshake"
)

// Refusal is why a peer certificate was refused. Both TLS configurations
// return it from VerifyConnection, and Classify derives it from any other
// handshake error, so callers can log and count refusals by Reason.
type Refusal struct {
	// Reason is one of the Reason* constants.
	Reason string
	// Identity is the peer's claimed identity, if one could be read; it may
	// be zero.
	Identity Identity
	// Serial is the peer certificate's serial in hex, if known.
	Serial string
	// Err is the underlying error.
	Err error
}

// Error describes the refusal with the peer's identity and serial.
func (r *Refusal) Error() string {
	var b strings.Builder
	b.WriteString("certs: peer refused (")
	b.WriteString(r.Reason)
	b.WriteString(")")
	if !r.Identity.IsZero() {
		b.WriteString(" ")
		b.WriteString(r.Identity.URI())
	}
	if r.Serial != "" {
		b.WriteString(" serial ")
		b.WriteString(r.Serial)
	}
	if r.Err != nil {
		b.WriteString(": ")
		b.WriteString(r.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (r *Refusal) Unwrap() error { return r.Err }

// refusal builds a Refusal about cert.
func refusal(reason string, cert *x509.Certificate, id Identity, err error) *Refusal {
	r := &Refusal{Reason: reason, Identity: id, Err: err}
	if cert != nil {
		r.Serial = serialHex(cert.SerialNumber)
		if id.IsZero() {
			r.Identity, _ = ParseIdentity(cert) // best effort, for the log
		}
	}
	return r
}

// Classify turns a handshake error into a *Refusal: a *Refusal from
// VerifyConnection is returned as is; the standard chain check's errors
// (*tls.CertificateVerificationError wrapping x509.UnknownAuthorityError or
// x509.CertificateInvalidError) are mapped to their reason; anything else
// becomes ReasonOther. It returns nil for a nil error.
func Classify(err error) *Refusal {
	if err == nil {
		return nil
	}
	if r, ok := errors.AsType[*Refusal](err); ok {
		return r
	}
	var cert *x509.Certificate
	if ve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok && len(ve.UnverifiedCertificates) > 0 {
		cert = ve.UnverifiedCertificates[0]
	}
	if e, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		if cert == nil {
			cert = e.Cert
		}
		return refusal(ReasonUnknownAuthority, cert, Identity{}, err)
	}
	if e, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if cert == nil {
			cert = e.Cert
		}
		switch e.Reason {
		case x509.Expired:
			return refusal(expiredReason(e), cert, Identity{}, err)
		case x509.IncompatibleUsage:
			return refusal(ReasonWrongRole, cert, Identity{}, err)
		case x509.CANotAuthorizedForThisName, x509.UnconstrainedName:
			return refusal(ReasonBadIdentity, cert, Identity{}, err)
		default:
			return refusal(ReasonUnknownAuthority, cert, Identity{}, err)
		}
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return refusal(ReasonBadIdentity, cert, Identity{}, err)
	}
	if strings.Contains(err.Error(), "didn't provide a certificate") ||
		strings.Contains(err.Error(), "certificate required") {
		return &Refusal{Reason: ReasonNoCertificate, Err: err}
	}
	return refusal(ReasonOther, cert, Identity{}, err)
}

// expiredReason tells "expired" from "not yet valid": crypto/x509 uses one
// reason for both. The error's Detail names the side of the window the
// verification time fell on; failing that, the certificate's window is
// compared with the package clock.
func expiredReason(e x509.CertificateInvalidError) string {
	switch {
	case strings.Contains(e.Detail, " is before "):
		return ReasonNotYetValid
	case strings.Contains(e.Detail, " is after "):
		return ReasonExpired
	case e.Cert != nil && now().Before(e.Cert.NotBefore):
		return ReasonNotYetValid
	}
	return ReasonExpired
}

// PeerIdentity extracts and checks the identity of the peer of a completed,
// verified connection (the coordinator's gRPC interceptor passes
// credentials.TLSInfo.State). The peer's certificate must have been
// verified: either by crypto/tls (VerifiedChains, the participant's side)
// or by ServerConfig's VerifyConnection, which verifies client chains itself
// (see ServerConfig) and remembers the leaves it accepted. Any other state,
// in particular one whose certificate nobody verified, is refused, so it
// can never be fooled by an unverified certificate. The handshake must be
// complete: VerifyConnection runs before the client has proven that it
// holds the certificate's key.
func PeerIdentity(state tls.ConnectionState) (Identity, error) {
	if !state.HandshakeComplete {
		return Identity{}, errors.New("certs: the TLS handshake is not complete")
	}
	if len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
		return ParseIdentity(state.VerifiedChains[0][0])
	}
	if len(state.PeerCertificates) > 0 && verifiedLeaves.has(state.PeerCertificates[0]) {
		return ParseIdentity(state.PeerCertificates[0])
	}
	return Identity{}, errors.New("certs: peer has no verified certificate")
}

// verifiedLeaves holds, by pointer, the client certificates that
// ServerConfig's VerifyConnection accepted: crypto/tls hands the same parsed
// certificate to VerifyConnection and, once the handshake completes, in the
// connection's state. A full handshake parses the client's certificates
// anew; a resumed one may share the parsed certificate of an earlier
// connection with the same bytes, and VerifyConnection checks it again
// (chain, validity, revocation, Authorize). So a certificate is found only
// if that very certificate passed every check. The set holds its keys
// weakly: an entry goes when its certificate is garbage collected.
var verifiedLeaves leafSet

type leafSet struct{ m sync.Map } // weak.Pointer[x509.Certificate] → struct{}

func (s *leafSet) add(c *x509.Certificate) {
	wp := weak.Make(c)
	if _, loaded := s.m.LoadOrStore(wp, struct{}{}); !loaded {
		runtime.AddCleanup(c, func(wp weak.Pointer[x509.Certificate]) { s.m.Delete(wp) }, wp)
	}
}

func (s *leafSet) has(c *x509.Certificate) bool {
	_, ok := s.m.Load(weak.Make(c))
	return ok
}

// verifyClientChain verifies a client's chain against roots for client
// authentication, as crypto/tls would with RequireAndVerifyClientCert, and
// returns its leaf. Its errors are the *Refusal Classify derives from the
// standard check's error, so a certificate from another CA is refused as
// ReasonUnknownAuthority.
func verifyClientChain(cs tls.ConnectionState, roots *x509.CertPool, now func() time.Time) (*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, &Refusal{Reason: ReasonNoCertificate, Err: errors.New("no client certificate")}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if now != nil {
		opts.CurrentTime = now()
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil {
		return nil, Classify(&tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err})
	}
	return leaf, nil
}

// ServerOptions configure the coordinator's side of mutual TLS.
type ServerOptions struct {
	// CA is the federation CA; client certificates must chain to it.
	CA *x509.Certificate
	// MoreCAs are trusted as CA is: the next CA, during the overlap of a
	// CA rotation ([LoadCABundle]).
	MoreCAs []*x509.Certificate
	// CertFile and KeyFile hold the coordinator's certificate and key; they
	// are re-read when they change on disk.
	CertFile, KeyFile string
	// Federation is the federation clients must belong to.
	Federation string
	// Revocations, if not nil, refuses revoked client certificates.
	Revocations *RevocationList
	// Authorize, if not nil, is asked about every verified participant
	// (for example, is it enrolled?); an error refuses the handshake with
	// ReasonNotEnrolled.
	Authorize func(id Identity) error
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

// ServerConfig returns the coordinator's TLS configuration: TLS 1.3 only,
// client certificates required and, in VerifyConnection, verified against
// the CA; then the identity must be a participant of o.Federation, not
// revoked, and accepted by o.Authorize. Refusals are *Refusal values. The
// server certificate is served through GetCertificate and reloaded when its
// files change, so a renewed certificate needs no restart.
//
// The chain is verified in VerifyConnection rather than by crypto/tls
// (RequireAndVerifyClientCert with ClientCAs) because ClientCAs would
// advertise the CA's name in the CertificateRequest, and a Go client with
// tls.Config.Certificates then withholds a certificate from a differently
// named CA: the refusal would read "no certificate" instead of "unknown
// authority". Without ClientCAs the request names no CA and every client
// sends what it has; a certificate is still required, its key proven by the
// handshake, and nothing is accepted that does not chain to the CA.
// VerifiedChains is therefore empty on the coordinator's connections;
// PeerIdentity reads the leaf VerifyConnection accepted.
func ServerConfig(o ServerOptions) (*tls.Config, error) {
	kp, pool, err := configBase("server config", o.CA, o.MoreCAs, o.Federation, o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	fed := o.Federation
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert,
		Time:       o.Now,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf, err := verifyClientChain(cs, pool, o.Now)
			if err != nil {
				return err
			}
			id, err := ParseIdentity(leaf)
			if err != nil {
				return refusal(ReasonBadIdentity, leaf, Identity{}, err)
			}
			if id.Federation != fed {
				return refusal(ReasonBadIdentity, leaf, id, fmt.Errorf("federation %q, want %q", id.Federation, fed))
			}
			if id.Role != RoleParticipant {
				return refusal(ReasonWrongRole, leaf, id, fmt.Errorf("role %q, want %q", id.Role, RoleParticipant))
			}
			if o.Revocations.IsRevoked(leaf.SerialNumber) {
				return refusal(ReasonRevoked, leaf, id, errors.New("certificate is revoked"))
			}
			if o.Authorize != nil {
				if err := o.Authorize(id); err != nil {
					return refusal(ReasonNotEnrolled, leaf, id, err)
				}
			}
			verifiedLeaves.add(leaf)
			return nil
		},
	}, nil
}

// configBase checks what both sides of mutual TLS need (a CA, a valid
// federation name) and loads this side's key pair and the trusted pool;
// errors start with "certs: " and what.
func configBase(what string, ca *x509.Certificate, moreCAs []*x509.Certificate, federation, certFile, keyFile string) (*keyPair, *x509.CertPool, error) {
	if ca == nil {
		return nil, nil, fmt.Errorf("certs: %s: no CA certificate", what)
	}
	if err := ValidateName(federation); err != nil {
		return nil, nil, fmt.Errorf("certs: %s: federation: %w", what, err)
	}
	kp, err := newKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", what, err)
	}
	return kp, caPool(ca, moreCAs), nil
}

// ClientOptions configure a participant's side of mutual TLS.
type ClientOptions struct {
	// CA is the federation CA; the server certificate must chain to it.
	CA *x509.Certificate
	// MoreCAs are trusted as CA is: the next CA, during the overlap of a
	// CA rotation ([LoadCABundle]).
	MoreCAs []*x509.Certificate
	// CertFile and KeyFile hold the participant's certificate and key;
	// they are re-read when they change on disk.
	CertFile, KeyFile string
	// Federation is the federation whose coordinator the server must be.
	Federation string
	// ServerName is the host name checked against the server certificate's
	// DNS/IP SANs; empty lets the dialer derive it from the address.
	ServerName string
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

// ClientConfig returns a participant's TLS configuration: TLS 1.3 only,
// the CA as the only root, the participant certificate presented on
// request, and a VerifyConnection that requires the server to be
// spiffe://FEDERATION/coordinator. An impostor server — another hospital's
// certificate or another federation's coordinator — is refused with a
// *Refusal.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	kp, pool, err := configBase("client config", o.CA, o.MoreCAs, o.Federation, o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	want := Identity{Federation: o.Federation, Role: RoleCoordinator}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: o.ServerName,
		Time:       o.Now,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return &Refusal{Reason: ReasonNoCertificate, Err: errors.New("no verified server certificate")}
			}
			leaf := cs.VerifiedChains[0][0]
			id, err := ParseIdentity(leaf)
			if err != nil {
				return refusal(ReasonBadIdentity, leaf, Identity{}, err)
			}
			if id.Role != RoleCoordinator {
				return refusal(ReasonWrongRole, leaf, id, fmt.Errorf("server is %s, want %s", id, want))
			}
			if id != want {
				return refusal(ReasonBadIdentity, leaf, id, fmt.Errorf("server is %s, want %s", id, want))
			}
			return nil
		},
	}, nil
}

// keyPair serves a certificate and key from files and reloads them when
// either file's size or modification time changes. If a reload fails (for
// example the certificate was replaced before the key), the previous pair
// keeps being served and the reload is retried on the next handshake.
type keyPair struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

// fileStamp is what tells a changed file.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// LoadKeyPair is tls.LoadX509KeyPair with each file read up to
// MaxPEMFileSize and no further (ReadPEMFile): the files are named in
// configurations and on command lines, and are read again whenever they
// change.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := ReadPEMFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := ReadPEMFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// newKeyPair loads the pair once, so configuration errors show at start-up.
func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("certificate and key files are required")
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	cs, err1 := stamp(kp.certFile)
	ks, err2 := stamp(kp.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if kp.cert != nil {
			return kp.cert, nil
		}
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	if kp.cert != nil && cs == kp.certStat && ks == kp.keyStat {
		return kp.cert, nil
	}
	c, err := LoadKeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil
		}
		return nil, fmt.Errorf("load key pair %s, %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.certStat, kp.keyStat = &c, cs, ks
	return kp.cert, nil
}

// Leaf is the end-entity certificate of the key pair c: c.Leaf, which
// crypto/tls fills in when it loads a pair, or else c's first certificate
// parsed.
func Leaf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("certs: the key pair holds no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}
