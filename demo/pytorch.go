package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/data/mnist"
	"github.com/fedguard/fedguard/dataset"
	pytorch "github.com/fedguard/fedguard/examples/pytorch"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/partition"
)

// Trainers of Options.Trainer.
const (
	// TrainerBuiltin trains fedguard's own models on WDBC rows, in process.
	TrainerBuiltin = "builtin"
	// TrainerPyTorch trains an MLP on MNIST images with examples/pytorch's
	// train.py, run by each hospital's agent as a real python process
	// through the exec contract (docs/trainer.md), its code approved by
	// digest.
	TrainerPyTorch = "pytorch"
)

// Defaults of a PyTorch demo.
const (
	// DefaultPython is the interpreter that runs train.py: Debian's, the
	// one python3-torch installs into.
	DefaultPython = "/usr/bin/python3"
	// DefaultPyTorchHospitals is the number of hospitals of a PyTorch demo.
	DefaultPyTorchHospitals = 3
	// DefaultPyTorchRounds is the number of rounds of a PyTorch demo.
	DefaultPyTorchRounds = 10
	// DefaultPartition is how a PyTorch demo deals MNIST's training images
	// among the hospitals: each class's images in proportions drawn from a
	// Dirichlet distribution of concentration 1 (label skew; see
	// package partition).
	DefaultPartition = "dirichlet:1"
	// PyTorchHidden is the width of the hidden layer of the PyTorch demo's
	// network (784 → 128 → 10, ReLU): fedguard's MLP layout, which
	// train.py builds from the tensors it is given.
	PyTorchHidden = 128
	// mnistLabel is the label column of the hospitals' CSV files.
	mnistLabel = "label"
)

// pixelFeatures are the feature columns of the MNIST CSV files: one per
// pixel, row by row.
func pixelFeatures() []string {
	fs := make([]string, mnist.Rows*mnist.Cols)
	for i := range fs {
		fs[i] = fmt.Sprintf("px%03d", i)
	}
	return fs
}

// SetupMNIST creates the federation's files in dir for n hospitals (see
// Enrol), deals MNIST's 60,000 training images among them with scheme
// (partition.Parse) and lays out the PyTorch trainer:
//
//   - dir/NAME/images.npy (uint8, rows × 784, pixels 0 to 255) and
//     dir/NAME/labels.npy (uint8) — the shard train.py trains on;
//   - dir/NAME/data.csv — the same rows as CSV (pixels 0 to 255), which
//     the agent reads for the federation's feature statistics (the
//     pixels' scaling) and for data validation;
//   - dir/trainer — train.py and safetensors_np.py, the code every
//     hospital approves by digest;
//   - dir/coordinator/initial.safetensors — the federation's initial
//     model, written by PyTorch (train.py --init, torch's default
//     initialization): the coordinator starts from it (initial_model).
//
// MNIST's 10,000 test images are the demo's test split. train.py feeds its
// network pixels / 255 rather than the federation's per-pixel
// standardization (an image model defines its own inputs; a pixel that is
// almost always 0 would get a tiny deviation and huge values), so the
// Fed's OwnInputs is set.
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
	features := pixelFeatures()
	for i, h := range hospitals {
		hospitals[i].Fraction = float64(len(parts[i])) / float64(len(train.Labels))
		hospitals[i].Preferred = ""
		if err := writeShard(filepath.Join(dir, h.Name), features, train, parts[i]); err != nil {
			return nil, fmt.Errorf("write %s's shard: %w", h.Name, err)
		}
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
	// train.py feeds its network pixels / 255, as test holds them.
	t := &dataset.Table{Features: features, X: test.Images, Labels: make([]string, len(test.Labels))}
	for i, l := range test.Labels {
		t.Labels[i] = mnist.Classes()[l]
	}
	return &Fed{
		Dir: dir, Features: features, Test: t, Hospitals: hospitals, OwnInputs: true,
		Label: mnistLabel, Classes: mnist.Classes(), TrainerCode: tdir, TrainerDigest: digest,
		InitialModel: initial,
	}, nil
}

// mnistTable is rows of set as a table with pixels 0 to 255 (the units of
// the hospitals' CSV files).
func mnistTable(features []string, set *mnist.Set, rows []int) *dataset.Table {
	t := &dataset.Table{Features: features, X: make([][]float64, len(rows)), Labels: make([]string, len(rows))}
	for i, r := range rows {
		x := make([]float64, len(set.Images[r]))
		for j, p := range set.Images[r] {
			x[j] = math.Round(p * 255)
		}
		t.X[i], t.Labels[i] = x, mnist.Classes()[set.Labels[r]]
	}
	return t
}

// writeShard writes a hospital's rows of set as images.npy, labels.npy and
// data.csv in hdir.
func writeShard(hdir string, features []string, set *mnist.Set, rows []int) error {
	pix := make([]byte, 0, len(rows)*len(features))
	labels := make([]byte, len(rows))
	for i, r := range rows {
		for _, p := range set.Images[r] {
			pix = append(pix, byte(math.Round(p*255)))
		}
		labels[i] = byte(set.Labels[r])
	}
	if err := certs.WriteFileAtomic(filepath.Join(hdir, "images.npy"), npy(pix, len(rows), len(features)), 0o600); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(filepath.Join(hdir, "labels.npy"), npy(labels, len(rows)), 0o600); err != nil {
		return err
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := mnistTable(features, set, rows).WriteCSV(w, mnistLabel); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return certs.WriteFileAtomic(filepath.Join(hdir, "data.csv"), buf.Bytes(), 0o600)
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
		"--hidden", fmt.Sprint(PyTorchHidden), "--seed", fmt.Sprint(seed%(1<<62)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("demo: write the initial model with %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// execTrainer is hospital name's PyTorch trainer: python running the
// approved train.py, with the hospital's CSV for the statistics.
func (f *Fed) execTrainer(name, python string, seed uint64) *participant.ExecTrainer {
	return &participant.ExecTrainer{
		Command:  []string{python, filepath.Join(f.TrainerCode, pytorch.Script)},
		Dir:      filepath.Join(f.Dir, name, "work"),
		Timeout:  4 * time.Minute,
		Code:     f.TrainerCode,
		Approved: slices.Clone([]string{f.TrainerDigest}),
		Local:    &participant.LocalTrainer{DataFile: filepath.Join(f.Dir, name, "data.csv"), Seed: seed},
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
