package safetensors

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/fedguard/fedguard/model"
)

// Info is one tensor's entry in a file's header.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are the tensor's byte range relative to the start of
	// the data section.
	Begin, End int64
}

// Reader reads the tensors of one safetensors file. Create it with [Open].
type Reader struct {
	r         io.ReaderAt
	dataStart int64
	tensors   []Info // in data-offset order
	metadata  map[string]string
}

// Open reads and checks the header of the safetensors file of size bytes
// held by r. Everything the header promises is checked against size before
// Open returns, so a later allocation of Layout().NumParams() values is
// bounded by the file actually present. Errors wrap ErrFormat or ErrDType.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	var nb [8]byte
	if size < 8 {
		return nil, fmt.Errorf("%w: %d bytes, too short for the header length", ErrFormat, size)
	}
	if err := readFullAt(r, nb[:], 0); err != nil {
		return nil, fmt.Errorf("safetensors: read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	switch {
	case n > MaxHeaderSize:
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the bound of %d", ErrFormat, n, MaxHeaderSize)
	case int64(n) > size-8:
		return nil, fmt.Errorf("%w: header of %d bytes in a file of %d", ErrFormat, n, size)
	}
	hdr := make([]byte, n)
	if err := readFullAt(r, hdr, 8); err != nil {
		return nil, fmt.Errorf("safetensors: read header: %w", err)
	}
	tensors, meta, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if err := checkOffsets(tensors, size-8-int64(n)); err != nil {
		return nil, err
	}
	return &Reader{r: r, dataStart: 8 + int64(n), tensors: tensors, metadata: meta}, nil
}

// readFullAt fills p from r at off. io.ReaderAt may return io.EOF with a
// full read that ends at the end of its input (bytes.Reader does, even for
// an empty p): that is a complete read, not an error, or a file whose
// header ends the file would be refused with a bare EOF instead of the
// ErrFormat its content deserves.
func readFullAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) && errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Tensors returns the header's entries in data-offset order.
func (r *Reader) Tensors() []Info { return slices.Clone(r.tensors) }

// Metadata returns the header's __metadata__ (nil when absent).
func (r *Reader) Metadata() map[string]string {
	if r.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(r.metadata))
	for k, v := range r.metadata {
		m[k] = v
	}
	return m
}

// Layout returns the file's tensors in data-offset order: the file's own
// parameter-vector order.
func (r *Reader) Layout() Layout {
	l := make(Layout, len(r.tensors))
	for i, t := range r.tensors {
		l[i] = Tensor{Name: t.Name, Shape: slices.Clone(t.Shape)}
	}
	return l
}

// ReadAll returns the parameter vector in the order of Layout.
func (r *Reader) ReadAll() ([]float32, error) {
	l := r.Layout()
	dst := make([]float32, l.NumParams())
	if err := r.ReadInto(l, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// ReadInto reads the file's tensors into dst, which must have length
// l.NumParams(), placing each tensor by name where l puts it. The file
// must hold exactly l's tensors, with l's shapes, in any order (an error
// wrapping ErrLayout otherwise). The data is read sequentially through one
// small buffer, so the only copy of the values is dst. On error dst holds
// unspecified values.
func (r *Reader) ReadInto(l Layout, dst []float32) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if len(dst) != l.NumParams() {
		return fmt.Errorf("safetensors: destination has %d values, the layout %d", len(dst), l.NumParams())
	}
	at := make(map[string]int, len(l)) // name → offset in dst
	off := 0
	for i, t := range l {
		at[t.Name] = off
		off += l[i].NumElements()
	}
	want := make(map[string][]int, len(l))
	for _, t := range l {
		want[t.Name] = t.Shape
	}
	for _, t := range r.tensors {
		shape, ok := want[t.Name]
		switch {
		case !ok:
			return fmt.Errorf("%w: the file has tensor %q, the layout does not", ErrLayout, short(t.Name))
		case !equalShape(shape, t.Shape):
			return fmt.Errorf("%w: tensor %q has shape %s, want %s", ErrLayout, short(t.Name), shortShape(t.Shape), shortShape(shape))
		}
	}
	if len(r.tensors) != len(l) {
		for _, t := range l {
			if !slices.ContainsFunc(r.tensors, func(i Info) bool { return i.Name == t.Name }) {
				return fmt.Errorf("%w: the file lacks tensor %q", ErrLayout, short(t.Name))
			}
		}
	}
	var end int64
	if k := len(r.tensors); k > 0 {
		end = r.tensors[k-1].End
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r.r, r.dataStart, end), 64<<10)
	buf := make([]byte, 64<<10)
	for _, t := range r.tensors {
		o := at[t.Name]
		n := int(t.End-t.Begin) / t.DType.Size()
		if err := decode(br, t.DType, dst[o:o+n], buf); err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", short(t.Name), err)
		}
	}
	return nil
}

// decode reads len(dst) values of dtype d from r into dst through buf.
func decode(r io.Reader, d DType, dst []float32, buf []byte) error {
	size := d.Size()
	per := len(buf) / 8 // values per chunk; 8 is the widest dtype
	for done := 0; done < len(dst); {
		k := min(per, len(dst)-done)
		b := buf[:k*size]
		if _, err := io.ReadFull(r, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: data ends early", ErrFormat)
			}
			return err
		}
		out := dst[done : done+k]
		switch d {
		case F32:
			if err := model.DecodeInto(out, b); err != nil {
				return fmt.Errorf("element %d: %w", done, err)
			}
		case F16:
			for i := range out {
				out[i] = halfToFloat(binary.LittleEndian.Uint16(b[2*i:]))
			}
		case BF16:
			for i := range out {
				out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
			}
		case F64:
			for i := range out {
				out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
			}
		}
		if d != F32 {
			if err := model.CheckFinite(out); err != nil {
				return fmt.Errorf("element %d onwards (as float32): %w", done, err)
			}
		}
		done += k
	}
	return nil
}

// halfToFloat widens an IEEE 754 binary16 value exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac·2⁻²⁴
		v := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// ReadFile reads the safetensors file at path: its layout (file order),
// parameter vector and metadata. maxParams bounds the values it accepts
// (0 means model.MaxParams) before anything is allocated for them.
func ReadFile(path string, maxParams int) (Layout, []float32, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := Open(f, fi.Size())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	l := r.Layout()
	if maxParams > 0 && l.NumParams() > maxParams {
		return nil, nil, nil, fmt.Errorf("%w: %s holds %d parameters, more than the bound of %d", ErrLayout, path, l.NumParams(), maxParams)
	}
	p, err := r.ReadAll()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, p, r.Metadata(), nil
}

// checkOffsets checks that the tensors, sorted by offset, tile the data
// section of dataSize bytes exactly, each range matching its shape and
// dtype.
func checkOffsets(tensors []Info, dataSize int64) error {
	slices.SortStableFunc(tensors, func(a, b Info) int {
		if a.Begin != b.Begin {
			return cmp.Compare(a.Begin, b.Begin)
		}
		return cmp.Compare(a.End, b.End)
	})
	var pos int64
	total := 0
	for _, t := range tensors {
		n, err := numElements(t.Shape)
		if err != nil {
			return fmt.Errorf("%w: tensor %q: %w", ErrFormat, short(t.Name), err)
		}
		if total += n; total > model.MaxParams {
			return fmt.Errorf("%w: more than %d values", ErrFormat, model.MaxParams)
		}
		switch {
		case t.Begin < pos:
			return fmt.Errorf("%w: tensor %q at bytes [%d, %d) overlaps the previous tensor, which ends at %d", ErrFormat, short(t.Name), t.Begin, t.End, pos)
		case t.Begin > pos:
			return fmt.Errorf("%w: gap of %d bytes before tensor %q", ErrFormat, t.Begin-pos, short(t.Name))
		case t.End < t.Begin:
			return fmt.Errorf("%w: tensor %q ends at %d before it begins at %d", ErrFormat, short(t.Name), t.End, t.Begin)
		case t.End-t.Begin != int64(n)*int64(t.DType.Size()):
			return fmt.Errorf("%w: tensor %q has %d bytes, its shape %s of %s needs %d", ErrFormat, short(t.Name), t.End-t.Begin, shortShape(t.Shape), t.DType, int64(n)*int64(t.DType.Size()))
		}
		pos = t.End
	}
	if pos != dataSize {
		return fmt.Errorf("%w: the tensors cover %d bytes, the data section has %d", ErrFormat, pos, dataSize)
	}
	return nil
}

// parseHeader parses the JSON header strictly (see the package doc),
// token by token so that duplicate keys are seen.
func parseHeader(hdr []byte) ([]Info, map[string]string, error) {
	if !utf8.Valid(hdr) {
		return nil, nil, fmt.Errorf("%w: header is not valid UTF-8", ErrFormat)
	}
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, nil, fmt.Errorf("%w: header does not start with '{'", ErrFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	p := parser{dec: dec}
	var tensors []Info
	var meta map[string]string
	seen := map[string]bool{}
	err := p.object(func(key string) error {
		if seen[key] {
			return fmt.Errorf("duplicate key %q", short(key))
		}
		seen[key] = true
		if key == MetadataKey {
			m, err := p.metadata()
			meta = m
			return err
		}
		if key == "" {
			return errors.New("tensor with an empty name")
		}
		t, err := p.tensor(key)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", short(key), err)
		}
		tensors = append(tensors, t)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrFormat, err)
	}
	// Only padding may follow the object.
	rest := hdr[dec.InputOffset():]
	if len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, nil, fmt.Errorf("%w: header: data after the JSON object", ErrFormat)
	}
	return tensors, meta, nil
}

// parser walks JSON tokens.
type parser struct{ dec *json.Decoder }

func (p parser) delim(want json.Delim) error {
	tok, err := p.dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("got %s, want %q", short(fmt.Sprint(tok)), want)
	}
	return nil
}

// object reads an object, calling member for each key with the decoder
// positioned at the value.
func (p parser) object(member func(key string) error) error {
	if err := p.delim('{'); err != nil {
		return err
	}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("got %s, want a key", short(fmt.Sprint(tok)))
		}
		if err := member(key); err != nil {
			return err
		}
	}
	return p.delim('}')
}

func (p parser) str() (string, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("got %s, want a string", short(fmt.Sprint(tok)))
	}
	return s, nil
}

// ints reads an array of plain non-negative integers (no sign, fraction or
// exponent), each at most max.
func (p parser) ints(max int64) ([]int64, error) {
	if err := p.delim('['); err != nil {
		return nil, err
	}
	var out []int64
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("got %s, want an integer", short(fmt.Sprint(tok)))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || num[0] == '-' || v > max {
			return nil, fmt.Errorf("%s is not an integer in [0, %d]", short(string(num)), max)
		}
		out = append(out, v)
	}
	return out, p.delim(']')
}

func (p parser) metadata() (map[string]string, error) {
	m := map[string]string{}
	err := p.object(func(key string) error {
		if _, dup := m[key]; dup {
			return fmt.Errorf("duplicate metadata key %q", short(key))
		}
		v, err := p.str()
		if err != nil {
			return fmt.Errorf("metadata %q: %w", short(key), err)
		}
		m[key] = v
		return nil
	})
	if len(m) == 0 {
		m = nil // an empty object says no more than none
	}
	return m, err
}

func (p parser) tensor(name string) (Info, error) {
	t := Info{Name: name}
	seen := make([]string, 0, 3) // the keys met; an unknown one fails in the switch
	err := p.object(func(key string) error {
		if slices.Contains(seen, key) {
			return fmt.Errorf("duplicate key %q", short(key))
		}
		seen = append(seen, key)
		switch key {
		case "dtype":
			s, err := p.str()
			if err != nil {
				return fmt.Errorf("dtype: %w", err)
			}
			t.DType = DType(s)
			if t.DType.Size() == 0 {
				return fmt.Errorf("%w %q (this reader takes F32, F16, BF16 and F64)", ErrDType, short(s))
			}
		case "shape":
			dims, err := p.ints(model.MaxParams)
			if err != nil {
				return fmt.Errorf("shape: %w", err)
			}
			t.Shape = make([]int, len(dims))
			for i, d := range dims {
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			offs, err := p.ints(math.MaxInt64)
			if err != nil {
				return fmt.Errorf("data_offsets: %w", err)
			}
			if len(offs) != 2 {
				return fmt.Errorf("data_offsets has %d values, want 2", len(offs))
			}
			t.Begin, t.End = offs[0], offs[1]
		default:
			return fmt.Errorf("unknown field %q", short(key))
		}
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	if len(seen) != 3 { // the three keys, each once (a repeated or an unknown key failed above)
		return Info{}, errors.New("entry lacks dtype, shape or data_offsets")
	}
	return t, nil
}
