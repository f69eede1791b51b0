package coordinator

import (
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/privacy"
)

// TestCentralDPClip: every update ends up within the clipping norm, a
// short one unchanged, and all with weight one.
func TestCentralDPClip(t *testing.T) {
	d := &centralDP{cfg: CentralDPConfig{NoiseMultiplier: 1, ClipNorm: 2}}
	ups := []aggregation.Update{
		{ID: "a", Delta: []float32{3, 4}, Samples: 100}, // norm 5
		{ID: "b", Delta: []float32{0.6, 0.8}, Samples: 7},
	}
	d.clip(ups)
	if got := math.Hypot(float64(ups[0].Delta[0]), float64(ups[0].Delta[1])); math.Abs(got-2) > 1e-6 ||
		math.Abs(float64(ups[0].Delta[0])-1.2) > 1e-6 {
		t.Errorf("clipped %v (norm %v), want (1.2, 1.6)", ups[0].Delta, got)
	}
	if ups[1].Delta[0] != 0.6 || ups[1].Delta[1] != 0.8 {
		t.Errorf("short update changed: %v", ups[1].Delta)
	}
	if ups[0].Samples != 1 || ups[1].Samples != 1 {
		t.Errorf("weights %d, %d; want 1 each", ups[0].Samples, ups[1].Samples)
	}
}

// TestCentralDPNoise: the aggregate becomes the fixed-denominator mean
// (scaled by n/m) plus noise of standard deviation σC/m, and the record
// carries the accountant's ε for the ledger so far.
func TestCentralDPNoise(t *testing.T) {
	const sigma, clip, n, m, dim = 1.5, 0.8, 3, 4, 200_000
	d := &centralDP{cfg: CentralDPConfig{NoiseMultiplier: sigma, ClipNorm: clip}}
	d.ledger = []privacy.Event{{Q: 1, Sigma: sigma, Steps: 2}}
	agg := make([]float32, dim)
	for i := range agg {
		agg[i] = 0.4
	}
	out, err := d.noiseWith(agg, n, m, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	var sum, ss float64
	for _, v := range agg {
		x := float64(v) - 0.4*n/m
		sum += x
		ss += x * x
	}
	mean, std := sum/dim, math.Sqrt(ss/dim)
	if want := sigma * clip / m; math.Abs(std-want) > 0.01*want || math.Abs(mean) > 5*want/math.Sqrt(dim) {
		t.Errorf("noise mean %v std %v, want 0 and %v", mean, std, want)
	}
	g, err := privacy.Epsilon(DefaultCentralDPDelta, privacy.Event{Q: 1, Sigma: sigma, Steps: 3})
	if err != nil {
		t.Fatal(err)
	}
	if out.record.Epsilon != g.Epsilon || out.record.Mechanism != MechanismCentralGaussian || len(out.ledger) != 1 || out.ledger[0].Steps != 3 {
		t.Errorf("outcome %+v ledger %v, want ε %v after 3 steps", out.record, out.ledger, g.Epsilon)
	}
	if len(d.ledger) != 1 || d.ledger[0].Steps != 2 {
		t.Errorf("noise changed the kept ledger: %v", d.ledger)
	}
	if _, err := d.noise(agg, 5, 4); err == nil {
		t.Error("noise with more updates than the cohort succeeded")
	}
}

// TestCentralDPConfig: the settings, and the rules central DP composes
// with.
func TestCentralDPConfig(t *testing.T) {
	ok := CentralDPConfig{NoiseMultiplier: 1, ClipNorm: 1, Epsilon: 8}
	for _, tt := range []struct {
		name string
		dp   CentralDPConfig
		edit func(*Config)
	}{
		{"zero sigma", CentralDPConfig{ClipNorm: 1}, nil},
		{"NaN clip", CentralDPConfig{NoiseMultiplier: 1, ClipNorm: math.NaN()}, nil},
		{"negative budget", CentralDPConfig{NoiseMultiplier: 1, ClipNorm: 1, Epsilon: -1}, nil},
		{"delta 1", CentralDPConfig{NoiseMultiplier: 1, ClipNorm: 1, Delta: 1}, nil},
		{"secure", ok, func(c *Config) { c.Secure = true }},
		{"median", ok, func(c *Config) { c.Aggregation.Rule = aggregation.NameMedian }},
		{"krum", ok, func(c *Config) { c.Aggregation.Rule = aggregation.NameKrum }},
		{"bucketing", ok, func(c *Config) { c.Aggregation.Bucket = 2 }},
	} {
		var c Config
		if tt.edit != nil {
			tt.edit(&c)
		}
		if err := tt.dp.validate(c); err == nil {
			t.Errorf("%s: validate = nil, want an error", tt.name)
		}
	}
	for _, rule := range []string{"", aggregation.NameFedAvg} {
		if err := ok.validate(Config{Aggregation: aggregation.Config{Rule: rule, NormClip: 3}}); err != nil {
			t.Errorf("fedavg %q: %v", rule, err)
		}
	}
}

// TestStatusPagePrivacy: the page shows the federation's ε and what is
// left of its budget, flags a spent budget, and shows each hospital's
// claimed ε, record-level and federation-level, against its budget.
func TestStatusPagePrivacy(t *testing.T) {
	mux := http.NewServeMux()
	newStatusHandler(func() Status {
		return Status{Federation: "demo", Phase: "cohort", Rounds: 3, Cohort: []string{}, Round: 2,
			Privacy: &PrivacyStatus{Mechanism: MechanismCentralGaussian, Round: 2, Epsilon: 3.25, Delta: 1e-5, Budget: 4, Remaining: 0.75,
				Exhausted: "no round opens: round 3 would take ε to 4.5"},
			Participants: []ParticipantStatus{
				{Name: "hospital-a", Status: ParticipantIncluded, Privacy: &HospitalPrivacyStatus{Round: 2, Epsilon: 1.5, Delta: 1e-5, Budget: 8, Remaining: 6.5},
					DistributedPrivacy: &HospitalPrivacyStatus{Round: 2, Epsilon: 3.25, Delta: 1e-5, Budget: 10, Remaining: 6.75, Releases: 2}},
				{Name: "hospital-b", Status: ParticipantIncluded},
			}}
	}).register(mux)
	resp := get(t, mux, "/status")
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`<dd id="privacy" class="refused">central-gaussian: ε = 3.25 at δ = 1e-05 after round 2, budget 4 (0.75 left); no round opens: round 3 would take ε to 4.5</dd>`,
		"<th>record-level ε (its claim)</th>",
		"<td>1.5 at δ = 1e-05 (round 2) of 8, 6.5 left</td>",
		"<th>federation-level ε (its claim)</th>",
		"<td>3.25 at δ = 1e-05 after 2 releases (round 2) of 10, 6.75 left</td>",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /status lacks %q:\n%s", want, body)
		}
	}
}
