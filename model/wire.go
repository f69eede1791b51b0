package model

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// ErrNonFinite means a parameter is NaN or ±Inf. Such values are never valid on the
// wire: one of them would poison every aggregate it enters.
var ErrNonFinite = errors.New("model: non-finite parameter")

// AppendBytes appends the wire encoding (format version 1: little-endian float32) of
// params to dst and returns the extended slice.
func AppendBytes(dst []byte, params []float32) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 4*len(params))[:n+4*len(params)]
	encode(dst[n:], params)
	return dst
}

// WireBytes returns params in wire format v1 in params' own memory,
// without a copy: on a little-endian machine the float32 values already
// are that format, elsewhere they are byte-swapped in place. params must
// not be read as floats afterwards. The coordinator commits a new model
// this way, so that the encoding costs no second model-sized buffer.
func WireBytes(params []float32) []byte {
	if len(params) == 0 {
		return []byte{}
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(params))), 4*len(params))
	if !littleEndian {
		// encode reads each group of values before it writes their bytes,
		// so it may work in place.
		encode(b, params)
	}
	return b
}

// littleEndian is whether this machine stores a float32 as format v1 does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// encode writes len(p) values into b, which must have length 4·len(p).
func encode(b []byte, p []float32) {
	b = b[:4*len(p)] // one bounds check here lets the compiler drop those in the loop
	i := 0
	// Two values per 64-bit store: the low word is the earlier value, as in
	// little-endian order.
	for ; i+4 <= len(p); i += 4 {
		q := p[i : i+4 : i+4]
		d := b[4*i : 4*i+16 : 4*i+16]
		binary.LittleEndian.PutUint64(d[0:8], uint64(math.Float32bits(q[0]))|uint64(math.Float32bits(q[1]))<<32)
		binary.LittleEndian.PutUint64(d[8:16], uint64(math.Float32bits(q[2]))|uint64(math.Float32bits(q[3]))<<32)
	}
	for ; i < len(p); i++ {
		binary.LittleEndian.PutUint32(b[4*i:4*i+4], math.Float32bits(p[i]))
	}
}

// expMask selects the float32 exponent; all ones means NaN or ±Inf.
const expMask = 0x7f800000

// DecodeInto decodes wire bytes (format version 1) into dst. len(src) must be
// 4·len(dst). A NaN or ±Inf value is refused with an error wrapping ErrNonFinite
// and naming its index; on error dst holds unspecified values and must not be used.
func DecodeInto(dst []float32, src []byte) error {
	if err := checkDecodeLen(dst, src); err != nil {
		return err
	}
	// Decode in chunks and test finiteness once per chunk: the hot loop has no
	// data-dependent branch, and a chunk stays in L1 for the rare re-scan.
	const chunk = 4096
	for start := 0; start < len(dst); start += chunk {
		d := dst[start:min(start+chunk, len(dst))]
		s := src[4*start : 4*start+4*len(d)]
		bad := uint32(0)
		i := 0
		for ; i+4 <= len(d); i += 4 {
			q := d[i : i+4 : i+4]
			w := s[4*i : 4*i+16 : 4*i+16]
			u0, u1 := binary.LittleEndian.Uint64(w[0:8]), binary.LittleEndian.Uint64(w[8:16])
			a, b, c, e := uint32(u0), uint32(u0>>32), uint32(u1), uint32(u1>>32)
			// bad gets bit 31 set iff some exponent is all ones.
			bad |= ((a & expMask) + 0x00800000) | ((b & expMask) + 0x00800000) |
				((c & expMask) + 0x00800000) | ((e & expMask) + 0x00800000)
			q[0], q[1], q[2], q[3] = math.Float32frombits(a), math.Float32frombits(b), math.Float32frombits(c), math.Float32frombits(e)
		}
		for ; i < len(d); i++ {
			u := binary.LittleEndian.Uint32(s[4*i : 4*i+4])
			bad |= (u & expMask) + 0x00800000
			d[i] = math.Float32frombits(u)
		}
		if bad&0x80000000 != 0 {
			if err := nonFinite(d, start); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDecodeLen is the length check of DecodeInto and DecodeSumSquares.
func checkDecodeLen(dst []float32, src []byte) error {
	if len(src) != 4*len(dst) {
		return fmt.Errorf("model: decode: %d bytes for %d parameters, want %d", len(src), len(dst), 4*len(dst))
	}
	return nil
}

// nonFinite names the first NaN or ±Inf of a decoded chunk d that starts at
// index start, or returns nil; the decoders call it only when the chunk's
// exponent test flagged one.
func nonFinite(d []float32, start int) error {
	for i, v := range d {
		if math.Float32bits(v)&expMask == expMask {
			return fmt.Errorf("model: decode: parameter %d is %v: %w", start+i, v, ErrNonFinite)
		}
	}
	return nil
}

// DecodeSumSquares is DecodeInto that also returns SumSquares(dst), taken
// while the values are in registers: the same four float64 sums, each
// element added to the sum of its index modulo 4 in index order and the
// tail to the first, so the result is SumSquares(dst) bit for bit
// (TestDecodeSumSquaresSameBits). A receiver that needs both (the
// coordinator's update assembler, which records every update's norm) saves
// a second pass over the decoded chunk. On error the sum is 0. Its loop
// repeats DecodeInto's rather than serving as DecodeInto's body, so that
// DecodeInto's other callers (an agent decoding a downloaded model) pay
// for no float arithmetic.
func DecodeSumSquares(dst []float32, src []byte) (float64, error) {
	if err := checkDecodeLen(dst, src); err != nil {
		return 0, err
	}
	var s0, s1, s2, s3 float64
	const chunk = 4096 // as DecodeInto; a multiple of 4, so lanes stay i mod 4
	for start := 0; start < len(dst); start += chunk {
		d := dst[start:min(start+chunk, len(dst))]
		s := src[4*start : 4*start+4*len(d)]
		bad := uint32(0)
		i := 0
		for ; i+4 <= len(d); i += 4 {
			q := d[i : i+4 : i+4]
			w := s[4*i : 4*i+16 : 4*i+16]
			u0, u1 := binary.LittleEndian.Uint64(w[0:8]), binary.LittleEndian.Uint64(w[8:16])
			a, b, c, e := uint32(u0), uint32(u0>>32), uint32(u1), uint32(u1>>32)
			bad |= ((a & expMask) + 0x00800000) | ((b & expMask) + 0x00800000) |
				((c & expMask) + 0x00800000) | ((e & expMask) + 0x00800000)
			fa, fb, fc, fe := math.Float32frombits(a), math.Float32frombits(b), math.Float32frombits(c), math.Float32frombits(e)
			q[0], q[1], q[2], q[3] = fa, fb, fc, fe
			x0, x1, x2, x3 := float64(fa), float64(fb), float64(fc), float64(fe)
			s0 += x0 * x0
			s1 += x1 * x1
			s2 += x2 * x2
			s3 += x3 * x3
		}
		for ; i < len(d); i++ {
			u := binary.LittleEndian.Uint32(s[4*i : 4*i+4])
			bad |= (u & expMask) + 0x00800000
			f := math.Float32frombits(u)
			d[i] = f
			x := float64(f)
			s0 += x * x
		}
		if bad&0x80000000 != 0 {
			if err := nonFinite(d, start); err != nil {
				return 0, err
			}
		}
	}
	return (s0 + s1) + (s2 + s3), nil
}

// digestBlock is how many bytes Digest encodes before handing them to SHA-256.
const digestBlock = 64 << 10

// Digest returns SHA-256 of the wire bytes of params (what AppendBytes produces),
// encoding through one 64 KiB buffer instead of materializing the whole encoding.
func Digest(params []float32) [32]byte {
	h := sha256.New()
	buf := make([]byte, digestBlock)
	for len(params) > 0 {
		k := min(len(params), digestBlock/4)
		encode(buf[:4*k], params[:k])
		h.Write(buf[:4*k])
		params = params[k:]
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Norm returns the L2 norm of v, accumulated in float64 (no overflow or precision
// loss for float32 inputs); clipping and anomaly scores rely on it.
func Norm(v []float32) float64 { return math.Sqrt(SumSquares(v)) }

// SumSquares is Σ v[i]² accumulated in float64 with four independent sums,
// so the loop runs at memory speed instead of waiting on one adder. Callers
// that see a vector in pieces add the pieces' sums and take the root once.
func SumSquares(v []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b, c, d := float64(v[i]), float64(v[i+1]), float64(v[i+2]), float64(v[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(v); i++ {
		a := float64(v[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// AllFinite reports whether v holds no NaN or infinity. It tests exponent
// bits with four independent accumulators, so it runs at about memory speed.
func AllFinite(v []float32) bool {
	var b0, b1, b2, b3 uint32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		q := v[i : i+4 : i+4]
		b0 |= (math.Float32bits(q[0]) & expMask) + 0x00800000
		b1 |= (math.Float32bits(q[1]) & expMask) + 0x00800000
		b2 |= (math.Float32bits(q[2]) & expMask) + 0x00800000
		b3 |= (math.Float32bits(q[3]) & expMask) + 0x00800000
	}
	for ; i < len(v); i++ {
		b0 |= (math.Float32bits(v[i]) & expMask) + 0x00800000
	}
	return (b0|b1|b2|b3)&0x80000000 == 0
}

// CheckFinite returns an error wrapping ErrNonFinite naming the first NaN or
// infinite value of v; a check of a whole model costs about one pass over
// memory.
func CheckFinite(v []float32) error {
	const block = 4096
	for start := 0; start < len(v); start += block {
		d := v[start:min(start+block, len(v))]
		if AllFinite(d) {
			continue
		}
		for i, x := range d {
			if math.Float32bits(x)&expMask == expMask {
				return fmt.Errorf("model: parameter %d is %v: %w", start+i, x, ErrNonFinite)
			}
		}
	}
	return nil
}
