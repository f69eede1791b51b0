//go:build !cgo

package keystore

import (
	"crypto"
	"crypto/ed25519"
	"io"
)

// Token is an open PKCS #11 token; without cgo none can be opened.
type Token struct{}

// Open returns ErrNoCgo: loading a PKCS #11 module needs cgo.
func Open(cfg PKCS11) (*Token, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}

// Close does nothing.
func (t *Token) Close() error { return nil }

// Label returns "".
func (t *Token) Label() string { return "" }

// ECDSA returns ErrNoCgo.
func (t *Token) ECDSA(string) (crypto.Signer, error) { return nil, ErrNoCgo }

// GenerateECDSA returns ErrNoCgo.
func (t *Token) GenerateECDSA(string) (crypto.Signer, error) { return nil, ErrNoCgo }

// Ed25519Key is an Ed25519 private key on a token.
type Ed25519Key struct{}

// Public returns nil.
func (k *Ed25519Key) Public() crypto.PublicKey { return ed25519.PublicKey(nil) }

// Sign returns ErrNoCgo.
func (k *Ed25519Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, ErrNoCgo
}

// Ed25519 returns ErrNoCgo.
func (t *Token) Ed25519(string) (*Ed25519Key, error) { return nil, ErrNoCgo }

// GenerateEd25519 returns ErrNoCgo.
func (t *Token) GenerateEd25519(string) (*Ed25519Key, error) { return nil, ErrNoCgo }
