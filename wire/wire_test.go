package wire_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// per is the number of parameters in a full chunk.
const per = wire.ChunkBytes / 4

// randomVector returns n finite parameters of varied magnitude and sign.
func randomVector(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4)))
	}
	return v
}

// refNorm is the L2 norm in float64, summed naively.
func refNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// chunk is one (offset, data) pair as Chunks produced it.
type chunk struct {
	offset uint64
	data   []byte
}

// collect runs Chunks and keeps a copy of every chunk.
func collect(t *testing.T, params []float32) []chunk {
	t.Helper()
	var out []chunk
	err := wire.Chunks(params, func(off uint64, data []byte) error {
		out = append(out, chunk{off, slices.Clone(data)})
		return nil
	})
	if err != nil {
		t.Fatalf("Chunks(%d params) = %v", len(params), err)
	}
	return out
}

func TestChunksAssemblerRoundTrip(t *testing.T) {
	// Chunks sends chunks of SendChunkBytes (the assembler takes up to
	// ChunkBytes).
	const per = wire.SendChunkBytes / 4
	for _, n := range []int{0, 1, per/4 - 1, per / 4, per/4 + 1, per - 1, per, per + 1, 3*per + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			params := randomVector(n, uint64(n))
			chunks := collect(t, params)

			wantChunks := max(1, (n+per-1)/per)
			if len(chunks) != wantChunks {
				t.Fatalf("Chunks(%d params) made %d chunks, want %d", n, len(chunks), wantChunks)
			}
			var next uint64
			for i, c := range chunks {
				if c.offset != next {
					t.Errorf("chunk %d offset = %d, want %d", i, c.offset, next)
				}
				if len(c.data) > wire.ChunkBytes || len(c.data)%4 != 0 {
					t.Errorf("chunk %d has %d bytes, want a multiple of 4 <= %d", i, len(c.data), wire.ChunkBytes)
				}
				if i < len(chunks)-1 && len(c.data) != wire.SendChunkBytes {
					t.Errorf("chunk %d (not the last) has %d bytes, want %d", i, len(c.data), wire.SendChunkBytes)
				}
				next += uint64(len(c.data) / 4)
			}

			dst := make([]float32, n)
			for i := range dst {
				dst[i] = float32(math.NaN()) // must all be overwritten
			}
			asm := wire.NewAssembler(dst)
			for i, c := range chunks {
				if err := asm.Add(c.offset, c.data); err != nil {
					t.Fatalf("Add(chunk %d at %d) = %v", i, c.offset, err)
				}
			}
			if err := asm.Done(); err != nil {
				t.Fatalf("Done() = %v, want nil", err)
			}
			if got := asm.Received(); got != uint64(n) {
				t.Errorf("Received() = %d, want %d", got, n)
			}
			for i := range params {
				if math.Float32bits(dst[i]) != math.Float32bits(params[i]) {
					t.Fatalf("dst[%d] = %v, want %v", i, dst[i], params[i])
				}
			}
			wantSum := sha256.Sum256(model.AppendBytes(nil, params))
			if got := asm.Sum(); got != wantSum {
				t.Errorf("Sum() = %x, want %x", got, wantSum)
			}
			if got := asm.Sum(); got != model.Digest(params) {
				t.Errorf("Sum() = %x, model.Digest = %x", got, model.Digest(params))
			}
			want := refNorm(params)
			if got := asm.Norm(); math.Abs(got-want) > 1e-12*want {
				t.Errorf("Norm() = %v, want %v", got, want)
			}
			// The norm is recorded in the audit log and the manifest: it
			// is the square root of the chunks' model.SumSquares added in
			// order, bit for bit, whichever way Add sums them.
			var sq float64
			for _, c := range chunks {
				v := make([]float32, len(c.data)/4)
				if err := model.DecodeInto(v, c.data); err != nil {
					t.Fatal(err)
				}
				sq += model.SumSquares(v)
			}
			if got := asm.Norm(); math.Float64bits(got) != math.Float64bits(math.Sqrt(sq)) {
				t.Errorf("Norm() = %v, want %v (the chunks' SumSquares)", got, math.Sqrt(sq))
			}
		})
	}
}

func TestChunksStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	err := wire.Chunks(make([]float32, 3*per), func(uint64, []byte) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 2 {
		t.Errorf("Chunks with a failing fn = %v after %d calls, want %v after 2", err, calls, boom)
	}
}

// enc encodes values, bypassing any finiteness check.
func enc(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// zeros is n zero parameters on the wire.
func zeros(n int) []byte { return make([]byte, 4*n) }

// step is one Add call.
type step struct {
	offset uint64
	data   []byte
}

func TestAssemblerRefusals(t *testing.T) {
	nan := float32(math.NaN())
	pinf := float32(math.Inf(1))
	ninf := float32(math.Inf(-1))
	// A NaN in the float32 encoding with a payload, not the canonical one.
	oddNaN := math.Float32frombits(0x7fa00001)
	withAt := func(n, i int, v float32) []byte {
		p := make([]float32, n)
		p[i] = v
		return enc(p...)
	}
	tests := []struct {
		name    string
		n       int
		ok      []step // accepted first
		bad     step
		want    error
		wantMsg []string
	}{
		{"gap", 10, []step{{0, zeros(4)}}, step{5, zeros(2)}, wire.ErrOrder, []string{"offset 5", "expected 4"}},
		{"first chunk not at 0", 10, nil, step{1, zeros(2)}, wire.ErrOrder, nil},
		{"overlap", 10, []step{{0, zeros(4)}}, step{3, zeros(2)}, wire.ErrOrder, nil},
		{"repeat", 10, []step{{0, zeros(4)}}, step{0, zeros(4)}, wire.ErrOrder, nil},
		{"repeat after complete", 4, []step{{0, zeros(4)}}, step{0, zeros(4)}, wire.ErrOrder, nil},
		{"huge offset", 10, nil, step{math.MaxUint64, zeros(1)}, wire.ErrOrder, nil},
		{"overflow in first chunk", 10, nil, step{0, zeros(11)}, wire.ErrOverflow, nil},
		{"overflow at the end", 10, []step{{0, zeros(8)}}, step{8, zeros(3)}, wire.ErrOverflow, nil},
		{"chunk after complete", 4, []step{{0, zeros(4)}}, step{4, zeros(1)}, wire.ErrOverflow, nil},
		{"into empty vector", 0, nil, step{0, zeros(1)}, wire.ErrOverflow, nil},
		{"misaligned 1", 10, nil, step{0, make([]byte, 1)}, wire.ErrMisaligned, nil},
		{"misaligned 7", 10, nil, step{0, make([]byte, 7)}, wire.ErrMisaligned, nil},
		{"misaligned later", 10, []step{{0, zeros(2)}}, step{2, make([]byte, 6)}, wire.ErrMisaligned, nil},
		{"too large", 2 * per, nil, step{0, zeros(per + 1)}, wire.ErrTooLarge, nil},
		{"NaN first", 4, nil, step{0, enc(nan, 0, 0, 0)}, model.ErrNonFinite, []string{"offset 0"}},
		{"+Inf", 6, nil, step{0, enc(1, 2, pinf, 4, 5, 6)}, model.ErrNonFinite, []string{"offset 0"}},
		{"-Inf in tail", 7, nil, step{0, enc(1, 2, 3, 4, 5, 6, ninf)}, model.ErrNonFinite, []string{"offset 0"}},
		{"NaN with payload", 3, nil, step{0, enc(1, oddNaN, 3)}, model.ErrNonFinite, nil},
		{"NaN in second chunk", 20, []step{{0, zeros(8)}}, step{8, enc(0, 0, 0, nan)}, model.ErrNonFinite, []string{"offset 8"}},
		{"+Inf past one decode block", 5000, []step{{0, zeros(100)}}, step{100, withAt(4900, 4200, pinf)}, model.ErrNonFinite, []string{"offset 100"}},
		{"-Inf last of a full chunk", per, nil, step{0, withAt(per, per-1, ninf)}, model.ErrNonFinite, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asm := wire.NewAssembler(make([]float32, tt.n))
			for _, s := range tt.ok {
				if err := asm.Add(s.offset, s.data); err != nil {
					t.Fatalf("Add(%d, %d bytes) = %v, want nil", s.offset, len(s.data), err)
				}
			}
			before := asm.Received()
			err := asm.Add(tt.bad.offset, tt.bad.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Add(%d, %d bytes) = %v, want %v", tt.bad.offset, len(tt.bad.data), err, tt.want)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Add error %q does not mention %q", err, s)
				}
			}
			if got := asm.Received(); got != before {
				t.Errorf("Received() after a refused chunk = %d, want %d", got, before)
			}
		})
	}
}

// TestAssemblerAcceptsFiniteExtremes guards the finiteness check against
// refusing values at the edge of the float32 range.
func TestAssemblerAcceptsFiniteExtremes(t *testing.T) {
	vals := []float32{
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		float32(math.Copysign(0, -1)), 0, 1, -1, math.Float32frombits(0x7f7fffff), math.Float32frombits(0x00800000),
	}
	dst := make([]float32, len(vals))
	asm := wire.NewAssembler(dst)
	if err := asm.Add(0, enc(vals...)); err != nil {
		t.Fatalf("Add(finite extremes) = %v", err)
	}
	if err := asm.Done(); err != nil {
		t.Fatalf("Done() = %v", err)
	}
	for i := range vals {
		if math.Float32bits(dst[i]) != math.Float32bits(vals[i]) {
			t.Errorf("dst[%d] = %v, want %v", i, dst[i], vals[i])
		}
	}
	if n := asm.Norm(); math.IsInf(n, 0) || math.IsNaN(n) {
		t.Errorf("Norm() = %v, want finite (float64 accumulation)", n)
	}
}

func TestAssemblerDone(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		steps []step
		want  error
	}{
		{"empty vector, nothing sent", 0, nil, nil},
		{"empty vector, empty chunk", 0, []step{{0, nil}}, nil},
		{"nothing sent", 3, nil, wire.ErrIncomplete},
		{"partial", 10, []step{{0, zeros(9)}}, wire.ErrIncomplete},
		{"partial with empty chunk", 10, []step{{0, zeros(4)}, {4, nil}}, wire.ErrIncomplete},
		{"complete in two", 10, []step{{0, zeros(4)}, {4, zeros(6)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asm := wire.NewAssembler(make([]float32, tt.n))
			for _, s := range tt.steps {
				if err := asm.Add(s.offset, s.data); err != nil {
					t.Fatalf("Add(%d, %d bytes) = %v", s.offset, len(s.data), err)
				}
			}
			if err := asm.Done(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Done() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSpecFromProto(t *testing.T) {
	feats := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("f%d", i)
		}
		return s
	}
	logreg := func() *fedguardv1.ModelSpec {
		return &fedguardv1.ModelSpec{
			FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_LOGREG,
			Features: feats(3), Label: "y", Classes: []string{"B", "M"}, NumParams: 2 * (3 + 1),
		}
	}
	mlp := func() *fedguardv1.ModelSpec {
		// 3 -> 4 -> 5 -> 2: 4·4 + 5·5 + 2·6.
		return &fedguardv1.ModelSpec{
			FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_MLP,
			Features: feats(3), Label: "y", Classes: []string{"a", "b"}, Hidden: []uint32{4, 5}, NumParams: 16 + 25 + 12,
		}
	}
	tensors := func() *fedguardv1.ModelSpec {
		return &fedguardv1.ModelSpec{
			FormatVersion: 1, Kind: fedguardv1.ModelKind_MODEL_KIND_TENSORS, NumParams: 8*9 + 8 + 1,
			Tensors: []*fedguardv1.TensorSpec{{Name: "conv.weight", Shape: []uint64{8, 1, 3, 3}}, {Name: "conv.bias", Shape: []uint64{8}}, {Name: "t"}},
		}
	}
	with := func(p *fedguardv1.ModelSpec, f func(*fedguardv1.ModelSpec)) *fedguardv1.ModelSpec {
		f(p)
		return p
	}
	tests := []struct {
		name    string
		in      *fedguardv1.ModelSpec
		want    model.Spec
		wantErr string
	}{
		{"logreg", logreg(), model.Spec{Kind: model.LogReg, Features: 3, Classes: 2}, ""},
		{"mlp", mlp(), model.Spec{Kind: model.MLP, Features: 3, Classes: 2, Hidden: []int{4, 5}}, ""},
		{"tensors", tensors(), model.Spec{Kind: model.Tensors, Tensors: []model.Tensor{{Name: "conv.weight", Shape: []int{8, 1, 3, 3}}, {Name: "conv.bias", Shape: []int{8}}, {Name: "t", Shape: []int{}}}}, ""},
		{"tensors none", with(tensors(), func(p *fedguardv1.ModelSpec) { p.Tensors, p.NumParams = nil, 0 }), model.Spec{}, "no tensor"},
		{"tensors duplicate", with(tensors(), func(p *fedguardv1.ModelSpec) { p.Tensors[1].Name = "conv.weight" }), model.Spec{}, "twice"},
		{"tensors num_params", with(tensors(), func(p *fedguardv1.ModelSpec) { p.NumParams++ }), model.Spec{}, "82 parameters"},
		{"tensors huge dimension", with(tensors(), func(p *fedguardv1.ModelSpec) { p.Tensors[0].Shape[0] = math.MaxUint64 }), model.Spec{}, "dimension"},
		{"tensors overflow", with(tensors(), func(p *fedguardv1.ModelSpec) { p.Tensors[0].Shape = []uint64{1 << 30, 1 << 30, 1 << 30} }), model.Spec{}, "MaxParams"},
		{"tensors on logreg", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Tensors = tensors().Tensors }), model.Spec{}, "no tensor list"},
		{"nil", nil, model.Spec{}, "missing"},
		{"format version 0", with(logreg(), func(p *fedguardv1.ModelSpec) { p.FormatVersion = 0 }), model.Spec{}, "format version 0"},
		{"format version 2", with(logreg(), func(p *fedguardv1.ModelSpec) { p.FormatVersion = 2 }), model.Spec{}, "format version 2"},
		{"kind unspecified", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Kind = fedguardv1.ModelKind_MODEL_KIND_UNSPECIFIED }), model.Spec{}, "kind"},
		{"kind unknown", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Kind = 7 }), model.Spec{}, "kind"},
		{"num_params too high", with(logreg(), func(p *fedguardv1.ModelSpec) { p.NumParams++ }), model.Spec{}, "9 parameters"},
		{"num_params too low", with(mlp(), func(p *fedguardv1.ModelSpec) { p.NumParams-- }), model.Spec{}, "52 parameters"},
		{"num_params zero", with(logreg(), func(p *fedguardv1.ModelSpec) { p.NumParams = 0 }), model.Spec{}, "0 parameters"},
		{"logreg with hidden", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Hidden = []uint32{4} }), model.Spec{}, "hidden"},
		{"mlp without hidden", with(mlp(), func(p *fedguardv1.ModelSpec) { p.Hidden = nil }), model.Spec{}, "hidden"},
		{"mlp hidden width 0", with(mlp(), func(p *fedguardv1.ModelSpec) { p.Hidden = []uint32{4, 0} }), model.Spec{}, "width 0"},
		{"no features", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Features = nil; p.NumParams = 2 }), model.Spec{}, "features 0"},
		{"one class", with(logreg(), func(p *fedguardv1.ModelSpec) { p.Classes = []string{"B"}; p.NumParams = 4 }), model.Spec{}, "classes 1"},
		{"too many parameters", with(mlp(), func(p *fedguardv1.ModelSpec) {
			p.Hidden = []uint32{math.MaxUint32, math.MaxUint32}
			p.NumParams = model.MaxParams + 1
		}), model.Spec{}, "MaxParams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.SpecFromProto(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SpecFromProto(%v) = %v, %v; want an error mentioning %q", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "wire: ") {
					t.Errorf("SpecFromProto error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SpecFromProto(%v) = %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SpecFromProto(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if uint64(got.NumParams()) != tt.in.GetNumParams() {
				t.Errorf("NumParams() = %d, want %d", got.NumParams(), tt.in.GetNumParams())
			}
		})
	}
}

func TestScalingFromProto(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	sc := func(mean, std []float64) *fedguardv1.FeatureScaling {
		return &fedguardv1.FeatureScaling{Mean: mean, Std: std}
	}
	tests := []struct {
		name    string
		in      *fedguardv1.FeatureScaling
		n       int
		want    dataset.Scaling
		wantErr string
	}{
		{"good", sc([]float64{0, -3.5, 1e9}, []float64{1, 0.25, 1e-9}), 3, dataset.Scaling{Mean: []float64{0, -3.5, 1e9}, Std: []float64{1, 0.25, 1e-9}}, ""},
		{"zero features", sc(nil, nil), 0, dataset.Scaling{}, ""},
		{"nil", nil, 2, dataset.Scaling{}, "missing"},
		{"too few means", sc([]float64{0}, []float64{1, 1}), 2, dataset.Scaling{}, "1 means and 2 deviations, want 2"},
		{"too many stds", sc([]float64{0, 0}, []float64{1, 1, 1}), 2, dataset.Scaling{}, "2 means and 3 deviations, want 2"},
		{"both short", sc([]float64{0}, []float64{1}), 2, dataset.Scaling{}, "want 2"},
		{"std 0", sc([]float64{0, 0}, []float64{1, 0}), 2, dataset.Scaling{}, "scaling 1"},
		{"std negative", sc([]float64{0, 0}, []float64{-1, 1}), 2, dataset.Scaling{}, "scaling 0"},
		{"std NaN", sc([]float64{0}, []float64{nan}), 1, dataset.Scaling{}, "scaling 0"},
		{"std +Inf", sc([]float64{0}, []float64{inf}), 1, dataset.Scaling{}, "scaling 0"},
		{"mean NaN", sc([]float64{1, nan}, []float64{1, 1}), 2, dataset.Scaling{}, "scaling 1"},
		{"mean -Inf", sc([]float64{-inf}, []float64{1}), 1, dataset.Scaling{}, "scaling 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ScalingFromProto(tt.in, tt.n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ScalingFromProto(%v, %d) = %v, %v; want an error mentioning %q", tt.in, tt.n, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ScalingFromProto(%v, %d) = %v", tt.in, tt.n, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ScalingFromProto(%v, %d) mismatch (-want +got):\n%s", tt.in, tt.n, diff)
			}
		})
	}
}

// FuzzAssembler feeds the Assembler chunk sequences derived from script:
// mostly in order, sometimes with a wrong offset, an odd length or raw bytes
// that may encode NaN or ±Inf. It must never panic, accept only what extends
// the vector contiguously, and once Done returns nil hold exactly the
// accepted bytes, hashed and measured.
func FuzzAssembler(f *testing.F) {
	f.Add(uint16(0), []byte{})
	f.Add(uint16(1), []byte{1, 4, 0, 0, 128, 63})
	f.Add(uint16(3), []byte{1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 4, 9, 9, 9, 9})
	f.Add(uint16(8), []byte{1, 16, 0xff, 0xff, 0xff, 0x7f, 2, 4, 1, 1, 1, 1})
	f.Add(uint16(5), []byte{0, 3, 5, 6, 7, 8, 9, 10, 11})
	f.Add(uint16(300), []byte{1, 255, 17, 2, 200, 42})
	f.Fuzz(func(t *testing.T, n uint16, script []byte) {
		size := int(n % 2048)
		dst := make([]float32, size)
		asm := wire.NewAssembler(dst)
		var accepted []byte
		for len(script) >= 2 {
			mode, length := script[0], int(script[1])
			script = script[2:]
			expected := uint64(len(accepted) / 4)
			var off uint64
			switch mode % 8 {
			case 0: // an arbitrary offset from the script
				var b [8]byte
				k := copy(b[:], script)
				script = script[k:]
				off = binary.LittleEndian.Uint64(b[:])
			case 1: // one before
				off = expected - 1
			case 2: // one after
				off = expected + 1
			default:
				off = expected
			}
			var data []byte
			if mode&0x80 != 0 { // raw bytes from the script, possibly non-finite
				k := min(length, len(script))
				data = slices.Clone(script[:k])
				script = script[k:]
			} else { // finite values derived from the script
				data = make([]byte, length)
				for i := 0; i+4 <= length; i += 4 {
					binary.LittleEndian.PutUint32(data[i:], math.Float32bits(float32(i)*0.5-float32(mode)))
				}
			}
			before := asm.Received()
			err := asm.Add(off, data)
			if err == nil {
				if off != expected || len(data)%4 != 0 || int(expected)+len(data)/4 > size {
					t.Fatalf("Add(%d, %d bytes) accepted with %d of %d received", off, len(data), expected, size)
				}
				accepted = append(accepted, data...)
			} else if got := asm.Received(); got != before {
				t.Fatalf("refused Add moved Received from %d to %d", before, got)
			}
			if got := asm.Received(); got != uint64(len(accepted)/4) {
				t.Fatalf("Received() = %d, want %d", got, len(accepted)/4)
			}
		}
		if err := asm.Done(); err != nil {
			if !errors.Is(err, wire.ErrIncomplete) {
				t.Fatalf("Done() = %v, want nil or ErrIncomplete", err)
			}
			return
		}
		if !slices.Equal(model.AppendBytes(nil, dst), accepted) {
			t.Fatalf("vector differs from the bytes sent")
		}
		if got, want := asm.Sum(), sha256.Sum256(accepted); got != want {
			t.Fatalf("Sum() = %x, want %x", got, want)
		}
		if got, want := asm.Norm(), refNorm(dst); math.Abs(got-want) > 1e-12*want {
			t.Fatalf("Norm() = %v, want %v", got, want)
		}
	})
}

func BenchmarkAssembler(b *testing.B) {
	const n = 10_000_000
	params := randomVector(n, 7)
	var chunks []chunk
	if err := wire.Chunks(params, func(off uint64, data []byte) error {
		chunks = append(chunks, chunk{off, slices.Clone(data)})
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, n)
	b.SetBytes(4 * n)
	b.ReportAllocs()
	for b.Loop() {
		asm := wire.NewAssembler(dst)
		for _, c := range chunks {
			if err := asm.Add(c.offset, c.data); err != nil {
				b.Fatal(err)
			}
		}
		if err := asm.Done(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSpecToProtoBuiltInUnchanged pins the wire bytes of the built-in
// kinds' specifications: adding tensor layouts to ModelSpec must leave them
// exactly as before (a hospital on an older build reads them, and Join
// answers are compared with proto.Equal).
func TestSpecToProtoBuiltInUnchanged(t *testing.T) {
	for _, tc := range []struct{ spec model.Spec }{
		{model.Spec{Kind: model.LogReg, Features: 2, Classes: 2}},
		{model.Spec{Kind: model.MLP, Features: 2, Classes: 2, Hidden: []int{3}}},
	} {
		p := wire.SpecToProto(tc.spec, []string{"a", "b"}, "y", []string{"B", "A"})
		legacy := &fedguardv1.ModelSpec{FormatVersion: 1, Kind: fedguardv1.ModelKind(tc.spec.Kind), Features: []string{"a", "b"}, Label: "y", Classes: []string{"B", "A"}, NumParams: uint64(tc.spec.NumParams())}
		for _, h := range tc.spec.Hidden {
			legacy.Hidden = append(legacy.Hidden, uint32(h))
		}
		got, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(legacy)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: SpecToProto encodes as %x, the fields of before as %x", tc.spec.Kind, got, want)
		}
		back, err := wire.SpecFromProto(p)
		if err != nil || back.NumParams() != tc.spec.NumParams() {
			t.Errorf("%v: round trip = %+v, %v", tc.spec.Kind, back, err)
		}
	}
	cnn := model.Spec{Kind: model.Tensors, Tensors: []model.Tensor{{Name: "w", Shape: []int{4, 1, 3, 3}}, {Name: "b", Shape: []int{4}}}}
	back, err := wire.SpecFromProto(wire.SpecToProto(cnn, nil, "", nil))
	if err != nil || !cmp.Equal(back, cnn, cmpopts.EquateEmpty()) {
		t.Errorf("tensor layout round trip = %+v, %v; want %+v", back, err, cnn)
	}
}
