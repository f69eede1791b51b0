// Package strictjson decodes the JSON documents fedguard reads from files
// and peers (configurations, manifests, state files, a trainer's metrics,
// expectations, grid files) one way: exactly one JSON value, no object
// field the Go type does not have, and nothing but white space after the
// value. A reader that skipped an unknown field could act on a document
// whose meaning it does not know; one that stopped after the first value
// could take half of a concatenated or corrupted file for the whole.
//
// Size bounds are the caller's, who knows what a real document weighs:
// ReadFile reads a file with its bound, then Unmarshal (or the caller's
// own parser) decodes the bytes.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrTrailing is Unmarshal's error for data after the JSON value.
var ErrTrailing = errors.New("data after the JSON value")

// ErrTooLarge is ReadFile's error for a file longer than its bound.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the file at path, refusing one longer than limit bytes
// without reading more than limit+1 of it, so that a huge or endless file
// (a device, a FIFO) costs no more memory than a real document. Every
// error is an *fs.PathError naming path: the open's and the read's as the
// os package returns them (errors.Is(err, fs.ErrNotExist) holds for a
// missing file), and a file over the bound's, which wraps ErrTooLarge.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// ReadAll is ReadFile's read, of an open file or any other reader, named
// path in its errors: at most limit+1 bytes are read, and more than limit
// is an *fs.PathError wrapping ErrTooLarge.
func ReadAll(r io.Reader, path string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: tooLarge(limit)}
	}
	return data, nil
}

// tooLarge is ReadFile's error for a file over its bound: it says the
// bound, and errors.Is matches it to ErrTooLarge.
type tooLarge int64

func (e tooLarge) Error() string { return fmt.Sprintf("larger than %d bytes", int64(e)) }

func (tooLarge) Is(target error) bool { return target == ErrTooLarge }

// Unmarshal decodes the JSON value in data into v, refusing unknown object
// fields and anything after the value (ErrTrailing). Its other errors are
// encoding/json's.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailing
	}
	return nil
}
