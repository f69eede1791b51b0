package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// PublicKeyFile is a coordinator's public key as an auditor holds it:
// either its signing.pub (PEM, both keys, so that checkpoints and manifests
// can be checked) or a signed-note verifier key line (checkpoints only), as
// `fedguard audit` takes in -key.
type PublicKeyFile struct {
	// Keys are the manifest-signing keys of signing.pub; nil when the file
	// is a verifier key line, which carries no ML-DSA-65 key.
	Keys *PublicKeys
	// Verifiers check checkpoint signatures.
	Verifiers note.Verifiers
}

// ErrNoManifestKeys is returned by PublicKeyFile.VerifyManifest for a key
// file that is a verifier key line: it cannot check a manifest.
var ErrNoManifestKeys = errors.New("manifest: the key file is a note verifier key, not signing.pub: it cannot check manifests")

// LoadPublicKeyFile reads a PublicKeyFile (at most a key file's size). A
// PEM file must be a signing.pub as [ParsePublicKeys] reads it; anything
// else must be one note verifier key line (golang.org/x/mod/sumdb/note).
// Errors name the file ("key FILE: …").
func LoadPublicKeyFile(path string) (PublicKeyFile, error) {
	return readParsed(path, ParsePublicKeyFile, "key: %w", "key %s: %w")
}

// ParsePublicKeyFile parses the contents of a key file (see
// [LoadPublicKeyFile]).
func ParsePublicKeyFile(data []byte) (PublicKeyFile, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		k, err := ParsePublicKeys(data)
		if err != nil {
			return PublicKeyFile{}, err
		}
		return PublicKeyFile{Keys: &k, Verifiers: k.NoteVerifiers()}, nil
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(data)))
	if err != nil {
		return PublicKeyFile{}, fmt.Errorf("neither a PEM signing.pub nor a note verifier key: %w", err)
	}
	return PublicKeyFile{Verifiers: note.VerifierList(v)}, nil
}

// VerifyManifest opens a signed manifest envelope with k's keys (see
// [Open]); it is the check an audit report runs on every round's manifest.
func (k PublicKeyFile) VerifyManifest(envelope []byte) error {
	if k.Keys == nil {
		return ErrNoManifestKeys
	}
	_, _, err := Open(envelope, *k.Keys)
	return err
}

// NoteVerifiers returns verifiers that check a checkpoint signed by k's
// Ed25519 key under whatever name the signature claims: the coordinator
// signs with its log's origin, which an auditor need not know in advance.
// The key hash, which covers the name, must still match, so a signature by
// any other key is an unknown verifier.
func (k PublicKeys) NoteVerifiers() note.Verifiers { return anyNameVerifiers{k} }

type anyNameVerifiers struct{ keys PublicKeys }

func (a anyNameVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	v, err := a.keys.NoteVerifier(name)
	if err != nil || v.KeyHash() != hash {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
	}
	return v, nil
}
