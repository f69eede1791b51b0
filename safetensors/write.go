package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/fedguard/fedguard/model"
)

// Header returns the header Write writes for l and metadata: compact JSON
// with "__metadata__" first (keys sorted) and the tensors in Layout order,
// all F32 and contiguous, padded with spaces to a multiple of 8 bytes as the
// reference writer does, so that the data starts 8-byte aligned.
func Header(l Layout, metadata map[string]string) ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		sep()
		writeString(&b, MetadataKey)
		b.WriteString(":{")
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	var off int64
	for _, t := range l {
		sep()
		writeString(&b, t.Name)
		b.WriteString(`:{"dtype":"F32","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := off + 4*int64(t.NumElements())
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the bound of %d", ErrLayout, b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeString writes s as a JSON string without HTML escaping.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}

// Write writes params, the parameter vector of l, as a safetensors file of
// F32 tensors in Layout order with the given metadata (nil for none). It
// refuses a non-finite value (an error wrapping model.ErrNonFinite) before
// writing anything, and encodes through one 64 KiB buffer, so writing a
// model costs no second copy of it.
func Write(w io.Writer, l Layout, params []float32, metadata map[string]string) error {
	hdr, err := Header(l, metadata)
	if err != nil {
		return err
	}
	if len(params) != l.NumParams() {
		return fmt.Errorf("%w: %d values for a layout of %d", ErrLayout, len(params), l.NumParams())
	}
	if err := model.CheckFinite(params); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	const block = 16 << 10 // values per write: 64 KiB
	buf := make([]byte, 0, 4*block)
	for len(params) > 0 {
		k := min(len(params), block)
		buf = model.AppendBytes(buf[:0], params[:k])
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("safetensors: write: %w", err)
		}
		params = params[k:]
	}
	return nil
}

// WriteFile writes a safetensors file at path (mode perm) through a
// temporary file in the same directory, synced and renamed into place, so
// that a reader never sees half a model.
func WriteFile(path string, l Layout, params []float32, metadata map[string]string, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	if err := Write(bw, l, params, metadata); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("safetensors: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return errors.Join(fmt.Errorf("safetensors: %w", err), os.Remove(f.Name()))
	}
	return nil
}
