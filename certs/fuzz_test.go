package certs

import (
	"crypto"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
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

// FuzzParseCRL feeds arbitrary bytes to the CRL parser: it must never
// panic, and whatever it accepts must carry the CA's valid signature and a
// CRL number, so that no forged or unnumbered list is ever loaded.
func FuzzParseCRL(f *testing.F) {
	a := newTestCA(f, "fed")
	_, _, c := enrol(f, a, "st-mary")
	if err := a.Revoke(c.SerialNumber); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(a.dir, crlFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	other := newTestCA(f, "fed")
	forged, err := os.ReadFile(filepath.Join(other.dir, crlFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(forged)
	b, _ := pem.Decode(good)
	f.Add(b.Bytes)
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		crl, err := parseCRL(data, a.Certificate())
		if err != nil {
			return
		}
		if crl.CheckSignatureFrom(a.Certificate()) != nil || crl.Number == nil {
			t.Fatalf("parseCRL accepted a CRL without the CA's signature or a number")
		}
	})
}

// FuzzParseIssued feeds arbitrary bytes to the issued.jsonl parser: it must
// never panic, and the records it accepts must write back to lines it
// reads as the same records.
func FuzzParseIssued(f *testing.F) {
	a := newTestCA(f, "fed")
	enrol(f, a, "st-mary")
	enrol(f, a, "st-john")
	good, err := os.ReadFile(filepath.Join(a.dir, issuedFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("\n\n{}\n"))
	f.Add([]byte(`{"serial":"ff","identity":"x","not_after":"not a time"}` + "\n"))
	f.Add([]byte(`{"serial":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parseIssued(data)
		if err != nil {
			return
		}
		var again []byte
		for _, r := range recs {
			line, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("marshal accepted record %+v: %v", r, err)
			}
			again = append(append(again, line...), '\n')
		}
		back, err := parseIssued(again)
		if err != nil || len(back) != len(recs) {
			t.Fatalf("parseIssued(written records) = %d records, %v; want %d", len(back), err, len(recs))
		}
		for i := range recs {
			if back[i].Serial != recs[i].Serial || back[i].Identity != recs[i].Identity ||
				!back[i].NotAfter.Equal(recs[i].NotAfter) || back[i].Fingerprint != recs[i].Fingerprint {
				t.Fatalf("record %d changed across a write: %+v, then %+v", i, recs[i], back[i])
			}
		}
	})
}

// FuzzParsePrivateKeyPEM feeds arbitrary bytes to the private-key loader:
// it must never panic, and a key it accepts must sign.
func FuzzParsePrivateKeyPEM(f *testing.F) {
	keyPEM, _, err := NewParticipantRequest("fed", "st-mary")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(keyPEM)
	b, _ := pem.Decode(keyPEM)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b.Bytes}))
	f.Add(b.Bytes)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKeyPEM(data)
		if err != nil {
			return
		}
		digest := sha256.Sum256([]byte("fedguard"))
		if _, err := k.Sign(crand.Reader, digest[:], crypto.SHA256); err != nil {
			t.Fatalf("an accepted %T key cannot sign: %v", k, err)
		}
	})
}
