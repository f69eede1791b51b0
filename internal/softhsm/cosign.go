package softhsm

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"testing"
)

// CosignVerifies reports whether the first signature of the DSSE envelope
// env verifies under the Ed25519 key in the PEM file cosignPub, the way
// `cosign verify-blob-attestation --key cosign.pub` checks it: over DSSE's
// pre-authentication encoding (PAE), with that PKIX key alone. Token tests
// use it to show that a signature the token made is one cosign accepts. It
// is written apart from package manifest, so that it checks manifest's
// encoding rather than repeating it.
func CosignVerifies(t testing.TB, cosignPub string, env []byte) bool {
	t.Helper()
	b, err := os.ReadFile(cosignPub)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", cosignPub)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("%s holds a %T, want an Ed25519 key", cosignPub, pub)
	}
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &e); err != nil || len(e.Signatures) == 0 {
		t.Fatalf("envelope: %v, %d signatures", err, len(e.Signatures))
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatalf("envelope payload: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	if err != nil {
		t.Fatalf("envelope signature: %v", err)
	}
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(payload), payload)
	return ed25519.Verify(edPub, pae, sig)
}
