// Package lineage names the exact data a hospital trained on, so that a
// model version can be traced to the data versions that made it (in the
// manner of DVC's data versions) without the name telling anyone what the
// data are.
//
// A hospital's data version for a round is
//
//	HMAC-SHA256(salt, description)
//
// where the description is the canonical encoding of a [Description]: the
// SHA-256 of the data file's bytes, the columns the model read (features in
// order, then the label) and the indices of the rows trained on. The agent
// reports it with every update; the coordinator writes it into the audit
// log (update_received) and the round's manifest (included[].data_sha256);
// `fedguard audit lineage` lists it per round and `fedguard participant
// lineage --check` lets the hospital recompute it.
//
// # Salt
//
// The salt is per federation: [SaltFor] derives it from the federation CA's
// certificate, which every hospital (and every auditor) already holds and
// which did not exist before the federation did. It is not a secret: its
// job is to make one federation's data versions unrelated to another's
// (the same file gives different versions in two federations) and to rule
// out tables computed before the federation existed. A new CA (a CA
// rotation) is a new salt, and every hospital's version changes with it.
//
// # What an observer learns
//
// Anyone who reads a manifest or the audit log learns, for each hospital
// and round, whether its data version is the one of an earlier round: that
// is the point. The version reveals nothing else about the rows, as long as
// the observer cannot guess the whole data file byte for byte: it is an
// HMAC of a SHA-256 of the file. An observer who can (a hospital with very
// few rows whose values are known outside, or who holds a candidate copy of
// the file) can confirm the guess by recomputing the version, exactly as
// the hospital itself does. A hospital for which a confirmed guess is a
// disclosure should not report versions (see docs/lineage.md); the row
// count (samples) is in the manifest anyway.
//
// # Wire format
//
// The description is encoded, for the HMAC only, as
//
//	"fedguard-data-version/v1" 0x00
//	file SHA-256 (32 bytes)
//	uvarint(number of columns), then per column uvarint(len) || name
//	uvarint(number of rows), then per row uvarint(row index)
//
// with row indices counted from 0 (the first data row after the header)
// and strictly increasing. A change of encoding is a new prefix.
package lineage

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// prefix opens every encoded description.
const prefix = "fedguard-data-version/v1\x00"

// saltPrefix separates the salt's derivation from other hashes of the CA
// certificate.
const saltPrefix = "fedguard-data-version-salt/v1\x00"

// Salt is a federation's data-version salt.
type Salt [32]byte

// SaltFor derives a federation's salt from its CA certificate (DER).
func SaltFor(caCertDER []byte) Salt {
	h := sha256.New()
	h.Write([]byte(saltPrefix))
	h.Write(caCertDER)
	var s Salt
	h.Sum(s[:0])
	return s
}

// Description is exactly what a hospital trained on.
type Description struct {
	// FileSHA256 is the SHA-256 of the data file's bytes.
	FileSHA256 [32]byte
	// Columns are the columns the model read, features in order, then the
	// label.
	Columns []string
	// Rows are the indices of the rows trained on (0 is the first row
	// after the header), strictly increasing.
	Rows []int
}

// Version is a data version: the HMAC of a [Description].
type Version [32]byte

// String spells v as lowercase hex, as manifests and the audit log do.
func (v Version) String() string { return hex.EncodeToString(v[:]) }

// Version computes d's data version under salt. It fails only on a
// Description that breaks its rules (rows not strictly increasing).
func (s Salt) Version(d Description) (Version, error) {
	m := hmac.New(sha256.New, s[:])
	if err := d.encode(m); err != nil {
		return Version{}, err
	}
	var v Version
	m.Sum(v[:0])
	return v, nil
}

func (d Description) encode(h hash.Hash) error {
	var buf [binary.MaxVarintLen64]byte
	uv := func(x uint64) { h.Write(buf[:binary.PutUvarint(buf[:], x)]) }
	h.Write([]byte(prefix))
	h.Write(d.FileSHA256[:])
	uv(uint64(len(d.Columns)))
	for _, c := range d.Columns {
		uv(uint64(len(c)))
		h.Write([]byte(c))
	}
	uv(uint64(len(d.Rows)))
	prev := -1
	for i, r := range d.Rows {
		if r <= prev {
			return fmt.Errorf("lineage: row %d (index %d) does not follow row %d: rows must be strictly increasing", r, i, prev)
		}
		uv(uint64(r))
		prev = r
	}
	return nil
}

// ParseVersion parses a data version spelt as lowercase hex.
func ParseVersion(s string) (Version, error) {
	var v Version
	if len(s) != 2*len(v) {
		return v, fmt.Errorf("lineage: data version %.80q is not 64 lowercase hex digits", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return v, fmt.Errorf("lineage: data version %.80q is not 64 lowercase hex digits", s)
		}
	}
	if _, err := hex.Decode(v[:], []byte(s)); err != nil {
		return v, errors.New("lineage: " + err.Error())
	}
	return v, nil
}
