package coordinator

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedguard/fedguard/model"
)

// TestAddStoredModel: adding the stored model a piece at a time, decoded
// and added in one pass, gives each element the single saturating float32
// addition it gets from the whole model in memory, for lengths around the
// pieces; a non-finite stored value is ErrCorrupt.
func TestAddStoredModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 5, 64<<10 - 1, 64 << 10, 64<<10 + 3, 3*64<<10 + 17} {
		stored := make([]float32, n)
		v := make([]float32, n)
		for i := range stored {
			stored[i] = float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
			v[i] = float32(rng.NormFloat64())
		}
		// Sums past the largest float32 saturate, in both directions.
		stored[0], v[0] = math.MaxFloat32, math.MaxFloat32
		stored[n-1], v[n-1] = -math.MaxFloat32, -math.MaxFloat32/2
		want := make([]float32, n)
		for i := range want {
			want[i] = model.Saturate(v[i] + stored[i])
		}
		s := newMemStore()
		if err := s.saveInitial(model.AppendBytes(nil, stored)); err != nil {
			t.Fatal(err)
		}
		c := &Coordinator{store: s}
		if err := c.addStoredModel(v, 0); err != nil {
			t.Fatalf("n=%d: addStoredModel = %v", n, err)
		}
		for i := range want {
			if math.Float32bits(v[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d: element %d = %v, want %v", n, i, v[i], want[i])
			}
		}

		for _, bits := range []uint32{0x7f800000, 0xffc00000} {
			b := model.AppendBytes(nil, stored)
			binary.LittleEndian.PutUint32(b[4*(n-1):], bits)
			s := newMemStore()
			if err := s.saveInitial(b); err != nil {
				t.Fatal(err)
			}
			c := &Coordinator{store: s}
			err := c.addStoredModel(make([]float32, n), 0)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("n=%d: stored %#x at the end: addStoredModel = %v, want ErrCorrupt", n, bits, err)
			}
		}
	}
}
