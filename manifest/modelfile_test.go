package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fileRound is goldenRound with the safetensors subject and a pinned
// trainer.
func fileRound() Round {
	r := goldenRound()
	r.SafetensorsSHA256 = sum("model file")
	r.TrainerDigest = "sha256:" + sum("trainer code")
	return r
}

// payloadOf decodes the statement an envelope carries.
func payloadOf(t *testing.T, env []byte) []byte {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	p, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestModelFileSubject: a round with SafetensorsSHA256 has the model file
// as the statement's second subject (what cosign matches a blob against)
// and opens to the same Round; a round without it and without a pinned
// trainer encodes exactly as before (one subject, neither field).
func TestModelFileSubject(t *testing.T) {
	s := testSigner(t)
	r := fileRound()
	env := mustSign(t, s, r)
	got, _, err := Open(env, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if got.SafetensorsSHA256 != r.SafetensorsSHA256 || got.TrainerDigest != r.TrainerDigest {
		t.Errorf("Open = safetensors %q, trainer %q; want %q, %q", got.SafetensorsSHA256, got.TrainerDigest, r.SafetensorsSHA256, r.TrainerDigest)
	}
	var st statement
	if err := json.Unmarshal(payloadOf(t, env), &st); err != nil {
		t.Fatal(err)
	}
	want := []subject{
		{Name: "hospitals-eu-model-round-000003.bin", Digest: map[string]string{"sha256": r.ModelSHA256}},
		{Name: "hospitals-eu-model-round-000003.safetensors", Digest: map[string]string{"sha256": r.SafetensorsSHA256}},
	}
	if b, w := mustJSON(t, st.Subject), mustJSON(t, want); !bytes.Equal(b, w) {
		t.Errorf("subjects = %s, want %s", b, w)
	}

	plain := payloadOf(t, mustSign(t, s, goldenRound()))
	for _, field := range []string{"safetensors_sha256", "trainer_digest", ".safetensors"} {
		if bytes.Contains(plain, []byte(field)) {
			t.Errorf("statement without a model file or pin contains %q:\n%s", field, plain)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestModelFileSubjectRefused: the second subject must be exactly the one
// the predicate names.
func TestModelFileSubjectRefused(t *testing.T) {
	s := testSigner(t)
	sign := func(r Round, edit func(st map[string]any)) []byte {
		return signStatement(t, s, PayloadType, statementWith(t, r, edit))
	}
	second := func(st map[string]any) map[string]any { return st["subject"].([]any)[1].(map[string]any) }
	signRound := func(edit func(r *Round)) []byte {
		r := fileRound()
		edit(&r)
		return signUnchecked(t, s, r)
	}
	for _, tc := range []struct {
		name   string
		env    []byte
		kind   error
		detail string
	}{
		{"file digest differs", sign(fileRound(), func(st map[string]any) {
			second(st)["digest"] = map[string]any{"sha256": sum("another file")}
		}), ErrModelMismatch, "second subject digest " + sum("another file") + " differs from safetensors_sha256"},
		{"file subject renamed", sign(fileRound(), func(st map[string]any) { second(st)["name"] = "model.safetensors" }), ErrMalformed, `second subject name "model.safetensors"`},
		{"file subject dropped", sign(fileRound(), func(st map[string]any) { st["subject"] = st["subject"].([]any)[:1] }), ErrMalformed, "statement has 1 subjects, want 2"},
		{"file subject without predicate field", sign(goldenRound(), func(st map[string]any) {
			st["subject"] = append(st["subject"].([]any), map[string]any{"name": "x.safetensors", "digest": map[string]any{"sha256": sum("x")}})
		}), ErrMalformed, "statement has 2 subjects, want 1"},
		{"three subjects", sign(fileRound(), func(st map[string]any) {
			st["subject"] = append(st["subject"].([]any), st["subject"].([]any)[1])
		}), ErrMalformed, "statement has 3 subjects, want 1 or 2"},
		{"file digest not hex", signRound(func(r *Round) { r.SafetensorsSHA256 = strings.ToUpper(r.SafetensorsSHA256) }), ErrMalformed, "second subject sha256 digest"},
		{"trainer digest bare hex", signRound(func(r *Round) { r.TrainerDigest = sum("trainer code") }), ErrMalformed, "trainer digest"},
		{"trainer digest upper case", signRound(func(r *Round) { r.TrainerDigest = "sha256:" + strings.ToUpper(sum("trainer code")) }), ErrMalformed, "trainer digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Open(tc.env, s.Public())
			if !errors.Is(err, tc.kind) || !strings.Contains(fmtErr(err), tc.detail) {
				t.Errorf("Open = %v, want %v containing %q", err, tc.kind, tc.detail)
			}
		})
	}
	// Sign refuses what Open would.
	r := fileRound()
	r.TrainerDigest = "md5:00"
	if _, _, err := Sign(s, r); err == nil {
		t.Error("Sign accepted trainer digest md5:00")
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckTrainerDigest(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"sha256:" + sum("x"), true},
		{sum("x"), false},
		{"sha256:" + sum("x")[:63], false},
		{"sha256:" + strings.ToUpper(sum("x")), false},
		{"sha512:" + sum("x"), false},
		{"", false},
	} {
		if err := CheckTrainerDigest(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckTrainerDigest(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestModelFileName(t *testing.T) {
	if got, want := ModelFileName("fed", 7), "fed-model-round-000007.safetensors"; got != want {
		t.Errorf("ModelFileName = %q, want %q", got, want)
	}
}
