// Package strictjson decodes the JSON documents fedguard reads from files
// and peers (configurations, manifests, state files, a trainer's metrics,
// expectations, grid files) one way: exactly one JSON value, no object
// field the Go type does not have, and nothing but white space after the
// value. A reader that skipped an unknown field could act on a document
// whose meaning it does not know; one that stopped after the first value
// could take half of a concatenated or corrupted file for the whole.
//
// Size bounds are the caller's: read at most a bound's worth of bytes
// first (io.LimitReader), then Unmarshal them.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailing is Unmarshal's error for data after the JSON value.
var ErrTrailing = errors.New("data after the JSON value")

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
