package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/internal/excerpt"
)

// Roles a certificate can name. The role is part of the identity URI and is
// mirrored by the extended key usage.
const (
	// RoleCoordinator names the federation's coordinator (TLS server).
	RoleCoordinator = "coordinator"
	// RoleParticipant names a hospital (TLS client).
	RoleParticipant = "participant"
)

// spiffeScheme is the URI scheme of every identity.
const spiffeScheme = "spiffe://"

// maxNameLen bounds federation and participant names, like a DNS label.
const maxNameLen = 63

// Identity is who a certificate names. It is the only thing the rest of
// fedguard learns about a peer, so it is small and comparable.
type Identity struct {
	// Federation is the trust domain, the host part of the URI.
	Federation string
	// Role is RoleCoordinator or RoleParticipant.
	Role string
	// Name is the participant's name; it is empty for the coordinator.
	Name string
}

// URI returns the identity in its certificate form,
// spiffe://FEDERATION/participant/NAME or spiffe://FEDERATION/coordinator.
func (id Identity) URI() string {
	if id.Role == RoleCoordinator {
		return spiffeScheme + id.Federation + "/" + RoleCoordinator
	}
	return spiffeScheme + id.Federation + "/" + id.Role + "/" + id.Name
}

// String returns the same as URI, so identities log as their URI.
func (id Identity) String() string { return id.URI() }

// IsZero reports whether id is the zero Identity (no identity known).
func (id Identity) IsZero() bool { return id == Identity{} }

// validate checks every field of id strictly.
func (id Identity) validate() error {
	if err := ValidateName(id.Federation); err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	switch id.Role {
	case RoleCoordinator:
		if id.Name != "" {
			return errors.New("certs: the coordinator identity has no name")
		}
	case RoleParticipant:
		if err := ValidateName(id.Name); err != nil {
			return fmt.Errorf("participant name: %w", err)
		}
	default:
		return fmt.Errorf("certs: unknown role %q (want %q or %q)", id.Role, RoleParticipant, RoleCoordinator)
	}
	return nil
}

// ValidateName checks a federation or participant name: 1 to 63 characters
// among lowercase letters, digits, '-' and '.', starting and ending with a
// letter or digit, with no "..". Names end up in URIs, file names (NAME.key)
// and log lines, so anything that could be misread there is refused.
func ValidateName(s string) error {
	if s == "" {
		return errors.New("certs: name is empty")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("certs: name %q is %d characters long, more than %d", truncate(s), len(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '.' {
			return fmt.Errorf("certs: name %q has character %q at offset %d: only a-z, 0-9, '-' and '.' are allowed", truncate(s), c, i)
		}
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return fmt.Errorf("certs: name %q must start and end with a lowercase letter or digit", s)
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("certs: name %q contains \"..\"", s)
	}
	return nil
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// truncate shortens untrusted input before it goes into an error message:
// to 80 bytes, cut on a rune boundary.
func truncate(s string) string { return excerpt.Of(s, 80) }

// parseIdentityURI parses the strict textual form of an identity. It does
// not use net/url: the only accepted spellings are exactly the ones URI
// produces, so parse→URI is the identity function on every accepted input.
func parseIdentityURI(s string) (Identity, error) {
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return Identity{}, fmt.Errorf("certs: identity %q is not a spiffe:// URI", truncate(s))
	}
	parts := strings.Split(rest, "/")
	var id Identity
	switch {
	case len(parts) == 2 && parts[1] == RoleCoordinator:
		id = Identity{Federation: parts[0], Role: RoleCoordinator}
	case len(parts) == 3 && parts[1] == RoleParticipant:
		id = Identity{Federation: parts[0], Role: RoleParticipant, Name: parts[2]}
	default:
		return Identity{}, fmt.Errorf("certs: identity %q: want spiffe://FEDERATION/participant/NAME or spiffe://FEDERATION/coordinator", truncate(s))
	}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("certs: identity %q: %w", truncate(s), err)
	}
	return id, nil
}

// ParseIdentity returns the identity a certificate names. It requires exactly
// one URI SAN in the strict spiffe form, no e-mail SANs, no DNS or IP SANs on
// a participant certificate, and an extended key usage that matches the role
// and nothing else: participant ⇔ only ClientAuth, coordinator ⇔ only
// ServerAuth. It does not verify the chain; callers use it on verified
// certificates.
func ParseIdentity(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, errors.New("certs: no certificate")
	}
	if cert.IsCA {
		return Identity{}, errors.New("certs: a CA certificate is not a peer identity")
	}
	if len(cert.URIs) != 1 {
		return Identity{}, fmt.Errorf("certs: certificate has %d URI SANs, want exactly 1", len(cert.URIs))
	}
	if len(cert.EmailAddresses) > 0 {
		return Identity{}, errors.New("certs: certificate has e-mail SANs")
	}
	id, err := parseIdentityURI(cert.URIs[0].String())
	if err != nil {
		return Identity{}, err
	}
	if len(cert.UnknownExtKeyUsage) > 0 {
		return Identity{}, fmt.Errorf("certs: %s: certificate has unknown extended key usages", id)
	}
	switch id.Role {
	case RoleParticipant:
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			return Identity{}, fmt.Errorf("certs: %s: participant certificate must have only the clientAuth extended key usage", id)
		}
		if len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 {
			return Identity{}, fmt.Errorf("certs: %s: participant certificate must not have DNS or IP SANs", id)
		}
	case RoleCoordinator:
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			return Identity{}, fmt.Errorf("certs: %s: coordinator certificate must have only the serverAuth extended key usage", id)
		}
	}
	return id, nil
}

// WrongIdentityError is a certificate CheckOwn refuses because it names
// another role or federation than the one the process runs as: Got is
// what it names, for the caller to say which certificate was wanted.
type WrongIdentityError struct {
	Got Identity
}

func (e *WrongIdentityError) Error() string { return "certs: the certificate is " + e.Got.String() }

// CheckOwn checks the certificate a process is about to present as role
// in federation (the coordinator serving, a hospital dialling): that it
// names such an identity, and that roots issued it for that role's
// extended key usage (serverAuth for the coordinator, clientAuth for a
// participant). The identity is checked first, so that a certificate of
// the other role or of another federation is refused as a
// *WrongIdentityError naming what it is, not as x509's "incompatible key
// usage", which tells an operator nothing about the mix-up.
func CheckOwn(leaf *x509.Certificate, roots *x509.CertPool, role, federation string) (Identity, error) {
	id, idErr := ParseIdentity(leaf)
	if idErr == nil && (id.Role != role || id.Federation != federation) {
		return Identity{}, &WrongIdentityError{Got: id}
	}
	usage := x509.ExtKeyUsageClientAuth
	if role == RoleCoordinator {
		usage = x509.ExtKeyUsageServerAuth
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Identity{}, err
	}
	if idErr != nil {
		return Identity{}, idErr
	}
	return id, nil
}
