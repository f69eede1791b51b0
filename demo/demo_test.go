package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

func TestHospitalSplit(t *testing.T) {
	for _, n := range []int{MinHospitals, 3, DefaultHospitals, 5, 6, 13, MaxHospitals} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			hs, err := HospitalSplit(n)
			if err != nil {
				t.Fatalf("HospitalSplit(%d) error: %v", n, err)
			}
			if len(hs) != n {
				t.Fatalf("HospitalSplit(%d) has %d hospitals, want %d", n, len(hs), n)
			}
			sum := 0.0
			for i, h := range hs {
				sum += h.Fraction
				if want := "hospital-" + string(rune('a'+i)); h.Name != want {
					t.Errorf("HospitalSplit(%d)[%d].Name = %q, want %q", n, i, h.Name, want)
				}
				if want := []string{"B", "M"}[i%2]; h.Preferred != want {
					t.Errorf("HospitalSplit(%d)[%d].Preferred = %q, want %q", n, i, h.Preferred, want)
				}
				if want := float64(n-i) / float64(n*(n+1)/2); h.Fraction != want {
					t.Errorf("HospitalSplit(%d)[%d].Fraction = %v, want %v", n, i, h.Fraction, want)
				}
				if i > 0 && h.Fraction >= hs[i-1].Fraction {
					t.Errorf("HospitalSplit(%d)[%d].Fraction = %v, not below the one before (%v)", n, i, h.Fraction, hs[i-1].Fraction)
				}
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Errorf("HospitalSplit(%d) fractions sum to %v, want 1", n, sum)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		// The split the demo has always used: its results must not move.
		want := []Hospital{
			{"hospital-a", 0.40, "B"},
			{"hospital-b", 0.30, "M"},
			{"hospital-c", 0.20, "B"},
			{"hospital-d", 0.10, "M"},
		}
		got, err := HospitalSplit(DefaultHospitals)
		if err != nil {
			t.Fatalf("HospitalSplit(%d) error: %v", DefaultHospitals, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("HospitalSplit(%d) mismatch (-want +got):\n%s", DefaultHospitals, diff)
		}
	})
	for _, n := range []int{-1, 0, 1, MaxHospitals + 1} {
		t.Run(fmt.Sprintf("bad %d", n), func(t *testing.T) {
			if hs, err := HospitalSplit(n); !errors.Is(err, ErrHospitals) {
				t.Errorf("HospitalSplit(%d) = %v, %v, want %v", n, hs, err, ErrHospitals)
			}
		})
	}
}

// valid reports whether the coordinator configuration of a demo with
// options o and n hospitals is valid.
func valid(t *testing.T, o Options, n int) bool {
	t.Helper()
	hs, err := HospitalSplit(n)
	if err != nil {
		t.Fatalf("HospitalSplit(%d) error: %v", n, err)
	}
	features, err := wdbcFeatures()
	if err != nil {
		t.Fatal(err)
	}
	f := &Fed{Dir: t.TempDir(), Features: features, Hospitals: hs}
	return f.CoordinatorConfig(o).Validate() == nil
}

func TestChooseHospitals(t *testing.T) {
	krum := aggregation.Config{Rule: aggregation.NameKrum}
	for _, tc := range []struct {
		name    string
		o       Options
		want    int
		why     string // a substring of the reason; empty: no reason
		wantErr string // a substring of the error
	}{
		{name: "fedavg", o: Options{}, want: DefaultHospitals},
		{name: "median", o: Options{Aggregation: aggregation.Config{Rule: aggregation.NameMedian, F: 1}}, want: DefaultHospitals},
		{name: "fedavg explicit", o: Options{Hospitals: 7}, want: 7},
		{name: "fedavg two", o: Options{Hospitals: 2}, want: 2},
		// 4 hospitals: rounds of 3 updates, 2 buckets of 2; krum needs 3.
		// 6 hospitals: rounds of 5 or 6 updates, 3 buckets.
		{name: "krum bucket 2", o: Options{Aggregation: aggregation.Config{Rule: aggregation.NameKrum, Bucket: 2}}, want: 6, why: "krum needs n ≥ 2f+3, have n=2"},
		{name: "krum f 1", o: Options{Aggregation: aggregation.Config{Rule: aggregation.NameKrum, F: 1}}, want: 6, why: "krum needs n ≥ 2f+3, have n=3 f=1"},
		{name: "krum", o: Options{Aggregation: krum}, want: DefaultHospitals},
		// Bulyan with f=1 needs 7 buckets: rounds of 13 updates or more.
		{name: "bulyan f 1 bucket 2", o: Options{Aggregation: aggregation.Config{Rule: aggregation.NameBulyan, F: 1, Bucket: 2}}, want: 14, why: "bulyan needs n ≥ 4f+3"},
		{name: "explicit too few", o: Options{Hospitals: 4, Aggregation: aggregation.Config{Rule: aggregation.NameKrum, Bucket: 2}}, wantErr: "krum needs n ≥ 2f+3"},
		{name: "explicit out of range", o: Options{Hospitals: MaxHospitals + 1}, wantErr: ErrHospitals.Error()},
		// No count up to 26 can run Bulyan with f=6 (27 updates): the
		// error is the one for 4.
		{name: "impossible", o: Options{Aggregation: aggregation.Config{Rule: aggregation.NameBulyan, F: 6}}, wantErr: "min_participants 3 to 4 enrolled"},
		{name: "invalid rule", o: Options{Aggregation: aggregation.Config{Rule: "nonesuch"}}, wantErr: "nonesuch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o.withDefaults()
			n, why, err := chooseHospitals(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("chooseHospitals(%+v) = %d, %q, %v, want error containing %q", o, n, why, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("chooseHospitals(%+v) error: %v", o, err)
			}
			if n != tc.want {
				t.Errorf("chooseHospitals(%+v) = %d hospitals, want %d", o, n, tc.want)
			}
			if tc.why == "" && why != "" || !strings.Contains(why, tc.why) {
				t.Errorf("chooseHospitals(%+v) reason = %q, want one containing %q", o, why, tc.why)
			}
			// The choice is the first valid count from the default up.
			if !valid(t, o, n) {
				t.Errorf("the configuration for the chosen %d hospitals is invalid", n)
			}
			if o.Hospitals == 0 {
				for k := DefaultHospitals; k < n; k++ {
					if valid(t, o, k) {
						t.Errorf("chooseHospitals(%+v) = %d, but %d hospitals are valid", o, n, k)
					}
				}
			}
		})
	}
}

func TestCoordinatorConfig(t *testing.T) {
	features, err := wdbcFeatures()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ n, minParticipants int }{{2, 1}, {3, 2}, {4, 3}, {6, 5}, {26, 25}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			hs, err := HospitalSplit(tc.n)
			if err != nil {
				t.Fatal(err)
			}
			f := &Fed{Dir: "d", Features: features, Hospitals: hs}
			c := f.CoordinatorConfig(Options{Seed: 7})
			if diff := cmp.Diff(names(hs), c.Enrolled); diff != "" {
				t.Errorf("Enrolled mismatch (-want +got):\n%s", diff)
			}
			if c.MinParticipants != tc.minParticipants {
				t.Errorf("MinParticipants = %d, want %d", c.MinParticipants, tc.minParticipants)
			}
			if c.Training.Rounds != 20 || c.Model.Kind != "logreg" || c.Seed != 7 {
				t.Errorf("rounds, model, seed = %d, %q, %d, want the defaults 20, logreg and seed 7", c.Training.Rounds, c.Model.Kind, c.Seed)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

// TestSetupHospitals checks that every hospital is enrolled and gets its
// share of the rows.
func TestSetupHospitals(t *testing.T) {
	dir := t.TempDir()
	hs, err := HospitalSplit(6)
	if err != nil {
		t.Fatal(err)
	}
	fed, err := SetupHospitals(dir, 1, hs)
	if err != nil {
		t.Fatalf("SetupHospitals: %v", err)
	}
	if diff := cmp.Diff(hs, fed.Hospitals); diff != "" {
		t.Errorf("Fed.Hospitals mismatch (-want +got):\n%s", diff)
	}
	for _, h := range hs {
		for _, f := range []string{h.Name + ".key", h.Name + ".crt", "data.csv"} {
			if _, err := os.Stat(filepath.Join(dir, h.Name, f)); err != nil {
				t.Errorf("hospital %s: %v", h.Name, err)
			}
		}
	}
}

// TestRunChoosesHospitals runs a short demo whose rule needs more than the
// default hospitals.
func TestRunChoosesHospitals(t *testing.T) {
	fedtest.SkipIfShort(t, "runs a federation")
	var out bytes.Buffer
	o := Options{Rounds: 2, Seed: 1, Aggregation: aggregation.Config{Rule: aggregation.NameKrum, Bucket: 2}}
	s, err := Run(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if s.Hospitals != 6 || s.HospitalsReason == "" {
		t.Errorf("Run: summary hospitals %d (%q), want 6 and a reason", s.Hospitals, s.HospitalsReason)
	}
	header, _, _ := strings.Cut(out.String(), "\n")
	if want := "6 hospitals (4 are too few: "; !strings.Contains(header, want) {
		t.Errorf("Run: header %q does not contain %q", header, want)
	}
	if !strings.Contains(out.String(), "\n    2             6  ") {
		t.Errorf("Run: round 2 did not have 6 participants:\n%s", out.String())
	}
}

func ExampleHospitalSplit() {
	hs, err := HospitalSplit(4)
	if err != nil {
		panic(err)
	}
	for _, h := range hs {
		fmt.Printf("%s %.0f%% leaning %s\n", h.Name, 100*h.Fraction, h.Preferred)
	}
	// Output:
	// hospital-a 40% leaning B
	// hospital-b 30% leaning M
	// hospital-c 20% leaning B
	// hospital-d 10% leaning M
}

// fixedTrainer returns the same update every round.
type fixedTrainer struct{ delta []float32 }

func (f fixedTrainer) Prepare(*fedguardv1.ModelSpec) (dataset.Stats, error) {
	return dataset.Stats{}, nil
}

func (f fixedTrainer) Train(context.Context, *fedguardv1.RoundAssignment, []float32) (participant.Result, error) {
	return participant.Result{Delta: slices.Clone(f.delta), Samples: 3}, nil
}

func TestPoisoned(t *testing.T) {
	p := &Poisoned{Trainer: fixedTrainer{delta: []float32{1, -2, 0.5}}, Factor: PoisonFactor}
	r, err := p.Train(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{50, -100, 25}; !slices.Equal(r.Delta, want) || r.Samples != 3 {
		t.Errorf("Poisoned.Train = %v (%d samples), want %v (3 samples)", r.Delta, r.Samples, want)
	}
}

// TestRunPoison runs a short demo with a poisoned hospital and the status
// page on: the URL comes first, and the poisoned update is flagged in
// round 1, the row and the summary say so.
func TestRunPoison(t *testing.T) {
	fedtest.SkipIfShort(t, "runs a federation")
	var out bytes.Buffer
	o := Options{Rounds: 2, Seed: 1, Poison: "hospital-c", MetricsListen: "127.0.0.1:0"}
	s, err := Run(context.Background(), o, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[0], "hospital-c poisoned (update ×50)") || !strings.HasPrefix(lines[2], "status page: http://127.0.0.1:") {
		t.Errorf("Run: output does not start with the poisoning and the status page:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "hospital-c norm ") || s.Poisoned != "hospital-c" || s.PoisonFlagged < 1 || s.Flags < 1 {
		t.Errorf("Run: summary %+v, output:\n%s\nwant hospital-c flagged", s, out.String())
	}
	if _, err := Run(context.Background(), Options{Rounds: 1, Poison: "hospital-z"}, io.Discard); err == nil || !strings.Contains(err.Error(), "hospital-z") {
		t.Errorf("Run with poison hospital-z = %v, want an error naming it", err)
	}
}

// TestPoisonFlagsOnlyThePoisoned runs the README's poisoned demo (20
// rounds, the default seed, hospital-d boosted 50 times): no honest
// hospital may be flagged. Before the cosine check used a clipped
// reference, hospital-b and hospital-c got cosine flags in rounds 13 and
// 19, because the poisoned update dragged the round's aggregate its way.
func TestPoisonFlagsOnlyThePoisoned(t *testing.T) {
	fedtest.SkipIfShort(t, "runs a federation")
	var out bytes.Buffer
	s, err := Run(context.Background(), Options{Rounds: 20, Seed: 1, Poison: "hospital-d"}, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		for _, honest := range []string{"hospital-a ", "hospital-b ", "hospital-c "} {
			if strings.Contains(line, honest+"norm") || strings.Contains(line, honest+"cosine") || strings.Contains(line, honest+"excluded") {
				t.Errorf("an honest hospital is flagged: %q", line)
			}
		}
	}
	if s.PoisonFlagged < s.Rounds/2 {
		t.Errorf("the poisoned hospital was flagged in %d of %d rounds, want most", s.PoisonFlagged, s.Rounds)
	}
}
