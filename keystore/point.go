package keystore

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
)

// oidEd25519 is CKA_EC_PARAMS for Ed25519: the DER of OID 1.3.101.112
// (RFC 8410).
var oidEd25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// ed25519Name is the other CKA_EC_PARAMS form PKCS #11 3.0 allows: the
// DER PrintableString "edwards25519".
var ed25519Name = []byte("\x13\x0cedwards25519")

// parseEd25519Point decodes an Ed25519 public key object's CKA_EC_PARAMS
// and CKA_EC_POINT, as a token returns them. PKCS #11 3.0 says
// CKA_EC_POINT is the raw 32 bytes; SoftHSM2 wraps them in a DER OCTET
// STRING, as for ECDSA. Both are accepted, nothing else.
func parseEd25519Point(params, point []byte) (ed25519.PublicKey, error) {
	if !bytes.Equal(params, oidEd25519) && !bytes.Equal(params, ed25519Name) {
		return nil, fmt.Errorf("CKA_EC_PARAMS %x is not Ed25519", params)
	}
	p := point
	if len(p) == 2+ed25519.PublicKeySize && p[0] == 0x04 && p[1] == ed25519.PublicKeySize {
		p = p[2:]
	}
	if len(p) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("CKA_EC_POINT is %d bytes, not an Ed25519 public key", len(point))
	}
	return ed25519.PublicKey(bytes.Clone(p)), nil
}
