package manifest

import (
	"bytes"
	"crypto"
	stded25519 "crypto/ed25519"
	crand "crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/fedguard/fedguard/certs"
)

// MLDSAKeyFile holds the ML-DSA-65 half of the signing identity alone
// (one "ML-DSA-65 PRIVATE KEY" block, the 32-byte seed, mode 0600) when
// the Ed25519 half is on a PKCS #11 token, which cannot hold ML-DSA-65
// keys (docs/keys.md).
const MLDSAKeyFile = "signing-mldsa.key"

// LoadTokenSigner is [LoadSigner] for an identity whose Ed25519 key ed is
// on a token: the ML-DSA-65 half is read from MLDSAKeyFile in dir, and
// signing.pub and cosign.pub must exist and hold both public keys.
func LoadTokenSigner(dir string, ed crypto.Signer) (*Signer, error) {
	return loadTokenSigner(dir, ed, false)
}

// LoadOrCreateTokenSigner is [LoadOrCreateSigner] for an identity whose
// Ed25519 key ed is on a token: it makes MLDSAKeyFile (and dir, 0700) when
// it does not exist, and writes missing public files; created reports a
// new ML-DSA-65 key. As with files, a public file that holds other keys is
// an error, never overwritten.
func LoadOrCreateTokenSigner(dir string, ed crypto.Signer) (s *Signer, created bool, err error) {
	path := filepath.Join(dir, MLDSAKeyFile)
	if _, err := os.Stat(path); err == nil {
		s, err := loadTokenSigner(dir, ed, true)
		return s, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("manifest: ML-DSA-65 key: %w", err)
	}
	edPub, err := tokenPublic(dir, ed)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("manifest: create signing directory: %w", err)
	}
	var seed [mldsa65.SeedSize]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, false, fmt.Errorf("manifest: generate ML-DSA-65 key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: pemMLDSAPrivate, Bytes: seed[:]})
	// Refuses to overwrite: of two racing processes one fails here.
	if err := certs.WritePrivateKey(path, keyPEM); err != nil {
		return nil, false, fmt.Errorf("manifest: %w", err)
	}
	s = newTokenSigner(ed, edPub, &seed)
	if err := writePublicFiles(dir, s.public, false); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

func loadTokenSigner(dir string, ed crypto.Signer, repair bool) (*Signer, error) {
	edPub, err := tokenPublic(dir, ed)
	if err != nil {
		return nil, err
	}
	seed, err := loadPrivate(filepath.Join(dir, MLDSAKeyFile), "ML-DSA-65 key", parseMLDSAKey)
	if err != nil {
		return nil, err
	}
	s := newTokenSigner(ed, edPub, seed)
	if err := writePublicFiles(dir, s.public, !repair); err != nil {
		return nil, err
	}
	return s, nil
}

// parseMLDSAKey parses signing-mldsa.key: exactly one "ML-DSA-65
// PRIVATE KEY" block holding the 32-byte seed.
func parseMLDSAKey(data []byte) (*[mldsa65.SeedSize]byte, error) {
	blocks, err := decodePEM(data, pemMLDSAPrivate)
	if err != nil {
		return nil, err
	}
	if len(blocks[0]) != mldsa65.SeedSize {
		return nil, fmt.Errorf("%s block is %d bytes, want the %d-byte seed", pemMLDSAPrivate, len(blocks[0]), mldsa65.SeedSize)
	}
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], blocks[0])
	return &seed, nil
}

// tokenPublic checks that ed is an Ed25519 key and that dir does not also
// hold a file identity, which would be a second, different signer.
func tokenPublic(dir string, ed crypto.Signer) (ed25519.PublicKey, error) {
	pub, ok := ed.Public().(stded25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("manifest: token key is a %T, want an Ed25519 public key", ed.Public())
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		return nil, fmt.Errorf("manifest: %s holds a file signing key (%s) and a token key is configured: one identity only (move the file away if the token key replaces it, which every hospital must re-pin)", dir, KeyFile)
	}
	return ed25519.PublicKey(bytes.Clone(pub)), nil
}

// newTokenSigner assembles a Signer from a token's Ed25519 key and an
// ML-DSA-65 seed.
func newTokenSigner(ed crypto.Signer, edPub ed25519.PublicKey, mlSeed *[mldsa65.SeedSize]byte) *Signer {
	mlPub, mlPriv := mldsa65.NewKeyFromSeed(mlSeed)
	return &Signer{ed: ed, mldsa: mlPriv, public: PublicKeys{Ed25519: edPub, MLDSA65: mlPub}}
}
