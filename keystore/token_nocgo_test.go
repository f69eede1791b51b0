//go:build !cgo

package keystore_test

import (
	"errors"
	"testing"

	"github.com/fedguard/fedguard/keystore"
)

// TestOpenWithoutCgo: a static build refuses a token configuration with an
// error that says why, rather than failing to link or starting with file
// keys.
func TestOpenWithoutCgo(t *testing.T) {
	_, err := keystore.Open(keystore.PKCS11{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "t", KeyLabel: "k"})
	if !errors.Is(err, keystore.ErrNoCgo) {
		t.Fatalf("Open without cgo: %v, want ErrNoCgo", err)
	}
}
