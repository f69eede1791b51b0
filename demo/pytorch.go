package demo

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/mnist"
	pytorch "github.com/fedguard/fedguard/examples/pytorch"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/partition"
	"github.com/fedguard/fedguard/safetensors"
)

// Trainers of Options.Trainer.
const (
	// TrainerBuiltin trains fedguard's own models on WDBC rows, in process.
	TrainerBuiltin = "builtin"
	// TrainerPyTorch trains a small CNN on MNIST images with
	// examples/pytorch's train.py, run by each hospital's agent as a real
	// python process through the exec contract (docs/trainer.md), its code
	// approved by digest. The federation's model is a tensor layout
	// (kind tensors) taken from train.py's initial model.
	TrainerPyTorch = "pytorch"
)

// Defaults of a PyTorch demo.
const (
	// DefaultPython is the interpreter that runs train.py: Debian's, the
	// one python3-torch installs into.
	DefaultPython = "/usr/bin/python3"
	// DefaultPyTorchHospitals is the number of hospitals of a PyTorch demo.
	DefaultPyTorchHospitals = 3
	// DefaultPyTorchRounds is the number of rounds of a PyTorch demo: its
	// CNN passes 97 % test accuracy at round 2 (seed 1, dirichlet:1).
	DefaultPyTorchRounds = 3
	// DefaultPartition is how a PyTorch demo deals MNIST's training images
	// among the hospitals: each class's images in proportions drawn from a
	// Dirichlet distribution of concentration 1 (label skew; see
	// package partition).
	DefaultPartition = "dirichlet:1"
	// PyTorchNetwork describes the PyTorch demo's network, train.py's
	// CNN (--arch cnn), whose tensors are the federation's layout.
	PyTorchNetwork = "CNN conv3x3(8)-pool-conv3x3(16)-pool-fc64-fc10"
	// mnistLabel names the label of MNIST (informational: the model has
	// no feature columns).
	mnistLabel = "label"
)

// SetupMNIST creates the federation's files in dir for n hospitals (see
// Enrol), deals MNIST's 60,000 training images among them with scheme
// (partition.Parse) and lays out the PyTorch trainer:
//
//   - dir/NAME/shard/images.npy (uint8, rows × 784, pixels 0 to 255) and
//     dir/NAME/shard/labels.npy (uint8) — the shard train.py trains on.
//     The agent passes the directory to the trainer (plan.json's data)
//     and never reads it: the model has no feature columns, so there are
//     no statistics to compute and no CSV;
//   - dir/test/images.npy and labels.npy — MNIST's 10,000 test images, on
//     which the demo scores every round's model (train.py --evaluate);
//   - dir/trainer — train.py and safetensors_np.py, the code every
//     hospital approves by digest;
//   - dir/coordinator/initial.safetensors — the federation's initial
//     model, written by PyTorch (train.py --init, torch's default
//     initialization): the coordinator starts from it (initial_model),
//     and its tensors are the federation's layout (kind tensors).
func SetupMNIST(dir string, seed uint64, n int, scheme, python string) (*Fed, error) {
	hospitals, err := HospitalSplit(n)
	if err != nil {
		return nil, err
	}
	sc, err := partition.Parse(scheme)
	if err != nil {
		return nil, err
	}
	if err := certs.EnrolLocal(dir, Federation, names(hospitals)); err != nil {
		return nil, err
	}
	train, test, err := mnist.Load("")
	if err != nil {
		return nil, err
	}
	parts, err := partition.Split(train.Labels, len(mnist.Classes()), n, sc, rand.New(rand.NewPCG(seed, 0xde70)))
	if err != nil {
		return nil, fmt.Errorf("partition MNIST: %w", err)
	}
	for i, h := range hospitals {
		hospitals[i].Fraction = float64(len(parts[i])) / float64(len(train.Labels))
		hospitals[i].Preferred = ""
		if err := writeShard(filepath.Join(dir, h.Name, "shard"), train, parts[i]); err != nil {
			return nil, fmt.Errorf("write %s's shard: %w", h.Name, err)
		}
	}
	if err := writeShard(filepath.Join(dir, "test"), test, allRows(len(test.Labels))); err != nil {
		return nil, fmt.Errorf("write the test split: %w", err)
	}
	tdir := filepath.Join(dir, "trainer")
	if err := pytorch.Write(tdir); err != nil {
		return nil, err
	}
	digest, err := participant.TrainerDigest(tdir)
	if err != nil {
		return nil, err
	}
	initial := filepath.Join(dir, "coordinator", "initial.safetensors")
	if err := initialModel(python, tdir, initial, seed); err != nil {
		return nil, err
	}
	return &Fed{
		Dir: dir, Hospitals: hospitals, Label: mnistLabel, Classes: mnist.Classes(),
		TrainerCode: tdir, TrainerDigest: digest, InitialModel: initial,
		TestShard: filepath.Join(dir, "test"), TestCount: len(test.Labels), Python: python,
	}, nil
}

// writeShard writes rows of set as images.npy (uint8 pixels 0 to 255,
// rows × 784) and labels.npy in dir.
func writeShard(dir string, set *mnist.Set, rows []int) error {
	pix := make([]byte, 0, len(rows)*mnist.Rows*mnist.Cols)
	labels := make([]byte, len(rows))
	for i, r := range rows {
		for _, p := range set.Images[r] {
			pix = append(pix, byte(math.Round(p*255)))
		}
		labels[i] = byte(set.Labels[r])
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(filepath.Join(dir, "images.npy"), npy(pix, len(rows), mnist.Rows*mnist.Cols), 0o600); err != nil {
		return err
	}
	return certs.WriteFileAtomic(filepath.Join(dir, "labels.npy"), npy(labels, len(rows)), 0o600)
}

// npy encodes a C-order uint8 array of the given shape in numpy's .npy
// format, version 1.0: the magic "\x93NUMPY", the version, a little-endian
// uint16 header length, and a Python dict literal padded with spaces and a
// newline so that the data starts at a multiple of 64 bytes.
func npy(data []byte, shape ...int) []byte {
	dims := ""
	for _, d := range shape {
		dims += fmt.Sprintf("%d, ", d)
	}
	if len(shape) > 1 {
		dims = dims[:len(dims)-2]
	}
	header := fmt.Sprintf("{'descr': '|u1', 'fortran_order': False, 'shape': (%s), }", dims)
	pad := 64 - (10+len(header)+1)%64
	if pad == 64 {
		pad = 0
	}
	header += string(bytes.Repeat([]byte{' '}, pad)) + "\n"
	out := append([]byte("\x93NUMPY\x01\x00"), binary.LittleEndian.AppendUint16(nil, uint16(len(header)))...)
	out = append(out, header...)
	return append(out, data...)
}

// initialModel runs train.py --init to write the federation's initial
// model to path.
func initialModel(python, code, path string, seed uint64) error {
	cmd := exec.Command(python, filepath.Join(code, pytorch.Script), "--init", path,
		"--arch", "cnn", "--seed", fmt.Sprint(seed%(1<<62)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("demo: write the initial model with %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// execTrainer is hospital name's PyTorch trainer: python running the
// approved train.py on the hospital's shard directory.
func (f *Fed) execTrainer(name, python string, seed uint64) *participant.ExecTrainer {
	return &participant.ExecTrainer{
		Command:  []string{python, filepath.Join(f.TrainerCode, pytorch.Script)},
		Dir:      filepath.Join(f.Dir, name, "work"),
		Timeout:  4 * time.Minute,
		Code:     f.TrainerCode,
		Approved: slices.Clone([]string{f.TrainerDigest}),
		Local:    &participant.LocalTrainer{DataFile: filepath.Join(f.Dir, name, "shard"), Seed: seed},
		Seed:     seed,
	}
}

// ErrNoTorch means the PyTorch demo's interpreter cannot import torch and
// numpy.
var ErrNoTorch = errors.New("demo: the pytorch trainer needs python with torch and numpy (Debian: apt-get install python3-torch python3-numpy)")

// CheckPython checks that python runs and imports torch and numpy; the
// error wraps ErrNoTorch and quotes python's last line of output.
func CheckPython(ctx context.Context, python string) error {
	out, err := exec.CommandContext(ctx, python, "-c", "import numpy, torch").CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("%w: %s: %v: %s", ErrNoTorch, python, err, lines[len(lines)-1])
	}
	return nil
}

// evaluatePython scores a round's model on f.TestShard with train.py
// --evaluate: only the trainer knows a tensor layout's network.
func (f *Fed) evaluatePython(res coordinator.RoundResult) (model.Metrics, error) {
	layout, err := safetensors.SpecLayout(res.Spec)
	if err != nil {
		return model.Metrics{}, err
	}
	path := filepath.Join(f.Dir, "coordinator", "evaluate.safetensors")
	if err := safetensors.WriteFile(path, layout, res.Model, nil, 0o600); err != nil {
		return model.Metrics{}, err
	}
	defer os.Remove(path)
	cmd := exec.Command(f.Python, filepath.Join(f.TrainerCode, pytorch.Script), "--evaluate", path, "--shard", f.TestShard)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return model.Metrics{}, fmt.Errorf("demo: evaluate with %s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var m struct {
		Count    int     `json:"count"`
		Loss     float64 `json:"loss"`
		Accuracy float64 `json:"accuracy"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return model.Metrics{}, fmt.Errorf("demo: evaluate: %q: %w", out, err)
	}
	return model.Metrics{Count: m.Count, Loss: m.Loss, Accuracy: m.Accuracy}, nil
}
