package coordinator_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/metricnames"
)

// scrape fetches url and returns its samples in the Prometheus text
// format, keyed by series as written (name{labels}).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("GET %s: malformed line %q", url, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("GET %s: line %q: %v", url, line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// waitMetricsAddr waits for Serve to bind the metrics listener.
func waitMetricsAddr(t *testing.T, c *coordinator.Coordinator) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a := c.MetricsAddr(); a != "" {
			return a
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("MetricsAddr() still empty 10s after Serve started")
	return ""
}

// scaled is base times k, coordinate by coordinate.
func scaled(base []float32, k float32) []float32 {
	out := make([]float32, len(base))
	for i, v := range base {
		out[i] = v * k
	}
	return out
}

// TestMetricsPoisonedParticipant runs a plain round in which one
// participant's update is a hundred times the others', then reads
// /metrics over HTTP and the audit log: the round is counted, every norm
// is in the histogram, the outlier's norm is flagged, and the flag names
// it in the log.
func TestMetricsPoisonedParticipant(t *testing.T) {
	names := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
	f := newFederation(t, names)
	f.cfg.MetricsListen = "127.0.0.1:0"
	f.cfg.MinParticipants = 4
	s := start(t, f.cfg)
	addr := waitMetricsAddr(t, s.c)

	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz = %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	before := scrape(t, "http://"+addr+"/metrics")
	if got := before["fedguard_rounds_closed_total"]; got != 0 {
		t.Errorf("fedguard_rounds_closed_total before any round = %v, want 0", got)
	}
	if got := before[`fedguard_phase{phase="stats"}`]; got != 1 {
		t.Errorf(`fedguard_phase{phase="stats"} at start = %v, want 1`, got)
	}

	ps := f.connect(t, s, names...)
	fixScaling(t, ps)
	assignments(t, ps)
	// Same direction for all (no cosine flag); the poisoned one is 100
	// times longer.
	base := []float32{0.1, -0.05, 0.02, 0.08, -0.03, 0.04}
	updates := map[string]update{
		"hospital-a": {delta: scaled(base, 1.0), samples: 10},
		"hospital-b": {delta: scaled(base, 1.1), samples: 10},
		"hospital-c": {delta: scaled(base, 0.9), samples: 10},
		"hospital-d": {delta: scaled(base, 100), samples: 10},
	}
	submitAll(t, 1, ps, updates)
	s.waitObserved(t, 1, 10*time.Second)

	m := scrape(t, "http://"+addr+"/metrics")
	for series, want := range map[string]float64{
		"fedguard_rounds_closed_total":                        1,
		"fedguard_update_norm_count":                          4,
		`fedguard_anomaly_flags_total{kind="norm"}`:           1,
		`fedguard_anomaly_flags_total{kind="cosine"}`:         0,
		`fedguard_anomaly_flags_total{kind="excluded"}`:       0,
		"fedguard_cohort_size":                                4,
		"fedguard_round_duration_seconds_count":               1,
		"fedguard_dropouts_total":                             0,
		`fedguard_rounds_failed_total{reason="quorum"}`:       0,
		`fedguard_audit_events_total{kind="anomaly_flagged"}`: 1,
		`fedguard_audit_events_total{kind="round_closed"}`:    1,
		`fedguard_audit_events_total{kind="update_received"}`: 4,
	} {
		got, ok := m[series]
		if !ok {
			t.Errorf("/metrics has no %s", series)
			continue
		}
		if got != want {
			t.Errorf("/metrics %s = %v, want %v", series, got, want)
		}
	}
	if got := m["fedguard_audit_append_seconds_count"]; got < 1 {
		t.Errorf("fedguard_audit_append_seconds_count = %v, want at least 1", got)
	}
	wantNormSum := 0.0
	for _, u := range updates {
		wantNormSum += refNorm(u.delta)
	}
	if got := m["fedguard_update_norm_sum"]; abs(got-wantNormSum) > 1e-9*wantNormSum {
		t.Errorf("fedguard_update_norm_sum = %v, want %v", got, wantNormSum)
	}
	for series := range m {
		for _, n := range names {
			if strings.Contains(series, n) {
				t.Errorf("series %s carries a participant name", series)
			}
		}
	}

	if err := s.stop(t); err != nil {
		t.Fatalf("stop = %v", err)
	}
	var flags []audit.AnomalyFlagged
	var order []string
	for _, e := range fedtest.AuditEvents(t, f.cfg, "") {
		if e.Round == 1 {
			order = append(order, e.Kind)
		}
		if e.Kind != audit.KindAnomalyFlagged {
			continue
		}
		if e.Round != 1 || e.Actor != audit.ActorCoordinator {
			t.Errorf("anomaly event seq %d: round %d actor %q, want round 1 actor %q", e.Seq, e.Round, e.Actor, audit.ActorCoordinator)
		}
		flags = append(flags, fedtest.Payload[audit.AnomalyFlagged](t, e))
	}
	if len(flags) != 1 {
		t.Fatalf("audit log has %d anomaly_flagged events (%+v), want 1", len(flags), flags)
	}
	got := flags[0]
	poisoned := refNorm(updates["hospital-d"].delta)
	if got.Participant != "hospital-d" || got.Kind != coordinator.AnomalyNorm || abs(got.Value-poisoned) > 1e-9*poisoned ||
		len(got.Band) != 2 || !(got.Band[0] < refNorm(updates["hospital-c"].delta)) || !(got.Band[1] > refNorm(updates["hospital-b"].delta) && got.Band[1] < poisoned) {
		t.Errorf("anomaly_flagged = %+v, want hospital-d's norm %v outside a band around the other norms", got, poisoned)
	}
	// The flag is recorded with the round's verdict: after the aggregation
	// report, before round_closed.
	ia, ir := slices.Index(order, audit.KindAggregationReport), slices.Index(order, audit.KindRoundClosed)
	if ix := slices.Index(order, audit.KindAnomalyFlagged); !(ia < ix && ix < ir) {
		t.Errorf("round 1 events %v: anomaly_flagged not between aggregation_report and round_closed", order)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestDeployReferencesExist checks that every fedguard_ metric the Grafana
// dashboard and the Prometheus rules (and their unit tests) name exists in
// a real coordinator's registry, and that the dashboard shows every metric
// the coordinator exports.
func TestDeployReferencesExist(t *testing.T) {
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	c, err := coordinator.New(f.cfg, coordinator.WithInit())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exported, err := metricnames.Gather(c.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	if len(exported) < 15 {
		t.Fatalf("registry exports %d fedguard_ metrics, want at least 15: %v", len(exported), exported)
	}

	files := []string{
		"../deploy/grafana/fedguard-dashboard.json",
		"../deploy/prometheus/alerts.yml",
		"../deploy/prometheus/alerts_test.yml",
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(file, ".json") && !json.Valid(b) {
				t.Fatalf("%s is not valid JSON", file)
			}
			refs := metricnames.Ref.FindAllString(string(b), -1)
			if len(refs) == 0 {
				t.Fatalf("%s names no fedguard_ metric", file)
			}
			shown := map[string]bool{}
			for _, ref := range refs {
				base, ok := exported.Resolve(ref)
				if !ok {
					t.Errorf("%s names %s, which the coordinator does not export", file, ref)
					continue
				}
				shown[base] = true
			}
			if strings.HasSuffix(file, ".json") {
				for name := range exported {
					if !shown[name] {
						t.Errorf("the dashboard has no panel for %s", name)
					}
				}
			}
		})
	}
}

// TestMetricsConfig checks the validation of metrics_listen and anomaly.
func TestMetricsConfig(t *testing.T) {
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	tests := []struct {
		name    string
		edit    func(*coordinator.Config)
		wantErr string // "" for valid
	}{
		{"off", func(*coordinator.Config) {}, ""},
		{"loopback", func(c *coordinator.Config) { c.MetricsListen = "127.0.0.1:9464" }, ""},
		{"all interfaces", func(c *coordinator.Config) { c.MetricsListen = ":9464" }, ""},
		{"ipv6", func(c *coordinator.Config) { c.MetricsListen = "[::1]:9464" }, ""},
		{"host name", func(c *coordinator.Config) { c.MetricsListen = "localhost:9464" }, ""},
		{"no port", func(c *coordinator.Config) { c.MetricsListen = "127.0.0.1" }, "metrics_listen"},
		{"bad port", func(c *coordinator.Config) { c.MetricsListen = "127.0.0.1:99999" }, "metrics_listen"},
		{"url", func(c *coordinator.Config) { c.MetricsListen = "http://127.0.0.1:9464" }, "metrics_listen"},
		{"same as listen", func(c *coordinator.Config) { c.Listen, c.MetricsListen = "127.0.0.1:7443", "127.0.0.1:7443" }, "participants' listen address"},
		{"anomaly", func(c *coordinator.Config) {
			floor := 0.0 // explicit: flag anything pointing away from the aggregate
			c.Anomaly = coordinator.AnomalyConfig{NormMADs: 5, NormRatio: 2, CosineFloor: &floor}
		}, ""},
		{"negative mads", func(c *coordinator.Config) { c.Anomaly.NormMADs = -1 }, "anomaly.norm_mads"},
		{"norm ratio below 1", func(c *coordinator.Config) { c.Anomaly.NormRatio = 0.5 }, "anomaly.norm_ratio"},
		{"cosine above 1", func(c *coordinator.Config) { floor := 1.5; c.Anomaly.CosineFloor = &floor }, "anomaly.cosine_floor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.cfg
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestMetricsListenerStops: the metrics listener is bound while Serve
// runs and closed when it returns.
func TestMetricsListenerStops(t *testing.T) {
	f := newFederation(t, []string{"hospital-a", "hospital-b"})
	f.cfg.MetricsListen = "127.0.0.1:0"
	s := start(t, f.cfg)
	addr := waitMetricsAddr(t, s.c)
	scrape(t, "http://"+addr+"/metrics")
	c := s.c
	if err := s.stop(t); err != nil {
		t.Fatalf("stop = %v", err)
	}
	if a := c.MetricsAddr(); a != "" {
		t.Errorf("MetricsAddr() after Serve returned = %q, want empty", a)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get("http://" + addr + "/metrics"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("GET /metrics after Serve returned: %s, want a refused connection", resp.Status)
	}
}
