package softhsm

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCosignVerifies: the check accepts an envelope signed over the PAE
// and refuses one whose payload was changed after signing, so a token test
// that relies on it can fail.
func TestCosignVerifies(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	envelope := func(signed, sent string) []byte {
		const typ = "application/vnd.in-toto+json"
		sig := ed25519.Sign(priv, fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(typ), typ, len(signed), signed))
		b, err := json.Marshal(map[string]any{
			"payloadType": typ,
			"payload":     base64.StdEncoding.EncodeToString([]byte(sent)),
			"signatures":  []map[string]string{{"sig": base64.StdEncoding.EncodeToString(sig)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !CosignVerifies(t, path, envelope(`{"round":1}`, `{"round":1}`)) {
		t.Error("CosignVerifies refused an envelope signed over its PAE")
	}
	if CosignVerifies(t, path, envelope(`{"round":1}`, `{"round":2}`)) {
		t.Error("CosignVerifies accepted a payload changed after signing")
	}
}
