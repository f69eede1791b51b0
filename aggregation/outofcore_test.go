package aggregation

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// memRows is Rows over vectors in memory, counting the reads, and failing
// a read of failRow (when ≥ 0).
type memRows struct {
	xs      [][]float32
	failRow int
	blocks  int
	maxCols int
}

var errRead = errors.New("injected read failure")

func (m *memRows) ReadBlock(off int, dst [][]float32) error {
	m.blocks++
	for i, d := range dst {
		if i == m.failRow {
			return errRead
		}
		m.maxCols = max(m.maxCols, len(d))
		copy(d, m.xs[i][off:off+len(d)])
	}
	return nil
}

func (m *memRows) ReadRow(i int, dst []float32) error {
	if i == m.failRow {
		return errRead
	}
	copy(dst, m.xs[i])
	return nil
}

// TestAggregateOutOfCoreBitIdentical runs every rule that supports out of
// core aggregation on the same updates both ways, with column blocks from
// one colChunk to the whole vector, and requires the same aggregate bits,
// the same report and the same error.
func TestAggregateOutOfCoreBitIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type input struct {
		name string
		us   []Update
	}
	var inputs []input
	for _, s := range []struct{ k, d int }{{1, 1}, {2, 7}, {3, 8191}, {5, 8193}, {7, 3*colChunk + 17}, {10, 40000}, {4, 2 * colChunk}} {
		inputs = append(inputs, input{name: "random", us: randomUpdates(rng, s.k, s.d)})
	}
	// Ties, duplicates, signed zeros and extremes.
	tied := randomUpdates(rng, 6, colChunk+5)
	for j := range tied {
		for i := range tied[j].Delta {
			switch i % 5 {
			case 0:
				tied[j].Delta[i] = 1
			case 1:
				tied[j].Delta[i] = float32(math.Copysign(0, float64(j%2*2-1)))
			case 2:
				tied[j].Delta[i] = math.MaxFloat32 * float32(j%2*2-1)
			}
		}
	}
	inputs = append(inputs, input{name: "ties", us: tied})
	// Non-finite inputs: the error must name the same update.
	nan := randomUpdates(rng, 5, 2*colChunk+1)
	nan[3].Delta[colChunk+4] = float32(math.NaN())
	nan[1].Delta[2*colChunk] = float32(math.Inf(-1))
	inputs = append(inputs, input{name: "non-finite", us: nan})
	// Overflow of a finite result (fedavg of two huge values).
	huge := randomUpdates(rng, 2, 100)
	huge[0].Delta[3], huge[1].Delta[3] = math.MaxFloat32, math.MaxFloat32
	inputs = append(inputs, input{name: "overflow", us: huge})
	zero := randomUpdates(rng, 3, 50)
	zero[1].Samples = 0
	inputs = append(inputs, input{name: "zero-samples", us: zero})
	zeroNaN := randomUpdates(rng, 3, 50)
	zeroNaN[2].Samples = 0
	zeroNaN[0].Delta[7] = float32(math.Inf(1))
	inputs = append(inputs, input{name: "zero-samples-non-finite", us: zeroNaN})

	rules := []Rule{
		FedAvg{}, FedAvg{MaxSamples: 300},
		Median{}, Median{F: 1}, Median{F: 3},
		TrimmedMean{Beta: 0.2}, TrimmedMean{Beta: 0.34, F: 1}, TrimmedMean{Beta: 0}, TrimmedMean{Beta: 0.6},
	}
	for _, in := range inputs {
		for _, rule := range rules {
			if !SupportsOutOfCore(rule) {
				t.Fatalf("%s: SupportsOutOfCore false", rule.Name())
			}
			d := len(in.us[0].Delta)
			want := make([]float32, d)
			wantRep, wantErr := rule.Aggregate(want, in.us)
			for _, budget := range []int{1, 4 * colChunk * len(in.us), 1 << 30, 0} {
				rows := &memRows{xs: vectors(in.us), failRow: -1}
				headers := make([]Update, len(in.us))
				for i, u := range in.us {
					headers[i] = Update{ID: u.ID, Samples: u.Samples}
				}
				got := make([]float32, d)
				gotRep, gotErr := AggregateOutOfCore(rule, got, headers, OutOfCore{Rows: rows, BlockBytes: budget})
				name := in.name + "/" + rule.Name()
				if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
					t.Fatalf("%s budget %d: error %v, in memory %v", name, budget, gotErr, wantErr)
				}
				if wantErr != nil {
					continue
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s budget %d: coordinate %d is %v (%#x), in memory %v (%#x)", name, budget, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
				if !reflect.DeepEqual(gotRep, wantRep) {
					t.Fatalf("%s budget %d: report\n%+v\nin memory\n%+v", name, budget, gotRep, wantRep)
				}
				if budget == 1 && rows.maxCols > colChunk {
					t.Fatalf("%s: a budget of 1 byte read blocks of %d coordinates, want at most %d", name, rows.maxCols, colChunk)
				}
			}
		}
	}
}

// TestAggregateOutOfCoreRefusals: rules that need their updates in memory
// are refused, and a failed read is an error, not a result.
func TestAggregateOutOfCoreRefusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	us := randomUpdates(rng, 5, 3*colChunk)
	headers := make([]Update, len(us))
	for i, u := range us {
		headers[i] = Update{ID: u.ID, Samples: u.Samples}
	}
	dst := make([]float32, 3*colChunk)
	for _, rule := range []Rule{Krum{F: 1}, MultiKrum{F: 1, M: 3}, Bulyan{F: 0}, CenteredClipping{Tau: 1, F: 1}, RFA{},
		NormClip{Bound: 1, Rule: FedAvg{}}, Bucketing{Size: 2, Rule: Median{}}} {
		if SupportsOutOfCore(rule) {
			t.Errorf("%s: SupportsOutOfCore true", rule.Name())
		}
		if _, err := AggregateOutOfCore(rule, dst, headers, OutOfCore{Rows: &memRows{xs: vectors(us), failRow: -1}}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v, want ErrConfig", rule.Name(), err)
		}
	}
	for _, rule := range []Rule{FedAvg{}, Median{}, TrimmedMean{Beta: 0.2}} {
		for _, fail := range []int{0, 4} {
			_, err := AggregateOutOfCore(rule, dst, headers, OutOfCore{Rows: &memRows{xs: vectors(us), failRow: fail}, BlockBytes: 1})
			if !errors.Is(err, ErrRows) || !errors.Is(err, errRead) {
				t.Errorf("%s, row %d unreadable: error %v, want ErrRows", rule.Name(), fail, err)
			}
		}
	}
	if _, err := AggregateOutOfCore(Median{}, dst, nil, OutOfCore{Rows: &memRows{failRow: -1}}); !errors.Is(err, ErrNoUpdates) {
		t.Errorf("no updates: %v", err)
	}
	if _, err := AggregateOutOfCore(FedAvg{}, dst, nil, OutOfCore{Rows: &memRows{failRow: -1}}); !errors.Is(err, ErrNoUpdates) {
		t.Errorf("no updates: %v", err)
	}
}
