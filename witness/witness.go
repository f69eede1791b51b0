// Package witness lets a hospital vouch for the audit history it has seen,
// so that a coordinator (or anyone holding its audit database) cannot later
// present a shorter or different history as the whole one.
//
// Every round manifest a hospital's agent accepts carries the coordinator's
// signed audit checkpoint: the size and Merkle root of the audit log when
// the round closed. The agent keeps the last one in its state file. A
// witness is that checkpoint countersigned by the hospital: [Sign] adds the
// hospital's signature to the coordinator's signed note, and the result is
// written, with the hospital's certificate, as a witness file. An auditor
// then checks an audit export against any number of witnesses
// (`fedguard audit verify --witness FILE…`): the export must extend every
// witnessed tree, which a consistency proof (golang.org/x/mod/sumdb/tlog)
// decides. An export cut back to an earlier checkpoint is shorter than the
// witnessed tree and fails; a forked export has another root at the
// witnessed size and fails; either failure names the hospital whose
// witness refutes it.
//
// # Key choice
//
// The hospital signs with the private key of its mTLS certificate (ECDSA
// P-256, made at the hospital and never sent anywhere; see package certs).
// No second key has to be made, kept or distributed: the verifier takes
// the public key from the certificate embedded in the witness file, after
// checking that the federation's CA issued it for a participant of this
// federation. The signature is a signed-note signature of type 0x02
// (c2sp.org/signed-note: ECDSA as implemented by
// github.com/transparency-dev/witness): an ASN.1 ECDSA signature over the
// SHA-256 of the note text, under the key name FEDERATION/participant/NAME,
// with key ID the first four bytes of the SHA-256 of the key's DER
// SubjectPublicKeyInfo. Any signed-note reader that knows the key can
// check it; x/mod's note package carries it through its Signer and
// Verifier interfaces.
//
// Using the TLS key for a second purpose is safe here because the two uses
// sign disjoint messages: TLS 1.3 CertificateVerify signs a context string
// that begins with 64 spaces, and a checkpoint note begins with the log's
// origin, which contains no space.
//
// # Wire format
//
// A witness file is one JSON object (at most [MaxFileSize] bytes):
//
//	{"format": "fedguard-witness/v1",
//	 "witness": "hospital-a",
//	 "round": 7,
//	 "certificate": "-----BEGIN CERTIFICATE-----\n…",
//	 "checkpoint": "ORIGIN\n42\nROOT\n\n— ORIGIN SIG\n— FED/participant/hospital-a SIG\n"}
//
// checkpoint is a C2SP tlog-checkpoint signed by the coordinator and
// cosigned by the hospital. witness and round are labels for people: the
// witness's name is taken from the verified certificate and must equal the
// label, and round (the manifest that carried the checkpoint) is not
// signed and plays no part in verification. Unknown fields are refused;
// a change of meaning needs a new format string.
package witness

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// Format is the format string of a witness file.
const Format = "fedguard-witness/v1"

// Bounds on a witness file, checked before anything is decoded: a
// certificate is about 700 bytes of PEM and a checkpoint with two
// signatures about 300 bytes.
const (
	// MaxFileSize bounds a whole witness file.
	MaxFileSize = 64 << 10
	// MaxCheckpointSize bounds the signed checkpoint note.
	MaxCheckpointSize = 16 << 10
)

// Errors of [Parse] and [Verify], to test with errors.Is.
var (
	// ErrMalformed: the file is not a witness file of this format.
	ErrMalformed = errors.New("witness: malformed")
	// ErrCertificate: the embedded certificate is not a participant
	// certificate of the federation's CA, or does not match the name.
	ErrCertificate = errors.New("witness: certificate not trusted")
	// ErrSignature: the checkpoint is not signed by both the coordinator
	// and the witness's certificate key.
	ErrSignature = errors.New("witness: bad signature")
)

// File is a witness file as written and parsed, before verification.
type File struct {
	Format      string `json:"format"`
	Witness     string `json:"witness"`
	Round       uint64 `json:"round"`
	Certificate string `json:"certificate"`
	Checkpoint  string `json:"checkpoint"`
}

// Parse decodes a witness file and checks its shape: size, fields, one
// PEM certificate, and a checkpoint note of printable UTF-8. It verifies
// nothing; see [Verify].
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxFileSize)
	}
	var f File
	if err := strictjson.Unmarshal(data, &f); errors.Is(err, strictjson.ErrTrailing) {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("%w: format %.64q, want %q", ErrMalformed, f.Format, Format)
	}
	if err := certs.ValidateName(f.Witness); err != nil {
		return nil, fmt.Errorf("%w: witness: %v", ErrMalformed, err)
	}
	if _, err := f.cert(); err != nil {
		return nil, err
	}
	if len(f.Checkpoint) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: checkpoint is %d bytes, more than %d", ErrMalformed, len(f.Checkpoint), MaxCheckpointSize)
	}
	if !utf8.ValidString(f.Checkpoint) || strings.IndexFunc(f.Checkpoint, func(r rune) bool { return r < 0x20 && r != '\n' }) >= 0 {
		return nil, fmt.Errorf("%w: checkpoint is not printable UTF-8", ErrMalformed)
	}
	if !strings.Contains(f.Checkpoint, "\n\n") || !strings.HasSuffix(f.Checkpoint, "\n") {
		return nil, fmt.Errorf("%w: checkpoint is not a signed note", ErrMalformed)
	}
	return &f, nil
}

// Marshal encodes f as a witness file, one JSON object and a newline.
func (f *File) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	return append(b, '\n'), nil
}

// cert decodes the one PEM certificate of f.
func (f *File) cert() (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(f.Certificate))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: certificate is not one PEM CERTIFICATE block", ErrMalformed)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	return c, nil
}

// KeyName is the signed-note key name of a participant's witness key.
func KeyName(id certs.Identity) string {
	return id.Federation + "/" + id.Role + "/" + id.Name
}

// Sign countersigns checkpoint, a signed audit checkpoint, for the
// participant holding cert and key, and returns the witness file. The
// checkpoint must verify under log (the coordinator's key, which the
// hospital pinned) so that a hospital never vouches for a tree the
// coordinator did not sign. round labels the manifest that carried it.
func Sign(checkpoint []byte, log note.Verifiers, round uint64, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if id.Role != certs.RoleParticipant {
		return nil, fmt.Errorf("witness: %s is not a participant certificate", id)
	}
	if _, err := audit.OpenCheckpoint(checkpoint, log); err != nil {
		return nil, fmt.Errorf("witness: the checkpoint does not verify under the coordinator's key: %w", err)
	}
	s, err := newSigner(KeyName(id), cert, key)
	if err != nil {
		return nil, err
	}
	n, err := note.Open(checkpoint, log)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	// Keep every signature the coordinator made, verified or not, so the
	// witnessed note is the coordinator's note plus one line.
	n.Sigs = append(n.Sigs, n.UnverifiedSigs...)
	n.UnverifiedSigs = nil
	signed, err := note.Sign(n, s)
	if err != nil {
		return nil, fmt.Errorf("witness: sign: %w", err)
	}
	f := File{
		Format:      Format,
		Witness:     id.Name,
		Round:       round,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		Checkpoint:  string(signed),
	}
	return f.Marshal()
}

// VerifyOptions configure [Verify].
type VerifyOptions struct {
	// CA is the federation's CA certificate: only participant
	// certificates it issued are accepted. Required.
	CA *x509.Certificate
	// Log verifies the coordinator's checkpoint signature. Required.
	Log note.Verifiers
	// Now is the time the certificate must be valid at; zero means now.
	Now time.Time
}

// Verified is a witness that [Verify] accepted.
type Verified struct {
	// Witness is the participant who signed, from its certificate.
	Witness certs.Identity
	// Round is the file's unsigned label of the manifest round.
	Round uint64
	// Checkpoint is the witnessed checkpoint, signed by the coordinator.
	Checkpoint audit.Checkpoint
}

// Verify parses a witness file and checks it: the certificate chains to
// opts.CA, names a participant of the CA's federation and the file's
// witness, and its key signed the checkpoint; the coordinator signed it
// too. Errors wrap [ErrMalformed], [ErrCertificate] or [ErrSignature].
func Verify(data []byte, opts VerifyOptions) (Verified, error) {
	if opts.CA == nil || opts.Log == nil {
		return Verified{}, errors.New("witness: VerifyOptions needs CA and Log")
	}
	f, err := Parse(data)
	if err != nil {
		return Verified{}, err
	}
	cert, err := f.cert()
	if err != nil {
		return Verified{}, err
	}
	id, err := verifyCert(cert, opts)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s: %v", ErrCertificate, f.Witness, err)
	}
	if id.Name != f.Witness {
		return Verified{}, fmt.Errorf("%w: the file names witness %q, its certificate is %s's", ErrCertificate, f.Witness, id.Name)
	}
	v, err := newVerifier(KeyName(id), cert.PublicKey)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s: %v", ErrCertificate, f.Witness, err)
	}
	msg := []byte(f.Checkpoint)
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s: the checkpoint has no valid signature by the key of %s's certificate: %v", ErrSignature, f.Witness, id.Name, err)
	}
	if len(n.Sigs) != 1 {
		return Verified{}, fmt.Errorf("%w: %s: %d signatures by the witness's key", ErrSignature, f.Witness, len(n.Sigs))
	}
	cp, err := audit.OpenCheckpoint(msg, opts.Log)
	if err != nil {
		return Verified{}, fmt.Errorf("%w: %s: the witnessed checkpoint is not the coordinator's: %v", ErrSignature, f.Witness, err)
	}
	return Verified{Witness: id, Round: f.Round, Checkpoint: cp}, nil
}

// verifyCert checks that cert is a participant certificate issued by
// opts.CA for the CA's federation, valid at opts.Now.
func verifyCert(cert *x509.Certificate, opts VerifyOptions) (certs.Identity, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	roots := x509.NewCertPool()
	roots.AddCert(opts.CA)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return certs.Identity{}, fmt.Errorf("not issued by the federation's CA (%s): %v", opts.CA.Subject, err)
	}
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		return certs.Identity{}, err
	}
	if id.Role != certs.RoleParticipant {
		return certs.Identity{}, fmt.Errorf("%s is not a participant", id)
	}
	if fed := federationOf(opts.CA); fed != "" && id.Federation != fed {
		return certs.Identity{}, fmt.Errorf("%s is not of the CA's federation %q", id, fed)
	}
	return id, nil
}

// federationOf returns the federation a CA certificate names in its one
// spiffe://FEDERATION URI, or "".
func federationOf(ca *x509.Certificate) string {
	if len(ca.URIs) != 1 || ca.URIs[0].Scheme != "spiffe" {
		return ""
	}
	return ca.URIs[0].Host
}

// ecdsaKey is a P-256 public key in note form: its key ID and DER SPKI.
type ecdsaKey struct {
	name string
	hash uint32
	pub  *ecdsa.PublicKey
}

func newECDSAKey(name string, pub crypto.PublicKey) (ecdsaKey, error) {
	p, ok := pub.(*ecdsa.PublicKey)
	if !ok || p.Curve != elliptic.P256() {
		return ecdsaKey{}, fmt.Errorf("the key is %T, not ECDSA P-256", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(p)
	if err != nil {
		return ecdsaKey{}, err
	}
	sum := sha256.Sum256(der)
	return ecdsaKey{name: name, hash: binary.BigEndian.Uint32(sum[:4]), pub: p}, nil
}

func (k ecdsaKey) Name() string    { return k.name }
func (k ecdsaKey) KeyHash() uint32 { return k.hash }

// verifier is a note.Verifier of ECDSA P-256 signatures (type 0x02).
type verifier struct{ ecdsaKey }

var _ note.Verifier = verifier{}

func newVerifier(name string, pub crypto.PublicKey) (verifier, error) {
	k, err := newECDSAKey(name, pub)
	return verifier{k}, err
}

func (v verifier) Verify(msg, sig []byte) bool {
	sum := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, sum[:], sig)
}

// signer is a note.Signer with a participant's ECDSA P-256 key.
type signer struct {
	ecdsaKey
	key crypto.Signer
}

var _ note.Signer = signer{}

// newSigner makes the note signer of key, which must be the private key
// of cert.
func newSigner(name string, cert *x509.Certificate, key crypto.Signer) (signer, error) {
	k, err := newECDSAKey(name, key.Public())
	if err != nil {
		return signer{}, fmt.Errorf("witness: %w", err)
	}
	if p, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !p.Equal(k.pub) {
		return signer{}, errors.New("witness: the private key is not the certificate's")
	}
	return signer{k, key}, nil
}

func (s signer) Sign(msg []byte) ([]byte, error) {
	sum := sha256.Sum256(msg)
	return s.key.Sign(rand.Reader, sum[:], crypto.SHA256)
}
