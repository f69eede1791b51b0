package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// MaxCABundle bounds the CA certificates a party trusts at once: the
// current CA and the next one, during the overlap period of a CA rotation
// (docs/keys.md, Rotation). More would be a misconfiguration.
const MaxCABundle = 2

// LoadCABundle reads a ca.crt that holds one CA certificate or, during a
// CA rotation's overlap, two: the current CA's first, then the next
// one's. Every block must be a CERTIFICATE of a CA for the same
// federation; anything else in the file is an error, so that a stray
// certificate is never trusted as a root.
func LoadCABundle(path string) ([]*x509.Certificate, error) {
	return loadFile(path, "CA certificates", parseCABundle)
}

func parseCABundle(data []byte) ([]*x509.Certificate, error) {
	var cas []*x509.Certificate
	var fed string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCertificate {
			return nil, fmt.Errorf("PEM block %d is %q, want %q", len(cas)+1, b.Type, pemCertificate)
		}
		if len(cas) == MaxCABundle {
			return nil, fmt.Errorf("more than %d CA certificates (the current CA and the next)", MaxCABundle)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(cas)+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d is not a CA certificate", len(cas)+1)
		}
		f := ""
		if len(c.URIs) == 1 {
			f = c.URIs[0].Host
		}
		if len(cas) > 0 && f != fed {
			return nil, fmt.Errorf("certificate %d is a CA of federation %q, the first of %q", len(cas)+1, f, fed)
		}
		fed = f
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return cas, nil
}

// caPool makes the pool of ca and more.
func caPool(ca *x509.Certificate, more []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, c := range more {
		pool.AddCert(c)
	}
	return pool
}

// parseCRLFrom parses a PEM CRL signed by any of cas: during a CA
// rotation's overlap the coordinator's CRL is either CA's.
func parseCRLFrom(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	var first error
	for _, ca := range cas {
		crl, err := parseCRL(data, ca)
		if err == nil {
			return crl, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
