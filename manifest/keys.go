package manifest

import (
	"bytes"
	"crypto"
	stded25519 "crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/certs"
)

// Names of the files of a signing identity, all in one directory (see the
// package documentation, section Files).
const (
	// KeyFile holds both private keys, mode 0600.
	KeyFile = "signing.key"
	// PublicFile holds both public keys; participants pin it at enrolment.
	PublicFile = "signing.pub"
	// CosignPublicFile holds the Ed25519 public key alone, in the form
	// `cosign verify-blob-attestation --key` reads.
	CosignPublicFile = "cosign.pub"
)

// PEM block types of the key files. The Ed25519 blocks are the standard
// PKCS #8 and PKIX ones, so that OpenSSL and cosign read them; the ML-DSA-65
// blocks hold raw bytes (see the package documentation, section Files).
const (
	pemEd25519Private = "PRIVATE KEY"
	pemEd25519Public  = "PUBLIC KEY"
	pemMLDSAPrivate   = "ML-DSA-65 PRIVATE KEY"
	pemMLDSAPublic    = "ML-DSA-65 PUBLIC KEY"
)

// maxKeyFileSize bounds what is read from a key file. signing.pub is about
// 2.8 KB; anything far larger is not a key file.
const maxKeyFileSize = 64 << 10

// PublicKeys is the coordinator's signing identity as participants pin it:
// a manifest is accepted only if it carries a valid signature under each.
type PublicKeys struct {
	Ed25519 ed25519.PublicKey
	MLDSA65 *mldsa65.PublicKey
}

// Signer holds the coordinator's two private keys. It signs round
// manifests ([Sign]) and, through [Signer.NoteSigner], audit checkpoints.
// A Signer is safe for concurrent use.
//
// The Ed25519 key is a crypto.Signer: a file key (signing.key) or a key on
// a PKCS #11 token (package keystore, [LoadTokenSigner]).
type Signer struct {
	ed     crypto.Signer
	mldsa  *mldsa65.PrivateKey
	public PublicKeys
	// deterministic selects deterministic ML-DSA-65 signing. Only tests set
	// it, to produce reproducible golden envelopes; see the package
	// documentation, section Signatures.
	deterministic bool
}

// GenerateSigner makes a new signing identity from rand (crypto/rand if
// nil). It reads exactly 64 bytes: the 32-byte Ed25519 seed (RFC 8032),
// then the 32-byte ML-DSA-65 seed ξ (FIPS 204, ML-DSA.KeyGen), so a fixed
// reader yields a fixed identity, which tests rely on.
func GenerateSigner(rand io.Reader) (*Signer, error) {
	if rand == nil {
		rand = crand.Reader
	}
	var edSeed [ed25519.SeedSize]byte
	var mlSeed [mldsa65.SeedSize]byte
	if _, err := io.ReadFull(rand, edSeed[:]); err != nil {
		return nil, fmt.Errorf("manifest: generate Ed25519 key: %w", err)
	}
	if _, err := io.ReadFull(rand, mlSeed[:]); err != nil {
		return nil, fmt.Errorf("manifest: generate ML-DSA-65 key: %w", err)
	}
	return newSigner(ed25519.NewKeyFromSeed(edSeed[:]), &mlSeed), nil
}

// newSigner assembles a Signer from an Ed25519 private key and an ML-DSA-65
// seed.
func newSigner(ed ed25519.PrivateKey, mlSeed *[mldsa65.SeedSize]byte) *Signer {
	mlPub, mlPriv := mldsa65.NewKeyFromSeed(mlSeed)
	return &Signer{
		ed:    stded25519.PrivateKey(ed),
		mldsa: mlPriv,
		public: PublicKeys{
			Ed25519: ed.Public().(ed25519.PublicKey),
			MLDSA65: mlPub,
		},
	}
}

// Public returns the public keys that verify this Signer's signatures.
func (s *Signer) Public() PublicKeys { return s.public }

// MarshalPEM encodes k as the contents of signing.pub: a PKIX "PUBLIC KEY"
// block with the Ed25519 key first (so that tools reading only the first
// block, such as cosign, find a key they know), then an "ML-DSA-65 PUBLIC
// KEY" block with the 1952-byte packed key (FIPS 204, pkEncode). It returns
// nil if k is incomplete.
func (k PublicKeys) MarshalPEM() []byte {
	der, err := k.ed25519DER()
	if err != nil || k.MLDSA65 == nil {
		return nil
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: pemEd25519Public, Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: pemMLDSAPublic, Bytes: k.MLDSA65.Bytes()})
	return b.Bytes()
}

// cosignPEM encodes the Ed25519 key alone, as cosign.pub.
func (k PublicKeys) cosignPEM() []byte {
	der, err := k.ed25519DER()
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEd25519Public, Bytes: der})
}

// ed25519DER is the PKIX (SubjectPublicKeyInfo, RFC 8410) encoding of the
// Ed25519 key.
func (k PublicKeys) ed25519DER() ([]byte, error) {
	if len(k.Ed25519) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 public key is %d bytes, want %d", len(k.Ed25519), ed25519.PublicKeySize)
	}
	return x509.MarshalPKIXPublicKey(stded25519.PublicKey(k.Ed25519))
}

// check reports an incomplete PublicKeys, such as the zero value.
func (k PublicKeys) check() error {
	if len(k.Ed25519) != ed25519.PublicKeySize {
		return fmt.Errorf("manifest: pinned Ed25519 key is %d bytes, want %d", len(k.Ed25519), ed25519.PublicKeySize)
	}
	if k.MLDSA65 == nil {
		return errors.New("manifest: no pinned ML-DSA-65 key")
	}
	return nil
}

// Equal reports whether k and o are the same two keys.
func (k PublicKeys) Equal(o PublicKeys) bool {
	if k.MLDSA65 == nil || o.MLDSA65 == nil {
		return k.MLDSA65 == nil && o.MLDSA65 == nil && bytes.Equal(k.Ed25519, o.Ed25519)
	}
	return bytes.Equal(k.Ed25519, o.Ed25519) && k.MLDSA65.Equal(o.MLDSA65)
}

// Fingerprint names the pair of keys in logs and pinning prompts:
// "sha256:" and the hex SHA-256 of the Ed25519 key's PKIX DER followed by
// the packed ML-DSA-65 key. Both encodings have a fixed length, so the
// concatenation is unambiguous; the full 256 bits are kept because an
// operator may compare it to pin the keys. It returns "" if k is incomplete.
func (k PublicKeys) Fingerprint() string {
	der, err := k.ed25519DER()
	if err != nil || k.MLDSA65 == nil {
		return ""
	}
	h := sha256.New()
	h.Write(der)
	h.Write(k.MLDSA65.Bytes())
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// mldsaKeyID is the DSSE keyid of the ML-DSA-65 signature: "mldsa65:" and
// the hex SHA-256 of the packed key.
func (k PublicKeys) mldsaKeyID() string {
	sum := sha256.Sum256(k.MLDSA65.Bytes())
	return "mldsa65:" + hex.EncodeToString(sum[:])
}

// NoteVerifier returns a verifier of signed notes (golang.org/x/mod/sumdb/note)
// for the Ed25519 key under name, the counterpart of [Signer.NoteSigner]:
// an auditor checks the coordinator's checkpoints with it.
func (k PublicKeys) NoteVerifier(name string) (note.Verifier, error) {
	if len(k.Ed25519) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("manifest: note verifier: Ed25519 public key is %d bytes, want %d", len(k.Ed25519), ed25519.PublicKeySize)
	}
	vkey, err := note.NewEd25519VerifierKey(name, stded25519.PublicKey(k.Ed25519))
	if err != nil {
		return nil, fmt.Errorf("manifest: note verifier %q: %w", name, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("manifest: note verifier %q: %w", name, err)
	}
	return v, nil
}

// NoteSigner returns a signer of notes (golang.org/x/mod/sumdb/note) under
// name, backed by the Ed25519 key, for the audit log's checkpoints. Its
// KeyHash is the one note computes for [PublicKeys.NoteVerifier] with the
// same name, so note.Open finds the verifier.
//
// Reusing the Ed25519 key for notes is safe because the two kinds of signed
// message cannot be confused: a DSSE signature covers a PAE that starts with
// "DSSEv1 " and ends with the statement's closing brace, a note signature
// covers note text that ends with a newline.
func (s *Signer) NoteSigner(name string) (note.Signer, error) {
	v, err := s.public.NoteVerifier(name)
	if err != nil {
		return nil, err
	}
	return &noteSigner{name: v.Name(), hash: v.KeyHash(), key: s.ed}, nil
}

// noteSigner implements note.Signer with the Ed25519 key. note's own
// NewSigner takes the key as an encoded string; building it would put the
// private key through string formatting for no benefit.
type noteSigner struct {
	name string
	hash uint32
	key  crypto.Signer
}

var _ note.Signer = (*noteSigner)(nil)

func (n *noteSigner) Name() string    { return n.name }
func (n *noteSigner) KeyHash() uint32 { return n.hash }
func (n *noteSigner) Sign(msg []byte) ([]byte, error) {
	return n.key.Sign(nil, msg, crypto.Hash(0))
}

// ParsePublicKeys parses the contents of a signing.pub file (see
// [PublicKeys.MarshalPEM]). It insists on exactly the two blocks, in order,
// without headers or anything else around them: a pinned key file is never
// guessed at.
func ParsePublicKeys(pemBytes []byte) (PublicKeys, error) {
	k, err := parsePublicKeys(pemBytes)
	if err != nil {
		return PublicKeys{}, fmt.Errorf("manifest: parse public keys: %w", err)
	}
	return k, nil
}

func parsePublicKeys(data []byte) (PublicKeys, error) {
	blocks, err := decodePEM(data, pemEd25519Public, pemMLDSAPublic)
	if err != nil {
		return PublicKeys{}, err
	}
	edPub, err := parseEd25519PKIX(blocks[0])
	if err != nil {
		return PublicKeys{}, err
	}
	if len(blocks[1]) != mldsa65.PublicKeySize {
		return PublicKeys{}, fmt.Errorf("%s block is %d bytes, want %d", pemMLDSAPublic, len(blocks[1]), mldsa65.PublicKeySize)
	}
	mlPub := new(mldsa65.PublicKey)
	if err := mlPub.UnmarshalBinary(blocks[1]); err != nil {
		return PublicKeys{}, fmt.Errorf("%s block: %w", pemMLDSAPublic, err)
	}
	return PublicKeys{Ed25519: edPub, MLDSA65: mlPub}, nil
}

// LoadPublicKeys reads a signing.pub file: what a participant pins at
// enrolment and an auditor verifies with.
func LoadPublicKeys(path string) (PublicKeys, error) {
	return readParsed(path, parsePublicKeys, "manifest: load public keys: %w", "manifest: %s: %w")
}

// readParsed reads the small file path and parses it. A read error is
// wrapped with readFormat (a %w verb), a parse error with parseFormat (a
// %s verb for path, then %w).
func readParsed[K any](path string, parse func([]byte) (K, error), readFormat, parseFormat string) (K, error) {
	var zero K
	data, err := readSmall(path)
	if err != nil {
		return zero, fmt.Errorf(readFormat, err)
	}
	k, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf(parseFormat, path, err)
	}
	return k, nil
}

// parsePrivateKeys parses signing.key: a PKCS #8 Ed25519 "PRIVATE KEY"
// block, then an "ML-DSA-65 PRIVATE KEY" block holding the 32-byte seed.
func parsePrivateKeys(data []byte) (*Signer, error) {
	blocks, err := decodePEM(data, pemEd25519Private, pemMLDSAPrivate)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(blocks[0])
	if err != nil {
		return nil, fmt.Errorf("%s block: %w", pemEd25519Private, err)
	}
	edKey, ok := key.(stded25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s block holds a %T key, want Ed25519", pemEd25519Private, key)
	}
	if len(blocks[1]) != mldsa65.SeedSize {
		return nil, fmt.Errorf("%s block is %d bytes, want the %d-byte seed", pemMLDSAPrivate, len(blocks[1]), mldsa65.SeedSize)
	}
	var seed [mldsa65.SeedSize]byte
	copy(seed[:], blocks[1])
	return newSigner(ed25519.PrivateKey(edKey), &seed), nil
}

// marshalPrivateKeys encodes s as signing.key.
func (s *Signer) marshalPrivateKeys() ([]byte, error) {
	ed, ok := s.ed.(stded25519.PrivateKey)
	if !ok {
		return nil, errors.New("manifest: the Ed25519 key is not a file key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		return nil, fmt.Errorf("manifest: marshal Ed25519 key: %w", err)
	}
	seed := s.mldsa.Seed()
	if len(seed) != mldsa65.SeedSize {
		return nil, errors.New("manifest: ML-DSA-65 key has no seed")
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: pemEd25519Private, Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: pemMLDSAPrivate, Bytes: seed})
	return b.Bytes(), nil
}

// decodePEM decodes data as exactly the PEM blocks of the given types, in
// that order, and returns their contents. Unlike a bare pem.Decode loop it
// refuses text before, between or after the blocks and blocks with headers,
// so that a truncated, concatenated or hand-edited file is reported rather
// than half read.
func decodePEM(data []byte, types ...string) ([][]byte, error) {
	var out [][]byte
	rest := data
	for i := 0; ; i++ {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			if i < len(types) {
				return nil, fmt.Errorf("no %s block", types[i])
			}
			return out, nil
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			if i == 0 {
				return nil, errors.New("not PEM: no -----BEGIN line at the start")
			}
			return nil, fmt.Errorf("trailing garbage after the %s block", types[i-1])
		}
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("PEM block %d is not well formed", i+1)
		}
		if i >= len(types) {
			return nil, fmt.Errorf("unexpected %q block after the %s block", b.Type, types[len(types)-1])
		}
		if b.Type != types[i] {
			for j, t := range types {
				if b.Type == t && j < i {
					return nil, fmt.Errorf("more than one %s block", t)
				}
				if b.Type == t {
					return nil, fmt.Errorf("no %s block before the %s block", types[i], t)
				}
			}
			return nil, fmt.Errorf("unexpected %q block, want %s", b.Type, types[i])
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("%s block has PEM headers", b.Type)
		}
		out = append(out, b.Bytes)
	}
}

// readSmall reads a key file, refusing one too large to be a key file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	return data, nil
}

// LoadSigner reads the signing identity in dir without changing anything:
// signing.key must be private to its owner, and signing.pub and cosign.pub
// must exist and hold its public keys.
func LoadSigner(dir string) (*Signer, error) {
	return loadSigner(dir, false)
}

// LoadOrCreateSigner returns the signing identity in dir, creating it (and
// dir, mode 0700) when signing.key does not exist; created reports that.
//
// An existing key is never replaced: the participants pinned its public
// keys, and a new key would make every one of them refuse the next
// manifest. So when signing.key exists, LoadOrCreateSigner checks it as
// [LoadSigner] does, except that it re-creates a missing signing.pub or
// cosign.pub from the key (a crash between writing the key and the public
// files leaves that state); a public file that exists but holds other keys
// is an error, never overwritten.
func LoadOrCreateSigner(dir string) (s *Signer, created bool, err error) {
	keyPath := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		s, err := loadSigner(dir, true)
		return s, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("manifest: signing key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("manifest: create signing directory: %w", err)
	}
	s, err = GenerateSigner(nil)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := s.marshalPrivateKeys()
	if err != nil {
		return nil, false, err
	}
	// The key goes first, with a write that refuses to overwrite: if two
	// processes race, one fails here instead of both publishing keys.
	if err := certs.WritePrivateKey(keyPath, keyPEM); err != nil {
		return nil, false, fmt.Errorf("manifest: %w", err)
	}
	if err := writePublicFiles(dir, s.public, false); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// loadSigner reads signing.key and checks the public files against it,
// writing missing ones if repair is set.
func loadSigner(dir string, repair bool) (*Signer, error) {
	s, err := loadPrivate(filepath.Join(dir, KeyFile), "signing key", parsePrivateKeys)
	if err != nil {
		return nil, err
	}
	if err := writePublicFiles(dir, s.public, !repair); err != nil {
		return nil, err
	}
	return s, nil
}

// loadPrivate reads the private key file path, refusing it if others than
// its owner may access it, and parses it; what names the key in errors.
func loadPrivate[K any](path, what string, parse func([]byte) (K, error)) (K, error) {
	if err := checkPrivate(path); err != nil {
		var zero K
		return zero, err
	}
	return readParsed(path, parse, "manifest: load "+what+": %w", "manifest: %s: %w")
}

// checkPrivate refuses a key file that others than its owner may access.
// It follows symbolic links (secret volumes are often mounted through
// them) and checks the file they lead to. Windows has no such mode bits;
// there the directory's ACL protects the key.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("manifest: signing key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("manifest: signing key %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("manifest: signing key %s has mode %04o: it must not be accessible by group or others (chmod 600 it)", path, fi.Mode().Perm())
	}
	return nil
}

// writePublicFiles makes sure signing.pub and cosign.pub hold pub: a file
// that exists must match, a missing one is written unless checkOnly is set.
func writePublicFiles(dir string, pub PublicKeys, checkOnly bool) error {
	for _, f := range []struct {
		name string
		want []byte
		// match parses the file and reports whether it holds pub.
		match func([]byte) (bool, error)
	}{
		{PublicFile, pub.MarshalPEM(), func(data []byte) (bool, error) {
			got, err := parsePublicKeys(data)
			return err == nil && got.Equal(pub), err
		}},
		{CosignPublicFile, pub.cosignPEM(), func(data []byte) (bool, error) {
			got, err := parseCosignPublic(data)
			return err == nil && got.Equal(pub.Ed25519), err
		}},
	} {
		path := filepath.Join(dir, f.name)
		data, err := readSmall(path)
		switch {
		case err == nil:
			ok, err := f.match(data)
			if err != nil {
				return fmt.Errorf("manifest: %s: %w", path, err)
			}
			if !ok {
				return fmt.Errorf("manifest: %s does not hold the public key of %s (%s): restore the original files; never replace the key of a running federation",
					path, KeyFile, pub.Fingerprint())
			}
		case errors.Is(err, fs.ErrNotExist) && !checkOnly:
			if err := certs.WriteFileAtomic(path, f.want, 0o644); err != nil {
				return fmt.Errorf("manifest: %w", err)
			}
		default:
			return fmt.Errorf("manifest: public key file: %w", err)
		}
	}
	return nil
}

// parseCosignPublic parses cosign.pub: one PKIX Ed25519 "PUBLIC KEY" block.
func parseCosignPublic(data []byte) (ed25519.PublicKey, error) {
	blocks, err := decodePEM(data, pemEd25519Public)
	if err != nil {
		return nil, err
	}
	return parseEd25519PKIX(blocks[0])
}

// parseEd25519PKIX parses the contents of a "PUBLIC KEY" block that must
// hold an Ed25519 key.
func parseEd25519PKIX(der []byte) (ed25519.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s block: %w", pemEd25519Public, err)
	}
	edPub, ok := pub.(stded25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s block holds a %T key, want Ed25519", pemEd25519Public, pub)
	}
	return ed25519.PublicKey(edPub), nil
}
