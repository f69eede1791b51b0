package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/model"
)

// raw assembles a file from a header and data, as another writer might.
func raw(hdr string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	return append(append(b, hdr...), data...)
}

func f32s(v ...float32) []byte { return model.AppendBytes(nil, v) }

func open(b []byte) (*Reader, error) { return Open(bytes.NewReader(b), int64(len(b))) }

var tiny = Layout{
	{Name: "conv.weight", Shape: []int{2, 1, 2}},
	{Name: "conv.bias", Shape: []int{2}},
	{Name: "scale", Shape: []int{}},
}

var tinyParams = []float32{1, -2, 0.5, 3, 0.25, -0.125, 7}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	meta := map[string]string{"format": "pt", "round": "3"}
	if err := Write(&buf, tiny, tinyParams, meta); err != nil {
		t.Fatal(err)
	}
	r, err := open(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tiny, r.Layout()); diff != "" {
		t.Errorf("layout (-wrote +read):\n%s", diff)
	}
	got, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tinyParams, got); diff != "" {
		t.Errorf("params (-wrote +read):\n%s", diff)
	}
	if diff := cmp.Diff(meta, r.Metadata()); diff != "" {
		t.Errorf("metadata (-wrote +read):\n%s", diff)
	}
}

// TestGolden pins the bytes Write produces: compact JSON, metadata first,
// tensors in layout order, space padding to 8 bytes, as the reference
// writer lays out an F32 file.
func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, tiny, tinyParams, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "tiny.safetensors")
	want := golden.File(t, path, buf.Bytes())
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Write = %q\nwant    %q", buf.Bytes(), want)
	}
	if n := binary.LittleEndian.Uint64(want); n%8 != 0 || len(want) != 8+int(n)+4*len(tinyParams) || !strings.HasPrefix(string(want[8:]), `{"__metadata__":{"format":"pt"},"conv.weight":{"dtype":"F32","shape":[2,1,2],"data_offsets":[0,16]}`) {
		t.Errorf("golden header %q is not in the reference layout", want[8:])
	}
}

// mixed is a file of every dtype the reader converts, in a name order
// unlike its offset order, as the reference writer would sort by alignment.
func mixed() []byte {
	var data []byte
	data = binary.LittleEndian.AppendUint64(data, math.Float64bits(0.1))
	data = binary.LittleEndian.AppendUint64(data, math.Float64bits(-3))
	data = append(data, f32s(1.5, float32(math.Copysign(0, -1)))...)
	for _, h := range []uint16{0x3e00, 0xc000, 0x0001, 0x7bff} { // F16 1.5, -2, 2⁻²⁴, 65504
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	for _, h := range []uint16{0x3fc0, 0xbf80} { // BF16 1.5, -1
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	hdr := `{"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},` +
		`"c":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},` +
		`"b":{"shape":[2,2],"data_offsets":[24,32],"dtype":"F16"},` +
		`"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[32,36]}}   `
	return raw(hdr, data)
}

func TestDTypes(t *testing.T) {
	path := filepath.Join("testdata", "mixed.safetensors")
	b := golden.File(t, path, mixed())
	r, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	wantLayout := Layout{{"d", []int{2}}, {"c", []int{2}}, {"b", []int{2, 2}}, {"a", []int{1, 2}}}
	if diff := cmp.Diff(wantLayout, r.Layout()); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
	got, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{float32(0.1), -3, 1.5, float32(math.Copysign(0, -1)), 1.5, -2, 1.0 / (1 << 24), 65504, 1.5, -1}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestHalfToFloat(t *testing.T) {
	// Every finite half widens to the float32 with the same value.
	for h := range 1 << 16 {
		exp := (h >> 10) & 0x1f
		if exp == 0x1f {
			continue
		}
		frac := float64(h & 0x3ff)
		var want float64
		if exp == 0 {
			want = frac * math.Pow(2, -24)
		} else {
			want = (1 + frac/1024) * math.Pow(2, float64(exp-15))
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if got := halfToFloat(uint16(h)); float64(got) != want {
			t.Fatalf("halfToFloat(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	two := f32s(1, 2)
	big := binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1)
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"short file", []byte{1, 2, 3}, ErrFormat},
		{"header beyond file", raw(ok, two)[:20], ErrFormat},
		{"header over bound", append(big, make([]byte, 64)...), ErrFormat},
		{"not an object", raw(`["a"]`, nil), ErrFormat},
		{"leading space", raw(" "+ok, two), ErrFormat},
		{"bad utf8", raw(`{"a\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"trailing garbage", raw(ok+"x", two), ErrFormat},
		{"second object", raw(ok+"{}", two), ErrFormat},
		{"duplicate tensor", raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, two), ErrFormat},
		{"duplicate field", raw(`{"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"duplicate metadata", raw(`{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"duplicate metadata object", raw(`{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"metadata not string", raw(`{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"unknown field", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, two), ErrFormat},
		{"missing dtype", raw(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"int dtype", raw(`{"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, two), ErrDType},
		{"fp8 dtype", raw(`{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}`, two), ErrDType},
		{"negative dim", raw(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"fractional dim", raw(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"exponent offset", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}`, two), ErrFormat},
		{"negative zero", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[-0,8]}}`, two), ErrFormat},
		{"three offsets", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, two), ErrFormat},
		{"huge dims", raw(`{"a":{"dtype":"F32","shape":[2000000000,2000000000],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"huge offset", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999]}}`, two), ErrFormat},
		{"size mismatch", raw(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, two), ErrFormat},
		{"data short", raw(ok, two[:7]), ErrFormat},
		{"data long", raw(ok, append(two, 0)), ErrFormat},
		{"gap", raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, two), ErrFormat},
		{"overlap", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, two), ErrFormat},
		{"reversed", raw(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, two), ErrFormat},
		{"empty name", raw(`{"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, two), ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := open(tc.file)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want an error wrapping %v", r, err, tc.want)
			}
		})
	}
}

func TestNonFinite(t *testing.T) {
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"F32 NaN", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32s(1, float32(math.NaN())))},
		{"F16 Inf", raw(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, []byte{0, 0, 0, 0x7c})},
		{"BF16 NaN", raw(`{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}`, []byte{0xc0, 0x7f})},
		{"F64 beyond float32", raw(`{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}`, binary.LittleEndian.AppendUint64(nil, math.Float64bits(1e300)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := open(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.ReadAll(); !errors.Is(err, model.ErrNonFinite) {
				t.Fatalf("ReadAll = %v, want an error wrapping model.ErrNonFinite", err)
			}
		})
	}
	if err := Write(new(bytes.Buffer), tiny, []float32{1, 2, 3, 4, 5, float32(math.Inf(1)), 7}, nil); !errors.Is(err, model.ErrNonFinite) {
		t.Errorf("Write(Inf) = %v, want an error wrapping model.ErrNonFinite", err)
	}
}

func TestReadInto(t *testing.T) {
	// The file is in name order, the layout in another: values go by name.
	file := raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32s(1, 2, 3))
	r, err := open(file)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 3)
	if err := r.ReadInto(Layout{{"b", []int{2}}, {"a", []int{1}}}, dst); err != nil {
		t.Fatal(err)
	}
	if want := []float32{2, 3, 1}; !cmp.Equal(dst, want) {
		t.Errorf("ReadInto = %v, want %v", dst, want)
	}
	for _, tc := range []struct {
		name string
		l    Layout
	}{
		{"missing tensor", Layout{{"a", []int{1}}, {"b", []int{2}}, {"c", []int{0}}}},
		{"extra tensor", Layout{{"a", []int{1}}, {"c", []int{2}}}},
		{"other shape", Layout{{"a", []int{1}}, {"b", []int{2, 1}}}},
		{"duplicate", Layout{{"a", []int{1}}, {"a", []int{2}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]float32, tc.l.NumParams())
			if err := r.ReadInto(tc.l, dst); !errors.Is(err, ErrLayout) {
				t.Fatalf("ReadInto(%v) = %v, want an error wrapping ErrLayout", tc.l, err)
			}
		})
	}
}

func TestLayoutDigest(t *testing.T) {
	d := tiny.Digest()
	// Pinned: a change here changes every manifest that names a layout.
	const want = "66b1646c1612ac0306aaa9b22fc45a760deaed647183a0241e7c910942879b51"
	if got := hex.EncodeToString(d[:]); got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
	for _, m := range []Layout{
		{{"conv.weight", []int{2, 2}}, {"conv.bias", []int{2}}, {"scale", []int{}}},
		{{"conv.bias", []int{2}}, {"conv.weight", []int{2, 1, 2}}, {"scale", []int{}}},
		{{"conv.weight", []int{2, 1, 2}}, {"conv.bias", []int{2}}, {"scale", []int{1}}},
		{{"conv.weight", []int{2, 1, 2}}, {"conv.bias", []int{2}}, {"scalf", []int{}}},
	} {
		if m.Digest() == d {
			t.Errorf("Digest(%v) = Digest(%v)", m, tiny)
		}
	}
}

func TestSpecLayout(t *testing.T) {
	s := model.Spec{Kind: model.MLP, Features: 5, Classes: 3, Hidden: []int{4}}
	l, err := SpecLayout(s)
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{{"layers.1.weight", []int{4, 5}}, {"layers.1.bias", []int{4}}, {"layers.2.weight", []int{3, 4}}, {"layers.2.bias", []int{3}}}
	if diff := cmp.Diff(want, l); diff != "" {
		t.Errorf("SpecLayout (-want +got):\n%s", diff)
	}
	if l.NumParams() != s.NumParams() {
		t.Errorf("NumParams = %d, spec has %d", l.NumParams(), s.NumParams())
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(path, tiny, tinyParams, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	l, p, meta, err := ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Equal(tiny) || !cmp.Equal(p, tinyParams) || meta != nil {
		t.Errorf("ReadFile = %v, %v, %v", l, p, meta)
	}
	if _, _, _, err := ReadFile(path, 6); !errors.Is(err, ErrLayout) {
		t.Errorf("ReadFile(max 6) = %v, want ErrLayout", err)
	}
	// A failed write leaves no file behind.
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := WriteFile(bad, tiny, tinyParams[:3], nil, 0o600); err == nil {
		t.Fatal("WriteFile with too few values succeeded")
	}
	if ents, _ := os.ReadDir(filepath.Dir(bad)); len(ents) != 0 {
		t.Errorf("failed WriteFile left %v", ents)
	}
}

// addGoldenSeeds adds the golden files of testdata to f's corpus.
func addGoldenSeeds(f *testing.F) {
	f.Helper()
	for _, name := range []string{"tiny.safetensors", "mixed.safetensors"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzRead checks that the reader never panics and that what it accepts
// survives a round trip through the writer: same layout, bit-identical
// values, same metadata, and a canonical file that rewrites to itself.
func FuzzRead(f *testing.F) {
	addGoldenSeeds(f)
	f.Add(raw(`{"__metadata__":{},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[0],"data_offsets":[4,4]}}`, f32s(1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := open(b)
		if err != nil {
			return
		}
		l := r.Layout()
		p, err := r.ReadAll()
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, l, p, r.Metadata()); err != nil {
			t.Fatalf("Write of an accepted file: %v", err)
		}
		r2, err := open(out.Bytes())
		if err != nil {
			t.Fatalf("Open of a written file: %v", err)
		}
		p2, err := r2.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !r2.Layout().Equal(l) || !cmp.Equal(r2.Metadata(), r.Metadata()) {
			t.Fatalf("round trip changed layout or metadata: %v %v → %v %v", l, r.Metadata(), r2.Layout(), r2.Metadata())
		}
		for i := range p {
			if math.Float32bits(p[i]) != math.Float32bits(p2[i]) {
				t.Fatalf("round trip changed value %d: %v → %v", i, p[i], p2[i])
			}
		}
		var again bytes.Buffer
		if err := Write(&again, r2.Layout(), p2, r2.Metadata()); err != nil || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("rewrite of a canonical file differs (%v)", err)
		}
	})
}

// TestStreaming checks that reading and writing a model costs no second
// copy of it: the bytes allocated beyond the destination stay under a few
// buffers, whatever the model's size.
func TestStreaming(t *testing.T) {
	const n = 1 << 20 // 4 MiB of values
	l := Layout{{"w", []int{n}}}
	params := make([]float32, n)
	path := filepath.Join(t.TempDir(), "big.safetensors")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := allocated(func() {
		if err := Write(f, l, params, nil); err != nil {
			t.Fatal(err)
		}
	}); got > 1<<20 {
		t.Errorf("Write of a 4 MiB model allocated %d bytes", got)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if got := allocated(func() {
		if err := r.ReadInto(l, params); err != nil {
			t.Fatal(err)
		}
	}); got > 1<<20 {
		t.Errorf("ReadInto of a 4 MiB model allocated %d bytes", got)
	}
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
