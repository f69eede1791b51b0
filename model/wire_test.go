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

func FuzzDecodeInto(f *testing.F) {
	f.Add(AppendBytes(nil, []float32{1, -2, 0.5}))
	f.Add([]byte{0, 0, 0x80, 0x7f})
	f.Add([]byte{1, 2, 3})
	f.Add(AppendBytes(nil, randomParams(5000, 3)))
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
