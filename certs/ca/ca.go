// Package ca runs the federation CA the way its operator does: every
// certificate a [certs.Authority] issues and every revocation is first
// appended to the CA's own audit log, and a checkpoint signed, before the
// call returns and the certificate is handed out. `fedguard ca` is a thin
// layer over this package.
//
// The CA's log is a separate log from the coordinator's because the CA is a
// separate authority, often on a separate, offline machine; the compliance
// officer verifies it the same way (`fedguard audit verify`), with the key
// in CA_DIR/audit/signing.pub.
//
// # Files
//
// Beside the files of [certs.Authority], the CA directory holds:
//
//	audit/audit.db      the CA's audit log (package audit), origin "fedguard/FEDERATION/ca"
//	audit/signing.key   the keys that sign its checkpoints (package manifest's names)
//	audit/signing.pub
//
// # Audit rules
//
// An issued certificate is one [audit.KindCertificateIssued] event (its
// identity, serial in hex, SHA-256 of the DER and validity, in RFC 3339),
// appended before the certificate file is written. A revocation is one
// [audit.KindCertificateRevoked] event per serial newly revoked, with the
// identity issued.jsonl names for it; revoking a revoked serial again
// records nothing. Both kinds are entries of actor [audit.ActorCA].
//
// # Where the log comes from
//
// [Init] is the only place a CA's log is made. [Open] refuses a CA whose
// log or log key is missing ([ErrNoAuditLog]) and nothing ever re-creates
// them, because a missing log cannot be told apart from a lost one: making
// a new, empty log then would start a second history that verifies and
// hides what the first recorded. A CA made by a fedguard older than the
// CA log is migrated once, explicitly, by [InitAudit] (`fedguard ca
// init-audit`), which refuses a CA that has any of its audit directory.
package ca

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
)

// now is the clock of revocation times in the audit log.
var now = time.Now

// ErrForeign is returned by RevokeCertificate for a certificate that does
// not carry this CA's signature.
var ErrForeign = errors.New("was not issued by this CA")

// AuditDir is the directory of a CA's audit log (audit.db) and of the keys
// that sign its checkpoints (signing.key, signing.pub, as package manifest
// names them).
func AuditDir(caDir string) string { return filepath.Join(caDir, "audit") }

// AuditOrigin is the checkpoint origin of a federation CA's log.
func AuditOrigin(federation string) string { return "fedguard/" + federation + "/ca" }

// Authority is a federation CA whose every issuance and revocation is
// audited. It offers only the audited operations; the underlying
// [certs.Authority] is not exposed, so nothing issues around the log.
type Authority struct {
	dir string
	a   *certs.Authority
}

// Init creates a new federation CA in dir (see [certs.Init]) and its audit
// log, with a fresh checkpoint-signing key.
func Init(dir, federation string, validity time.Duration) (*Authority, error) {
	a, err := certs.Init(dir, federation, validity)
	return startLog(dir, a, err)
}

// InitWithKey is [Init] with the CA key kept elsewhere, such as on a
// PKCS #11 token (package keystore; see [certs.InitWithKey]).
func InitWithKey(dir, federation string, validity time.Duration, key crypto.Signer) (*Authority, error) {
	a, err := certs.InitWithKey(dir, federation, validity, key)
	return startLog(dir, a, err)
}

// startLog completes an Init that returned a and err: it starts the new
// CA's audit log.
func startLog(dir string, a *certs.Authority, err error) (*Authority, error) {
	if err != nil {
		return nil, err
	}
	c := &Authority{dir: dir, a: a}
	if err := c.appendLog(true); err != nil {
		return nil, err
	}
	return c, nil
}

// ErrNoAuditLog reports a CA directory without its audit log or the key
// that signs the log's checkpoints. Nothing is issued or revoked without
// the log, and the log is never re-created implicitly (see the package
// doc); the error says whether [InitAudit] or a backup is the way out.
var ErrNoAuditLog = errors.New("the CA has no audit log")

// Open opens the CA in dir. It refuses a CA without its audit log
// ([ErrNoAuditLog]): one made by an older fedguard is migrated with
// [InitAudit], a lost log is restored from a backup.
func Open(dir string) (*Authority, error) {
	a, err := certs.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := checkAudit(dir); err != nil {
		return nil, err
	}
	return &Authority{dir: dir, a: a}, nil
}

// OpenWithKey is [Open] for a CA made by [InitWithKey], with the same key.
func OpenWithKey(dir string, key crypto.Signer) (*Authority, error) {
	a, err := certs.OpenWithKey(dir, key)
	if err != nil {
		return nil, err
	}
	if err := checkAudit(dir); err != nil {
		return nil, err
	}
	return &Authority{dir: dir, a: a}, nil
}

// InitAudit starts the audit log of an existing CA that never had one (a
// CA made by a fedguard older than the CA log): the one-time, explicit
// migration. It refuses a CA whose audit directory exists at all, since
// then the log was lost or damaged and only a backup restores it. The log
// starts empty: certificates issued before stay in issued.jsonl (`fedguard
// ca list`), not in the log.
func InitAudit(dir string) (*Authority, error) {
	a, err := certs.Open(dir)
	if err != nil {
		return nil, err
	}
	return startMigrated(dir, a)
}

// InitAuditWithKey is [InitAudit] for a CA whose key is kept elsewhere (see
// [OpenWithKey]).
func InitAuditWithKey(dir string, key crypto.Signer) (*Authority, error) {
	a, err := certs.OpenWithKey(dir, key)
	if err != nil {
		return nil, err
	}
	return startMigrated(dir, a)
}

func startMigrated(dir string, a *certs.Authority) (*Authority, error) {
	adir := AuditDir(dir)
	switch _, err := os.Lstat(adir); {
	case err == nil:
		if cerr := checkAudit(dir); cerr == nil {
			return nil, fmt.Errorf("CA audit log: %s already holds this CA's audit log; init-audit only starts the log of a CA that never had one", adir)
		}
		return nil, fmt.Errorf("CA audit log: %s exists but is incomplete: the log or its key was lost, and a new log would hide what the old one recorded; restore %s from a backup", adir, adir)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("CA audit log: %w", err)
	}
	return startLog(dir, a, nil)
}

// checkAudit makes sure the CA in dir has its audit log and the key that
// signs the log's checkpoints, and says what to do when not.
func checkAudit(dir string) error {
	adir := AuditDir(dir)
	switch _, err := os.Lstat(adir); {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist. A CA made by a fedguard older than the CA audit log has none: run `fedguard ca init-audit --dir %s` once to start it. If this CA had a log, restore %s from a backup instead: a new log would hide what the old one recorded", ErrNoAuditLog, adir, dir, adir)
	case err != nil:
		return fmt.Errorf("CA audit log: %w", err)
	}
	for _, p := range []string{filepath.Join(adir, "audit.db"), filepath.Join(adir, manifest.KeyFile)} {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("%w: %s is missing: the log or its key was lost; restore %s from a backup (a new one would start a second history)", ErrNoAuditLog, p, adir)
		case err != nil:
			return fmt.Errorf("CA audit log: %w", err)
		case fi.Size() == 0:
			return fmt.Errorf("%w: %s is empty (0 bytes): the file was lost; restore %s from a backup (a new one would start a second history)", ErrNoAuditLog, p, adir)
		}
	}
	return nil
}

// Federation is the CA's federation name.
func (c *Authority) Federation() string { return c.a.Federation() }

// Certificate is the CA certificate.
func (c *Authority) Certificate() *x509.Certificate { return c.a.Certificate() }

// Issued lists the certificates the CA issued (see [certs.Authority.Issued]).
func (c *Authority) Issued() ([]certs.IssuedCert, error) { return c.a.Issued() }

// IssueServer issues the coordinator's server certificate for hosts,
// records it in the audit log, then writes its private key to keyFile
// (0600) and the certificate to certFile. keyFile must not exist, and the
// directories of both must take a new file: they are checked before
// anything is issued, so a refusal (a [*KeyFileError] or an
// [*OutputFileError]) leaves no orphan certificate in issued.jsonl.
func (c *Authority) IssueServer(hosts []string, validity time.Duration, certFile, keyFile string) (*x509.Certificate, certs.Identity, error) {
	if err := refuseExisting(keyFile); err != nil {
		return nil, certs.Identity{}, err
	}
	if err := checkOutputs(keyFile, certFile); err != nil {
		return nil, certs.Identity{}, err
	}
	certPEM, keyPEM, err := c.a.IssueServer(hosts, validity)
	if err != nil {
		return nil, certs.Identity{}, err
	}
	cert, id, err := c.recordIssued(certPEM)
	if err != nil {
		return nil, certs.Identity{}, err
	}
	if err := certs.WritePrivateKey(keyFile, keyPEM); err != nil {
		return nil, certs.Identity{}, err
	}
	if err := certs.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, certs.Identity{}, err
	}
	return cert, id, nil
}

// Sign signs a participant's CSR (see [certs.Authority.Sign]), records the
// certificate in the audit log, then writes it to certFile. A CSR or
// validity the CA refuses is a [*RequestError], and a certFile whose
// directory cannot take it an [*OutputFileError]: nothing was issued.
func (c *Authority) Sign(csrPEM []byte, validity time.Duration, certFile string) (*x509.Certificate, certs.Identity, error) {
	if err := checkOutputs(certFile); err != nil {
		return nil, certs.Identity{}, err
	}
	certPEM, err := c.a.Sign(csrPEM, validity)
	if err != nil {
		return nil, certs.Identity{}, &RequestError{Err: err}
	}
	cert, id, err := c.recordIssued(certPEM)
	if err != nil {
		return nil, certs.Identity{}, err
	}
	if err := certs.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, certs.Identity{}, err
	}
	return cert, id, nil
}

// Revoked is a serial a revocation call names, with the identity
// issued.jsonl records for it ("" when issued.jsonl does not list it).
type Revoked struct {
	Serial   *big.Int
	Identity string
}

// Revoke revokes serial (see [certs.Authority.Revoke]) and records it.
// already reports that it was revoked before: nothing is changed or
// recorded then.
func (c *Authority) Revoke(serial *big.Int) (r Revoked, already bool, err error) {
	return c.revokeOne(serial, func() error { return c.a.Revoke(serial) })
}

// RevokeCertificate revokes cert, which must carry this CA's signature
// ([ErrForeign] otherwise), and records it, as Revoke does.
func (c *Authority) RevokeCertificate(cert *x509.Certificate) (r Revoked, already bool, err error) {
	if err := cert.CheckSignatureFrom(c.a.Certificate()); err != nil {
		return Revoked{}, false, fmt.Errorf("%w: %w", ErrForeign, err)
	}
	return c.revokeOne(cert.SerialNumber, func() error { return c.a.RevokeCertificate(cert) })
}

// RevokeName revokes every certificate issued to participant name (see
// [certs.Authority.RevokeName]) and records the serials it newly revoked,
// which it returns: none when all were revoked already.
func (c *Authority) RevokeName(name string) ([]Revoked, error) {
	identity, err := c.identities()
	if err != nil {
		return nil, err
	}
	serials, err := c.a.RevokeName(name)
	if err != nil {
		return nil, err
	}
	out := make([]Revoked, len(serials))
	for i, s := range serials {
		out[i] = Revoked{Serial: s, Identity: identity[s.Text(16)].identity}
	}
	if err := c.record(revokedEntries(out)...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Authority) revokeOne(serial *big.Int, revoke func() error) (Revoked, bool, error) {
	identity, err := c.identities()
	if err != nil {
		return Revoked{}, false, err
	}
	rec := identity[serial.Text(16)]
	r := Revoked{Serial: serial, Identity: rec.identity}
	if rec.revoked {
		return r, true, nil
	}
	if err := revoke(); err != nil {
		return Revoked{}, false, err
	}
	if err := c.record(revokedEntries([]Revoked{r})...); err != nil {
		return Revoked{}, false, err
	}
	return r, false, nil
}

type issuedState struct {
	identity string
	revoked  bool
}

// identities maps the serials of issued.jsonl (hex) to their identity and
// revocation state.
func (c *Authority) identities() (map[string]issuedState, error) {
	issued, err := c.a.Issued()
	if err != nil {
		return nil, err
	}
	out := make(map[string]issuedState, len(issued))
	for _, r := range issued {
		out[r.Serial] = issuedState{identity: r.Identity, revoked: r.Revoked}
	}
	return out, nil
}

// recordIssued appends the issuance of certPEM to the audit log and returns
// the certificate and its identity.
func (c *Authority) recordIssued(certPEM []byte) (*x509.Certificate, certs.Identity, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, certs.Identity{}, errors.New("issued certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, certs.Identity{}, fmt.Errorf("issued certificate: %w", err)
	}
	e, id, err := IssuedEntry(cert)
	if err != nil {
		return nil, certs.Identity{}, err
	}
	if err := c.record(e); err != nil {
		return nil, certs.Identity{}, err
	}
	return cert, id, nil
}

// record appends entries to the CA's audit log and signs a checkpoint
// covering them. The log must exist: it is checked again here, so that a
// log removed since Open is refused, not re-created.
func (c *Authority) record(entries ...audit.Entry) error {
	if err := checkAudit(c.dir); err != nil {
		return err
	}
	return c.appendLog(false, entries...)
}

// appendLog appends entries to the CA's audit log; create makes the log
// and its key (Init and InitAudit only).
func (c *Authority) appendLog(create bool, entries ...audit.Entry) (err error) {
	dir := AuditDir(c.dir)
	var signer *manifest.Signer
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("CA audit log: %w", err)
		}
		signer, _, err = manifest.LoadOrCreateSigner(dir)
	} else {
		signer, err = manifest.LoadSigner(dir)
	}
	if err != nil {
		return fmt.Errorf("CA audit log: %w", err)
	}
	origin := AuditOrigin(c.a.Federation())
	ns, err := signer.NoteSigner(origin)
	if err != nil {
		return fmt.Errorf("CA audit log: %w", err)
	}
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{Origin: origin, Signer: ns})
	if err != nil {
		return fmt.Errorf("CA audit log: %w", err)
	}
	defer func() { err = errors.Join(err, l.Close()) }()
	if len(entries) > 0 {
		if _, err := l.Append(context.Background(), entries...); err != nil {
			return fmt.Errorf("CA audit log: %w", err)
		}
		if _, err := l.Checkpoint(); err != nil {
			return fmt.Errorf("CA audit log: %w", err)
		}
	}
	return nil
}

// IssuedEntry is the audit entry of a certificate the CA issued, with the
// certificate's identity.
func IssuedEntry(cert *x509.Certificate) (audit.Entry, certs.Identity, error) {
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		return audit.Entry{}, certs.Identity{}, fmt.Errorf("issued certificate: %w", err)
	}
	fp := sha256.Sum256(cert.Raw)
	return audit.Entry{Kind: audit.KindCertificateIssued, Actor: audit.ActorCA, Payload: audit.CertificateIssued{
		Identity: id.URI(), Serial: cert.SerialNumber.Text(16), SHA256: hex.EncodeToString(fp[:]),
		NotBefore: cert.NotBefore.UTC().Format(time.RFC3339), NotAfter: cert.NotAfter.UTC().Format(time.RFC3339),
	}}, id, nil
}

// revokedEntries are the audit entries of serials the CA just revoked.
func revokedEntries(rs []Revoked) []audit.Entry {
	at := now().UTC().Format(time.RFC3339)
	out := make([]audit.Entry, len(rs))
	for i, r := range rs {
		out[i] = audit.Entry{Kind: audit.KindCertificateRevoked, Actor: audit.ActorCA, Payload: audit.CertificateRevoked{
			Serial: r.Serial.Text(16), RevokedAt: at, Identity: r.Identity,
		}}
	}
	return out
}

// KeyFileError is a refusal to write a private key file, before anything
// was issued: the file exists (errors.Is(err, fs.ErrExist)), since a
// private key is never overwritten, or it cannot be checked.
type KeyFileError struct {
	Path string
	Err  error
}

func (e *KeyFileError) Error() string {
	if errors.Is(e.Err, fs.ErrExist) {
		return e.Path + " already exists, refusing to overwrite a private key"
	}
	return e.Err.Error()
}

func (e *KeyFileError) Unwrap() error { return e.Err }

// OutputFileError is a file the CA would write what it issues to (a
// certificate, the server's key) whose directory cannot take it: checked
// before anything is issued, so that no certificate is recorded that
// nobody holds.
type OutputFileError struct {
	Path string
	Err  error
}

func (e *OutputFileError) Error() string {
	return "cannot write " + e.Path + " (nothing was issued): " + e.Err.Error()
}

func (e *OutputFileError) Unwrap() error { return e.Err }

// checkOutputs makes sure each path's directory exists and takes a new
// file, by creating and removing one there (the way the atomic writes
// that follow will). A path that exists and is neither a regular file nor
// a directory (a pipe, /dev/stdout) is not probed: certs.WritesThrough
// it, and its directory need not take files.
func checkOutputs(paths ...string) error {
	for _, p := range paths {
		if certs.WritesThrough(p) {
			continue
		}
		f, err := os.CreateTemp(filepath.Dir(p), ".fedguard-ca-probe-*")
		if err != nil {
			return &OutputFileError{Path: p, Err: err}
		}
		name := f.Name()
		err = errors.Join(f.Close(), os.Remove(name))
		if err != nil {
			return &OutputFileError{Path: p, Err: err}
		}
	}
	return nil
}

// RequestError is a signing request the CA refused (a bad CSR, a bad
// validity), as opposed to a failure to record or write what it issued.
type RequestError struct{ Err error }

func (e *RequestError) Error() string { return e.Err.Error() }

func (e *RequestError) Unwrap() error { return e.Err }

// refuseExisting fails with a *KeyFileError unless path does not exist.
func refuseExisting(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return &KeyFileError{Path: path, Err: fs.ErrExist}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return &KeyFileError{Path: path, Err: err}
	}
	return nil
}
