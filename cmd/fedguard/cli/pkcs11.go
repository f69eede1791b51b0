package cli

import (
	"crypto"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fedguard/fedguard/certs/ca"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
)

// This file keeps long-lived keys on a PKCS #11 token (package keystore):
// the `fedguard ca` commands take the CA's issuing key (ECDSA P-256) from
// a token named by the same -pkcs11-* flags instead of DIR/ca.key, and
// `coordinator --init-keys` makes the coordinator's Ed25519 key on the
// token its configuration's "pkcs11" names. The PIN comes from a pin file
// or $FEDGUARD_PKCS11_PIN, never a flag.

// caKeyFlags registers the -pkcs11-* flags of a ca command.
func caKeyFlags(fs *flag.FlagSet) *keystore.PKCS11 {
	p := new(keystore.PKCS11)
	p.AddFlags(fs)
	return p
}

// openCA opens the CA in dir, with its key from ca.key or, if p names a
// token, from the token; done releases the token.
func openCA(dir string, p *keystore.PKCS11) (a *ca.Authority, done func(), err error) {
	return openCAWith(dir, p, ca.Open, ca.OpenWithKey)
}

// openCAWith is openCA through open (a key in ca.key) or openKey (a key
// on the token).
func openCAWith(dir string, p *keystore.PKCS11, open func(string) (*ca.Authority, error), openKey func(string, crypto.Signer) (*ca.Authority, error)) (a *ca.Authority, done func(), err error) {
	if !p.Enabled() {
		a, err := open(dir)
		return a, func() {}, err
	}
	tok, err := keystore.Open(*p)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	key, err := tok.ECDSA(p.KeyLabel)
	if err == nil {
		a, err = openKey(dir, key)
	}
	if err != nil {
		tok.Close()
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	return a, func() { tok.Close() }, nil
}

// initCA makes a CA in dir: with ca.key, or with the token key p names,
// which is generated (ECDSA P-256) when the token has none with that label.
// keyWhere says where the key is, for the operator.
func initCA(dir, federation string, validity time.Duration, p *keystore.PKCS11) (a *ca.Authority, keyWhere string, err error) {
	if !p.Enabled() {
		a, err := ca.Init(dir, federation, validity)
		return a, "", err
	}
	tok, err := keystore.Open(*p)
	if err != nil {
		return nil, "", fmt.Errorf("CA key: %w", err)
	}
	defer tok.Close()
	verb := "the existing"
	key, err := tok.ECDSA(p.KeyLabel)
	if errors.Is(err, keystore.ErrKeyNotFound) {
		verb = "a new"
		key, err = tok.GenerateECDSA(p.KeyLabel)
	}
	if err != nil {
		return nil, "", fmt.Errorf("CA key: %w", err)
	}
	if a, err = ca.InitWithKey(dir, federation, validity, key); err != nil {
		return nil, "", err
	}
	return a, fmt.Sprintf("%s ECDSA P-256 key %q on PKCS #11 token %q", verb, p.KeyLabel, p.TokenLabel), nil
}

// initTokenKeys is `coordinator --init-keys` with the Ed25519 key on a
// token: it makes (or finds) the key there and the ML-DSA-65 key in the
// data directory.
func initTokenKeys(env *Env, cfg coordinator.Config) error {
	keys, err := coordinator.InitKeys(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "manifest-signing keys (fingerprint %s): Ed25519 key %q on PKCS #11 token %q, ML-DSA-65 key in %s\nhand %s to every hospital with its certificate: they pin it\n",
		keys.Fingerprint(), cfg.PKCS11.KeyLabel, cfg.PKCS11.TokenLabel, filepath.Join(cfg.DataDir, manifest.MLDSAKeyFile), filepath.Join(cfg.DataDir, manifest.PublicFile))
	return nil
}
