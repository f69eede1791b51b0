package simulation

import (
	"context"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/attack"
)

// TestDetection runs the anomaly heuristics over whole simulations: each
// attack is caught by the heuristic built for it, and honest clients are
// rarely flagged.
func TestDetection(t *testing.T) {
	for _, tt := range []struct {
		attack  string
		kind    string  // the heuristic that should catch it
		minRate float64 // its detection rate at least
	}{
		{attack.NameSignFlip, anomaly.Cosine, 0.9},
		{attack.NameGaussian, anomaly.Norm, 0.9},
		{attack.NameNone, "", 0},
	} {
		t.Run(tt.attack, func(t *testing.T) {
			o := wdbcOptions()
			o.Clients, o.Rounds, o.Attack = 10, 4, attack.Config{Name: tt.attack}
			if tt.attack != attack.NameNone {
				o.Byzantine = 2
			}
			o.Aggregation = aggregation.Defaults(aggregation.NameFedAvg, o.Clients, o.Byzantine)
			res, err := Run(context.Background(), o, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			d := res.Detection
			if d.ByzantineUpdates != o.Byzantine*o.Rounds || d.HonestUpdates != (o.Clients-o.Byzantine)*o.Rounds {
				t.Errorf("Detection counts %d Byzantine and %d honest updates, want %d and %d", d.ByzantineUpdates, d.HonestUpdates,
					o.Byzantine*o.Rounds, (o.Clients-o.Byzantine)*o.Rounds)
			}
			if fp, _ := d.FalsePositiveRate(DetectAny); fp > 0.2 {
				t.Errorf("false-positive rate %v (%+v), want at most 0.2", fp, d.Honest)
			}
			got, ok := d.DetectionRate(tt.kind)
			if tt.kind == "" {
				if _, ok := d.DetectionRate(DetectAny); ok {
					t.Errorf("DetectionRate without Byzantine clients is defined: %+v", d)
				}
				return
			}
			if !ok || got < tt.minRate {
				t.Errorf("%s detection rate %v, %t (%+v), want at least %v", tt.kind, got, ok, d.Byzantine, tt.minRate)
			}
			if anyRate, _ := d.DetectionRate(DetectAny); anyRate < got {
				t.Errorf("any-heuristic rate %v below the %s rate %v", anyRate, tt.kind, got)
			}
		})
	}
}

// TestDetectorDrift checks that a client whose rows are shifted is
// flagged for drift every round, and the others are not.
func TestDetectorDrift(t *testing.T) {
	const clients = 6
	s := &sim{clientX: make([][][]float64, clients), byz: make([]bool, clients)}
	for i := range clients {
		for k := range 20 {
			v := float64(k%5) - 2 // mean 0, std √2
			if i == 0 {
				v += 10
			}
			s.clientX[i] = append(s.clientX[i], []float64{v, float64(k % 3)})
		}
	}
	s.byz[0] = true
	det, err := newDetector(s)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		det.round(nil, make([]bool, clients))
	}
	want := Detection{ByzantineUpdates: 3, HonestUpdates: 15, Byzantine: FlagCounts{Any: 3, Drift: 3}}
	if det.d != want {
		t.Errorf("Detection = %+v, want %+v", det.d, want)
	}
}
