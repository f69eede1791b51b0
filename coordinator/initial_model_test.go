package coordinator_test

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// initialLayout is the layout of newFederation's model: logreg, 2
// features, 2 classes.
var initialLayout = safetensors.Layout{
	{Name: "layers.1.weight", Shape: []int{2, 2}},
	{Name: "layers.1.bias", Shape: []int{2}},
}

// rawSafetensors is a safetensors file with the given header (JSON) and
// data, for files fedguard's writer would not make.
func rawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// TestInitialModel starts a federation from a safetensors file: its
// values (placed by name, whatever the file's order) are round 0's model,
// and the round-0 manifest's model_spec names the layout's digest.
func TestInitialModel(t *testing.T) {
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	path := filepath.Join(t.TempDir(), "initial.safetensors")
	// Bias first: the coordinator places tensors by name.
	if err := safetensors.WriteFile(path, safetensors.Layout{initialLayout[1], initialLayout[0]}, []float32{0.5, -0.5, 1, 2, 3, 4}, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.InitialModel = path
	// Round 0's manifest is signed once the feature scaling is fixed.
	s := start(t, cfg)
	fixScaling(t, f.connect(t, s, "hospital-a", "hospital-b"))
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	exp, err := coordinator.ExportModel(cfg.DataDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 6)
	if err := model.DecodeInto(got, exp.Model); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 2, 3, 4, 0.5, -0.5}; !slices.Equal(got, want) {
		t.Errorf("round 0's model = %v, want the file's %v in layout order", got, want)
	}
	keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := manifest.Verify(exp.Manifest, keys, fedName)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		LayoutSHA256 string `json:"layout_sha256"`
	}
	if err := json.Unmarshal(v.Round.ModelSpec, &spec); err != nil {
		t.Fatal(err)
	}
	d := initialLayout.Digest()
	if spec.LayoutSHA256 != hex.EncodeToString(d[:]) {
		t.Errorf("round 0 manifest's model_spec.layout_sha256 = %q, want %x", spec.LayoutSHA256, d)
	}
	// The coordinator restarts with the same configuration.
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatalf("restart with initial_model: %v", err)
	}
	c.Close()
}

// TestInitialModelRefused: a file that cannot be the model is refused at
// start-up with an error that says why, and leaves nothing behind: --init
// with a good file then works.
func TestInitialModelRefused(t *testing.T) {
	good := f32s(1, 2, 3, 4, 5, 6)
	const header = `{"layers.1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"layers.1.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}`
	for _, tc := range []struct {
		name string
		file []byte // nil: no file
		want string
	}{
		{"missing", nil, "no such file"},
		{"not safetensors", []byte("PK\x03\x04 a zip file, say"), "malformed"},
		{"wrong shape", rawSafetensors(`{"layers.1.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},"layers.1.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}`, good), "layers.1.weight[1 4]"},
		{"missing tensor", rawSafetensors(`{"layers.1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`, good[:16]), "needs layers.1.weight[2 2] layers.1.bias[2]"},
		{"extra tensor", rawSafetensors(`{"layers.1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"layers.1.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"x":{"dtype":"F32","shape":[1],"data_offsets":[24,28]}}`, f32s(1, 2, 3, 4, 5, 6, 7)), "x[1]"},
		{"NaN", rawSafetensors(header, f32s(1, 2, float32(math.NaN()), 4, 5, 6)), "non-finite"},
		{"Inf", rawSafetensors(header, f32s(1, 2, 3, 4, 5, float32(math.Inf(-1)))), "non-finite"},
		{"integer dtype", rawSafetensors(`{"layers.1.weight":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},"layers.1.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}`, good), "dtype"},
		{"overlap", rawSafetensors(`{"layers.1.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"layers.1.bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, good[:16]), "malformed"},
		{"short data", rawSafetensors(header, good[:20]), "malformed"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<40), "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFederation(t, []string{"hospital-a", "hospital-b"})
			path := filepath.Join(t.TempDir(), "initial.safetensors")
			if tc.file != nil {
				if err := os.WriteFile(path, tc.file, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := f.cfg
			cfg.InitialModel = path
			c, err := coordinator.New(cfg, coordinator.WithInit())
			if err == nil {
				c.Close()
				t.Fatal("New accepted the initial model")
			}
			if !errors.Is(err, coordinator.ErrInitialModel) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want ErrInitialModel saying %q", err, tc.want)
			}
			if err := safetensors.WriteFile(path, initialLayout, []float32{1, 2, 3, 4, 5, 6}, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err = coordinator.New(cfg, coordinator.WithInit())
			if err != nil {
				t.Fatalf("--init with a good file after a refused one: %v", err)
			}
			c.Close()
		})
	}
}

// TestLayoutDigestConfig: a layout_sha256 that is not the model's is a
// configuration error.
func TestLayoutDigestConfig(t *testing.T) {
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	cfg := f.cfg
	cfg.Model.LayoutSHA256 = strings.Repeat("ab", 32)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "layout_sha256") {
		t.Errorf("Validate = %v, want a layout_sha256 error", err)
	}
	d := initialLayout.Digest()
	cfg.Model.LayoutSHA256 = hex.EncodeToString(d[:])
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate with the model's layout digest = %v", err)
	}
}
