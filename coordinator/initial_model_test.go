package coordinator_test

// The initial model: a built-in layout (logreg) filled from a safetensors
// file, or a "tensors" layout of any shape taken from the file itself.

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
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
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

// round0Spec exports round 0 from dataDir, verifies its signed manifest
// and decodes the manifest's model_spec into spec.
func round0Spec(t *testing.T, dataDir string, spec any) coordinator.ExportedModel {
	t.Helper()
	exp, err := coordinator.ExportModel(dataDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := manifest.LoadPublicKeys(filepath.Join(dataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := manifest.Verify(exp.Manifest, keys, fedName)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(v.Round.ModelSpec, spec); err != nil {
		t.Fatalf("round 0 manifest's model_spec %s: %v", v.Round.ModelSpec, err)
	}
	return exp
}

// refuseInitialModel writes file (nil: no file) as cfg's initial model
// and checks that New refuses it with ErrInitialModel saying want. It
// returns cfg with the initial model's path set.
func refuseInitialModel(t *testing.T, cfg coordinator.Config, file []byte, want string) coordinator.Config {
	t.Helper()
	cfg.InitialModel = filepath.Join(t.TempDir(), "initial.safetensors")
	if file != nil {
		if err := os.WriteFile(cfg.InitialModel, file, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := coordinator.New(cfg, coordinator.WithInit())
	if err == nil {
		c.Close()
		t.Fatal("New accepted the initial model")
	}
	if !errors.Is(err, coordinator.ErrInitialModel) || !strings.Contains(err.Error(), want) {
		t.Fatalf("New = %v, want ErrInitialModel saying %q", err, want)
	}
	return cfg
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
	var spec struct {
		LayoutSHA256 string `json:"layout_sha256"`
	}
	exp := round0Spec(t, cfg.DataDir, &spec)
	got := make([]float32, 6)
	if err := model.DecodeInto(got, exp.Model); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 2, 3, 4, 0.5, -0.5}; !slices.Equal(got, want) {
		t.Errorf("round 0's model = %v, want the file's %v in layout order", got, want)
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
			cfg := refuseInitialModel(t, f.cfg, tc.file, tc.want)
			if err := safetensors.WriteFile(cfg.InitialModel, initialLayout, []float32{1, 2, 3, 4, 5, 6}, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := coordinator.New(cfg, coordinator.WithInit())
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

// cnnLayout is a small convolutional network's layout: a 4-D kernel, a
// bias, a fully connected head and a scalar, none of which the built-in
// models could describe.
var cnnLayout = safetensors.Layout{
	{Name: "conv1.weight", Shape: []int{2, 1, 3, 3}},
	{Name: "conv1.bias", Shape: []int{2}},
	{Name: "fc.weight", Shape: []int{3, 8}},
	{Name: "fc.bias", Shape: []int{3}},
	{Name: "temperature", Shape: []int{}},
}

// tensorFederation is newFederation with a "tensors" model whose layout
// comes from an initial model file written with values 0, 1, 2, ….
func tensorFederation(t *testing.T) (*federation, []float32) {
	t.Helper()
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	values := make([]float32, cnnLayout.NumParams())
	for i := range values {
		values[i] = float32(i) / 64
	}
	path := filepath.Join(t.TempDir(), "initial.safetensors")
	if err := safetensors.WriteFile(path, cnnLayout, values, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.cfg.Model = coordinator.ModelConfig{Kind: "tensors", Classes: []string{"0", "1", "2"}}
	f.cfg.InitialModel = path
	return f, values
}

// TestTensorLayoutFederation: a federation of any tensor layout, taken
// from its initial model. Join announces the layout, no statistics are
// asked for (the model has no feature columns), the first round opens
// from the file's values, and round 0's signed manifest carries the
// layout and its digest; the status page says the statistics phase was
// skipped.
func TestTensorLayoutFederation(t *testing.T) {
	f, values := tensorFederation(t)
	s, ps := f.startConnected(t, "hospital-a", "hospital-b")
	for _, p := range ps {
		if p.statsNeeded(t) {
			t.Fatalf("%s: Join asks for statistics of a model without feature columns", p.name)
		}
	}
	resp, err := ps[0].svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	spec := resp.GetModel()
	if spec.GetKind() != fedguardv1.ModelKind_MODEL_KIND_TENSORS || spec.GetNumParams() != uint64(len(values)) || len(spec.GetTensors()) != len(cnnLayout) {
		t.Fatalf("Join's model = %v, want the tensor layout of %d parameters", spec, len(values))
	}
	for i, ts := range spec.GetTensors() {
		want := cnnLayout[i]
		if ts.GetName() != want.Name || len(ts.GetShape()) != len(want.Shape) {
			t.Errorf("tensor %d = %v, want %v", i, ts, want)
		}
	}
	asg := assignments(t, ps)
	got, _, err := ps[0].getModel(t, asg[0].GetRound())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, values) {
		t.Errorf("round 1 starts from %v…, want the initial model's values", got[:4])
	}
	if st := s.c.Status(); st.Statistics != coordinator.StatisticsSkipped || !strings.HasPrefix(st.Model, "tensors: 5 tensors") {
		t.Errorf("status: statistics %q, model %q; want skipped and the tensor layout", st.Statistics, st.Model)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	var ms struct {
		Kind         string                     `json:"kind"`
		LayoutSHA256 string                     `json:"layout_sha256"`
		Tensors      []coordinator.TensorConfig `json:"tensors"`
	}
	round0Spec(t, f.cfg.DataDir, &ms)
	d := cnnLayout.Digest()
	if ms.Kind != "tensors" || ms.LayoutSHA256 != hex.EncodeToString(d[:]) || len(ms.Tensors) != len(cnnLayout) || ms.Tensors[0].Name != "conv1.weight" || !slices.Equal(ms.Tensors[0].Shape, []int{2, 1, 3, 3}) {
		t.Errorf("round 0 manifest's model_spec = %+v, want the layout and digest %x", ms, d)
	}
	// A restart takes the layout from the file again and finds the
	// federation's specification unchanged.
	c, err := coordinator.New(f.cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	c.Close()
}

// TestTensorLayoutRefused: kind tensors refuses at start-up, with a
// clear error and nothing written, an initial model that cannot be a
// federation's first model (see also TestInitialModelRefused for the
// built-in layouts), a configured layout the file does not have, and a
// missing initial model.
func TestTensorLayoutRefused(t *testing.T) {
	const hdr = `{"conv.weight":{"dtype":"F32","shape":[2,1,1,2],"data_offsets":[0,16]},"conv.bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}`
	good := f32s(1, 2, 3, 4, 5, 6)
	for _, tc := range []struct {
		name    string
		file    []byte
		tensors []coordinator.TensorConfig
		want    string
	}{
		{"integer dtype", rawSafetensors(strings.Replace(hdr, `"dtype":"F32","shape":[2]`, `"dtype":"I64","shape":[1]`, 1), good), nil, "dtype"},
		{"bool dtype", rawSafetensors(strings.Replace(hdr, `"dtype":"F32","shape":[2]`, `"dtype":"BOOL","shape":[8]`, 1), good), nil, "dtype"},
		{"duplicate", rawSafetensors(`{"conv.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"conv.weight":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`, good), nil, "duplicate"},
		{"overlap", rawSafetensors(`{"conv.weight":{"dtype":"F32","shape":[2,1,1,2],"data_offsets":[0,16]},"conv.bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, good[:16]), nil, "malformed"},
		{"header over the bound", append(rawSafetensors("", nil)[:0], 0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0), nil, "malformed"},
		{"size mismatch", rawSafetensors(hdr, good[:20]), nil, "malformed"},
		{"shape does not match offsets", rawSafetensors(strings.Replace(hdr, `[2,1,1,2]`, `[2,1,1,3]`, 1), good), nil, "malformed"},
		{"NaN", rawSafetensors(hdr, f32s(1, float32(math.NaN()), 3, 4, 5, 6)), nil, "non-finite"},
		{"Inf", rawSafetensors(hdr, f32s(1, 2, 3, 4, 5, float32(math.Inf(1)))), nil, "non-finite"},
		{"other configured layout", rawSafetensors(hdr, good), []coordinator.TensorConfig{{Name: "conv.weight", Shape: []int{2, 2}}, {Name: "conv.bias", Shape: []int{2}}}, "conv.weight[2 1 1 2]"},
		{"no file", nil, nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFederation(t, []string{"hospital-a", "hospital-b"})
			cfg := f.cfg
			cfg.Model = coordinator.ModelConfig{Kind: "tensors", Tensors: tc.tensors}
			cfg = refuseInitialModel(t, cfg, tc.file, tc.want)
			if tc.tensors == nil && tc.want != "non-finite" { // values are read at --init, not at a check
				if verr := cfg.Validate(); verr == nil || !strings.Contains(verr.Error(), tc.want) {
					t.Errorf("Validate = %v, want it to say %q", verr, tc.want)
				}
			}
			if entries, _ := os.ReadDir(cfg.DataDir); len(entries) > 0 {
				t.Errorf("a refused start left %d files in the data directory", len(entries))
			}
		})
	}
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	cfg := f.cfg
	cfg.Model = coordinator.ModelConfig{Kind: "tensors"}
	if _, err := coordinator.New(cfg, coordinator.WithInit()); err == nil || !strings.Contains(err.Error(), "needs initial_model") {
		t.Errorf("kind tensors without initial_model: New = %v", err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "needs initial_model") {
		t.Errorf("kind tensors without initial_model: Validate = %v", err)
	}
}
