package coordinator

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/keystore"
	"github.com/fedguard/fedguard/manifest"
)

// openSigner loads the coordinator's signing identity: both keys as files
// in the data directory, or, with cfg.PKCS11 set, the Ed25519 key on that
// token and the ML-DSA-65 key in DATA_DIR/signing-mldsa.key. The closer
// (nil for files) releases the token; the Signer stops working after it.
//
// signed says the federation has signed manifests: then every key must
// exist, because the hospitals pinned them. Otherwise missing files are
// made, as they always were; a missing token key is generated on the
// token only when genToken is set (--init or --init-keys), so a misspelt
// key_label is an error rather than a silent new identity.
func openSigner(cfg Config, signed, genToken bool) (*manifest.Signer, io.Closer, error) {
	if !cfg.PKCS11.Enabled() {
		if signed {
			s, err := manifest.LoadSigner(cfg.DataDir)
			return s, nil, err
		}
		s, _, err := manifest.LoadOrCreateSigner(cfg.DataDir)
		return s, nil, err
	}
	tok, err := keystore.Open(cfg.PKCS11)
	if err != nil {
		return nil, nil, err
	}
	s, err := tokenSigner(tok, cfg, signed, genToken)
	if err != nil {
		tok.Close()
		return nil, nil, err
	}
	return s, tok, nil
}

func tokenSigner(tok *keystore.Token, cfg Config, signed, genToken bool) (*manifest.Signer, error) {
	label := cfg.PKCS11.KeyLabel
	key, err := tok.Ed25519(label)
	if errors.Is(err, keystore.ErrKeyNotFound) && !signed {
		if !genToken {
			return nil, fmt.Errorf("%w (a new federation's coordinator makes it with --init or --init-keys)", err)
		}
		// An identity whose public keys were handed out already is never
		// replaced by a new token key.
		if _, serr := os.Stat(filepath.Join(cfg.DataDir, manifest.PublicFile)); serr == nil {
			return nil, fmt.Errorf("%w, yet %s holds the public keys of an existing identity: key_label must name its key", err, cfg.DataDir)
		}
		key, err = tok.GenerateEd25519(label)
	}
	if err != nil {
		return nil, err
	}
	if signed {
		return manifest.LoadTokenSigner(cfg.DataDir, key)
	}
	s, _, err := manifest.LoadOrCreateTokenSigner(cfg.DataDir, key)
	return s, err
}

// checkToken opens the token cfg.PKCS11 names, if any, and looks for the
// signing key: a wrong module, token label or PIN is reported before the
// coordinator starts. A missing key is an error only once signing.pub
// exists, since --init-keys makes it.
func checkToken(cfg Config) error {
	if !cfg.PKCS11.Enabled() {
		return nil
	}
	tok, err := keystore.Open(cfg.PKCS11)
	if err != nil {
		return fmt.Errorf("pkcs11: %w", err)
	}
	defer tok.Close()
	_, err = tok.Ed25519(cfg.PKCS11.KeyLabel)
	if errors.Is(err, keystore.ErrKeyNotFound) {
		if _, serr := os.Stat(filepath.Join(cfg.DataDir, manifest.PublicFile)); serr != nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("pkcs11: %w", err)
	}
	return nil
}

// tokenAccess reports an error in reaching the token (its module, label,
// PIN or the build), rather than a key that is missing: restoring keys
// from a backup does not fix it.
func tokenAccess(err error) bool {
	for _, e := range []error{keystore.ErrConfig, keystore.ErrModule, keystore.ErrToken, keystore.ErrPIN, keystore.ErrNoCgo} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// InitKeys makes the signing identity of a new federation, or checks the
// existing one, for `fedguard coordinator --init-keys`: with cfg.PKCS11
// set the Ed25519 key is generated on the token (unless the label exists)
// and the ML-DSA-65 key in the data directory. It returns the public keys
// the hospitals pin.
func InitKeys(cfg Config) (manifest.PublicKeys, error) {
	s, closer, err := openSigner(cfg, false, true)
	if err != nil {
		return manifest.PublicKeys{}, fmt.Errorf("signing keys: %w", err)
	}
	if closer != nil {
		defer closer.Close()
	}
	return s.Public(), nil
}
