package manifest

import (
	"bytes"
	stded25519 "crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

// go test ./manifest -run TestGolden -update (golden.Updating) regenerates
// the golden files. Only do so for a stated reason (a deliberate change of
// the wire format means a new PredicateType, see the package
// documentation), and say it in the commit message.

// TestGolden pins the whole v1 wire format: the envelope of goldenRound
// signed by the fixed test key with deterministic ML-DSA-65 (a known-answer
// vector: FIPS 204 deterministic signing is fully specified), and the key
// files that verify it. testdata/model.bin is the subject, so that
//
//	cosign verify-blob-attestation --key testdata/cosign.pub \
//	    --signature testdata/manifest.golden --type https://fedguard.dev/round-manifest/v1 \
//	    --insecure-ignore-tlog testdata/model.bin
//
// checks the golden envelope outside fedguard.
func TestGolden(t *testing.T) {
	s := testSigner(t)
	env, digest, err := Sign(s, goldenRound())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"manifest.golden": env,
		"signing.pub":     s.Public().MarshalPEM(),
		"cosign.pub":      s.Public().cosignPEM(),
		"model.bin":       testModel,
	}
	for name, want := range files {
		if got := golden.File(t, filepath.Join("testdata", name), want); !bytes.Equal(got, want) {
			t.Errorf("testdata/%s differs from what this code writes:\n got %.200q\nwant %.200q", name, got, want)
		}
	}

	// The checked-in files verify each other, independently of the code
	// that wrote them.
	golden, _ := os.ReadFile("testdata/manifest.golden")
	keys, err := LoadPublicKeys("testdata/signing.pub")
	if err != nil {
		t.Fatal(err)
	}
	r, d, err := Open(golden, keys)
	if err != nil {
		t.Fatalf("Open(testdata/manifest.golden) = %v", err)
	}
	if diff := cmp.Diff(goldenRound(), r); diff != "" {
		t.Errorf("Open(golden) round mismatch (-want +got):\n%s", diff)
	}
	if d != digest {
		t.Errorf("Open(golden) digest = %x, Sign digest = %x", d, digest)
	}
	// Cross-check the Ed25519 signature with the standard library, over a
	// PAE spelled out by hand, so that the golden file does not only agree
	// with circl and with this package's pae.
	var e envelope
	if err := json.Unmarshal(golden, &e); err != nil {
		t.Fatal(err)
	}
	body, _ := base64.StdEncoding.DecodeString(e.Payload)
	msg := fmt.Sprintf("DSSEv1 %d %s %d %s", len(e.PayloadType), e.PayloadType, len(body), body)
	edSig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
	if !stded25519.Verify(stded25519.PublicKey(keys.Ed25519), []byte(msg), edSig) {
		t.Error("crypto/ed25519 does not verify the golden Ed25519 signature")
	}
	model, _ := os.ReadFile("testdata/model.bin")
	if got := sha256.Sum256(model); hexDigest(got) != r.ModelSHA256 {
		t.Errorf("testdata/model.bin digest %x, manifest says %s", got, r.ModelSHA256)
	}
}

// TestRoundTrip signs rounds and opens them again: Open returns what Sign
// was given (Closed in UTC), and the digest is the payload's.
func TestRoundTrip(t *testing.T) {
	s := testSigner(t)
	minimal := genesisRound()
	minimal.Included, minimal.Excluded = nil, nil
	paris := goldenRound()
	paris.Closed = time.Date(2026, 3, 14, 16, 9, 26, 0, time.FixedZone("CET", 3600))
	paris.Checkpoint = nil
	lineage := goldenRound()
	lineage.Included[0].DataSHA256 = sum("st-mary's data")
	for _, tc := range []struct {
		name string
		r    Round
	}{
		{"golden", goldenRound()},
		{"genesis", genesisRound()},
		{"nil lists", minimal},
		{"local time, no checkpoint", paris},
		{"data versions", lineage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, digest, err := Sign(s, tc.r)
			if err != nil {
				t.Fatalf("Sign = %v", err)
			}
			got, d, err := Open(env, s.Public())
			if err != nil {
				t.Fatalf("Open(Sign(r)) = %v", err)
			}
			want := tc.r
			want.Closed = want.Closed.UTC()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Open(Sign(r)) mismatch (-want +got):\n%s", diff)
			}
			if got.Closed.Location() != time.UTC {
				t.Errorf("Closed location = %v, want UTC", got.Closed.Location())
			}
			if d != digest {
				t.Errorf("Open digest %x != Sign digest %x", d, digest)
			}
			if dd, err := Digest(env); err != nil || dd != digest {
				t.Errorf("Digest(env) = %x, %v, want %x", dd, err, digest)
			}
			var e envelope
			if err := json.Unmarshal(env, &e); err != nil {
				t.Fatal(err)
			}
			payload, _ := base64.StdEncoding.DecodeString(e.Payload)
			if sha256.Sum256(payload) != digest {
				t.Errorf("digest is not the SHA-256 of the payload")
			}
		})
	}
}

// TestSignHedged checks that production signing is randomized for
// ML-DSA-65 (and deterministic for Ed25519), and that this does not change
// the digest, which covers only the payload.
func TestSignHedged(t *testing.T) {
	s := mustSigner(t, "hedged")
	env1, d1, err := Sign(s, goldenRound())
	if err != nil {
		t.Fatal(err)
	}
	env2, d2, err := Sign(s, goldenRound())
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("digests differ: %x, %x", d1, d2)
	}
	var e1, e2 envelope
	_ = json.Unmarshal(env1, &e1)
	_ = json.Unmarshal(env2, &e2)
	if e1.Signatures[0] != e2.Signatures[0] {
		t.Errorf("Ed25519 signatures differ; Ed25519 is deterministic")
	}
	if e1.Signatures[1].Sig == e2.Signatures[1].Sig {
		t.Errorf("two ML-DSA-65 signatures of the same payload are equal: signing is not hedged")
	}
	for _, env := range [][]byte{env1, env2} {
		if _, _, err := Open(env, s.Public()); err != nil {
			t.Errorf("Open = %v", err)
		}
	}
}

// TestSignConcurrent signs from several goroutines with one Signer, as the
// coordinator may; run with -race.
func TestSignConcurrent(t *testing.T) {
	s := mustSigner(t, "concurrent")
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			r := goldenRound()
			r.Attempt = uint32(i)
			env, _, err := Sign(s, r)
			if err == nil {
				_, _, err = Open(env, s.Public())
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestEnvelopeShape checks the parts of the envelope that other tools rely
// on: field names, signature order and keyids (see the package
// documentation, section Compatibility with cosign).
func TestEnvelopeShape(t *testing.T) {
	s := testSigner(t)
	env := mustSign(t, s, goldenRound())
	var e struct {
		PayloadType string
		Payload     string
		Signatures  []map[string]string
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	if e.PayloadType != "application/vnd.in-toto+json" {
		t.Errorf("payloadType = %q", e.PayloadType)
	}
	if len(e.Signatures) != 2 {
		t.Fatalf("%d signatures, want 2", len(e.Signatures))
	}
	if id, ok := e.Signatures[0]["keyid"]; !ok || id != "" {
		t.Errorf("Ed25519 keyid = %q (present %v), want present and empty", id, ok)
	}
	if sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0]["sig"]); len(sig) != 64 {
		t.Errorf("first signature is %d bytes, want the 64-byte Ed25519 one", len(sig))
	}
	if id := e.Signatures[1]["keyid"]; !strings.HasPrefix(id, "mldsa65:") || len(id) != len("mldsa65:")+64 {
		t.Errorf("ML-DSA-65 keyid = %q, want mldsa65:<64 hex>", id)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	var st map[string]json.RawMessage
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	wantSubject := `[{"name":"hospitals-eu-model-round-000003.bin","digest":{"sha256":"` + goldenRound().ModelSHA256 + `"}}]`
	if string(st["subject"]) != wantSubject {
		t.Errorf("subject = %s, want %s", st["subject"], wantSubject)
	}
	if string(st["_type"]) != `"https://in-toto.io/Statement/v1"` || string(st["predicateType"]) != `"https://fedguard.dev/round-manifest/v1"` {
		t.Errorf("_type = %s, predicateType = %s", st["_type"], st["predicateType"])
	}
}

// TestPAE checks the pre-authentication encoding against the example of
// the DSSE specification (protocol.md, "Test vectors").
func TestPAE(t *testing.T) {
	got := pae("http://example.com/HelloWorld", []byte("hello world"))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if string(got) != want {
		t.Errorf("pae = %q, want %q", got, want)
	}
}

// TestOpenAccepts lists envelopes that differ from what Sign writes but
// must still be accepted: keyids are hints, signature order is free, and
// foreign countersignatures are ignored.
func TestOpenAccepts(t *testing.T) {
	s := testSigner(t)
	env, digest, err := Sign(s, goldenRound())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(e map[string]any)
	}{
		{"keyids swapped", func(e map[string]any) {
			ss := sigs(e)
			a, b := ss[0].(map[string]any), ss[1].(map[string]any)
			a["keyid"], b["keyid"] = b["keyid"], a["keyid"]
		}},
		{"keyids made up", func(e map[string]any) {
			for _, x := range sigs(e) {
				x.(map[string]any)["keyid"] = "whatever"
			}
		}},
		{"order reversed", func(e map[string]any) {
			ss := sigs(e)
			ss[0], ss[1] = ss[1], ss[0]
		}},
		{"foreign countersignature", func(e map[string]any) {
			e["signatures"] = append(sigs(e), map[string]any{"keyid": "auditor", "sig": base64.StdEncoding.EncodeToString(make([]byte, 71))})
		}},
		{"same signature twice", func(e map[string]any) {
			e["signatures"] = append(sigs(e), sigs(e)[0])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := editEnvelope(t, env, tc.edit)
			if _, d, err := Open(mod, s.Public()); err != nil || d != digest {
				t.Errorf("Open = %x, %v; want %x, nil", d, err, digest)
			}
		})
	}
}

// TestOpenRejects is every way a manifest must be refused: the error wraps
// the right kind, says what is wrong, and Verify maps it to the right
// Reason.
func TestOpenRejects(t *testing.T) {
	s := testSigner(t)
	other := fixedSigner(t, "impostor")
	good := mustSign(t, s, goldenRound())
	// sign signs a statement edited as a JSON object.
	sign := func(edit func(st map[string]any)) []byte {
		return signStatement(t, s, PayloadType, statementWith(t, goldenRound(), edit))
	}
	// signRound signs the statement of a Round that Sign would refuse.
	signRound := func(edit func(r *Round)) []byte {
		r := goldenRound()
		edit(&r)
		return signUnchecked(t, s, r)
	}
	pred := func(st map[string]any) map[string]any { return st["predicate"].(map[string]any) }
	// mixed combines the Ed25519 signature of one envelope with the
	// ML-DSA-65 signature of another.
	mixed := func(ed, ml []byte) []byte {
		var a, b map[string]any
		_ = json.Unmarshal(ed, &a)
		_ = json.Unmarshal(ml, &b)
		a["signatures"] = []any{sigs(a)[0], sigs(b)[1]}
		out, _ := json.Marshal(a)
		return out
	}
	byOther := mustSign(t, other, goldenRound())
	var ge envelope
	_ = json.Unmarshal(good, &ge)
	payload, _ := base64.StdEncoding.DecodeString(ge.Payload)
	tampered := bytes.Replace(payload, []byte(`"samples":1200`), []byte(`"samples":9200`), 1)
	if bytes.Equal(tampered, payload) {
		t.Fatal("tampering failed")
	}

	for _, tc := range []struct {
		name   string
		env    []byte
		kind   error
		reason Reason
		detail string
	}{
		// Envelope.
		{"not JSON", []byte("{"), ErrMalformed, ReasonMalformed, "envelope: unexpected EOF"},
		{"empty", nil, ErrMalformed, ReasonMalformed, "envelope: EOF"},
		{"JSON array", []byte("[]"), ErrMalformed, ReasonMalformed, "envelope: json: cannot unmarshal array"},
		{"data after envelope", append(append([]byte{}, good...), "{}"...), ErrMalformed, ReasonMalformed, "data after the JSON value"},
		{"unknown envelope field", editEnvelope(t, good, func(e map[string]any) { e["extra"] = 1 }), ErrMalformed, ReasonMalformed, `unknown field "extra"`},
		{"too large", append(bytes.Repeat([]byte(" "), MaxEnvelopeSize), good...), ErrMalformed, ReasonMalformed, "more than 4194304"},
		{"wrong payloadType", editEnvelope(t, good, func(e map[string]any) { e["payloadType"] = "application/json" }), ErrMalformed, ReasonMalformed, `payloadType "application/json"`},
		{"wrong payloadType, signed", signStatement(t, s, "application/json", payload), ErrMalformed, ReasonMalformed, `payloadType "application/json"`},
		{"payload not base64", editEnvelope(t, good, func(e map[string]any) { e["payload"] = "!!!" }), ErrMalformed, ReasonMalformed, "payload is not standard base64"},
		{"payload url-safe base64", editEnvelope(t, good, func(e map[string]any) { e["payload"] = "-__-" }), ErrMalformed, ReasonMalformed, "payload is not standard base64"},
		{"too many signatures", editEnvelope(t, good, func(e map[string]any) {
			ss := sigs(e)
			for len(ss) <= MaxSignatures {
				ss = append(ss, ss[0])
			}
			e["signatures"] = ss
		}), ErrMalformed, ReasonMalformed, "9 signatures, more than 8"},

		// Signatures.
		{"no signatures", editEnvelope(t, good, func(e map[string]any) { e["signatures"] = []any{} }), ErrUnsigned, ReasonUnsigned, "no signatures"},
		{"null signatures", editEnvelope(t, good, func(e map[string]any) { e["signatures"] = nil }), ErrUnsigned, ReasonUnsigned, "no signatures"},
		{"no signatures field", editEnvelope(t, good, func(e map[string]any) { delete(e, "signatures") }), ErrUnsigned, ReasonUnsigned, "no signatures"},
		{"Ed25519 only", editEnvelope(t, good, func(e map[string]any) { e["signatures"] = sigs(e)[:1] }), ErrUnsigned, ReasonUnsigned, "no ML-DSA-65 signature"},
		{"ML-DSA-65 only", editEnvelope(t, good, func(e map[string]any) { e["signatures"] = sigs(e)[1:] }), ErrUnsigned, ReasonUnsigned, "no Ed25519 signature"},
		{"signature not base64", editEnvelope(t, good, func(e map[string]any) { sigs(e)[0].(map[string]any)["sig"] = "@@" }), ErrMalformed, ReasonMalformed, "signature 0 is not standard base64"},
		{"signature of unknown length", editEnvelope(t, good, func(e map[string]any) {
			sigs(e)[0].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(make([]byte, 63))
		}), ErrUnsigned, ReasonUnsigned, "no Ed25519 signature"},
		{"re-signed by another key", byOther, ErrBadSignature, ReasonBadSignature, "no Ed25519 signature verifies under the pinned key; no ML-DSA-65 signature verifies"},
		{"Ed25519 by another key", mixed(byOther, good), ErrBadSignature, ReasonBadSignature, "no Ed25519 signature verifies under the pinned key (pinned keys sha256:"},
		{"ML-DSA-65 by another key", mixed(good, byOther), ErrBadSignature, ReasonBadSignature, "no ML-DSA-65 signature verifies under the pinned key (pinned"},
		{"tampered payload", editEnvelope(t, good, func(e map[string]any) { e["payload"] = base64.StdEncoding.EncodeToString(tampered) }), ErrBadSignature, ReasonBadSignature, "no Ed25519 signature verifies"},
		{"zeroed signatures", editEnvelope(t, good, func(e map[string]any) {
			sigs(e)[0].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
			sigs(e)[1].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(make([]byte, 3309))
		}), ErrBadSignature, ReasonBadSignature, "no Ed25519 signature verifies"},
		{"bad Ed25519, no ML-DSA-65", editEnvelope(t, byOther, func(e map[string]any) { e["signatures"] = sigs(e)[:1] }), ErrBadSignature, ReasonBadSignature, "no Ed25519 signature verifies under the pinned key; no ML-DSA-65 signature ("},

		// Statement, validly signed.
		{"statement not JSON", signStatement(t, s, PayloadType, []byte("not json")), ErrMalformed, ReasonMalformed, "statement: invalid character"},
		{"data after statement", signStatement(t, s, PayloadType, append(append([]byte{}, payload...), " {}"...)), ErrMalformed, ReasonMalformed, "statement: data after the JSON value"},
		{"unknown _type", sign(func(st map[string]any) { st["_type"] = "https://in-toto.io/Statement/v0.1" }), ErrMalformed, ReasonMalformed, `statement _type "https://in-toto.io/Statement/v0.1"`},
		{"no _type", sign(func(st map[string]any) { delete(st, "_type") }), ErrMalformed, ReasonMalformed, `statement _type ""`},
		{"unknown predicateType", sign(func(st map[string]any) { st["predicateType"] = "https://slsa.dev/provenance/v1" }), ErrMalformed, ReasonMalformed, `predicateType "https://slsa.dev/provenance/v1"`},
		{"unknown statement field", sign(func(st map[string]any) { st["extra"] = true }), ErrMalformed, ReasonMalformed, `statement: json: unknown field "extra"`},
		{"no subject", sign(func(st map[string]any) { delete(st, "subject") }), ErrMalformed, ReasonMalformed, "statement has 0 subjects, want 1"},
		{"two subjects", sign(func(st map[string]any) { st["subject"] = append(st["subject"].([]any), st["subject"].([]any)[0]) }), ErrMalformed, ReasonMalformed, "statement has 2 subjects, want 1"},
		{"subject without sha256", sign(func(st map[string]any) {
			st["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha512": "00"}
		}), ErrMalformed, ReasonMalformed, "subject digest must be exactly a sha256 digest"},
		{"subject with two digests", sign(func(st map[string]any) {
			st["subject"].([]any)[0].(map[string]any)["digest"].(map[string]any)["sha512"] = "00"
		}), ErrMalformed, ReasonMalformed, "subject digest must be exactly a sha256 digest, got 2 entries"},
		{"subject digest differs", sign(func(st map[string]any) {
			st["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": sum("another model")}
		}), ErrModelMismatch, ReasonModelMismatch, "subject digest " + sum("another model") + " differs from model_sha256"},
		{"subject digest not hex", sign(func(st map[string]any) {
			st["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": strings.ToUpper(goldenRound().ModelSHA256)}
		}), ErrMalformed, ReasonMalformed, "subject sha256 digest"},
		{"subject name", sign(func(st map[string]any) { st["subject"].([]any)[0].(map[string]any)["name"] = "model.bin" }), ErrMalformed, ReasonMalformed, `subject name "model.bin", want "hospitals-eu-model-round-000003.bin"`},

		// Predicate, validly signed.
		{"unknown predicate field", sign(func(st map[string]any) { pred(st)["learning_rate"] = 0.1 }), ErrMalformed, ReasonMalformed, `predicate: json: unknown field "learning_rate"`},
		{"predicate not an object", sign(func(st map[string]any) { st["predicate"] = "round 3" }), ErrMalformed, ReasonMalformed, "predicate: json: cannot unmarshal string"},
		{"round 0 with a parent", signRound(func(r *Round) { r.Round = 0 }), ErrMalformed, ReasonMalformed, "round 0 is the genesis and has no parent"},
		{"round > 0 without parent", signRound(func(r *Round) { r.Parent = "" }), ErrMalformed, ReasonMalformed, "round 3 has no parent"},
		{"parent not hex", signRound(func(r *Round) { r.Parent = "sha256:" + r.Parent[7:] }), ErrMalformed, ReasonMalformed, "parent \"sha256:"},
		{"parent upper-case hex", signRound(func(r *Round) { r.Parent = strings.ToUpper(r.Parent) }), ErrMalformed, ReasonMalformed, "is not 64 lowercase hex digits"},
		{"model digest short", signRound(func(r *Round) { r.ModelSHA256 = r.ModelSHA256[:62] }), ErrMalformed, ReasonMalformed, "subject sha256 digest"},
		{"predicate model digest bad", sign(func(st map[string]any) { pred(st)["model_sha256"] = "abc" }), ErrMalformed, ReasonMalformed, `round 3: model_sha256 "abc" is not 64 lowercase hex digits`},
		{"scaling digest missing", signRound(func(r *Round) { r.ScalingSHA256 = "" }), ErrMalformed, ReasonMalformed, `scaling_sha256 "" is not`},
		{"update digest bad", signRound(func(r *Round) { r.Included[1].UpdateSHA256 = "xyz" }), ErrMalformed, ReasonMalformed, `included[1] "charite": update_sha256 "xyz"`},
		{"data version bad", signRound(func(r *Round) { r.Included[1].DataSHA256 = strings.ToUpper(sum("data")) }), ErrMalformed, ReasonMalformed, `included[1] "charite": data_sha256 "`},
		{"federation bad", signRound(func(r *Round) { r.Federation = "Hospitals EU" }), ErrMalformed, ReasonMalformed, "federation: certs: name"},
		{"contributor twice", signRound(func(r *Round) { r.Included[1].Name = "st-mary" }), ErrMalformed, ReasonMalformed, `included[1]: "st-mary" is already listed as included`},
		{"included and excluded", signRound(func(r *Round) { r.Excluded[0].Name = "charite" }), ErrMalformed, ReasonMalformed, `excluded[0]: "charite" is already listed as included`},
		{"exclusion without reason", signRound(func(r *Round) { r.Excluded[0].Reason = "" }), ErrMalformed, ReasonMalformed, "no reason"},
		{"negative norm", signRound(func(r *Round) { r.Included[0].Norm = -1 }), ErrMalformed, ReasonMalformed, "norm -1 is not a finite non-negative number"},
		{"no model spec", signRound(func(r *Round) { r.ModelSpec = nil }), ErrMalformed, ReasonMalformed, "model_spec: not a JSON object: \"null\""},
		{"parameters not an object", signRound(func(r *Round) { r.Parameters = json.RawMessage(`[1]`) }), ErrMalformed, ReasonMalformed, "parameters: not a JSON object"},
		{"no rule", signRound(func(r *Round) { r.Rule = "" }), ErrMalformed, ReasonMalformed, "round 3 has no aggregation rule"},
		{"no params", signRound(func(r *Round) { r.NumParams = 0 }), ErrMalformed, ReasonMalformed, "num_params is 0"},
		{"checkpoint root", signRound(func(r *Round) { r.Checkpoint.Root = "AAAA" }), ErrMalformed, ReasonMalformed, `checkpoint: root "AAAA"`},
		{"no closed time", signRound(func(r *Round) { r.Closed = time.Time{} }), ErrMalformed, ReasonMalformed, "closed time is missing"},
		{"closed not a time", sign(func(st map[string]any) { pred(st)["closed"] = "yesterday" }), ErrMalformed, ReasonMalformed, "predicate: parsing time"},
		{"round negative", sign(func(st map[string]any) { pred(st)["round"] = -1 }), ErrMalformed, ReasonMalformed, "predicate: json: cannot unmarshal number -1"},
		{"norm too large", signStatement(t, s, PayloadType, bytes.Replace(payload, []byte(`"norm":1.25`), []byte(`"norm":1e999`), 1)), ErrMalformed, ReasonMalformed, "predicate: json: cannot unmarshal number 1e999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Open(tc.env, s.Public())
			if err == nil {
				t.Fatalf("Open accepted it")
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("Open = %v, want an error wrapping %v", err, tc.kind)
			}
			for _, k := range []error{ErrMalformed, ErrUnsigned, ErrBadSignature, ErrModelMismatch} {
				if k != tc.kind && errors.Is(err, k) {
					t.Errorf("Open = %v, also wraps %v", err, k)
				}
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("Open = %q, want it to contain %q", err, tc.detail)
			}
			_, err = Verify(tc.env, s.Public(), "hospitals-eu")
			var re *RefusalError
			if !errors.As(err, &re) {
				t.Fatalf("Verify = %v, want a *RefusalError", err)
			}
			if re.Reason != tc.reason {
				t.Errorf("Verify reason = %q, want %q (%v)", re.Reason, tc.reason, err)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("Verify = %v, want it to wrap %v", err, tc.kind)
			}
		})
	}
}

// TestSignRefuses checks that Sign will not publish what Open refuses.
func TestSignRefuses(t *testing.T) {
	s := testSigner(t)
	for _, tc := range []struct {
		name string
		edit func(r *Round)
		want string
	}{
		{"genesis with parent", func(r *Round) { r.Round = 0 }, "round 0 is the genesis"},
		{"no parent", func(r *Round) { r.Parent = "" }, "round 3 has no parent"},
		{"bad model digest", func(r *Round) { r.ModelSHA256 = "abc" }, "model_sha256"},
		{"no federation", func(r *Round) { r.Federation = "" }, "federation: certs: name is empty"},
		{"model spec not JSON", func(r *Round) { r.ModelSpec = json.RawMessage(`{`) }, "model_spec: not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := goldenRound()
			tc.edit(&r)
			env, _, err := Sign(s, r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign = %v (envelope %d bytes), want an error containing %q", err, len(env), tc.want)
			}
		})
	}
	if _, _, err := Sign(nil, goldenRound()); err == nil {
		t.Error("Sign(nil, r) succeeded")
	}
}

// TestOpenNeedsKeys checks that incomplete pinned keys are a caller error,
// not a verdict on the manifest.
func TestOpenNeedsKeys(t *testing.T) {
	s := testSigner(t)
	env, _, _ := Sign(s, goldenRound())
	for _, keys := range []PublicKeys{{}, {Ed25519: s.Public().Ed25519}, {MLDSA65: s.Public().MLDSA65}} {
		if _, _, err := Open(env, keys); err == nil || errors.Is(err, ErrBadSignature) {
			t.Errorf("Open with keys %v = %v, want a plain error", keys.Fingerprint(), err)
		}
		_, err := Verify(env, keys, "hospitals-eu")
		var re *RefusalError
		if err == nil || errors.As(err, &re) {
			t.Errorf("Verify with incomplete keys = %v, want a plain error", err)
		}
	}
}

// TestDigest checks that Digest ignores signatures and sees the payload.
func TestDigest(t *testing.T) {
	s := testSigner(t)
	env, digest, _ := Sign(s, goldenRound())
	unsigned := editEnvelope(t, env, func(e map[string]any) { e["signatures"] = nil })
	if d, err := Digest(unsigned); err != nil || d != digest {
		t.Errorf("Digest(unsigned) = %x, %v, want %x", d, err, digest)
	}
	other, otherDigest, _ := Sign(s, genesisRound())
	if otherDigest == digest {
		t.Fatal("two rounds have one digest")
	}
	if d, _ := Digest(other); d != otherDigest {
		t.Errorf("Digest(other) = %x, want %x", d, otherDigest)
	}
	if _, err := Digest([]byte(`{"payloadType":"x","payload":"","signatures":[]}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Digest(wrong type) = %v, want ErrMalformed", err)
	}
}

func TestSubjectName(t *testing.T) {
	for _, tc := range []struct {
		fed   string
		round uint64
		want  string
	}{
		{"fed", 0, "fed-model-round-000000.bin"},
		{"hospitals-eu", 12, "hospitals-eu-model-round-000012.bin"},
		{"x", 1234567, "x-model-round-1234567.bin"},
	} {
		if got := SubjectName(tc.fed, tc.round); got != tc.want {
			t.Errorf("SubjectName(%q, %d) = %q, want %q", tc.fed, tc.round, got, tc.want)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := mustSigner(b, "bench")
	r := goldenRound()
	for b.Loop() {
		if _, _, err := Sign(s, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := mustSigner(b, "bench")
	env := mustSign(b, s, goldenRound())
	keys := s.Public()
	b.SetBytes(int64(len(env)))
	for b.Loop() {
		if _, _, err := Open(env, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEach splits Open's cost between the two schemes.
func BenchmarkVerifyEach(b *testing.B) {
	s, _ := GenerateSigner(seedReader("bench"))
	env, _, _ := Sign(s, goldenRound())
	e, payload, err := decodeEnvelope(env)
	if err != nil {
		b.Fatal(err)
	}
	msg := pae(e.PayloadType, payload)
	edSig, _ := b64.DecodeString(e.Signatures[0].Sig)
	mlSig, _ := b64.DecodeString(e.Signatures[1].Sig)
	keys := s.Public()
	b.Run("Ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(keys.Ed25519, msg, edSig) {
				b.Fatal("Ed25519 signature does not verify")
			}
		}
	})
	b.Run("ML-DSA-65", func(b *testing.B) {
		for b.Loop() {
			if !mldsa65.Verify(keys.MLDSA65, msg, nil, mlSig) {
				b.Fatal("ML-DSA-65 signature does not verify")
			}
		}
	})
}

func BenchmarkGenerateSigner(b *testing.B) {
	for b.Loop() {
		if _, err := GenerateSigner(nil); err != nil {
			b.Fatal(err)
		}
	}
}
