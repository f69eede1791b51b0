package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// signedModel writes a model file as `model export` does, its manifest
// and the signer's public keys into dir, and returns their paths.
func signedModel(t *testing.T, dir string) (modelPath, manifestPath, keyPath string, s *manifest.Signer) {
	t.Helper()
	s, err := manifest.GenerateSigner(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	params := []float32{0.5, -1, 2, 0, 0.25, 1, -0.5, 0.125}
	d := model.Digest(params)
	r := manifest.Round{
		Federation:    "clinic-net",
		ModelSHA256:   hex.EncodeToString(d[:]),
		NumParams:     uint64(len(params)),
		ModelSpec:     []byte(`{"kind":"logreg","features":["a","b","c"],"label":"y","classes":["0","1"]}`),
		ScalingSHA256: strings.Repeat("0", 64),
		Parameters:    []byte(`{}`),
		Included:      []manifest.Contributor{},
		Excluded:      []manifest.Exclusion{},
		Closed:        time.Now(),
	}
	env, digest, err := manifest.Sign(s, r)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := safetensors.SpecLayout(model.Spec{Kind: model.LogReg, Features: 3, Classes: 2})
	if err != nil {
		t.Fatal(err)
	}
	modelPath = filepath.Join(dir, exportName(r.Federation, 0))
	if err := safetensors.WriteFile(modelPath, layout, params, legacyMetadata(r, digest), 0o644); err != nil {
		t.Fatal(err)
	}
	manifestPath = modelPath + ".manifest.json"
	keyPath = filepath.Join(dir, "signing.pub")
	for p, b := range map[string][]byte{manifestPath: env, keyPath: s.Public().MarshalPEM()} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return modelPath, manifestPath, keyPath, s
}

// readSigned reads an exported model: the coordinator's keys at keyPath,
// the signed manifest at manifestPath and the model file's bytes.
func readSigned(t *testing.T, modelPath, manifestPath, keyPath string) (keys manifest.PublicKeys, envelope, model []byte) {
	t.Helper()
	keys, err := manifest.LoadPublicKeys(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if envelope, err = os.ReadFile(manifestPath); err != nil {
		t.Fatal(err)
	}
	if model, err = os.ReadFile(modelPath); err != nil {
		t.Fatal(err)
	}
	return keys, envelope, model
}

// refusesEveryByteChange checks that verifyModel refuses the model file
// good, which envelope signs under keys, with any one byte xored with any
// of flips. It returns the path of the last changed file.
func refusesEveryByteChange(t *testing.T, good, envelope []byte, keys manifest.PublicKeys, flips ...byte) string {
	t.Helper()
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	for i := range good {
		for _, flip := range flips {
			b := bytes.Clone(good)
			b[i] ^= flip
			if err := os.WriteFile(bad, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := verifyModel(bad, envelope, keys, ""); err == nil {
				t.Fatalf("verifyModel accepted the file with byte %d xor %#x (%q → %q)", i, flip, good[i], b[i])
			}
		}
	}
	return bad
}

func TestModelVerify(t *testing.T) {
	dir := t.TempDir()
	modelPath, manifestPath, keyPath, _ := signedModel(t, dir)
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"model", "verify", "--model", modelPath, "--manifest", manifestPath, "--key", keyPath, "--federation", "clinic-net"}, &out, &errOut); code != 0 {
		t.Fatalf("model verify = %d\nstderr: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "verified: ") || !strings.Contains(out.String(), "round 0") {
		t.Errorf("model verify printed %q", out.String())
	}

	keys, envelope, good := readSigned(t, modelPath, manifestPath, keyPath)
	bad := refusesEveryByteChange(t, good, envelope, keys, 0x01, 0x20)
	// Another federation, another key, another manifest.
	if _, err := verifyModel(modelPath, envelope, keys, "other-net"); err == nil {
		t.Errorf("verifyModel with another federation succeeded")
	}
	_, _, _, other := signedModel(t, t.TempDir())
	if _, err := verifyModel(modelPath, envelope, other.Public(), ""); err == nil {
		t.Errorf("verifyModel with another key succeeded")
	}
	m2, _, _, _ := signedModel(t, t.TempDir()) // same values, another manifest
	if _, err := verifyModel(m2, envelope, keys, ""); err == nil {
		t.Errorf("verifyModel of a file exported with another manifest succeeded")
	}
	if code := Main(context.Background(), []string{"model", "verify", "--model", bad, "--manifest", manifestPath, "--key", keyPath}, &out, &errOut); code == 0 {
		t.Errorf("model verify of a changed file exited 0")
	}
}

// TestModelExportOutDir: a missing -out directory is named before anything
// is read. Before, the export read and verified the model, then failed on
// "open …tmp: no such file or directory".
func TestModelExportOutDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "no-such-dir")
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"model", "export", "--data-dir", t.TempDir(), "--out", out}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "-out "+out+" is not an existing directory") {
		t.Errorf("model export --out %s = exit %d, stderr %q; want a usage error naming -out", out, code, stderr.String())
	}
}

// TestManifestReadBounded: model verify and predict read -manifest up to
// manifest.MaxEnvelopeSize and no further, so a manifest that never ends
// is refused instead of read until memory runs out, as it was when they
// read it with os.ReadFile.
func TestManifestReadBounded(t *testing.T) {
	dir := t.TempDir()
	modelPath, _, keyPath, _ := signedModel(t, dir)
	endless := endless.File(t, dir, "endless.manifest.json")
	data := filepath.Join(dir, "rows.csv")
	if err := os.WriteFile(data, []byte("a,b,c\n1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tooLarge := "manifest: read " + endless + ": larger than 4194304 bytes"
	runSteps(t, []cliStep{
		{"model verify", []string{"model", "verify", "--model", modelPath, "--manifest", endless, "--key", keyPath}, 1, nil, tooLarge},
		{"predict", []string{"predict", "--model", modelPath, "--data", data, "--manifest", endless, "--key", keyPath}, 1, nil, tooLarge},
	})
}
