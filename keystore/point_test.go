package keystore

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

func TestParseEd25519Point(t *testing.T) {
	key := bytes.Repeat([]byte{7}, ed25519.PublicKeySize)
	wrapped := append([]byte{0x04, 0x20}, key...)
	for _, tc := range []struct {
		name          string
		params, point []byte
		ok            bool
	}{
		{"OID, DER-wrapped point (SoftHSM2)", oidEd25519, wrapped, true},
		{"OID, raw point (PKCS #11 3.0)", oidEd25519, key, true},
		{"printable-string params", ed25519Name, key, true},
		{"Ed448 OID", []byte{0x06, 0x03, 0x2b, 0x65, 0x71}, key, false},
		{"P-256 OID", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, key, false},
		{"short point", oidEd25519, key[:31], false},
		{"wrong wrapper tag", oidEd25519, append([]byte{0x03, 0x20}, key...), false},
		{"wrong wrapper length", oidEd25519, append([]byte{0x04, 0x21}, key...), false},
		{"empty", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEd25519Point(tc.params, tc.point)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(got, key) {
				t.Fatalf("key %x, want %x", got, key)
			}
		})
	}
}

// FuzzParseEd25519Point: whatever a token returns, the parser does not
// panic, and what it accepts is 32 bytes taken from the point.
func FuzzParseEd25519Point(f *testing.F) {
	key := bytes.Repeat([]byte{7}, ed25519.PublicKeySize)
	f.Add(oidEd25519, append([]byte{0x04, 0x20}, key...))
	f.Add(ed25519Name, key)
	f.Add([]byte{}, []byte{0x04})
	f.Fuzz(func(t *testing.T, params, point []byte) {
		got, err := parseEd25519Point(params, point)
		if err != nil {
			return
		}
		if len(got) != ed25519.PublicKeySize || !bytes.HasSuffix(point, got) {
			t.Fatalf("accepted %x from %x", got, point)
		}
		if len(point) > 0 {
			point[len(point)-1] ^= 1
			if bytes.HasSuffix(point, got) {
				t.Fatal("the returned key aliases the token's buffer")
			}
		}
	})
}
