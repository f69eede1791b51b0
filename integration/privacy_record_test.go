package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/privacy"
	"github.com/prometheus/client_golang/prometheus"
)

// dpAgent is a demo hospital's agent; with budget > 0 it trains with
// DP-SGD (σ = 1.1, C = 1) under that record-level budget.
func dpAgent(t *testing.T, dir, name, addr string, keys manifest.PublicKeys, budget float64) *participant.Agent {
	t.Helper()
	cfg := hospitalConfig(t, dir, name, addr, keys)
	if budget > 0 {
		lt := localTrainer(dir, name)
		lt.DP = &participant.DPSettings{NoiseMultiplier: 1.1, ClipNorm: 1}
		cfg.Trainer, cfg.DPEpsilon = lt, budget
	}
	return mustAgent(t, cfg)
}

// signedManifests opens every round's manifest in a stopped coordinator's
// audit log (its manifest_signed events), by round, and returns the
// log's events by kind ("": all of them).
func signedManifests(t *testing.T, cfg coordinator.Config, keys manifest.PublicKeys) (map[uint64]manifest.Round, map[string][]audit.Event) {
	t.Helper()
	ms := map[uint64]manifest.Round{}
	byKind := map[string][]audit.Event{}
	for _, e := range fedtest.AuditEvents(t, cfg, "") {
		byKind[e.Kind] = append(byKind[e.Kind], e)
		byKind[""] = append(byKind[""], e)
		if e.Kind != audit.KindManifestSigned {
			continue
		}
		m, _, err := manifest.Open(fedtest.Payload[audit.ManifestSigned](t, e).Envelope, keys)
		if err != nil {
			t.Fatalf("manifest of seq %d: %v", e.Seq, err)
		}
		ms[m.Round] = m
	}
	return ms, byKind
}

// TestPrivacyOnTheRecord: two of three hospitals train with DP-SGD under a
// budget; each reports its ledger with its update (plain) or its masked
// input (secure), and every round's signed manifest, the audit log, the
// status and the coordinator's metrics carry what each reported — for the
// included hospitals only.
func TestPrivacyOnTheRecord(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "secure"}[secure], func(t *testing.T) { testPrivacyOnTheRecord(t, secure) })
	}
}

func testPrivacyOnTheRecord(t *testing.T, secure bool) {
	dir, _, hs := demoFederation(t)
	hs = hs[:3]
	const rounds = 3
	cfg := fedConfig(t, dir, demo.Federation, hs, 3, rounds)
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.Secure = secure
	c := fedtest.Serve(t, cfg)
	keys := c.PublicKeys()
	agents := map[string]*participant.Agent{
		hs[0]: dpAgent(t, dir, hs[0], c.Addr, keys, 50),
		hs[1]: dpAgent(t, dir, hs[1], c.Addr, keys, 80),
		hs[2]: dpAgent(t, dir, hs[2], c.Addr, keys, 0),
	}
	wait := runAgents(t, context.Background(), agents)
	wantFinished(t, wait(90*time.Second))
	if err := c.WaitServe(t, 30*time.Second); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	st := c.Status()
	m := gaugeValues(t, c.Gatherer())
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	ms, events := signedManifests(t, cfg, keys)
	var spent [2]float64
	for i := range 2 {
		spent[i], _, _, _ = agents[hs[i]].PrivacySpent()
	}
	// Each round spends the same: ε after round r is ε of r events.
	for r := uint64(1); r <= rounds; r++ {
		mr, ok := ms[r]
		if !ok || mr.Privacy == nil {
			t.Fatalf("round %d: manifest %v has no privacy record", r, ok)
		}
		if mr.Privacy.Mechanism != "" {
			t.Errorf("round %d: mechanism %q, want none (record-level only)", r, mr.Privacy.Mechanism)
		}
		var got []string
		for _, h := range mr.Privacy.Hospitals {
			got = append(got, h.Name)
			if h.Delta != participant.DefaultDPDelta || !(h.Epsilon > 0) {
				t.Errorf("round %d: %+v", r, h)
			}
		}
		if !slices.Equal(got, hs[:2]) {
			t.Errorf("round %d: hospitals in the privacy record %v, want %v", r, got, hs[:2])
		}
	}
	last := ms[rounds].Privacy.Hospitals
	for i, b := range []float64{50, 80} {
		if math.Abs(last[i].Epsilon-spent[i]) > 1e-12*spent[i] || last[i].Budget != b {
			t.Errorf("%s in the last manifest: %+v, want ε %v (its ledger) and budget %v", hs[i], last[i], spent[i], b)
		}
		if r1 := ms[1].Privacy.Hospitals[i].Epsilon; !(r1 < last[i].Epsilon) {
			t.Errorf("%s: ε after round 1 %v, after round %d %v: want it to grow", hs[i], r1, rounds, last[i].Epsilon)
		}
	}
	// The provenance report's privacy section has every round, from the
	// verified manifests, and both hospitals' ε against their budgets.
	rep := privacyReport(t, events[""], keys)
	if len(rep.Rounds) != rounds || !slices.Equal(rep.Hospitals, hs[:2]) || rep.Rounds[rounds-1].Hospitals[1].Epsilon != last[1].Epsilon {
		t.Errorf("report's privacy section %+v", rep)
	}
	if n := len(events[audit.KindPrivacySpent]); n != rounds {
		t.Errorf("%d privacy_spent events, want %d", n, rounds)
	}
	for _, e := range events[audit.KindPrivacySpent] {
		var p audit.PrivacySpent
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Hospitals) != 2 || p.Hospitals[0].Epsilon != ms[e.Round].Privacy.Hospitals[0].Epsilon {
			t.Errorf("privacy_spent of round %d: %+v, want the manifest's %+v", e.Round, p, ms[e.Round].Privacy)
		}
	}
	for _, p := range st.Participants {
		switch p.Name {
		case hs[0], hs[1]:
			if p.Privacy == nil || p.Privacy.Round != rounds || p.Privacy.Remaining <= 0 || p.Privacy.Remaining != p.Privacy.Budget-p.Privacy.Epsilon {
				t.Errorf("status of %s: privacy %+v", p.Name, p.Privacy)
			}
		default:
			if p.Privacy != nil {
				t.Errorf("status of %s (no DP): privacy %+v", p.Name, p.Privacy)
			}
		}
	}
	if got, want := m["fedguard_participants_privacy_remaining_min"], min(50-spent[0], 80-spent[1]); math.Abs(got-want) > 1e-9 ||
		m["fedguard_participants_privacy_reporting"] != 2 || m["fedguard_participants_privacy_epsilon_max"] != max(spent[0], spent[1]) {
		t.Errorf("metrics %v: want the least budget left %v, 2 reporting, the largest ε %v", m, want, max(spent[0], spent[1]))
	}
}

// TestCentralDP: a plain federation with central DP closes rounds while
// its budget allows and then refuses to open the next one: clearly on the
// status page, in a metric and in the audit log. Every manifest carries
// the mechanism, its parameters and the ε the accountant gives for the
// rounds so far.
func TestCentralDP(t *testing.T) {
	dir, _, hs := demoFederation(t)
	hs = hs[:3]
	const sigma = 2.0
	two, err := privacy.Epsilon(1e-5, privacy.Event{Q: 1, Sigma: sigma, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	three, err := privacy.Epsilon(1e-5, privacy.Event{Q: 1, Sigma: sigma, Steps: 3})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fedConfig(t, dir, demo.Federation, hs, 3, 5)
	cfg.MetricsListen = "127.0.0.1:0"
	budget := (two.Epsilon + three.Epsilon) / 2
	cfg.CentralDP = &coordinator.CentralDPConfig{NoiseMultiplier: sigma, ClipNorm: 0.5, Epsilon: budget}
	c := fedtest.Serve(t, cfg)
	keys := c.PublicKeys()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := map[string]*participant.Agent{}
	for _, h := range hs {
		agents[h] = dpAgent(t, dir, h, c.Addr, keys, 0)
	}
	wait := runAgents(t, ctx, agents)
	deadline := time.Now().Add(90 * time.Second)
	var st coordinator.Status
	for {
		st = c.Status()
		if st.Privacy != nil && st.Privacy.Exhausted != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := gaugeValues(t, c.Gatherer())
	cancel()
	wait(30 * time.Second)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if st.Privacy == nil || st.Privacy.Exhausted == "" || st.LastClosed != 2 || st.Open {
		t.Fatalf("status %+v privacy %+v: want round 2 closed, none open and the budget exhausted", st, st.Privacy)
	}
	if m["fedguard_privacy_budget_exhausted"] != 1 || math.Abs(m[`fedguard_privacy_epsilon_spent{mechanism="central-gaussian"}`]-two.Epsilon) > 1e-9 {
		t.Errorf("metrics %v: want exhausted 1 and ε spent %v", m, two.Epsilon)
	}
	ms, events := signedManifests(t, cfg, keys)
	for r, want := range map[uint64]float64{1: 0, 2: two.Epsilon} {
		p := ms[r].Privacy
		if p == nil || p.Mechanism != coordinator.MechanismCentralGaussian || p.Delta != 1e-5 {
			t.Fatalf("round %d privacy %+v", r, p)
		}
		if r == 1 {
			one, _ := privacy.Epsilon(1e-5, privacy.Event{Q: 1, Sigma: sigma, Steps: 1})
			want = one.Epsilon
		}
		if math.Abs(p.Epsilon-want) > 1e-12*want {
			t.Errorf("round %d: ε %v, want %v", r, p.Epsilon, want)
		}
		var params struct {
			NoiseMultiplier float64         `json:"noise_multiplier"`
			ClipNorm        float64         `json:"clip_norm"`
			Cohort          int             `json:"cohort"`
			Ledger          []privacy.Event `json:"ledger"`
		}
		if err := json.Unmarshal(p.Parameters, &params); err != nil {
			t.Fatal(err)
		}
		if params.NoiseMultiplier != sigma || params.ClipNorm != 0.5 || params.Cohort != 3 ||
			len(params.Ledger) != 1 || params.Ledger[0] != (privacy.Event{Q: 1, Sigma: sigma, Steps: int64(r)}) {
			t.Errorf("round %d parameters %s", r, p.Parameters)
		}
	}
	if _, ok := ms[3]; ok {
		t.Errorf("round 3 was signed past the budget")
	}
	if n := len(events[audit.KindPrivacyExhausted]); n != 1 {
		t.Errorf("%d privacy_exhausted events, want 1", n)
	}
	rep := privacyReport(t, events[""], keys)
	if len(rep.Rounds) != 2 || rep.Rounds[1].Mechanism != coordinator.MechanismCentralGaussian || rep.Rounds[1].Epsilon != ms[2].Privacy.Epsilon ||
		len(rep.Exhausted) != 1 || rep.Exhausted[0].Round != 3 {
		t.Errorf("report's privacy section %+v", rep)
	}
	if n := len(events[audit.KindRoundOpened]); n != 2 {
		t.Errorf("%d rounds opened, want 2", n)
	}

	// A restarted coordinator reads the ledger back from the last manifest
	// and still refuses.
	c2, err := coordinator.New(cfg, coordinator.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if p := c2.Status().Privacy; p == nil || math.Abs(p.Epsilon-two.Epsilon) > 1e-12 || p.Remaining != budget-p.Epsilon {
		t.Errorf("restarted coordinator's privacy status %+v, want ε %v", p, two.Epsilon)
	}
}

// gaugeValues returns every gauge g gathers, by name and labels as
// name{k="v"} (name alone without labels).
func gaugeValues(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetGauge() == nil {
				continue
			}
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var parts []string
				for _, l := range m.GetLabel() {
					parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
				}
				key += "{" + strings.Join(parts, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// privacyReport builds the provenance report of events and returns its
// privacy section, checking that every manifest in it verified, that
// both renderings show it, and that the markdown has each of markdown.
func privacyReport(t *testing.T, events []audit.Event, keys manifest.PublicKeys, markdown ...string) *report.PrivacyReport {
	t.Helper()
	rep, err := report.Build(events, report.Options{VerifyManifest: func(env []byte) error {
		_, _, err := manifest.Open(env, keys)
		return err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Privacy == nil {
		t.Fatal("the report has no privacy section")
	}
	for _, r := range rep.Privacy.Rounds {
		if r.Signature != report.SignatureVerified {
			t.Errorf("round %d: manifest signature %q", r.Round, r.Signature)
		}
	}
	var md, html bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "## Privacy") || !strings.Contains(html.String(), `id="chart-privacy"`) {
		t.Errorf("the privacy section or its chart is missing:\n%s", md.String())
	}
	for _, want := range markdown {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the report's markdown lacks %q:\n%s", want, md.String())
		}
	}
	return rep.Privacy
}
