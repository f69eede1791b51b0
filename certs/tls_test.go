package certs

import (
	"crypto"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// federationSetup is one CA with a coordinator and an enrolled participant.
type federationSetup struct {
	ca                   *Authority
	srvCert, srvKey      string
	cliCert, cliKey      string
	revocations          *RevocationList
	serverOpts           ServerOptions
	clientOpts           ClientOptions
	participantSerialHex string
}

func newFederation(t *testing.T) *federationSetup {
	t.Helper()
	ca := newTestCA(t, "fed")
	f := &federationSetup{ca: ca}
	f.srvCert, f.srvKey = serverFiles(t, ca)
	var err error
	f.revocations, err = NewRevocationList(filepath.Join(ca.dir, crlFile), ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, cert := enrol(t, ca, "st-mary")
	f.cliCert, f.cliKey = cliCert, cliKey
	f.participantSerialHex = serialHex(cert.SerialNumber)
	f.serverOpts = ServerOptions{CA: ca.Certificate(), CertFile: f.srvCert, KeyFile: f.srvKey, Federation: "fed", Revocations: f.revocations}
	f.clientOpts = ClientOptions{CA: ca.Certificate(), CertFile: cliCert, KeyFile: cliKey, Federation: "fed", ServerName: "127.0.0.1"}
	return f
}

func mustServer(t *testing.T, o ServerOptions) *tls.Config {
	t.Helper()
	return mustConfig(t, "ServerConfig", ServerConfig, o)
}

func mustClient(t *testing.T, o ClientOptions) *tls.Config {
	t.Helper()
	return mustConfig(t, "ClientConfig", ClientConfig, o)
}

// mustConfig returns config(o), failing the test if it is an error.
func mustConfig[O any](t *testing.T, name string, config func(O) (*tls.Config, error), o O) *tls.Config {
	t.Helper()
	c, err := config(o)
	if err != nil {
		t.Fatalf("%s = %v", name, err)
	}
	return c
}

func TestHandshakeSuccess(t *testing.T) {
	f := newFederation(t)
	var seen Identity
	o := f.serverOpts
	o.Authorize = func(id Identity) error { seen = id; return nil }
	srv := mustServer(t, o)
	var during tls.ConnectionState
	srv.VerifyConnection = chainVerify(srv.VerifyConnection, func(cs tls.ConnectionState) { during = cs })
	state, sErr, cErr := handshakeState(t, srv, mustClient(t, f.clientOpts))
	if sErr != nil || cErr != nil {
		t.Fatalf("handshake: server %v, client %v", sErr, cErr)
	}
	want := Identity{Federation: "fed", Role: RoleParticipant, Name: "st-mary"}
	if seen != want {
		t.Errorf("Authorize saw %v, want %v", seen, want)
	}
	if id, err := PeerIdentity(state); err != nil || id != want {
		t.Errorf("PeerIdentity = %v, %v; want %v", id, err, want)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("version = %x, want TLS 1.3", state.Version)
	}
	if _, err := PeerIdentity(tls.ConnectionState{}); err == nil {
		t.Error("PeerIdentity(unverified) = nil error")
	}
	// During the handshake the client has not yet proven it holds the key.
	if id, err := PeerIdentity(during); err == nil {
		t.Errorf("PeerIdentity(state in VerifyConnection) = %v, nil error", id)
	}
}

// chainVerify runs observe after next succeeds.
func chainVerify(next func(tls.ConnectionState) error, observe func(tls.ConnectionState)) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := next(cs); err != nil {
			return err
		}
		observe(cs)
		return nil
	}
}

// TestServerRefusals runs real handshakes that the server must refuse and
// checks that Classify names the right reason on the server side.
func TestServerRefusals(t *testing.T) {
	f := newFederation(t)
	now := time.Now()
	other := newTestCA(t, "fed") // same federation name, different key
	otherCert, otherKey, _ := enrol(t, other, "st-mary")
	expCert, expKey, _ := issueRaw(t, f.ca, Identity{"fed", RoleParticipant, "old"}, nil, nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	futCert, futKey, _ := issueRaw(t, f.ca, Identity{"fed", RoleParticipant, "early"}, nil, nil, now.Add(24*time.Hour), now.Add(48*time.Hour))
	foreignCert, foreignKey, _ := issueRaw(t, f.ca, Identity{"elsewhere", RoleParticipant, "x"}, nil, nil, now.Add(-time.Hour), now.Add(time.Hour))
	revCert, revKey, rev := enrol(t, f.ca, "st-john")
	if err := f.ca.Revoke(rev.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if changed, err := f.revocations.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want changed", changed, err)
	}

	client := func(cert, key string) *tls.Config {
		o := f.clientOpts
		o.CertFile, o.KeyFile = cert, key
		return mustClient(t, o)
	}
	tls12 := client(f.cliCert, f.cliKey)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	noCert := client(f.cliCert, f.cliKey)
	noCert.GetClientCertificate = nil

	tests := []struct {
		name      string
		client    *tls.Config
		authorize func(Identity) error
		want      string
		wantID    string
	}{
		{"another CA", client(otherCert, otherKey), nil, ReasonUnknownAuthority, "spiffe://fed/participant/st-mary"},
		{"expired", client(expCert, expKey), nil, ReasonExpired, "spiffe://fed/participant/old"},
		{"not yet valid", client(futCert, futKey), nil, ReasonNotYetValid, "spiffe://fed/participant/early"},
		{"revoked", client(revCert, revKey), nil, ReasonRevoked, "spiffe://fed/participant/st-john"},
		{"wrong role", client(f.srvCert, f.srvKey), nil, ReasonWrongRole, "spiffe://fed/coordinator"},
		{"other federation", client(foreignCert, foreignKey), nil, ReasonBadIdentity, ""},
		{"not enrolled", client(f.cliCert, f.cliKey), func(Identity) error { return errors.New("st-mary is not enrolled") }, ReasonNotEnrolled, "spiffe://fed/participant/st-mary"},
		{"TLS 1.2", tls12, nil, ReasonOther, ""},
		{"no certificate", noCert, nil, ReasonNoCertificate, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := f.serverOpts
			o.Authorize = tt.authorize
			sErr, cErr := handshake(t, mustServer(t, o), tt.client)
			if sErr == nil {
				t.Fatalf("server accepted the handshake (client err %v)", cErr)
			}
			if cErr == nil {
				t.Errorf("client saw no error")
			}
			r := Classify(sErr)
			if r == nil || r.Reason != tt.want {
				t.Fatalf("Classify(%v) = %+v, want reason %q", sErr, r, tt.want)
			}
			if tt.wantID != "" && r.Identity.URI() != tt.wantID {
				t.Errorf("Refusal.Identity = %v, want %s", r.Identity, tt.wantID)
			}
			if tt.want == ReasonRevoked && r.Serial != serialHex(rev.SerialNumber) {
				t.Errorf("Refusal.Serial = %q, want %x", r.Serial, rev.SerialNumber)
			}
			if !errors.Is(r, r.Err) || r.Error() == "" {
				t.Errorf("Refusal does not unwrap or print: %v", r)
			}
		})
	}
}

// TestRevokeLive revokes an enrolled participant while the server config
// stays in place: after Reload the next handshake is refused.
func TestRevokeLive(t *testing.T) {
	f := newFederation(t)
	srv := mustServer(t, f.serverOpts)
	cli := mustClient(t, f.clientOpts)
	if sErr, cErr := handshake(t, srv, cli); sErr != nil || cErr != nil {
		t.Fatalf("before revocation: server %v, client %v", sErr, cErr)
	}
	if _, err := f.ca.RevokeName("st-mary"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.revocations.Reload(); err != nil {
		t.Fatal(err)
	}
	sErr, _ := handshake(t, srv, cli)
	if r := Classify(sErr); r == nil || r.Reason != ReasonRevoked || r.Serial != f.participantSerialHex {
		t.Fatalf("after revocation: Classify(%v) = %+v, want revoked %s", sErr, r, f.participantSerialHex)
	}
}

// TestClientRefusals checks that a participant only talks to its own
// federation's coordinator.
func TestClientRefusals(t *testing.T) {
	f := newFederation(t)
	now := time.Now()
	// Another federation's coordinator, from a CA the client (wrongly) trusts.
	otherFed := newTestCA(t, "other")
	ofCert, ofKey := serverFiles(t, otherFed)
	// A coordinator URI of another federation, signed by our CA.
	fCert, fKey, _ := issueRaw(t, f.ca, Identity{Federation: "other", Role: RoleCoordinator}, []string{"localhost"}, nil, now.Add(-time.Hour), now.Add(time.Hour))

	tests := []struct {
		name             string
		srvCert, srvKey  string
		clientCA         *Authority
		wantClientReason []string
	}{
		{"participant certificate as server", f.cliCert, f.cliKey, f.ca, []string{ReasonWrongRole, ReasonBadIdentity}},
		{"other federation's coordinator", ofCert, ofKey, otherFed, []string{ReasonBadIdentity}},
		{"other federation URI from our CA", fCert, fKey, f.ca, []string{ReasonBadIdentity}},
		{"coordinator of another CA", ofCert, ofKey, f.ca, []string{ReasonUnknownAuthority}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			so := f.serverOpts
			so.CertFile, so.KeyFile = tt.srvCert, tt.srvKey
			so.CA = tt.clientCA.Certificate() // the server accepts the client in every case
			so.Revocations = nil
			srv := mustServer(t, so)
			srv.ClientAuth = tls.RequestClientCert
			srv.VerifyConnection = nil
			co := f.clientOpts
			co.CA = tt.clientCA.Certificate()
			co.ServerName = "localhost"
			_, cErr := handshake(t, srv, mustClient(t, co))
			if cErr == nil {
				t.Fatal("client accepted the server")
			}
			r := Classify(cErr)
			ok := false
			for _, w := range tt.wantClientReason {
				ok = ok || r.Reason == w
			}
			if !ok {
				t.Errorf("Classify(%v) = %q, want one of %q", cErr, r.Reason, tt.wantClientReason)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFederation(t)
	bad := []ServerOptions{
		{},
		{CA: f.ca.Certificate(), CertFile: f.srvCert, KeyFile: f.srvKey, Federation: "Bad"},
		{CA: f.ca.Certificate(), CertFile: f.srvCert, Federation: "fed"},
		{CA: f.ca.Certificate(), CertFile: f.srvCert, KeyFile: f.cliKey, Federation: "fed"},
	}
	for i, o := range bad {
		if _, err := ServerConfig(o); err == nil {
			t.Errorf("ServerConfig(bad[%d]) = nil error", i)
		}
	}
	if _, err := ClientConfig(ClientOptions{CA: f.ca.Certificate(), Federation: "fed"}); err == nil {
		t.Error("ClientConfig(no files) = nil error")
	}
	c := mustServer(t, f.serverOpts)
	// A client certificate is required; the chain is verified in
	// VerifyConnection, and no CA is named to clients (ClientCAs would be).
	if c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.RequireAnyClientCert || c.ClientCAs != nil || c.VerifyConnection == nil {
		t.Errorf("ServerConfig: MinVersion %x ClientAuth %v ClientCAs %v", c.MinVersion, c.ClientAuth, c.ClientCAs)
	}
}

// TestCertificateReload replaces the coordinator's files and checks that
// the next handshake serves the new certificate, and that a broken
// replacement keeps the old one in service.
func TestCertificateReload(t *testing.T) {
	f := newFederation(t)
	kp, err := newKeyPair(f.srvCert, f.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := kp.get()
	certPEM, keyPEM, err := f.ca.IssueServer([]string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Half-way renewal: new certificate, old key.
	WriteFileAtomic(f.srvCert, certPEM, 0o644)
	bump(t, f.srvCert)
	if got, err := kp.get(); err != nil || got != first {
		t.Errorf("mismatched files: get = %v, want the previous certificate", err)
	}
	WriteFileAtomic(f.srvKey, keyPEM, 0o600)
	bump(t, f.srvKey)
	second, err := kp.get()
	if err != nil || second == first || second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Errorf("renewed files not picked up: %v", err)
	}
	if again, _ := kp.get(); again != second {
		t.Error("unchanged files reloaded")
	}
}

// bump moves a file's mtime forward, for file systems with coarse mtimes.
func bump(t *testing.T, path string) {
	t.Helper()
	fi, _ := os.Stat(path)
	next := fi.ModTime().Add(2 * time.Second)
	if err := os.Chtimes(path, next, next); err != nil {
		t.Fatal(err)
	}
}

func TestClassify(t *testing.T) {
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	r := &Refusal{Reason: ReasonRevoked}
	if got := Classify(errors.Join(errors.New("x"), r)); got != r {
		t.Errorf("Classify(wrapped refusal) = %v", got)
	}
	if got := Classify(errors.New("connection reset")); got.Reason != ReasonOther {
		t.Errorf("Classify(other) = %q", got.Reason)
	}
}

// forgedChain builds, outside any Authority, a participant certificate for
// spiffe://fed/participant/st-mary signed by a key of the attacker's,
// under a CA certificate that copies the subject of real (so its name is
// the one the federation CA has), and returns the leaf and that CA as a
// certificate whose chain a client sends. With selfSigned the leaf signs
// itself instead.
func forgedChain(t *testing.T, real *x509.Certificate, selfSigned bool) tls.Certificate {
	t.Helper()
	caKey, leafKey := p256(t), p256(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: real.Subject, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(crand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://fed/participant/st-mary")
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "st-mary"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, URIs: []*url.URL{u},
	}
	parent, signer, chain := ca, crypto.Signer(caKey), [][]byte{nil, caDER}
	if selfSigned {
		parent, signer, chain = leafTmpl, leafKey, [][]byte{nil}
	}
	leafDER, err := x509.CreateCertificate(crand.Reader, leafTmpl, parent, leafKey.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	chain[0] = leafDER
	return tls.Certificate{Certificate: chain, PrivateKey: leafKey}
}

// TestClientCertificatesNotFiltered is the regression test for a
// certificate from a foreign CA logged as "no certificate": the server used
// to name the federation CA in its CertificateRequest, and a Go client with
// tls.Config.Certificates (not GetClientCertificate) then withheld any
// certificate of a differently named CA, so the refusal read
// no_certificate. It failed so before the fix ("another federation's CA":
// reason no_certificate, want unknown_authority). Every client here sends
// its certificate the way such a client does, and each must be refused for
// what is wrong with it; none may authenticate.
func TestClientCertificatesNotFiltered(t *testing.T) {
	f := newFederation(t)
	now := time.Now()
	elsewhere := newTestCA(t, "elsewhere") // another CA name: "fedguard elsewhere CA"
	ewCert, ewKey, _ := enrol(t, elsewhere, "st-mary")
	expCert, expKey, _ := issueRaw(t, f.ca, Identity{"fed", RoleParticipant, "old"}, nil, nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	revCert, revKey, rev := enrol(t, f.ca, "st-john")
	if err := f.ca.Revoke(rev.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := f.revocations.Reload(); err != nil {
		t.Fatal(err)
	}
	load := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"another federation's CA", load(ewCert, ewKey), ReasonUnknownAuthority},
		{"self-signed", forgedChain(t, f.ca.Certificate(), true), ReasonUnknownAuthority},
		{"forged CA with the federation CA's name", forgedChain(t, f.ca.Certificate(), false), ReasonUnknownAuthority},
		{"expired", load(expCert, expKey), ReasonExpired},
		{"revoked", load(revCert, revKey), ReasonRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli := mustClient(t, f.clientOpts)
			cli.GetClientCertificate = nil
			cli.Certificates = []tls.Certificate{tt.cert}
			srv := mustServer(t, f.serverOpts)
			var sent bool
			srv.VerifyConnection = func(next func(tls.ConnectionState) error) func(tls.ConnectionState) error {
				return func(cs tls.ConnectionState) error {
					sent = len(cs.PeerCertificates) > 0
					if err := next(cs); err != nil {
						return err
					}
					t.Errorf("VerifyConnection accepted %v", cs.PeerCertificates[0].URIs)
					if id, err := PeerIdentity(cs); err == nil {
						t.Errorf("PeerIdentity of a refused certificate = %v", id)
					}
					return nil
				}
			}(srv.VerifyConnection)
			sErr, cErr := handshake(t, srv, cli)
			if sErr == nil {
				t.Fatalf("server accepted the handshake (client err %v)", cErr)
			}
			if cErr == nil {
				t.Error("client saw no error")
			}
			if !sent {
				t.Error("the client sent no certificate")
			}
			if r := Classify(sErr); r.Reason != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", sErr, r.Reason, tt.want)
			}
		})
	}
}

// TestPeerIdentityUnverified checks that PeerIdentity refuses the state of
// a connection whose client certificate nobody verified, even a genuine
// certificate of the federation: only a leaf that ServerConfig's
// VerifyConnection accepted (or a chain crypto/tls verified) names a peer.
func TestPeerIdentityUnverified(t *testing.T) {
	f := newFederation(t)
	// A server that requests but does not verify the client certificate.
	srv := mustServer(t, f.serverOpts)
	srv.ClientAuth = tls.RequestClientCert
	srv.VerifyConnection = nil
	state, sErr, cErr := handshakeState(t, srv, mustClient(t, f.clientOpts))
	if sErr != nil || cErr != nil {
		t.Fatalf("handshake: server %v, client %v", sErr, cErr)
	}
	if len(state.PeerCertificates) == 0 {
		t.Fatal("the client sent no certificate")
	}
	if id, err := PeerIdentity(state); err == nil {
		t.Errorf("PeerIdentity(unverified genuine certificate) = %v, nil error", id)
	}
	genuine, err := LoadCertificate(f.cliCert)
	if err != nil {
		t.Fatal(err)
	}
	state = tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{genuine}}
	if id, err := PeerIdentity(state); err == nil {
		t.Errorf("PeerIdentity(parsed certificate) = %v, nil error", id)
	}
}

// TestResumedSessionReverified resumes a TLS 1.3 session: crypto/tls
// does not verify a resumed client chain when the server verifies it
// itself, so VerifyConnection must, and a certificate revoked since the
// first handshake must be refused on resumption.
func TestResumedSessionReverified(t *testing.T) {
	f := newFederation(t)
	srv := mustServer(t, f.serverOpts)
	cli := mustClient(t, f.clientOpts)
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	var states []tls.ConnectionState
	for i := range 2 {
		state, sErr, cErr := handshakeState(t, srv, cli)
		if sErr != nil || cErr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, sErr, cErr)
		}
		states = append(states, state)
	}
	if !states[1].DidResume {
		t.Fatal("the second handshake did not resume")
	}
	want := Identity{Federation: "fed", Role: RoleParticipant, Name: "st-mary"}
	if id, err := PeerIdentity(states[1]); err != nil || id != want {
		t.Errorf("PeerIdentity(resumed) = %v, %v; want %v", id, err, want)
	}
	if _, err := f.ca.RevokeName("st-mary"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.revocations.Reload(); err != nil {
		t.Fatal(err)
	}
	sErr, _ := handshake(t, srv, cli)
	if r := Classify(sErr); r == nil || r.Reason != ReasonRevoked {
		t.Fatalf("resumption after revocation: Classify(%v) = %+v, want revoked", sErr, r)
	}
}
