package keystore

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
)

// PINEnv is the environment variable the token's user PIN is read from
// when no pin_file is configured.
const PINEnv = "FEDGUARD_PKCS11_PIN"

// maxPINFileSize bounds what is read from a PIN file: PKCS #11 PINs are
// short, and anything larger is not a PIN file.
const maxPINFileSize = 1 << 10

// Errors of the token backend. Each is wrapped with the module, token or
// key it is about, so that the message names what to fix.
var (
	// ErrConfig is a PKCS11 configuration that is incomplete or invalid.
	ErrConfig = errors.New("keystore: invalid PKCS #11 configuration")
	// ErrModule is a PKCS #11 module library that is missing or does not load.
	ErrModule = errors.New("keystore: PKCS #11 module")
	// ErrToken is a token label that names no token the module offers.
	ErrToken = errors.New("keystore: token not found")
	// ErrPIN is a missing or wrong user PIN.
	ErrPIN = errors.New("keystore: PIN")
	// ErrKeyNotFound is a key label that names no key of the wanted type on
	// the token.
	ErrKeyNotFound = errors.New("keystore: key not found")
	// ErrNoCgo is returned by Open in a build without cgo, which cannot load
	// a PKCS #11 module.
	ErrNoCgo = errors.New("keystore: this fedguard was built without cgo and cannot load a PKCS #11 module (build it with `make build`)")
)

// PKCS11 names a key on a PKCS #11 token: the coordinator's config has it
// as "pkcs11", the CA takes it as -pkcs11-* flags. It holds no secret: the
// PIN comes from PINFile or the PINEnv environment variable.
type PKCS11 struct {
	// Module is the path of the token vendor's PKCS #11 library, for
	// SoftHSM2 /usr/lib/softhsm/libsofthsm2.so.
	Module string `json:"module"`
	// TokenLabel selects the token.
	TokenLabel string `json:"token_label"`
	// KeyLabel is the CKA_LABEL of the key pair.
	KeyLabel string `json:"key_label"`
	// PINFile, if set, holds the user PIN (trailing newline ignored). It
	// must not be readable by group or others. Unset, the PIN is read from
	// the PINEnv environment variable.
	PINFile string `json:"pin_file,omitempty"`
}

// Validate reports a configuration missing the module, token or key label.
func (p PKCS11) Validate() error {
	switch {
	case p.Module == "":
		return fmt.Errorf("%w: no module (the path of the PKCS #11 library)", ErrConfig)
	case p.TokenLabel == "":
		return fmt.Errorf("%w: no token_label", ErrConfig)
	case p.KeyLabel == "":
		return fmt.Errorf("%w: no key_label", ErrConfig)
	}
	return nil
}

// pin reads the user PIN from PINFile, or else from PINEnv.
func (p PKCS11) pin() (string, error) {
	if p.PINFile == "" {
		pin, ok := os.LookupEnv(PINEnv)
		if !ok || pin == "" {
			return "", fmt.Errorf("%w: no pin_file configured and %s is not set", ErrPIN, PINEnv)
		}
		return pin, nil
	}
	f, err := os.Open(p.PINFile)
	if err != nil {
		return "", fmt.Errorf("%w file: %w", ErrPIN, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w file: %w", ErrPIN, err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w file %s has mode %04o: it must not be accessible by group or others (chmod 600 it)", ErrPIN, p.PINFile, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPINFileSize+1))
	if err != nil {
		return "", fmt.Errorf("%w file %s: %w", ErrPIN, p.PINFile, err)
	}
	if len(data) > maxPINFileSize {
		return "", fmt.Errorf("%w file %s: larger than %d bytes, not a PIN file", ErrPIN, p.PINFile, maxPINFileSize)
	}
	pin := string(bytes.TrimRight(data, "\r\n"))
	if pin == "" {
		return "", fmt.Errorf("%w file %s is empty", ErrPIN, p.PINFile)
	}
	return pin, nil
}

// AddFlags registers -pkcs11-module, -pkcs11-token, -pkcs11-key and
// -pkcs11-pin-file on fs, filling p. There is deliberately no PIN flag.
func (p *PKCS11) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&p.Module, "pkcs11-module", "", "PKCS #11 library holding the key (unset: the key is a file); PIN from -pkcs11-pin-file or $"+PINEnv)
	fs.StringVar(&p.TokenLabel, "pkcs11-token", "", "label of the PKCS #11 token")
	fs.StringVar(&p.KeyLabel, "pkcs11-key", "", "label of the key on the PKCS #11 token")
	fs.StringVar(&p.PINFile, "pkcs11-pin-file", "", "file holding the token's user PIN (mode 0600)")
}

// Enabled reports whether p names a token at all; the zero PKCS11 means
// the key is a file.
func (p PKCS11) Enabled() bool { return p != PKCS11{} }
