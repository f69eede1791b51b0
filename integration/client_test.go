package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fedguard/fedguard/certs"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// dialRecorder is a gRPC dialer that remembers the local address of every
// connection, so a test can find the coordinator's log record about it
// (the coordinator logs the client's address as "remote").
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		d.mu.Lock()
		d.addrs = append(d.addrs, c.LocalAddr().String())
		d.mu.Unlock()
	}
	return c, err
}

func (d *dialRecorder) locals() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[string]bool{}
	for _, a := range d.addrs {
		m[a] = true
	}
	return m
}

// rawClient is a generated CoordinatorService client over its own
// connection, closed when the test ends.
func rawClient(t *testing.T, addr string, tlsCfg *tls.Config, opts ...grpc.DialOption) (fedguardv1.CoordinatorServiceClient, *dialRecorder) {
	t.Helper()
	conn, rec := rawConn(t, addr, tlsCfg, opts...)
	return fedguardv1.NewCoordinatorServiceClient(conn), rec
}

// rawConn is rawClient's connection, for a caller that closes it early.
func rawConn(t *testing.T, addr string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, *dialRecorder) {
	t.Helper()
	rec := &dialRecorder{}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithContextDialer(rec.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, all...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, rec
}

// clientTLS is a TLS 1.3 client configuration presenting cert and trusting
// the CA certificate in caFile.
func clientTLS(t *testing.T, caFile string, cert tls.Certificate) *tls.Config {
	t.Helper()
	ca, err := certs.LoadCertificate(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		Certificates: []tls.Certificate{cert},
	}
}

// loadPair loads a certificate and key file pair.
func loadPair(t *testing.T, certFile, keyFile string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load %s: %v", certFile, err)
	}
	return c
}

// signParticipant signs, with the CA kept in caDir (ca.crt, ca.key as PKCS
// #8 PEM), a participant certificate for name valid from notBefore to
// notAfter, exactly as the CA would except for the window.
func signParticipant(t *testing.T, caDir, federation, name string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	caCert, err := certs.LoadCertificate(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("ca.key is not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("ca.key: %v", err)
	}
	caKey := k.(crypto.Signer)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://" + federation + "/participant/" + name)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, leafKey.Public(), caKey)
	if err != nil {
		t.Fatalf("sign %s: %v", name, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: leafKey, Leaf: leaf}
}

// serialOf is the hex serial of a certificate, as the coordinator logs it.
func serialOf(t *testing.T, c tls.Certificate) string {
	t.Helper()
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	return leaf.SerialNumber.Text(16)
}
