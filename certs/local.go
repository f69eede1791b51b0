package certs

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// The one-machine layout of a federation's certificates, as `fedguard demo`
// and `fedguard bench round` lay them out and as the tests use them:
//
//	DIR/ca/ca.crt, ca.key, crl.pem       the federation CA (Init)
//	DIR/coordinator/coordinator.{crt,key} the coordinator, for 127.0.0.1 and localhost
//	DIR/NAME/NAME.{key,csr,crt}          each participant's key, CSR and certificate
//
// It is the operator's and the hospitals' enrolment done in one place; a
// real federation makes each key on its own machine (docs/enrolment).

// Local is the directory of a federation laid out by EnrolLocal; its
// methods name the files in it.
type Local string

// CACert is the federation CA's certificate.
func (l Local) CACert() string { return filepath.Join(string(l), "ca", "ca.crt") }

// CRL is the CA's revocation list.
func (l Local) CRL() string { return filepath.Join(string(l), "ca", "crl.pem") }

// CoordinatorCert is the coordinator's certificate.
func (l Local) CoordinatorCert() string {
	return filepath.Join(string(l), "coordinator", "coordinator.crt")
}

// CoordinatorKey is the coordinator's private key.
func (l Local) CoordinatorKey() string {
	return filepath.Join(string(l), "coordinator", "coordinator.key")
}

// Cert is participant name's certificate.
func (l Local) Cert(name string) string { return filepath.Join(string(l), name, name+".crt") }

// Key is participant name's private key.
func (l Local) Key(name string) string { return filepath.Join(string(l), name, name+".key") }

// EnrolLocal lays out a federation's certificates in dir the way an
// operator and its hospitals would make them, all on one machine: the CA in
// dir/ca, the coordinator's certificate for 127.0.0.1 and localhost in
// dir/coordinator, and for each name a key made "at the hospital"
// (dir/NAME/NAME.key), its CSR, and the certificate the CA signed from it
// (dir/NAME/NAME.crt).
func EnrolLocal(dir, federation string, names []string) error {
	ca, err := Init(filepath.Join(dir, "ca"), federation, DefaultCAValidity)
	if err != nil {
		return fmt.Errorf("create CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"127.0.0.1", "localhost"}, DefaultCertValidity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "coordinator"), 0o700); err != nil {
		return err
	}
	if err := WriteFileAtomic(Local(dir).CoordinatorCert(), certPEM, 0o644); err != nil {
		return err
	}
	if err := WritePrivateKey(Local(dir).CoordinatorKey(), keyPEM); err != nil {
		return err
	}
	return AddLocal(dir, federation, names)
}

// AddLocal enrols more participants in a federation laid out by EnrolLocal
// in dir, with its CA: for each name a key, its CSR and the certificate the
// CA signed from it, in dir/NAME.
func AddLocal(dir, federation string, names []string) error {
	ca, err := Open(filepath.Join(dir, "ca"))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			return err
		}
		key, csr, err := NewParticipantRequest(federation, name)
		if err != nil {
			return err
		}
		if err := WritePrivateKey(Local(dir).Key(name), key); err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dir, name, name+".csr"), csr, 0o644); err != nil {
			return err
		}
		crt, err := ca.Sign(csr, DefaultCertValidity)
		if err != nil {
			return fmt.Errorf("sign %s: %w", name, err)
		}
		if err := WriteFileAtomic(Local(dir).Cert(name), crt, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// LocalClientConfig is the TLS configuration of participant name of a
// federation laid out by EnrolLocal in dir, dialling addr.
func LocalClientConfig(dir, federation, name, addr string) (*tls.Config, error) {
	ca, err := LoadCertificate(Local(dir).CACert())
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("coordinator address %q: %w", addr, err)
	}
	return ClientConfig(ClientOptions{
		CA: ca, CertFile: Local(dir).Cert(name), KeyFile: Local(dir).Key(name),
		Federation: federation, ServerName: host,
	})
}

// LocalServerConfig is the coordinator's TLS configuration of a federation
// laid out by EnrolLocal in dir.
func LocalServerConfig(dir, federation string) (*tls.Config, error) {
	ca, err := LoadCertificate(Local(dir).CACert())
	if err != nil {
		return nil, err
	}
	return ServerConfig(ServerOptions{
		CA: ca, Federation: federation,
		CertFile: Local(dir).CoordinatorCert(), KeyFile: Local(dir).CoordinatorKey(),
	})
}
