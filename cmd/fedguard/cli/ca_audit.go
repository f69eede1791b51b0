package cli

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
)

// The CA keeps its own audit log, beside its key: every certificate it
// issues and every revocation is appended, and a checkpoint signed, before
// the command reports success and the certificate is handed out. It is a
// separate log from the coordinator's because the CA is a separate
// authority, often on a separate, offline machine; the compliance officer
// verifies it the same way, with the key in CA_DIR/audit/signing.pub.

// caAuditDir holds a CA's audit log (audit.db) and the keys that sign its
// checkpoints (signing.key, signing.pub, as package manifest names them).
func caAuditDir(caDir string) string { return filepath.Join(caDir, "audit") }

// caAuditOrigin is the checkpoint origin of a federation CA's log.
func caAuditOrigin(federation string) string { return "fedguard/" + federation + "/ca" }

// recordCA appends entries to the CA's audit log (made on first use) and
// signs a checkpoint covering them.
func recordCA(caDir, federation string, entries ...audit.Entry) (err error) {
	dir := caAuditDir(caDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("CA audit log: %w", err)
	}
	signer, _, err := manifest.LoadOrCreateSigner(dir)
	if err != nil {
		return fmt.Errorf("CA audit log: %w", err)
	}
	origin := caAuditOrigin(federation)
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

// issuedEntry is the audit entry of a certificate the CA just issued, with
// the certificate and its identity.
func issuedEntry(certPEM []byte) (audit.Entry, *x509.Certificate, certs.Identity, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return audit.Entry{}, nil, certs.Identity{}, errors.New("issued certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return audit.Entry{}, nil, certs.Identity{}, fmt.Errorf("issued certificate: %w", err)
	}
	id, err := certs.ParseIdentity(cert)
	if err != nil {
		return audit.Entry{}, nil, certs.Identity{}, fmt.Errorf("issued certificate: %w", err)
	}
	fp := sha256.Sum256(cert.Raw)
	return audit.Entry{Kind: audit.KindCertificateIssued, Actor: audit.ActorCA, Payload: audit.CertificateIssued{
		Identity: id.URI(), Serial: caSerial(cert.SerialNumber), SHA256: hex.EncodeToString(fp[:]),
		NotBefore: cert.NotBefore.UTC().Format(time.RFC3339), NotAfter: cert.NotAfter.UTC().Format(time.RFC3339),
	}}, cert, id, nil
}

// revokedEntries are the audit entries of serials the CA just revoked.
func revokedEntries(serials []*big.Int, identity map[string]string) []audit.Entry {
	at := time.Now().UTC().Format(time.RFC3339)
	out := make([]audit.Entry, len(serials))
	for i, s := range serials {
		out[i] = audit.Entry{Kind: audit.KindCertificateRevoked, Actor: audit.ActorCA, Payload: audit.CertificateRevoked{
			Serial: caSerial(s), RevokedAt: at, Identity: identity[s.Text(16)],
		}}
	}
	return out
}
