package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// newTestCA makes a CA for federation in a fresh temporary directory.
func newTestCA(t testing.TB, federation string) *Authority {
	t.Helper()
	a, err := Init(filepath.Join(t.TempDir(), "ca"), federation, 0)
	if err != nil {
		t.Fatalf("Init(%q) = %v", federation, err)
	}
	return a
}

// writePair writes a certificate and key into dir and returns their paths.
func writePair(t testing.TB, dir, name string, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// enrol runs the CSR flow for a participant and returns its files.
func enrol(t testing.TB, a *Authority, name string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	keyPEM, csrPEM, err := NewParticipantRequest(a.Federation(), name)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := a.Sign(csrPEM, 0)
	if err != nil {
		t.Fatalf("Sign(%s) = %v", name, err)
	}
	cert, err = parseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = writePair(t, t.TempDir(), name, certPEM, keyPEM)
	return certFile, keyFile, cert
}

// issueRaw issues a certificate for id with an explicit validity window,
// bypassing the checks of Sign and IssueServer.
func issueRaw(t testing.TB, a *Authority, id Identity, dns []string, ips []net.IP, notBefore, notAfter time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, keyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, cert, err := a.issue(key.Public(), id, dns, ips, notBefore, notAfter)
	if err != nil {
		t.Fatalf("issue(%s) = %v", id, err)
	}
	certFile, keyFile = writePair(t, t.TempDir(), "raw", certPEM, keyPEM)
	return certFile, keyFile, cert
}

// serverFiles issues the coordinator's certificate for 127.0.0.1.
func serverFiles(t testing.TB, a *Authority) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := a.IssueServer([]string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatalf("IssueServer = %v", err)
	}
	return writePair(t, t.TempDir(), "coordinator", certPEM, keyPEM)
}

// makeCSR builds a CSR with arbitrary SANs, signed by key.
func makeCSR(t testing.TB, key crypto.Signer, uris, dns []string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(crand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake runs one TLS handshake over loopback and returns the server's
// handshake error and the client's error (handshake or first read: with TLS
// 1.3 the client learns of a refused client certificate only on reading).
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	_, serverErr, clientErr = handshakeState(t, server, client)
	return serverErr, clientErr
}

// handshakeState is handshake that also returns the server connection's
// state after its handshake (what gRPC's credentials hand the server).
func handshakeState(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(conn, server)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		state = tc.ConnectionState()
		_, err = tc.Write([]byte("ok"))
		done <- err
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cc := client.Clone()
	if cc.ServerName == "" {
		cc.ServerName = "127.0.0.1"
	}
	tc := tls.Client(conn, cc)
	clientErr = tc.Handshake()
	if clientErr == nil {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(tc, buf); err != nil {
			clientErr = err
		} else if string(buf) != "ok" {
			clientErr = errors.New("unexpected reply " + string(buf))
		}
	}
	conn.Close()
	serverErr = <-done
	return state, serverErr, clientErr
}

func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
