package manifest

import (
	"bytes"
	"encoding/pem"
	"testing"
)

// FuzzParseMLDSAKey: signing-mldsa.key is one ML-DSA-65 PRIVATE KEY block
// of 32 bytes and nothing else; whatever else a file holds is refused
// without a panic, and what is accepted re-encodes to the same block.
func FuzzParseMLDSAKey(f *testing.F) {
	good := pem.EncodeToMemory(&pem.Block{Type: pemMLDSAPrivate, Bytes: bytes.Repeat([]byte{9}, 32)})
	f.Add(good)
	f.Add(append(bytes.Clone(good), good...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: pemEd25519Private, Bytes: bytes.Repeat([]byte{9}, 32)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: pemMLDSAPrivate, Bytes: bytes.Repeat([]byte{9}, 31)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		seed, err := parseMLDSAKey(data)
		if err != nil {
			return
		}
		b, _ := pem.Decode(data)
		if b == nil || b.Type != pemMLDSAPrivate || !bytes.Equal(b.Bytes, seed[:]) {
			t.Fatalf("accepted %q as seed %x", data, seed)
		}
	})
}
