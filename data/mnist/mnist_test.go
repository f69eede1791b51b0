package mnist

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/modfile"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

// go test -update (golden.Updating) rewrites testdata/tiny from the images
// and labels in this file.

// idx encodes an IDX file: magic, the dimensions, then data.
func idx(magic uint32, dims []uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

func imagesIDX(pix []byte) []byte {
	return idx(magicImages, []uint32{uint32(len(pix) / Features), Rows, Cols}, pix)
}

func labelsIDX(labels []byte) []byte { return idx(magicLabels, []uint32{uint32(len(labels))}, labels) }

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tinyPixels are the golden images: train has a dot in the top-left
// corner, a full square and a ramp; test has a blank and a full square.
func tinyPixels() (train, test []byte) {
	train = make([]byte, 3*Features)
	train[0] = 255
	for j := range Features {
		train[Features+j] = 255
		train[2*Features+j] = byte(j)
	}
	test = make([]byte, 2*Features)
	for j := range Features {
		test[Features+j] = 255
	}
	return train, test
}

// tinyFiles are the golden files' decompressed contents.
func tinyFiles() map[string][]byte {
	train, test := tinyPixels()
	return map[string][]byte{
		TrainImages: imagesIDX(train),
		TrainLabels: labelsIDX([]byte{0, 9, 5}),
		TestImages:  imagesIDX(test),
		TestLabels:  labelsIDX([]byte{3, 7}),
	}
}

// writeSet writes files (decompressed contents) gzipped into a new folder.
func writeSet(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), gz(t, b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGolden(t *testing.T) {
	const dir = "testdata/tiny"
	if golden.Updating() {
		for name, b := range tinyFiles() {
			if err := os.WriteFile(filepath.Join(dir, name), gz(t, b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	train, test, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%q): %v", dir, err)
	}
	if diff := cmp.Diff([]int{0, 9, 5}, train.Labels); diff != "" {
		t.Errorf("train labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{3, 7}, test.Labels); diff != "" {
		t.Errorf("test labels (-want +got):\n%s", diff)
	}
	if len(train.Images) != 3 || len(test.Images) != 2 {
		t.Fatalf("got %d train and %d test images, want 3 and 2", len(train.Images), len(test.Images))
	}
	for _, c := range []struct {
		name string
		img  []float64
		i    int
		want float64
	}{
		{"train 0 corner", train.Images[0], 0, 1},
		{"train 0 next", train.Images[0], 1, 0},
		{"train 0 last", train.Images[0], 783, 0},
		{"train 1 last", train.Images[1], 783, 1},
		{"train 2 ramp 128", train.Images[2], 128, 128.0 / 255},
		{"train 2 ramp 255", train.Images[2], 255, 1},
		{"train 2 ramp 256", train.Images[2], 256, 0},
		{"test 0 middle", test.Images[0], 400, 0},
		{"test 1 first", test.Images[1], 0, 1},
	} {
		if c.img[c.i] != c.want {
			t.Errorf("%s: pixel %d = %v, want %v", c.name, c.i, c.img[c.i], c.want)
		}
	}
	for i, img := range train.Images {
		if len(img) != Features || cap(img) != Features {
			t.Errorf("train image %d: len %d cap %d, want %d", i, len(img), cap(img), Features)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   string                    // the file to change
		mutate func(b []byte) []byte     // its decompressed contents
		raw    func(t *testing.T) []byte // or its bytes on disk
		want   string
		format bool // whether the error wraps ErrFormat
	}{
		{"bad image magic", TrainImages, func(b []byte) []byte { b[3] = 0x01; return b }, nil, "magic number 0x00000801, want 0x00000803", true},
		{"bad label magic", TestLabels, func(b []byte) []byte { b[2] = 0x09; return b }, nil, "magic number 0x00000901, want 0x00000801", true},
		{"labels as images", TrainImages, func([]byte) []byte { return labelsIDX([]byte{1, 2, 3}) }, nil, "magic number 0x00000801", true},
		{"truncated header", TrainLabels, func(b []byte) []byte { return b[:6] }, nil, "truncated header (want 8 bytes)", true},
		{"truncated images", TrainImages, func(b []byte) []byte { return b[:len(b)-10] }, nil, "truncated: 2 of 3 images", true},
		{"truncated labels", TestLabels, func(b []byte) []byte { return b[:len(b)-1] }, nil, "truncated: 1 of 2 labels", true},
		{"trailing bytes", TestImages, func(b []byte) []byte { return append(b, 0) }, nil, "trailing bytes after 2 images", true},
		{"count mismatch", TrainLabels, func([]byte) []byte { return labelsIDX([]byte{0, 1}) }, nil, "has 2 labels but", true},
		{"label 10", TrainLabels, func(b []byte) []byte { b[len(b)-1] = 10; return b }, nil, "label 10 of image 2 is not a digit", true},
		{"wrong rows", TrainImages, func(b []byte) []byte { b[11] = 27; return b }, nil, "images are 27×28, want 28×28", true},
		{"wrong columns", TestImages, func(b []byte) []byte { b[15] = 29; return b }, nil, "images are 28×29, want 28×28", true},
		{"count too large", TrainLabels, func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], MaxCount+1); return b }, nil, "count 100001 exceeds the limit of 100000", true},
		{"not gzip", TestLabels, nil, func(*testing.T) []byte { return labelsIDX([]byte{3, 7}) }, "not a gzip file", true},
		{"bad checksum", TestLabels, nil, func(t *testing.T) []byte {
			b := gz(t, labelsIDX([]byte{3, 7}))
			b[len(b)-5] ^= 1 // the CRC-32 in the trailer
			return b
		}, "checksum", true},
		{"missing", TestImages, nil, func(*testing.T) []byte { return nil }, "no such file", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := tinyFiles()
			if tc.mutate != nil {
				files[tc.file] = tc.mutate(files[tc.file])
			}
			dir := writeSet(t, files)
			path := filepath.Join(dir, tc.file)
			if tc.raw != nil {
				if b := tc.raw(t); b != nil {
					if err := os.WriteFile(path, b, 0o644); err != nil {
						t.Fatal(err)
					}
				} else if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := Load(dir)
			if err == nil {
				t.Fatalf("Load = nil error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load = %v, want an error naming %s and saying %q", err, path, tc.want)
			}
			if got := errors.Is(err, ErrFormat); got != tc.format {
				t.Errorf("errors.Is(%v, ErrFormat) = %v, want %v", err, got, tc.format)
			}
		})
	}
}

// TestBoundedAllocation checks that a header claiming MaxCount images costs
// memory in proportion to the bytes that follow it, not to the claim.
func TestBoundedAllocation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		magic uint32
		dims  []uint32
	}{
		{"images", func(b []byte) error { _, _, err := readImages(bytes.NewReader(b)); return err }, magicImages, []uint32{MaxCount, Rows, Cols}},
		{"labels", func(b []byte) error { _, err := readLabels(bytes.NewReader(b)); return err }, magicLabels, []uint32{MaxCount}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := idx(tc.magic, tc.dims, make([]byte, 1000))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := tc.parse(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("parse = %v, want a truncation error", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("parsing 1,000 bytes after the header allocated %d bytes", n)
			}
		})
	}
}

func TestDir(t *testing.T) {
	escaped := filepath.Join("github.com", "petar", "!go!m!n!i!s!t@"+ModuleVersion, "data")
	t.Run("override", func(t *testing.T) {
		d := t.TempDir()
		t.Setenv(EnvDir, d)
		if got, err := Dir(); got != d || err != nil {
			t.Errorf("Dir() = %q, %v, want %q, nil", got, err, d)
		}
		t.Setenv(EnvDir, filepath.Join(d, "nope"))
		if _, err := Dir(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), EnvDir) {
			t.Errorf("Dir() with a missing %s = %v, want ErrNotFound naming it", EnvDir, err)
		}
	})
	for _, tc := range []struct {
		name  string
		env   func(root string) map[string]string
		cache string // relative to root
	}{
		{"GOMODCACHE", func(r string) map[string]string {
			return map[string]string{"GOMODCACHE": filepath.Join(r, "cache"), "GOPATH": filepath.Join(r, "gopath")}
		}, "cache"},
		{"GOPATH", func(r string) map[string]string {
			return map[string]string{"GOMODCACHE": "", "GOPATH": filepath.Join(r, "gopath") + string(filepath.ListSeparator) + filepath.Join(r, "other")}
		}, filepath.Join("gopath", "pkg", "mod")},
		{"HOME", func(r string) map[string]string {
			return map[string]string{"GOMODCACHE": "", "GOPATH": "", "HOME": r, "USERPROFILE": r, "home": r}
		}, filepath.Join("go", "pkg", "mod")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			t.Setenv(EnvDir, "")
			for k, v := range tc.env(root) {
				t.Setenv(k, v)
			}
			want := filepath.Join(root, tc.cache, escaped)
			_, err := Dir()
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "go mod download "+ModulePath) {
				t.Errorf("Dir() before the download = %v, want ErrNotFound naming %s and the fix", err, want)
			}
			if err := os.MkdirAll(want, 0o755); err != nil {
				t.Fatal(err)
			}
			if got, err := Dir(); got != want || err != nil {
				t.Errorf("Dir() = %q, %v, want %q, nil", got, err, want)
			}
		})
	}
}

// TestModuleVersion checks that the fallback version is the one go.mod
// requires, so that tests (whose build information lacks dependencies)
// read the same files as the binaries.
func TestModuleVersion(t *testing.T) {
	const path = "../../go.mod"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.ParseLax(path, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == ModulePath {
			if r.Mod.Version != ModuleVersion {
				t.Errorf("go.mod requires %s, ModuleVersion is %s", r.Mod, ModuleVersion)
			}
			return
		}
	}
	t.Errorf("go.mod does not require %s", ModulePath)
}

// TestLoadMNIST loads the real data set from the module cache.
func TestLoadMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("long (reads 11 MB of gzip): skipped by -short; `make test` runs it")
	}
	t.Setenv(EnvDir, "")
	start := time.Now()
	train, test, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded in %v", time.Since(start))
	for _, c := range []struct {
		name  string
		s     *Set
		first []int
		hist  []int // published class counts
	}{
		{"train", train, []int{5, 0, 4, 1, 9}, []int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}},
		{"test", test, []int{7, 2, 1, 0, 4}, []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}},
	} {
		hist := make([]int, len(Classes()))
		for _, l := range c.s.Labels {
			hist[l]++
		}
		if diff := cmp.Diff(c.hist, hist); diff != "" {
			t.Errorf("%s label histogram (-want +got):\n%s", c.name, diff)
		}
		if diff := cmp.Diff(c.first, c.s.Labels[:len(c.first)]); diff != "" {
			t.Errorf("%s first labels (-want +got):\n%s", c.name, diff)
		}
		if len(c.s.Images) != len(c.s.Labels) {
			t.Errorf("%s: %d images, %d labels", c.name, len(c.s.Images), len(c.s.Labels))
		}
		var ink float64
		for _, img := range c.s.Images {
			for _, p := range img {
				ink += p
			}
		}
		// About 13% of an MNIST image is ink (mean pixel 0.1307).
		if mean := ink / float64(len(c.s.Images)*Features); mean < 0.12 || mean > 0.14 {
			t.Errorf("%s: mean pixel %.4f, want about 0.13", c.name, mean)
		}
	}
}

// FuzzReadIDX checks that the parsers never panic, and that whatever they
// accept encodes back to the same bytes: parsing is strict, so an accepted
// file is canonical. Image seeds are kilobytes long, so minimizing a new
// input with the default -fuzzminimizetime (60s) stalls fuzzing; run it with
// -fuzzminimizetime 2000x.
func FuzzReadIDX(f *testing.F) {
	for _, b := range tinyFiles() {
		f.Add(b)
	}
	f.Add(labelsIDX(nil))
	f.Add(imagesIDX(nil))
	f.Add(idx(magicImages, []uint32{MaxCount, Rows, Cols}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		if pix, n, err := readImages(bytes.NewReader(b)); err == nil {
			if len(pix) != n*Features {
				t.Fatalf("%d pixels for %d images", len(pix), n)
			}
			raw := make([]byte, len(pix))
			for i, p := range pix {
				if !(p >= 0 && p <= 1) {
					t.Fatalf("pixel %d = %v, outside [0, 1]", i, p)
				}
				raw[i] = byte(p*255 + 0.5)
			}
			if !bytes.Equal(imagesIDX(raw), b) {
				t.Fatalf("readImages accepted %x, which does not re-encode to itself", b)
			}
		} else if !errors.Is(err, ErrFormat) {
			t.Fatalf("readImages = %v, want an ErrFormat", err)
		}
		if labels, err := readLabels(bytes.NewReader(b)); err == nil {
			raw := make([]byte, len(labels))
			for i, l := range labels {
				if l < 0 || l > 9 {
					t.Fatalf("label %d = %d", i, l)
				}
				raw[i] = byte(l)
			}
			if !bytes.Equal(labelsIDX(raw), b) {
				t.Fatalf("readLabels accepted %x, which does not re-encode to itself", b)
			}
		} else if !errors.Is(err, ErrFormat) {
			t.Fatalf("readLabels = %v, want an ErrFormat", err)
		}
	})
}
