package manifest

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"testing"
	"time"
)

// testModel is the model file of goldenRound (testdata/model.bin), so that
// cosign can check the golden envelope against it.
var testModel = []byte("fedguard test model: not a real model\n")

// seedReader returns a reader of 64 bytes fixed by label, for GenerateSigner.
func seedReader(label string) *bytes.Reader {
	sum := sha512.Sum512([]byte("fedguard manifest test key: " + label))
	return bytes.NewReader(sum[:])
}

// testSigner returns the fixed test identity, signing deterministically so
// that envelopes are reproducible.
func testSigner(tb testing.TB) *Signer {
	return fixedSigner(tb, "coordinator")
}

// fixedSigner returns a deterministic identity named by label.
func fixedSigner(tb testing.TB, label string) *Signer {
	tb.Helper()
	s, err := GenerateSigner(seedReader(label))
	if err != nil {
		tb.Fatal(err)
	}
	s.deterministic = true
	return s
}

// sum returns the hex SHA-256 of s, for digests in test rounds.
func sum(s string) string {
	d := sha256.Sum256([]byte(s))
	return hexDigest(d)
}

// goldenRound is the Round of testdata/manifest.golden: round 3 of
// federation "hospitals-eu", with every field set.
func goldenRound() Round {
	model := sha256.Sum256(testModel)
	return Round{
		Federation:    "hospitals-eu",
		Round:         3,
		Attempt:       1,
		Parent:        sum("manifest of round 2"),
		ModelSHA256:   hexDigest(model),
		NumParams:     31,
		ModelSpec:     json.RawMessage(`{"kind":"logistic","features":30,"classes":2}`),
		ScalingSHA256: sum("scaling"),
		Rule:          "trimmed_mean",
		Parameters:    json.RawMessage(`{"trim":1,"clip_norm":5.5}`),
		Included: []Contributor{
			{Name: "st-mary", Samples: 1200, UpdateSHA256: sum("update st-mary"), Norm: 1.25, Weight: 0.4},
			{Name: "charite", Samples: 1800, UpdateSHA256: sum("update charite"), Norm: 0.75, Weight: 0.6},
		},
		Excluded: []Exclusion{{Name: "mallory-general", Reason: "trimmed: norm 48.2 > clip 5.5"}},
		Checkpoint: &Checkpoint{
			Origin: "fedguard/hospitals-eu",
			Size:   42,
			Root:   "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			Note:   "fedguard/hospitals-eu\n42\n3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— fedguard/hospitals-eu AAAAAA==\n",
		},
		Closed: time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC),
	}
}

// genesisRound is a round 0 manifest: no parent, no contributors.
func genesisRound() Round {
	return Round{
		Federation:    "hospitals-eu",
		Round:         0,
		ModelSHA256:   sum("initial model"),
		NumParams:     31,
		ModelSpec:     json.RawMessage(`{"kind":"logistic","features":30,"classes":2}`),
		ScalingSHA256: sum("scaling"),
		Parameters:    json.RawMessage(`{}`),
		Included:      []Contributor{},
		Excluded:      []Exclusion{},
		Closed:        time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
	}
}

// signStatement signs an arbitrary payload with s, bypassing Sign's
// checks, to build envelopes that are well signed but wrong inside.
func signStatement(tb testing.TB, s *Signer, payloadType string, payload []byte) []byte {
	tb.Helper()
	env, err := s.signEnvelope(payloadType, payload)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// signUnchecked signs the statement of r without Sign's checks, for a
// Round that Sign would refuse.
func signUnchecked(tb testing.TB, s *Signer, r Round) []byte {
	tb.Helper()
	payload, err := marshalStatement(r)
	if err != nil {
		tb.Fatal(err)
	}
	return signStatement(tb, s, PayloadType, payload)
}

// statementWith returns the statement of r as a generic JSON object,
// edited by edit, re-encoded.
func statementWith(tb testing.TB, r Round, edit func(st map[string]any)) []byte {
	tb.Helper()
	payload, err := marshalStatement(r)
	if err != nil {
		tb.Fatal(err)
	}
	return editJSON(tb, payload, edit)
}

// editEnvelope decodes env as a generic JSON object, edits it, re-encodes.
func editEnvelope(tb testing.TB, env []byte, edit func(e map[string]any)) []byte {
	tb.Helper()
	return editJSON(tb, env, edit)
}

// editJSON decodes data as a generic JSON object, edits it, re-encodes.
func editJSON(tb testing.TB, data []byte, edit func(map[string]any)) []byte {
	tb.Helper()
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		tb.Fatal(err)
	}
	edit(v)
	out, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// sigs returns the signatures array of a decoded envelope.
func sigs(e map[string]any) []any { return e["signatures"].([]any) }
