// Package fedtest is fedguard's test harness for a federation on one
// machine: the federation's CA, the coordinator's and the hospitals'
// certificates laid out by certs.EnrolLocal in the test's own directory, a
// coordinator configuration over those files, the hospitals' and the
// coordinator's TLS configurations (real mutual TLS 1.3), and a coordinator
// serving in the test's process on a loopback port.
//
// Only tests import it: production code (the demo, `fedguard bench round`)
// lays out a federation with certs.EnrolLocal directly, and the repository's
// import-direction test keeps production code from importing fedtest.
package fedtest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
)

// Loopback is the address the harness's coordinators listen on (port 0:
// any free port) and the name the hospitals expect in its certificate.
const Loopback = "127.0.0.1:0"

// Federation is a federation's certificates laid out by certs.EnrolLocal
// in Dir: the CA, the coordinator's certificate for 127.0.0.1 and
// localhost, and a key and certificate for every participant named.
type Federation struct {
	Dir  string
	Name string
}

// New lays out federation name with participants names in a fresh
// t.TempDir().
func New(t testing.TB, name string, names ...string) *Federation {
	t.Helper()
	return In(t, t.TempDir(), name, names...)
}

// In is New in dir.
func In(t testing.TB, dir, name string, names ...string) *Federation {
	t.Helper()
	if err := certs.EnrolLocal(dir, name, names); err != nil {
		t.Fatalf("fedtest: enrol %v in federation %q: %v", names, name, err)
	}
	return &Federation{Dir: dir, Name: name}
}

// Add enrols more participants, with certificates from the federation's CA.
func (f *Federation) Add(t testing.TB, names ...string) {
	t.Helper()
	if err := certs.AddLocal(f.Dir, f.Name, names); err != nil {
		t.Fatalf("fedtest: enrol %v in federation %q: %v", names, f.Name, err)
	}
}

// Files names the federation's files.
func (f *Federation) Files() certs.Local { return certs.Local(f.Dir) }

// HospitalDir is participant name's directory, which holds its key and
// certificate and where the tests put its data.
func (f *Federation) HospitalDir(name string) string { return filepath.Join(f.Dir, name) }

// ClientTLS is participant name's TLS configuration for dialling a
// coordinator at addr (only its host counts: the certificate's name).
func (f *Federation) ClientTLS(t testing.TB, name, addr string) *tls.Config {
	t.Helper()
	cfg, err := certs.LocalClientConfig(f.Dir, f.Name, name, addr)
	if err != nil {
		t.Fatalf("fedtest: TLS configuration of %s: %v", name, err)
	}
	return cfg
}

// ServerTLS is the coordinator's TLS configuration: its certificate, client
// certificates of the federation required.
func (f *Federation) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	cfg, err := certs.LocalServerConfig(f.Dir, f.Name)
	if err != nil {
		t.Fatalf("fedtest: coordinator TLS configuration: %v", err)
	}
	return cfg
}

// Config is a coordinator configuration over the federation's files:
// the federation's name, Loopback, the data directory Dir/coordinator/data,
// the CA, the coordinator's certificate and key, the CRL, and enrolled.
// The model, the training, the quorum and the timeouts are the caller's.
func (f *Federation) Config(enrolled []string) coordinator.Config {
	l := f.Files()
	return coordinator.Config{
		Federation: f.Name,
		Listen:     Loopback,
		DataDir:    filepath.Join(f.Dir, "coordinator", "data"),
		CACert:     l.CACert(),
		Cert:       l.CoordinatorCert(),
		Key:        l.CoordinatorKey(),
		CRL:        l.CRL(),
		Enrolled:   slices.Clone(enrolled),
	}
}

// Coordinator is a coordinator serving in the test's process.
type Coordinator struct {
	*coordinator.Coordinator
	// Addr is the address it listens on.
	Addr string

	cancel context.CancelFunc
	done   chan struct{}
	err    error // Serve's result, once done is closed
	once   sync.Once
	t      testing.TB
}

// Serve creates a coordinator for cfg (coordinator.WithInit and a
// discarding logger, then opts), and serves it on cfg.Listen (Loopback when
// empty) until Stop or the end of the test.
func Serve(t testing.TB, cfg coordinator.Config, opts ...coordinator.Option) *Coordinator {
	t.Helper()
	return ServeHooked(t, cfg, nil, opts...)
}

// ServeHooked is Serve, calling each of before on the coordinator after New
// and before Serve: for test hooks that must be in place before the first
// RPC, without a race.
func ServeHooked(t testing.TB, cfg coordinator.Config, before []func(*coordinator.Coordinator), opts ...coordinator.Option) *Coordinator {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = Loopback
	}
	opts = append([]coordinator.Option{coordinator.WithInit(), coordinator.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	c, err := coordinator.New(cfg, opts...)
	if err != nil {
		t.Fatalf("coordinator.New: %v", err)
	}
	lis, err := Listen(cfg.Listen)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	for _, f := range before {
		f(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Coordinator{Coordinator: c, Addr: lis.Addr().String(), cancel: cancel, done: make(chan struct{}), t: t}
	go func() { s.err = c.Serve(ctx, lis); close(s.done) }()
	t.Cleanup(func() { s.Stop() })
	return s
}

// Listen listens on the TCP address addr, trying again for about a second
// while it is taken: a test that restarts a server on the address of one
// it stopped may find the port not yet free.
func Listen(addr string) (net.Listener, error) {
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// StopTimeout bounds how long Stop waits for Serve to return.
const StopTimeout = 20 * time.Second

// Stop cancels Serve, waits for it (the test fails after StopTimeout), closes
// the coordinator and returns Serve's result. Later calls return the same.
func (s *Coordinator) Stop() error {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(StopTimeout):
			s.t.Errorf("fedtest: Serve did not return within %v of cancel", StopTimeout)
		}
		if err := s.Close(); err != nil {
			s.t.Errorf("fedtest: Close: %v", err)
		}
	})
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Done is closed when Serve has returned.
func (s *Coordinator) Done() <-chan struct{} { return s.done }

// Err is Serve's result once Done is closed.
func (s *Coordinator) Err() error {
	<-s.done
	return s.err
}

// WaitServe waits for Serve to return on its own (training finished) and
// returns its result; the test fails after within.
func (s *Coordinator) WaitServe(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(within):
		t.Fatalf("Serve did not return within %v", within)
		return nil
	}
}

// Revoke revokes participant name's certificate: the CA adds it to the
// CRL (Files().CRL()), which the coordinator watches.
func (f *Federation) Revoke(t testing.TB, name string) {
	t.Helper()
	leaf, err := certs.LoadCertificate(f.Files().Cert(name))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.Open(filepath.Join(f.Dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(leaf.SerialNumber); err != nil {
		t.Fatalf("fedtest: revoke %s: %v", name, err)
	}
}
