package pytorch_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	pytorch "github.com/fedguard/fedguard/examples/pytorch"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/safetensors"
)

// python is Debian's interpreter, the one python3-numpy installs into.
const python = "/usr/bin/python3"

// needNumpy skips the test unless python imports numpy (in CI, which
// installs it, it fails instead).
func needNumpy(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatalf("%s cannot import numpy (.ci/run installs python3-numpy): %v", python, err)
		}
		t.Skipf("%s cannot import numpy: %v", python, err)
	}
}

// TestSafetensorsRoundTrip checks safetensors_np.py against the Go
// package, both ways: a file fedguard writes (as the agent writes the
// global model) is read by the helper, which writes it back with the
// tensors in another order and metadata (as a trainer writes its
// weights); fedguard's strict reader accepts the result and reads the
// same values, placed by name.
func TestSafetensorsRoundTrip(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	if err := pytorch.Write(dir); err != nil {
		t.Fatal(err)
	}
	layout := safetensors.Layout{{Name: "layers.1.weight", Shape: []int{3, 2}}, {Name: "layers.1.bias", Shape: []int{3}}, {Name: "scalar", Shape: []int{}}}
	params := []float32{1, -2, 3.5, 1e-30, -0.25, 6, 7, 8, 9, 3.14159}
	in, out := filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
	if err := safetensors.WriteFile(in, layout, params, map[string]string{"k": "v"}, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import sys
from collections import OrderedDict
import safetensors_np as s
t, meta = s.load(sys.argv[1])
assert meta == {"k": "v"}, meta
assert list(t) == ["layers.1.weight", "layers.1.bias", "scalar"], list(t)
assert t["layers.1.weight"].shape == (3, 2) and t["scalar"].shape == ()
s.save(sys.argv[2], OrderedDict(reversed(list(t.items()))), {"trainer": "test"})
`
	cmd := exec.Command(python, "-c", script, in, out)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("safetensors_np: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	r, err := safetensors.Open(f, fi.Size())
	if err != nil {
		t.Fatalf("fedguard refuses safetensors_np's file: %v", err)
	}
	got := make([]float32, len(params))
	if err := r.ReadInto(layout, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, params) {
		t.Errorf("round trip gave %v, want %v", got, params)
	}
	if m := r.Metadata(); m["trainer"] != "test" {
		t.Errorf("metadata = %v", m)
	}
}

// TestWrite checks that Write lays out exactly the embedded files, so
// that the digest a hospital approves is that of train.py and its helper.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := pytorch.Write(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"safetensors_np.py", "train.py"}; !slices.Equal(names, want) {
		t.Errorf("Write made %v, want %v", names, want)
	}
	d1, err := participant.TrainerDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pytorch.Files.ReadFile(pytorch.Script)
	if err := os.WriteFile(filepath.Join(dir, pytorch.Script), append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if d2, _ := participant.TrainerDigest(dir); d2 == d1 {
		t.Errorf("the digest %s did not change with train.py", d1)
	}
}
