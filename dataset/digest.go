package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
)

// Digest is the SHA-256 of a canonical encoding of s (a domain tag, the
// feature count, then every mean and every std as big-endian IEEE 754 bits).
// A signed round manifest carries it, so a participant can check that the
// standardization it was sent is the one the federation fixed: a skewed
// scaling would bias a hospital's training as surely as a swapped model.
func (s Scaling) Digest() [32]byte {
	b := make([]byte, 0, 32+16*len(s.Mean))
	b = append(b, "fedguard-scaling-v1\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Mean)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Std)))
	b = appendFloat64s(b, s.Mean)
	b = appendFloat64s(b, s.Std)
	return sha256.Sum256(b)
}

// Digest is the SHA-256 of a canonical encoding of s (a domain tag, the
// row count, the feature count, then every sum and every sum of squares as
// big-endian IEEE 754 bits). The coordinator's audit log records it for
// each party's statistics, so that a party can show which statistics it
// sent and a bad one can be named without the log holding the values.
func (s Stats) Digest() [32]byte {
	b := make([]byte, 0, 40+16*len(s.Sum))
	b = append(b, "fedguard-stats-v1\x00"...)
	b = binary.BigEndian.AppendUint64(b, s.Count)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Sum)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.SumSquares)))
	b = appendFloat64s(b, s.Sum)
	b = appendFloat64s(b, s.SumSquares)
	return sha256.Sum256(b)
}

// appendFloat64s appends every v of vs to b as big-endian IEEE 754 bits.
func appendFloat64s(b []byte, vs []float64) []byte {
	for _, v := range vs {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}
