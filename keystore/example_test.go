package keystore_test

import (
	"crypto/ed25519"
	"fmt"
	"log"

	"github.com/fedguard/fedguard/keystore"
)

// Open a token and sign with the Ed25519 key labelled "manifest-signing";
// the PIN comes from the pin file (or $FEDGUARD_PKCS11_PIN).
func ExampleOpen() {
	tok, err := keystore.Open(keystore.PKCS11{
		Module:     "/usr/lib/softhsm/libsofthsm2.so",
		TokenLabel: "fedguard-coordinator",
		KeyLabel:   "manifest-signing",
		PINFile:    "/etc/fedguard/pkcs11.pin",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Ed25519("manifest-signing")
	if err != nil {
		log.Fatal(err)
	}
	msg := []byte("a message")
	sig, err := key.Sign(nil, msg, nil) // pure Ed25519: no hash
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ed25519.Verify(key.Public().(ed25519.PublicKey), msg, sig))
}
