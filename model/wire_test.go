package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func randomParams(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, seed))
	p := make([]float32, n)
	for i := range p {
		p[i] = float32(rng.NormFloat64())
	}
	return p
}

func TestAppendBytesKnownAnswer(t *testing.T) {
	got := AppendBytes([]byte{0xAA}, []float32{1, -2, 0.5, float32(math.Copysign(0, -1)), math.MaxFloat32, math.SmallestNonzeroFloat32})
	want := []byte{
		0xAA,                   // existing prefix kept
		0x00, 0x00, 0x80, 0x3f, // 1
		0x00, 0x00, 0x00, 0xc0, // -2
		0x00, 0x00, 0x00, 0x3f, // 0.5
		0x00, 0x00, 0x00, 0x80, // -0
		0xff, 0xff, 0x7f, 0x7f, // max
		0x01, 0x00, 0x00, 0x00, // smallest subnormal
	}
	if !bytes.Equal(got, want) {
		t.Errorf("AppendBytes = % x, want % x", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4095, 4096, 4097, 100_000} {
		p := randomParams(n, uint64(n))
		if n > 3 {
			p[0], p[1], p[2] = float32(math.Copysign(0, -1)), math.MaxFloat32, -math.SmallestNonzeroFloat32
		}
		b := AppendBytes(nil, p)
		if len(b) != 4*n {
			t.Fatalf("len(AppendBytes(%d params)) = %d", n, len(b))
		}
		got := make([]float32, n)
		if err := DecodeInto(got, b); err != nil {
			t.Fatalf("DecodeInto(%d params) error: %v", n, err)
		}
		for i := range p {
			if math.Float32bits(got[i]) != math.Float32bits(p[i]) {
				t.Fatalf("n=%d: param %d = %v, want %v", n, i, got[i], p[i])
			}
		}
	}
}

func TestDecodeIntoRefuses(t *testing.T) {
	p := randomParams(10_002, 1) // the last chunk ends in a 2-value tail
	bad := []struct {
		name string
		bits uint32
	}{
		{"+Inf", 0x7f800000},
		{"-Inf", 0xff800000},
		{"quiet NaN", 0x7fc00000},
		{"signalling NaN", 0x7f800001},
		{"negative NaN", 0xffffffff},
	}
	for _, idx := range []int{0, 1, 4095, 4096, 9999, 10_001} {
		for _, b := range bad {
			src := AppendBytes(nil, p)
			binary.LittleEndian.PutUint32(src[4*idx:], b.bits)
			err := DecodeInto(make([]float32, len(p)), src)
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("DecodeInto(%s at %d) error = %v, want ErrNonFinite", b.name, idx, err)
			}
			if want := "parameter " + strconv.Itoa(idx) + " is"; !strings.Contains(err.Error(), want) {
				t.Errorf("DecodeInto(%s at %d) error = %q, want it to contain %q", b.name, idx, err, want)
			}
		}
	}
	for _, n := range []int{0, 3, 5, 39} {
		if err := DecodeInto(make([]float32, 10), make([]byte, n)); err == nil || !strings.Contains(err.Error(), "bytes for 10 parameters, want 40") {
			t.Errorf("DecodeInto(%d bytes into 10) error = %v", n, err)
		}
	}
}

func TestDigest(t *testing.T) {
	for _, n := range []int{0, 1, digestBlock/4 - 1, digestBlock / 4, digestBlock/4 + 1, 3*digestBlock/4 + 7} {
		p := randomParams(n, 7)
		if got, want := Digest(p), sha256.Sum256(AppendBytes(nil, p)); got != want {
			t.Errorf("Digest(%d params) = %x, want sha256 of wire bytes %x", n, got, want)
		}
	}
	// Known answer: the empty vector hashes like the empty string.
	if got := Digest(nil); got != sha256.Sum256(nil) {
		t.Errorf("Digest(nil) = %x", got)
	}
}

func TestNorm(t *testing.T) {
	tests := []struct {
		v    []float32
		want float64
	}{
		{nil, 0},
		{[]float32{3, 4}, 5},
		{[]float32{1, 1, 1, 1, 1, 1, 1, 1, 1}, 3},
		{[]float32{math.MaxFloat32, math.MaxFloat32}, math.Sqrt2 * math.MaxFloat32},
	}
	for _, tt := range tests {
		if got := Norm(tt.v); math.Abs(got-tt.want) > 1e-12*tt.want {
			t.Errorf("Norm(%v) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

// addParamSeeds seeds a decoder fuzzer with encoded parameters: a few, an
// infinity, a length that is no multiple of 4, and 5,000 of them.
func addParamSeeds(f *testing.F) {
	f.Add(AppendBytes(nil, []float32{1, -2, 0.5}))
	f.Add([]byte{0, 0, 0x80, 0x7f})
	f.Add([]byte{1, 2, 3})
	f.Add(AppendBytes(nil, randomParams(5000, 3)))
}

func FuzzDecodeInto(f *testing.F) {
	addParamSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		dst := make([]float32, len(src)/4)
		err := DecodeInto(dst, src)
		if len(src)%4 != 0 {
			if err == nil {
				t.Fatalf("DecodeInto accepted %d bytes", len(src))
			}
			return
		}
		finite := true
		for i := 0; i+4 <= len(src); i += 4 {
			if binary.LittleEndian.Uint32(src[i:])&0x7f800000 == 0x7f800000 {
				finite = false
				break
			}
		}
		if finite != (err == nil) {
			t.Fatalf("DecodeInto(%x) error = %v, finite = %v", src, err, finite)
		}
		if err != nil {
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("DecodeInto error %v does not wrap ErrNonFinite", err)
			}
			return
		}
		if got := AppendBytes(nil, dst); !bytes.Equal(got, src) {
			t.Fatalf("AppendBytes(DecodeInto(%x)) = %x", src, got)
		}
		if Digest(dst) != sha256.Sum256(src) {
			t.Fatalf("Digest differs from sha256 of the input")
		}
	})
}

// FuzzDecodeSumSquares: DecodeSumSquares decodes what DecodeInto decodes,
// refuses what it refuses, and its sum is SumSquares of the result, bit
// for bit.
func FuzzDecodeSumSquares(f *testing.F) {
	addParamSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		want := make([]float32, len(src)/4)
		werr := DecodeInto(want, src)
		got := make([]float32, len(src)/4)
		sum, err := DecodeSumSquares(got, src)
		if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("DecodeSumSquares(%x) error = %v; DecodeInto's %v", src, err, werr)
		}
		if err != nil {
			if sum != 0 {
				t.Errorf("DecodeSumSquares(%x) = %v with an error, want 0", src, sum)
			}
			return
		}
		if !bytes.Equal(AppendBytes(nil, got), AppendBytes(nil, want)) {
			t.Fatalf("DecodeSumSquares(%x) decoded %v; DecodeInto %v", src, got, want)
		}
		if w := SumSquares(want); math.Float64bits(sum) != math.Float64bits(w) {
			t.Fatalf("DecodeSumSquares(%x) = %v, SumSquares = %v", src, sum, w)
		}
	})
}

// TestDecodeSumSquaresSameBits: the fused sum is SumSquares' bit for bit
// at lengths around the lanes (4) and the decode's blocks (4096), with
// values of magnitudes far apart, where any change in the order of the
// additions changes the last bits.
func TestDecodeSumSquaresSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 1, 3, 4, 5, 4095, 4096, 4097, 8190, 65536, 65539} {
		p := make([]float32, n)
		for i := range p {
			p[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(30)-15)))
		}
		src := AppendBytes(nil, p)
		dst := make([]float32, n)
		sum, err := DecodeSumSquares(dst, src)
		if err != nil {
			t.Fatalf("DecodeSumSquares(%d values) = %v", n, err)
		}
		if want := SumSquares(p); math.Float64bits(sum) != math.Float64bits(want) {
			t.Errorf("DecodeSumSquares(%d values) = %v (%x), SumSquares = %v (%x)", n, sum, math.Float64bits(sum), want, math.Float64bits(want))
		}
		if !bytes.Equal(AppendBytes(nil, dst), src) {
			t.Errorf("DecodeSumSquares(%d values) decoded other values", n)
		}
	}
}

const benchParams = 10_000_000

func BenchmarkAppendBytes(b *testing.B) {
	p := randomParams(benchParams, 1)
	buf := make([]byte, 0, 4*len(p))
	b.SetBytes(int64(4 * len(p)))
	for b.Loop() {
		buf = AppendBytes(buf[:0], p)
	}
}

func BenchmarkDecodeInto(b *testing.B) {
	p := randomParams(benchParams, 1)
	src := AppendBytes(nil, p)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if err := DecodeInto(p, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeChunk is what the coordinator does with each 256 KiB
// chunk of an update (in cache): decode with the finiteness check and sum
// the squares, in two passes or fused.
func BenchmarkDecodeChunk(b *testing.B) {
	p := randomParams(1<<16, 1)
	src := AppendBytes(nil, p)
	var sink float64
	b.Run("separate", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			if err := DecodeInto(p, src); err != nil {
				b.Fatal(err)
			}
			sink += SumSquares(p)
		}
	})
	b.Run("fused", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			s, err := DecodeSumSquares(p, src)
			if err != nil {
				b.Fatal(err)
			}
			sink += s
		}
	})
	_ = sink
}

func BenchmarkDigest(b *testing.B) {
	p := randomParams(benchParams, 1)
	b.SetBytes(int64(4 * len(p)))
	for b.Loop() {
		Digest(p)
	}
}

func BenchmarkNorm(b *testing.B) {
	p := randomParams(benchParams, 1)
	b.SetBytes(int64(4 * len(p)))
	for b.Loop() {
		Norm(p)
	}
}

// TestWireBytes: the in-place encoding is AppendBytes' encoding, for every
// length around the four-value groups, and shares the vector's memory.
func TestWireBytes(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 4099} {
		p := randomParams(n, uint64(n)+3)
		want := AppendBytes(nil, p)
		got := WireBytes(p)
		if !bytes.Equal(got, want) {
			t.Errorf("WireBytes(%d params) differs from AppendBytes", n)
		}
		if n > 0 && &got[0] != (*byte)(unsafe.Pointer(&p[0])) {
			t.Errorf("WireBytes(%d params) copied the vector", n)
		}
	}
}
