package wire_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/wire"
)

// TestSinkAssemblerMatchesAssembler: a sink assembler hands on exactly the
// bytes it was given, at their offsets, and its digest and norm are the
// in-memory assembler's bits, over sizes around the chunk sizes.
func TestSinkAssemblerMatchesAssembler(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 9))
	for _, n := range []int{0, 1, 7, wire.SendChunkBytes / 4, wire.SendChunkBytes/4 + 1, 3*wire.SendChunkBytes/4 + 5} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 1e3)
		}
		got := make([]byte, 4*n)
		sink := wire.NewSinkAssembler(n, func(off uint64, data []byte) error {
			copy(got[4*off:], data)
			return nil
		})
		mem := wire.NewAssembler(make([]float32, n))
		if err := wire.Chunks(x, func(off uint64, data []byte) error {
			if err := mem.Add(off, data); err != nil {
				return err
			}
			return sink.Add(off, data)
		}); err != nil && n > 0 {
			t.Fatal(err)
		}
		if n == 0 {
			continue // Chunks sends one empty chunk; nothing to compare
		}
		if err := sink.Done(); err != nil {
			t.Fatalf("n=%d: Done = %v", n, err)
		}
		if !bytes.Equal(got, model.AppendBytes(nil, x)) {
			t.Fatalf("n=%d: the sink got other bytes than were sent", n)
		}
		if sink.Sum() != mem.Sum() || math.Float64bits(sink.Norm()) != math.Float64bits(mem.Norm()) || sink.Received() != uint64(n) {
			t.Fatalf("n=%d: sink digest %x norm %v, in memory %x %v", n, sink.Sum(), sink.Norm(), mem.Sum(), mem.Norm())
		}
	}
}

// TestSinkAssemblerRefusals: what the in-memory assembler refuses never
// reaches the sink, and an error of the sink is returned as it is, with
// nothing counted as received.
func TestSinkAssemblerRefusals(t *testing.T) {
	nan := float32(math.NaN())
	for _, tt := range []struct {
		name string
		n    int
		ok   []step
		bad  step
		want error
	}{
		{"gap", 10, []step{{0, zeros(4)}}, step{5, zeros(2)}, wire.ErrOrder},
		{"overflow", 10, []step{{0, zeros(8)}}, step{8, zeros(3)}, wire.ErrOverflow},
		{"misaligned", 10, nil, step{0, make([]byte, 7)}, wire.ErrMisaligned},
		{"too large", 2 * per, nil, step{0, zeros(per + 1)}, wire.ErrTooLarge},
		{"NaN", 20, []step{{0, zeros(8)}}, step{8, enc(0, 0, 0, nan)}, model.ErrNonFinite},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sunk := 0
			asm := wire.NewSinkAssembler(tt.n, func(off uint64, data []byte) error {
				sunk += len(data)
				return nil
			})
			for _, s := range tt.ok {
				if err := asm.Add(s.offset, s.data); err != nil {
					t.Fatal(err)
				}
			}
			before := sunk
			if err := asm.Add(tt.bad.offset, tt.bad.data); !errors.Is(err, tt.want) {
				t.Fatalf("Add = %v, want %v", err, tt.want)
			}
			if sunk != before {
				t.Fatalf("a refused chunk reached the sink (%d bytes)", sunk-before)
			}
		})
	}
	errDisk := errors.New("disk full")
	asm := wire.NewSinkAssembler(8, func(uint64, []byte) error { return errDisk })
	if err := asm.Add(0, zeros(4)); !errors.Is(err, errDisk) {
		t.Fatalf("a failing sink: Add = %v", err)
	}
	if asm.Received() != 0 || asm.Done() == nil {
		t.Fatalf("a chunk the sink refused counts as received (%d)", asm.Received())
	}
	if got := wire.NewSinkAssembler(-1, nil).Done(); got != nil {
		t.Fatalf("a sink assembler for a negative size is not an empty vector: %v", got)
	}
}
