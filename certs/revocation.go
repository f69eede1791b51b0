package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedguard/fedguard/internal/strictjson"
)

// RevocationList is the coordinator's view of crl.pem. It only ever accepts
// a CRL signed by the CA whose number is not lower than the one it holds, so
// a corrupt, forged or rolled-back file can never clear a revocation. It is
// safe for concurrent use; a nil *RevocationList revokes nothing.
type RevocationList struct {
	path string
	cas  []*x509.Certificate

	mu      sync.RWMutex
	serials map[string]time.Time // revocation time by serial (hex)
	number  *big.Int
	hash    [sha256.Size]byte
}

// NewRevocationList loads the CRL at path, verified against ca (or, during
// a CA rotation's overlap, one of more). A missing file is an error, so a
// mistyped path does not silently disable revocation; path == ""
// explicitly means nothing is ever revoked.
func NewRevocationList(path string, ca *x509.Certificate, more ...*x509.Certificate) (*RevocationList, error) {
	if ca == nil {
		return nil, errors.New("certs: revocation list: no CA certificate")
	}
	r := &RevocationList{path: path, cas: append([]*x509.Certificate{ca}, more...), serials: map[string]time.Time{}}
	if path == "" {
		return r, nil
	}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the file again and reports whether the list changed. On any
// error the previous list stays in force: an unreadable, corrupt, wrongly
// signed or older CRL is reported, never applied.
func (r *RevocationList) Reload() (changed bool, err error) {
	if r == nil || r.path == "" {
		return false, nil
	}
	r.mu.RLock()
	first, loaded := r.number == nil, r.hash
	r.mu.RUnlock()
	data, err := strictjson.ReadFile(r.path, MaxCRLFileSize)
	if err != nil {
		if first { // NewRevocationList: there is no previous list to keep
			return false, fmt.Errorf("certs: load CRL: %w", err)
		}
		return false, fmt.Errorf("certs: reload CRL: %w", err)
	}
	sum := sha256.Sum256(data)
	if !first && sum == loaded {
		return false, nil
	}
	crl, err := parseCRLFrom(data, r.cas)
	if err != nil {
		if first {
			return false, fmt.Errorf("certs: load CRL %s: %w", r.path, err)
		}
		return false, fmt.Errorf("certs: reload CRL %s (keeping the previous list): %w", r.path, err)
	}
	serials := make(map[string]time.Time, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		serials[serialHex(e.SerialNumber)] = e.RevocationTime
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.number != nil {
		switch crl.Number.Cmp(r.number) {
		case -1:
			return false, fmt.Errorf("certs: reload CRL %s (keeping the previous list): CRL number %v is lower than the loaded %v (rollback?)", r.path, crl.Number, r.number)
		case 0:
			if sum != r.hash {
				return false, fmt.Errorf("certs: reload CRL %s (keeping the previous list): CRL number %v reused with different content", r.path, crl.Number)
			}
		}
	}
	r.serials, r.number, r.hash = serials, crl.Number, sum
	return true, nil
}

// Watch polls the file every interval until ctx is done and reloads it when
// its content changes (compared by SHA-256, which also catches changes that
// keep size and mtime). onErr, if not nil, gets each new reload error once;
// onChange, if not nil, is called after each successful change.
func (r *RevocationList) Watch(ctx context.Context, every time.Duration, onErr func(error), onChange func()) {
	if r == nil || r.path == "" {
		return
	}
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	var lastMod time.Time
	var lastSize int64 = -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Skip the read while size and mtime are unchanged; Reload then
		// compares the content hash, so a touched but identical file is
		// not a change.
		if fi, err := os.Stat(r.path); err == nil && lastErr == "" && fi.ModTime().Equal(lastMod) && fi.Size() == lastSize {
			r.mu.RLock()
			loaded := r.number != nil
			r.mu.RUnlock()
			if loaded {
				continue
			}
		} else if err == nil {
			lastMod, lastSize = fi.ModTime(), fi.Size()
		}
		changed, err := r.Reload()
		switch {
		case err != nil:
			if err.Error() != lastErr && onErr != nil {
				onErr(err)
			}
			lastErr = err.Error()
		default:
			lastErr = ""
			if changed && onChange != nil {
				onChange()
			}
		}
	}
}

// IsRevoked reports whether serial is on the loaded CRL.
func (r *RevocationList) IsRevoked(serial *big.Int) bool {
	if r == nil || serial == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.serials[serialHex(serial)]
	return ok
}

// Revocation is one entry of the loaded list.
type Revocation struct {
	// Serial is the certificate's serial number in lowercase hex.
	Serial string
	At     time.Time
}

// Revoked returns the loaded list's entries, ordered by serial.
func (r *RevocationList) Revoked() []Revocation {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Revocation, 0, len(r.serials))
	for s, at := range r.serials {
		out = append(out, Revocation{Serial: s, At: at})
	}
	slices.SortFunc(out, func(a, b Revocation) int { return strings.Compare(a.Serial, b.Serial) })
	return out
}
