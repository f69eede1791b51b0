package safetensors

import (
	"errors"
	"math"
	"testing"

	"github.com/fedguard/fedguard/model"
)

// FuzzReadInto reads arbitrary bytes as the participant reads the weights
// a hospital's own trainer wrote (participant's readTrained): Open, then
// ReadInto the layout the federation fixed. Neither may panic, every
// refusal wraps one of the package's sentinels (ErrFormat, ErrDType,
// ErrLayout) or model.ErrNonFinite, which is how the participant tells a
// bad layout from a non-finite or malformed output; and what is accepted
// is finite and holds, tensor by tensor, the values ReadAll reads from
// the same file in its own order. (FuzzRead covers ReadAll alone.)
func FuzzReadInto(f *testing.F) {
	addGoldenSeeds(f)
	f.Add(raw(`{"scale":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"conv.bias":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"conv.weight":{"dtype":"F16","shape":[2,1,2],"data_offsets":[12,20]}}`, make([]byte, 20)))
	typed := func(err error) bool {
		return errors.Is(err, ErrFormat) || errors.Is(err, ErrDType) || errors.Is(err, ErrLayout) || errors.Is(err, model.ErrNonFinite)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := open(b)
		if err != nil {
			if !typed(err) {
				t.Fatalf("Open refused with %v, which wraps none of the sentinels", err)
			}
			return
		}
		dst := make([]float32, tiny.NumParams())
		if err := r.ReadInto(tiny, dst); err != nil {
			if !typed(err) {
				t.Fatalf("ReadInto refused with %v, which wraps none of the sentinels", err)
			}
			return
		}
		all, err := r.ReadAll()
		if err != nil {
			t.Fatalf("ReadInto accepted a file ReadAll refuses: %v", err)
		}
		// ReadAll's order is the file's layout; map each tensor to tiny's.
		at := map[string]int{}
		off := 0
		for _, ti := range tiny {
			at[ti.Name] = off
			off += ti.NumElements()
		}
		off = 0
		for _, ti := range r.Layout() {
			o, ok := at[ti.Name]
			if !ok {
				t.Fatalf("ReadInto accepted a file with tensor %q, which the layout lacks", ti.Name)
			}
			for i := range ti.NumElements() {
				got, want := dst[o+i], all[off+i]
				if math.IsNaN(float64(got)) || math.IsInf(float64(got), 0) || math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("tensor %q element %d: ReadInto %v, ReadAll %v", ti.Name, i, got, want)
				}
			}
			off += ti.NumElements()
		}
	})
}
