package coordinator

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// ErrInitialModel means Config.InitialModel cannot be the federation's
// first model: unreadable, malformed, of another layout, or not finite.
var ErrInitialModel = errors.New("coordinator: initial_model refused")

// loadInitialModel reads path, a safetensors file, as the parameter vector
// of spec. The file's tensors must be exactly spec's layout
// (safetensors.SpecLayout: the same names and shapes, in any order); the
// reader refuses malformed files, other dtypes than F32, F16, BF16 and F64,
// and NaN or ±Inf (see package safetensors). Errors wrap ErrInitialModel
// and say what the file has and what the model needs.
func loadInitialModel(path string, spec model.Spec) ([]float32, error) {
	want, err := safetensors.SpecLayout(spec)
	if err != nil {
		return nil, err
	}
	f, r, err := openInitialModel(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if got := r.Layout(); !sameTensors(got, want) {
		return nil, fmt.Errorf("%w: %s has tensors %s, the %s model needs %s", ErrInitialModel, path, describe(got), spec.Kind, describe(want))
	}
	params := make([]float32, want.NumParams())
	if err := r.ReadInto(want, params); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInitialModel, path, err)
	}
	return params, nil
}

// initialLayout reads the tensor layout of the safetensors file at path
// from its header, in the file's order (package safetensors: the order of
// the data offsets). The header is checked as strictly as when the model
// is loaded (duplicates, overlaps, sizes, dtypes, the header bound), so a
// bad file is refused when the configuration is checked. Errors wrap
// ErrInitialModel.
func initialLayout(path string) (safetensors.Layout, error) {
	f, r, err := openInitialModel(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l := r.Layout()
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInitialModel, path, err)
	}
	return l, nil
}

// sameTensors reports whether a and b have the same names and shapes, in
// any order.
func sameTensors(a, b safetensors.Layout) bool {
	if len(a) != len(b) {
		return false
	}
	shapes := make(map[string][]int, len(a))
	for _, t := range a {
		shapes[t.Name] = t.Shape
	}
	for _, t := range b {
		s, ok := shapes[t.Name]
		if !ok || !slices.Equal(s, t.Shape) {
			return false
		}
	}
	return true
}

// describe lists a layout's tensors as name[shape], at most eight of them.
func describe(l safetensors.Layout) string {
	parts := make([]string, 0, min(len(l), 9))
	for i, t := range l {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("… (%d tensors)", len(l)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s%v", t.Name, t.Shape))
	}
	return strings.Join(parts, " ")
}

// openInitialModel opens the safetensors file at path, a regular file, and
// reads its header (package safetensors checks it); the caller closes f.
// Errors wrap ErrInitialModel.
func openInitialModel(path string) (f *os.File, r *safetensors.Reader, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInitialModel, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err == nil {
		r, err = safetensors.Open(f, fi.Size())
		if err != nil {
			err = fmt.Errorf("%s: %w", path, err)
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrInitialModel, err)
	}
	return f, r, nil
}
