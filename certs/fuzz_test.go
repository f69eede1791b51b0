package certs

import (
	"encoding/pem"
	"testing"
)

// FuzzParseIdentityURI checks that the identity parser never panics and
// that every accepted string round-trips exactly: parse→URI == input.
func FuzzParseIdentityURI(f *testing.F) {
	for _, s := range []string{
		"spiffe://fed/participant/st-mary",
		"spiffe://fed.eu/coordinator",
		"spiffe://fed/participant/a/b",
		"spiffe://fed/coordinator?x",
		"spiffe://FED/participant/%41",
		"spiffe:///participant/",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseIdentityURI(s)
		if err != nil {
			if id != (Identity{}) {
				t.Fatalf("parseIdentityURI(%q) returned %v with error %v", s, id, err)
			}
			return
		}
		if id.URI() != s {
			t.Fatalf("parseIdentityURI(%q).URI() = %q", s, id.URI())
		}
		if err := id.validate(); err != nil {
			t.Fatalf("parseIdentityURI(%q) accepted an invalid identity: %v", s, err)
		}
	})
}

// FuzzSign feeds arbitrary bytes to Sign as a CSR: it must never panic, and
// anything it signs must be a valid participant certificate of this
// federation.
func FuzzSign(f *testing.F) {
	a := newTestCA(f, "fed")
	_, good, err := NewParticipantRequest("fed", "st-mary")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(makeCSR(f, p256(f), []string{"spiffe://fed/coordinator"}, nil))
	f.Add(makeCSR(f, p256(f), []string{"spiffe://fed/participant/a"}, []string{"x.example"}))
	b, _ := pem.Decode(good)
	f.Add(b.Bytes) // raw DER, no PEM
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certPEM, err := a.Sign(data, 0)
		if err != nil {
			return
		}
		cert, err := parseCertificatePEM(certPEM)
		if err != nil {
			t.Fatalf("Sign produced an unparsable certificate: %v", err)
		}
		id, err := ParseIdentity(cert)
		if err != nil || id.Role != RoleParticipant || id.Federation != "fed" {
			t.Fatalf("Sign produced %v, %v", id, err)
		}
	})
}
