package certs

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/internal/strictjson"
)

// PEM block types used by this package.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
	pemCRL         = "X509 CRL"
)

// MaxPEMFileSize bounds what is read of a certificate, CA bundle, private
// key or certificate request file that an operator names. A real one is a
// few kilobytes (ca.crt during a rotation holds two certificates); the
// bound is far above that and still small, so a FIFO or a device named by
// mistake, or a huge file, is refused instead of read until memory runs
// out.
const MaxPEMFileSize = 1 << 20

// MaxCRLFileSize bounds what is read of a CRL file: an entry costs about
// 60 bytes of PEM, so the bound holds some 250,000 revocations, far more
// than a federation of hospitals makes.
const MaxCRLFileSize = 16 << 20

// ReadPEMFile reads the PEM file at path, refusing one over
// MaxPEMFileSize without reading further: "read PATH: larger than N
// bytes", an error wrapping strictjson.ErrTooLarge.
func ReadPEMFile(path string) ([]byte, error) {
	return strictjson.ReadFile(path, MaxPEMFileSize)
}

// WriteFileAtomic writes data to path with permission perm so that readers
// see either the old file or the complete new one, even across a crash: it
// writes a temporary file in the same directory, fsyncs it, renames it over
// path and fsyncs the directory. A path that exists and is neither a
// regular file nor a directory (a named pipe, a terminal, /dev/stdout) is
// written to instead: renaming a file over it would replace it (as root,
// /dev/stdout itself), and its reader would get nothing.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if WritesThrough(path) {
		return writeThrough(path, data)
	}
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// WriteJSONAtomic writes v as one line of JSON (json.Marshal's encoding
// and a newline) to path with permission perm, atomically as
// WriteFileAtomic: the form of the state files an agent must never find torn
// (its accepted manifest, its privacy ledger). A marshal error is
// json.Marshal's, unwrapped, so that callers keep one prefix for both.
func WriteJSONAtomic(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(data, '\n'), perm)
}

// WritePrivateKey writes a PEM private key with mode 0600 and refuses to
// overwrite an existing file: replacing a key by mistake would orphan the
// certificate issued for it, and a key is never meant to be rewritten.
func WritePrivateKey(path string, keyPEM []byte) error {
	tmp, err := writeTemp(path, keyPEM, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// A hard link is atomic and fails if path exists.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("certs: write private key: %s already exists, refusing to overwrite it", path)
		}
		// Some file systems have no hard links: fall back to O_EXCL.
		f, err2 := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err2 != nil {
			if errors.Is(err2, fs.ErrExist) {
				return fmt.Errorf("certs: write private key: %s already exists, refusing to overwrite it", path)
			}
			return fmt.Errorf("certs: write private key %s: %w", path, err2)
		}
		if err2 := writeClose(f, keyPEM); err2 != nil {
			os.Remove(path)
			return fmt.Errorf("certs: write private key %s: %w", path, err2)
		}
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data to a new fsynced temporary file next to path.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	dir, base := filepath.Split(path)
	dir = cmp.Or(dir, ".")
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("certs: write %s: %w", path, err)
	}
	tmp := f.Name()
	if err = f.Chmod(perm); err == nil {
		err = writeClose(f, data)
	} else {
		f.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("certs: write %s: %w", path, err)
	}
	return tmp, nil
}

// WritesThrough reports whether WriteFileAtomic writes to path in place:
// path exists and is neither a regular file nor a directory (a named
// pipe, a terminal, /dev/stdout). Its directory then need not take new
// files, which callers that check before they write rely on.
func WritesThrough(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.Mode().IsRegular() && !fi.IsDir()
}

// writeThrough writes data to the existing file at path, which is not a
// regular file: it is not created, truncated or synced.
func writeThrough(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}

// writeClose writes data to f, fsyncs and closes it, returning the first
// error; f is closed in every case.
func writeClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("certs: sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("certs: sync directory %s: %w", dir, err)
	}
	return nil
}

// LoadCertificate reads the first CERTIFICATE block of a PEM file. It is
// how operators point fedguard at ca.crt or a peer's certificate.
func LoadCertificate(path string) (*x509.Certificate, error) {
	return loadFile(path, "certificate", parseCertificatePEM)
}

// loadFile reads the file path (at most MaxPEMFileSize bytes) and parses
// it; what names its content in errors ("certs: load WHAT PATH: …").
func loadFile[T any](path, what string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := ReadPEMFile(path)
	if err != nil {
		return zero, fmt.Errorf("certs: load %s: %w", what, err)
	}
	v, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("certs: load %s %s: %w", what, path, err)
	}
	return v, nil
}

// parseCertificatePEM parses the first CERTIFICATE block of data.
func parseCertificatePEM(data []byte) (*x509.Certificate, error) {
	return parseFirst(data, pemCertificate, "certificate", x509.ParseCertificate)
}

// parseFirst parses the first PEM block of type typ in data with parse;
// what names the object in a parse error.
func parseFirst[T any](data []byte, typ, what string, parse func(der []byte) (T, error)) (T, error) {
	var zero T
	der, err := firstBlock(data, typ)
	if err != nil {
		return zero, err
	}
	v, err := parse(der)
	if err != nil {
		return zero, fmt.Errorf("parse %s: %w", what, err)
	}
	return v, nil
}

// firstBlock returns the bytes of the first PEM block of type typ, skipping
// blocks of other types.
func firstBlock(data []byte, typ string) ([]byte, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("no PEM %q block found", typ)
		}
		if b.Type == typ {
			return b.Bytes, nil
		}
	}
}

// newKey makes a P-256 key and its PKCS #8 PEM encoding.
func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: marshal key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// parsePrivateKeyPEM reads a PKCS #8 "PRIVATE KEY" PEM block.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	k, err := parseFirst(data, pemPrivateKey, "private key", x509.ParsePKCS8PrivateKey)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}
