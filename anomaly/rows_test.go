package anomaly_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/model"
)

// sliceRows is aggregation.Rows over vectors in memory; a read fails once
// fail reads have been made (fail < 0: never).
type sliceRows struct {
	xs   [][]float32
	fail int
}

var errRead = errors.New("injected read failure")

func (s *sliceRows) ReadBlock(off int, dst [][]float32) error {
	if s.fail == 0 {
		return errRead
	}
	s.fail--
	for i, d := range dst {
		copy(d, s.xs[i][off:off+len(d)])
	}
	return nil
}

func (s *sliceRows) ReadRow(i int, dst []float32) error { copy(dst, s.xs[i]); return nil }

// TestCheckRowsMatchesCheck: the flags from rows read a block at a time
// are Check's, value for value, over sizes around the block size, with
// outliers that raise every kind of flag.
func TestCheckRowsMatchesCheck(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ n, d int }{{1, 1}, {3, 5}, {5, 1<<14 - 1}, {8, 1 << 14}, {12, 3<<14 + 7}} {
		us := make([]anomaly.Update, tc.n)
		xs := make([][]float32, tc.n)
		rep := aggregation.Report{Rule: "median"}
		for i := range us {
			x := make([]float32, tc.d)
			for j := range x {
				x[j] = float32(rng.NormFloat64())
			}
			switch i {
			case 1:
				for j := range x {
					x[j] *= -40 // opposite and large: cosine and norm flags
				}
			case 2:
				clear(x) // norm 0
			}
			xs[i] = x
			us[i] = anomaly.Update{ID: string(rune('a' + i)), Delta: x, Samples: uint64(1 + i), Norm: model.Norm(x)}
			rep.Entries = append(rep.Entries, aggregation.Entry{ID: us[i].ID, Selected: i != 3, Score: float64(i)})
		}
		want := anomaly.Check(anomaly.Config{}, us, rep)
		headers := make([]anomaly.Update, tc.n)
		for i, u := range us {
			headers[i] = anomaly.Update{ID: u.ID, Samples: u.Samples, Norm: u.Norm}
		}
		got, err := anomaly.CheckRows(anomaly.Config{}, headers, tc.d, &sliceRows{xs: xs, fail: -1}, rep)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("n=%d d=%d: rows\n%+v\nin memory\n%+v", tc.n, tc.d, got, want)
		}
		for _, f := range got {
			if math.IsNaN(f.Value) {
				t.Fatalf("NaN flag %+v", f)
			}
		}
		if tc.d > 1<<14 {
			if _, err := anomaly.CheckRows(anomaly.Config{}, headers, tc.d, &sliceRows{xs: xs, fail: 1}, rep); !errors.Is(err, errRead) {
				t.Fatalf("a failed read: error %v", err)
			}
		}
	}
}
