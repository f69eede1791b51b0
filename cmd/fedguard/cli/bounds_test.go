package cli

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// TestAuditProofReadBounded: audit verify -proof reads at most
// maxProofBytes and refuses a longer file by its size. Before, it read the
// first 16 MiB of a file that never ends and reported whatever the proof
// parser made of them.
func TestAuditProofReadBounded(t *testing.T) {
	dir := t.TempDir()
	_, _, keyPath, _ := signedModel(t, dir)
	endless := endless.File(t, dir, "endless.proof")
	runSteps(t, []cliStep{
		{"file", []string{"audit", "verify", "--proof", "--key", keyPath, endless}, 1, nil, "proof " + endless + ": larger than 16777216 bytes"},
	})
}

// TestPredictAllocationBounded: predict without -manifest takes the model
// from the file's own metadata, and allocates for it only when the file
// holds as many values. Before, a file of a few hundred bytes whose
// model_spec claimed an MLP of 1.16·10⁹ parameters made it allocate 4.6 GB
// before the layout was found not to match.
func TestPredictAllocationBounded(t *testing.T) {
	dir := t.TempDir()
	spec := `{"kind":"mlp","features":["a","b","c"],"label":"y","classes":["0","1"],"hidden":[34000,34000]}`
	layout, err := safetensors.SpecLayout(model.Spec{Kind: model.LogReg, Features: 3, Classes: 2})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]float32, layout.NumParams())
	path := filepath.Join(dir, "claims-big.safetensors")
	meta := map[string]string{
		manifest.MetaModelSpec: spec, manifest.MetaScaling: strings.Repeat("0", 64),
		manifest.MetaModel: strings.Repeat("0", 64), manifest.MetaRound: "1",
	}
	if err := safetensors.WriteFile(path, layout, params, meta, 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = loadServed(path, "", "", "")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, safetensors.ErrLayout) || !strings.Contains(err.Error(), "the file holds 8 values") {
		t.Errorf("loadServed = %v, want the layout refusal naming the file's values", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("loadServed allocated %d bytes for a file of 8 values", grew)
	}
}

// TestModelVerifySizeBounded: model verify refuses a model file larger
// than any safetensors file of the manifest's model can be, by its size,
// before it hashes or parses it. Before, such a file (here a sparse one)
// was read through and refused for what it held.
func TestModelVerifySizeBounded(t *testing.T) {
	dir := t.TempDir()
	modelPath, manifestPath, keyPath, _ := signedModel(t, dir)
	limit := int64(8 + safetensors.MaxHeaderSize + 8*8) // 8 parameters
	if err := os.Truncate(modelPath, limit+1); err != nil {
		t.Fatal(err)
	}
	runSteps(t, []cliStep{
		{"one byte too many", []string{"model", "verify", "--model", modelPath, "--manifest", manifestPath, "--key", keyPath}, 1, nil,
			"is 100000073 bytes, more than the 100000072 a safetensors file of the manifest's model (8 parameters) can take"},
	})
}
