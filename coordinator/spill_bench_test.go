package coordinator

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/wire"
)

// BenchmarkSpill compares the two costs spilling adds to a plain round,
// each against the in-memory path in the same run: receiving n updates of
// P parameters (the assembler's checks and hashing, plus, spilled, the
// writes into the file) and closing the round (the rule and the anomaly
// checks, reading the file back when spilled).
//
//	go test ./coordinator -run '^$' -bench BenchmarkSpill -benchtime 3x -count 3
func BenchmarkSpill(b *testing.B) {
	const n, p = 10, 1 << 20
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, n)
	xs := make([][]float32, n)
	for i := range xs {
		names[i] = fmt.Sprintf("h%02d", i)
		xs[i] = make([]float32, p)
		for j := range xs[i] {
			xs[i][j] = float32(rng.NormFloat64())
		}
	}
	var chunks [][]byte
	var offs []uint64
	if err := wire.Chunks(xs[0], func(off uint64, data []byte) error {
		chunks = append(chunks, append([]byte(nil), data...))
		offs = append(offs, off)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	receive := func(b *testing.B, asm func(i int) *wire.Assembler) {
		for i := range n {
			a := asm(i)
			for k, c := range chunks {
				if err := a.Add(offs[k], c); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("receive/memory", func(b *testing.B) {
		b.SetBytes(n * p * 4)
		dst := make([][]float32, n)
		for i := range dst {
			dst[i] = make([]float32, p)
		}
		for b.Loop() {
			receive(b, func(i int) *wire.Assembler { return wire.NewAssembler(dst[i]) })
		}
	})
	b.Run("receive/spill", func(b *testing.B) {
		b.SetBytes(n * p * 4)
		dir := b.TempDir()
		if err := cleanSpills(dir); err != nil {
			b.Fatal(err)
		}
		k := 0
		for b.Loop() {
			s, err := createSpill(dir, 1, uint32(k), names, p)
			if err != nil {
				b.Fatal(err)
			}
			k++
			receive(b, func(i int) *wire.Assembler {
				sink, _ := s.sink(names[i])
				return wire.NewSinkAssembler(p, sink)
			})
			s.remove()
		}
	})
	// One spill file holding the updates, for the close.
	dir := b.TempDir()
	if err := cleanSpills(dir); err != nil {
		b.Fatal(err)
	}
	s, err := createSpill(dir, 1, 0, names, p)
	if err != nil {
		b.Fatal(err)
	}
	defer s.remove()
	recv := map[string]*received{}
	spilled := map[string]*received{}
	var inMemory, headers []aggregation.Update
	for i, nm := range names {
		sink, _ := s.sink(nm)
		a := wire.NewSinkAssembler(p, sink)
		if err := wire.Chunks(xs[i], a.Add); err != nil {
			b.Fatal(err)
		}
		recv[nm] = &received{delta: xs[i], samples: uint64(i + 1), norm: a.Norm()}
		spilled[nm] = &received{samples: uint64(i + 1), norm: a.Norm()}
		inMemory = append(inMemory, aggregation.Update{ID: nm, Delta: xs[i], Samples: uint64(i + 1)})
		headers = append(headers, aggregation.Update{ID: nm, Samples: uint64(i + 1)})
	}
	rows, err := s.rows(names)
	if err != nil {
		b.Fatal(err)
	}
	for _, rule := range []aggregation.Rule{aggregation.FedAvg{}, aggregation.Median{F: 2}} {
		dst := make([]float32, p)
		b.Run("close/"+rule.Name()+"/memory", func(b *testing.B) {
			b.SetBytes(n * p * 4)
			for b.Loop() {
				rep, err := rule.Aggregate(dst, inMemory)
				if err != nil {
					b.Fatal(err)
				}
				anomalyFlags(AnomalyConfig{}, 0, names, recv, rep)
			}
		})
		b.Run("close/"+rule.Name()+"/spill", func(b *testing.B) {
			b.SetBytes(n * p * 4)
			for b.Loop() {
				rep, err := aggregation.AggregateOutOfCore(rule, dst, headers, aggregation.OutOfCore{Rows: rows})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := anomalyFlagsFrom(AnomalyConfig{}, 0, names, spilled, rep, rows, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
