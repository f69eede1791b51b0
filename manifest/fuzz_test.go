package manifest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzOpen feeds arbitrary envelopes to Open. It must never panic; every
// error must wrap exactly one of Open's kinds; and whatever it accepts must
// be a statement that this package writes byte for byte, with the digest
// Digest computes.
func FuzzOpen(f *testing.F) {
	s := testSigner(f)
	keys := s.Public()
	golden, _ := addEnvelopeSeeds(f, s)
	f.Add(editEnvelope(f, golden, func(e map[string]any) { e["signatures"] = sigs(e)[:1] }))
	f.Add(editEnvelope(f, golden, func(e map[string]any) { e["signatures"] = nil }))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	kinds := []error{ErrMalformed, ErrUnsigned, ErrBadSignature, ErrModelMismatch}
	f.Fuzz(func(t *testing.T, env []byte) {
		r, digest, err := Open(env, keys)
		if err != nil {
			checkOneKind(t, "Open", err, kinds)
			return
		}
		_, payload, err := decodeEnvelope(env)
		if err != nil {
			t.Fatalf("Open accepted an envelope decodeEnvelope refuses: %v", err)
		}
		if d, err := Digest(env); err != nil || d != digest {
			t.Fatalf("Digest = %x, %v; Open digest %x", d, err, digest)
		}
		again, err := marshalStatement(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, payload) {
			t.Fatalf("accepted payload is not what Sign writes:\n got %q\nwant %q", payload, again)
		}
	})
}

// addEnvelopeSeeds adds the golden manifest and a genesis manifest signed
// by s to f's corpus, and returns them.
func addEnvelopeSeeds(f *testing.F, s *Signer) (golden, genesis []byte) {
	f.Helper()
	golden, err := os.ReadFile("testdata/manifest.golden")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	genesis, _, err = Sign(s, genesisRound())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genesis)
	return golden, genesis
}

// FuzzParseStatement fuzzes the statement parser directly, which FuzzOpen
// rarely reaches past the signatures. Whatever it accepts must encode back
// to a statement it parses to the same Round, and that encoding must be a
// fixed point.
func FuzzParseStatement(f *testing.F) {
	for _, r := range []Round{goldenRound(), genesisRound()} {
		payload, err := marshalStatement(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(payload)
	}
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://fedguard.dev/round-manifest/v1","predicate":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := parseStatement(payload)
		if err != nil {
			return
		}
		enc, err := marshalStatement(r)
		if err != nil {
			t.Fatalf("marshalStatement(parsed round) = %v", err)
		}
		r2, err := parseStatement(enc)
		if err != nil {
			t.Fatalf("parseStatement(marshalStatement(r)) = %v", err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Fatalf("round changed across re-encoding (-first +second):\n%s", diff)
		}
		enc2, _ := marshalStatement(r2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point:\n%q\n%q", enc, enc2)
		}
	})
}

// FuzzParsePublicKeys checks that the key parser never panics and that
// what it accepts marshals to a file it parses to the same keys.
func FuzzParsePublicKeys(f *testing.F) {
	if data, err := os.ReadFile("testdata/signing.pub"); err == nil {
		f.Add(data)
	}
	if data, err := os.ReadFile("testdata/cosign.pub"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePublicKeys(data)
		if err != nil {
			return
		}
		back, err := ParsePublicKeys(k.MarshalPEM())
		if err != nil {
			t.Fatalf("ParsePublicKeys(MarshalPEM(k)) = %v", err)
		}
		if !back.Equal(k) || back.Fingerprint() != k.Fingerprint() {
			t.Fatal("keys changed across MarshalPEM")
		}
	})
}

// FuzzParsePrivateKeys feeds arbitrary bytes to the signing.key parser: it
// must never panic, and a key pair it accepts must write back to the same
// file and sign manifests its own public keys verify.
func FuzzParsePrivateKeys(f *testing.F) {
	s, err := GenerateSigner(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		f.Fatal(err)
	}
	good, err := s.marshalPrivateKeys()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte("ML-DSA-65 PRIVATE KEY"), []byte("PRIVATE KEY"), -1))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKeys(data)
		if err != nil {
			return
		}
		again, err := k.marshalPrivateKeys()
		if err != nil {
			t.Fatalf("marshal accepted keys: %v", err)
		}
		back, err := parsePrivateKeys(again)
		if err != nil || !back.Public().Equal(k.Public()) {
			t.Fatalf("accepted keys changed across a write: %v", err)
		}
	})
}

// FuzzOpenRotation feeds arbitrary envelopes to OpenRotation. It must never
// panic, every error must wrap one of Open's kinds, and whatever it accepts
// must be signed by both identities it names and be what SignRotation
// writes, with the digest Digest computes.
func FuzzOpenRotation(f *testing.F) {
	a, b := fixedSigner(f, "a"), fixedSigner(f, "b")
	env, _ := testRotation(f, a, b, 1, "", 3)
	f.Add(env)
	if golden, err := os.ReadFile("testdata/rotation.golden"); err == nil {
		f.Add(golden)
	}
	f.Add(editEnvelope(f, env, func(e map[string]any) { e["signatures"] = sigs(e)[2:] }))
	f.Add([]byte(`{}`))
	kinds := []error{ErrMalformed, ErrUnsigned, ErrBadSignature}
	f.Fuzz(func(t *testing.T, env []byte) {
		v, err := OpenRotation(env)
		if err != nil {
			checkOneKind(t, "OpenRotation", err, kinds)
			return
		}
		if d, err := Digest(env); err != nil || d != v.Digest {
			t.Fatalf("Digest = %x, %v; OpenRotation digest %x", d, err, v.Digest)
		}
		_, payload, _ := decodeEnvelope(env)
		again, err := rotationStatement(v.Rotation)
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("accepted payload is not what SignRotation writes")
		}
		if v.Old.Equal(v.New) || v.Old.Fingerprint() != v.Rotation.OldFingerprint {
			t.Fatalf("accepted a rotation with inconsistent keys")
		}
	})
}

// checkOneKind fails t unless err, returned by fn, wraps exactly one of
// kinds: every refusal says what kind it is, and only one.
func checkOneKind(t *testing.T, fn string, err error, kinds []error) {
	t.Helper()
	n := 0
	for _, k := range kinds {
		if errors.Is(err, k) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%s error %q wraps %d kinds, want 1", fn, err, n)
	}
}
