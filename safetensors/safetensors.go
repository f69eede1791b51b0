// Package safetensors reads and writes model parameters in the safetensors
// format, the file every ML framework (PyTorch, JAX, TensorFlow, numpy)
// reads and writes, so that a hospital's own trainer and a serving system
// exchange models with fedguard without a conversion step.
//
// # Format
//
// A file (https://github.com/huggingface/safetensors, format of
// safetensors ≥ 0.3) is
//
//	N       8 bytes, little-endian uint64: the header's length in bytes
//	header  N bytes of UTF-8 JSON, an object, padded with trailing spaces
//	data    the tensors' bytes, little-endian, row-major (C order)
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3],
// "data_offsets": [begin, end]} (offsets relative to the start of data),
// plus an optional "__metadata__" object of string → string.
//
// # What this reader refuses
//
// The reader is strict, as a parser of files that come from another
// party must be. [Open] refuses, with an error wrapping [ErrFormat]: a
// header longer than [MaxHeaderSize] (the reference implementation's
// bound) or not valid UTF-8 or not starting with '{'; duplicate keys at any
// level (encoding/json would silently keep the last one); unknown fields
// in a tensor's entry; numbers that are not plain non-negative integers;
// tensors whose byte ranges leave a gap, overlap, or do not match their
// shape and dtype; data that is shorter or longer than the tensors; more
// than [model.MaxParams] values in all. Reading the data refuses NaN and
// ±Inf with an error wrapping [model.ErrNonFinite].
//
// # Types
//
// fedguard computes in float32. F32 is read as is. F16 and BF16 widen to
// F32 exactly (every half and bfloat16 value is a float32). F64 is rounded
// to the nearest float32; a finite F64 beyond float32's range would become
// infinite and is refused like a NaN. Every other dtype (integers, bool,
// FP8) is refused with [ErrDType]. The writer writes F32 only.
//
// # Parameter vector (canonical order)
//
// A model is a [Layout]: an ordered list of named float32 tensors. Its
// parameter vector — what aggregation, SecAgg and the manifests handle —
// is the concatenation of the tensors' values in Layout order, each
// tensor row-major. The Layout of a file read with [Open] is in the order
// of the tensors' data offsets (file order; the reference writer orders
// tensors by name among tensors of one dtype, so a PyTorch-written F32
// file is in name order). [Write] writes tensors in Layout order, so a
// file written by fedguard reads back with the same Layout.
// [Reader.ReadInto] places tensors by name into a given Layout, so a
// trainer that saves its tensors in another order still fits.
//
// # Layout digest
//
// [Layout.Digest] is SHA-256 over "fedguard-safetensors-layout-v1\n"
// followed, for each tensor in Layout order, by the name's length
// (uint32 BE), the name, the dtype string "F32" (as fedguard computes
// it), the number of dimensions (uint32 BE) and each dimension (uint64
// BE). It names the layout, not the values, for manifests.
package safetensors

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/fedguard/fedguard/model"
)

// MaxHeaderSize bounds the JSON header (100 MB, the reference
// implementation's bound), so that a hostile length cannot make the reader
// allocate or parse without limit.
const MaxHeaderSize = 100_000_000

// MetadataKey is the header key of the free-form string metadata.
const MetadataKey = "__metadata__"

// Errors of this package; match them with errors.Is.
var (
	// ErrFormat means the file is not well-formed safetensors, or is
	// well-formed in a way this reader refuses (see the package doc).
	ErrFormat = errors.New("safetensors: malformed file")
	// ErrDType means a tensor's dtype cannot be read as float32.
	ErrDType = errors.New("safetensors: unsupported dtype")
	// ErrLayout means the tensors differ from the layout the caller
	// expects (names or shapes), or a layout is itself invalid.
	ErrLayout = errors.New("safetensors: layout mismatch")
)

// DType is a tensor element type as spelled in the header.
type DType string

// The dtypes this package reads.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
)

// Size returns the number of bytes of one element, or 0 for a dtype this
// package does not read.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	case F64:
		return 8
	}
	return 0
}

// Tensor is one named tensor of a Layout.
type Tensor struct {
	Name  string
	Shape []int
}

// NumElements returns the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Layout is a model's tensors in parameter-vector order.
type Layout []Tensor

// Validate checks that the layout can describe a parameter vector: names
// non-empty, distinct and not MetadataKey, dimensions non-negative, and at
// most model.MaxParams values in all. Errors wrap ErrLayout.
func (l Layout) Validate() error {
	seen := make(map[string]bool, len(l))
	total := 0
	for _, t := range l {
		switch {
		case t.Name == "":
			return fmt.Errorf("%w: a tensor has an empty name", ErrLayout)
		case t.Name == MetadataKey:
			return fmt.Errorf("%w: tensor named %q", ErrLayout, MetadataKey)
		case seen[t.Name]:
			return fmt.Errorf("%w: tensor %q appears twice", ErrLayout, short(t.Name))
		}
		seen[t.Name] = true
		n, err := numElements(t.Shape)
		if err != nil {
			return fmt.Errorf("%w: tensor %q: %w", ErrLayout, short(t.Name), err)
		}
		if total += n; total > model.MaxParams {
			return fmt.Errorf("%w: more than %d parameters", ErrLayout, model.MaxParams)
		}
	}
	return nil
}

// numElements multiplies shape, refusing negative dimensions and products
// over model.MaxParams (so that no later size computation overflows).
func numElements(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		if d > 0 && n > model.MaxParams/d {
			return 0, fmt.Errorf("shape %s has more than %d elements", shortShape(shape), model.MaxParams)
		}
		n *= d
	}
	return n, nil
}

// NumParams returns the length of the parameter vector.
func (l Layout) NumParams() int {
	n := 0
	for _, t := range l {
		n += t.NumElements()
	}
	return n
}

// Equal reports whether l and m have the same tensors in the same order.
func (l Layout) Equal(m Layout) bool {
	if len(l) != len(m) {
		return false
	}
	for i := range l {
		if l[i].Name != m[i].Name || !equalShape(l[i].Shape, m[i].Shape) {
			return false
		}
	}
	return true
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// layoutDomain separates layout digests from every other SHA-256 use.
const layoutDomain = "fedguard-safetensors-layout-v1\n"

// Digest returns the layout digest described in the package doc.
func (l Layout) Digest() [32]byte {
	h := sha256.New()
	h.Write([]byte(layoutDomain))
	var b [8]byte
	for _, t := range l {
		binary.BigEndian.PutUint32(b[:4], uint32(len(t.Name)))
		h.Write(b[:4])
		h.Write([]byte(t.Name))
		h.Write([]byte(F32))
		binary.BigEndian.PutUint32(b[:4], uint32(len(t.Shape)))
		h.Write(b[:4])
		for _, d := range t.Shape {
			binary.BigEndian.PutUint64(b[:], uint64(d))
			h.Write(b[:])
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// String returns the layout as name[d0,d1] entries, for logs and errors.
func (l Layout) String() string {
	var sb strings.Builder
	for i, t := range l {
		if i > 0 {
			sb.WriteString(" ")
		}
		fmt.Fprintf(&sb, "%s%v", t.Name, t.Shape)
	}
	return sb.String()
}

// SpecLayout returns the layout of a model's parameter vector. For a
// model.Tensors spec it is the spec's tensors, in order. For a built-in
// model (see package model) it is, for each layer l = 1..h+1, "layers.<l>.weight" of
// shape [out, in] then "layers.<l>.bias" of shape [out] — the same values
// in the same order as the flat vector, so that an external trainer sees
// the built-in models as ordinary named tensors.
func SpecLayout(s model.Spec) (Layout, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Kind == model.Tensors {
		l := make(Layout, len(s.Tensors))
		for i, t := range s.Tensors {
			l[i] = Tensor{Name: t.Name, Shape: append([]int{}, t.Shape...)}
		}
		if err := l.Validate(); err != nil {
			return nil, err
		}
		return l, nil
	}
	widths := append(append([]int{s.Features}, s.Hidden...), s.Classes)
	l := make(Layout, 0, 2*(len(widths)-1))
	for i := 1; i < len(widths); i++ {
		l = append(l,
			Tensor{Name: fmt.Sprintf("layers.%d.weight", i), Shape: []int{widths[i], widths[i-1]}},
			Tensor{Name: fmt.Sprintf("layers.%d.bias", i), Shape: []int{widths[i]}})
	}
	return l, nil
}
