package participant_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// holdAfter makes fake hold the agent's WaitRound once its rounds are done,
// instead of answering Finished, until release is closed; reached is
// closed when the agent first waits there.
func holdAfter(fake *fakeCoordinator, rounds uint64) (reached, release chan struct{}) {
	reached, release = make(chan struct{}), make(chan struct{})
	first := true
	fake.onWait = func(ctx context.Context, round uint64) error {
		if round <= rounds {
			return nil
		}
		if first {
			first = false
			close(reached)
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return reached, release
}

// startRun runs a in the background; the returned function waits for Run
// and returns its error.
func startRun(t *testing.T, a *participant.Agent) func() error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(cancel)
	return func() error { defer cancel(); return <-errc }
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// get returns the body of GET url, which must answer 200.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %s, want 200 OK:\n%s", url, resp.Status, b)
	}
	return string(b)
}

// sample returns the value of series (name{labels} as exposed) in the text
// exposition body.
func sample(t *testing.T, body, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("series %s: %v", series, err)
		}
		return v
	}
	t.Fatalf("series %s not exposed", series)
	return 0
}

// gathered returns the value of the counter or gauge name, or the sample
// count of the histogram name, with the label values labels (name, value
// pairs) in g.
func gathered(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("%s%v not gathered", name, labels)
	return 0
}

func TestMetricsServed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 2)
	reached, release := holdAfter(fake, 2)
	a, _ := p.agentFor(t, fake, func(c *participant.Config) {
		c.MetricsListen = "127.0.0.1:0"
	})
	wait := startRun(t, a)
	waitFor(t, "the agent to finish its rounds", reached)

	maddr := a.MetricsAddr()
	if maddr == "" {
		t.Fatal("MetricsAddr() = \"\" while Run runs with MetricsListen set")
	}
	base := "http://" + maddr
	if got := get(t, base+"/healthz"); got != "ok\n" {
		t.Errorf("GET /healthz = %q, want %q", got, "ok\n")
	}
	body := get(t, base+"/metrics")
	n := float64(len(fake.global) * 4)
	for _, tt := range []struct {
		series string
		want   float64
	}{
		{"fedguard_participant_rounds_completed_total", 2},
		{"fedguard_participant_bytes_received_total", 2 * n},
		{"fedguard_participant_bytes_sent_total", 2 * n},
		{"fedguard_participant_last_round", 2},
		{"fedguard_participant_round", 2},
		{"fedguard_participant_round_duration_seconds_count", 2},
		{"fedguard_participant_training_duration_seconds_count", 2},
		{"fedguard_participant_reconnects_total", 0},
		{`fedguard_participant_rounds_sat_out_total{reason="data_refused"}`, 0},
		{`fedguard_participant_manifests_refused_total{reason="fork"}`, 0},
		{`fedguard_participant_validation_findings_total{severity="error"}`, 0},
		{`fedguard_participant_secure_phase_duration_seconds_count{phase="unmasking"}`, 0},
	} {
		if got := sample(t, body, tt.series); got != tt.want {
			t.Errorf("/metrics %s = %v, want %v", tt.series, got, tt.want)
		}
	}
	if strings.Contains(body, hospital) {
		t.Errorf("/metrics names the participant %q:\n%s", hospital, body)
	}

	close(release)
	if err := wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := a.MetricsAddr(); got != "" {
		t.Errorf("MetricsAddr() = %q after Run returned, want \"\"", got)
	}
	if c, err := net.DialTimeout("tcp", maddr, time.Second); err == nil {
		c.Close()
		t.Errorf("the metrics listener %s still accepts connections after Run returned", maddr)
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	reached, release := holdAfter(fake, 1)
	a, _ := p.agentFor(t, fake)
	wait := startRun(t, a)
	waitFor(t, "the agent to finish its round", reached)
	if got := a.MetricsAddr(); got != "" {
		t.Errorf("MetricsAddr() = %q without MetricsListen, want \"\" (no listener)", got)
	}
	// The registry is kept all the same, for callers that export it.
	if got := gathered(t, a.Gatherer(), "fedguard_participant_rounds_completed_total"); got != 1 {
		t.Errorf("rounds completed = %v, want 1", got)
	}
	close(release)
	if err := wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestMetricsListenFailureStopsRun(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := newPKI(t)
	fake := newFake(t, 1)
	a, _ := p.agentFor(t, fake, func(c *participant.Config) {
		c.MetricsListen = busy.Addr().String()
	})
	if err := run(t, a, 10*time.Second); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("Run with a metrics address in use = %v, want a metrics listen error", err)
	}
	if joins, _, _, _ := fake.counts(); joins != 0 {
		t.Errorf("agent joined %d times, want 0: it must not start without its metrics listener", joins)
	}
}

func TestMetricsListenValidation(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{":9465", true},
		{"localhost:9465", true},
		{"[::1]:9465", true},
		{"127.0.0.1", false},
		{"127.0.0.1:99999", false},
		{"127.0.0.1:-1", false},
		{"bad host!:9465", false},
		{"127.0.0.1:", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			cfg := participant.Config{
				Coordinator: "127.0.0.1:1", TLS: p.clientTLS, Trainer: newTrainer(), Federation: federation,
				CoordinatorKeys: fake.keys(), MetricsListen: tt.addr,
			}
			_, err := participant.New(cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New(MetricsListen %q) = %v, want ok %v", tt.addr, err, tt.ok)
			}
			fc := participant.FileConfig{
				Coordinator: "c:1", Federation: "f", CA: "ca.crt", Cert: "h.crt", Key: "h.key",
				CoordinatorKey: "s.pub", Data: "d.csv", MetricsListen: tt.addr,
			}
			err = fc.Validate()
			var fe *participant.FieldError
			switch {
			case tt.ok && err != nil:
				t.Errorf("FileConfig{MetricsListen: %q}.Validate() = %v, want nil", tt.addr, err)
			case !tt.ok && (!errors.As(err, &fe) || fe.Field != "metrics_listen"):
				t.Errorf("FileConfig{MetricsListen: %q}.Validate() = %v, want a FieldError on metrics_listen", tt.addr, err)
			}
		})
	}
}

func TestMetricsManifestRefused(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	fake.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
		asg.Manifest = nil
		return asg
	}
	a, _ := p.agentFor(t, fake)
	if err := run(t, a, 15*time.Second); !errors.Is(err, participant.ErrManifestRefused) {
		t.Fatalf("Run = %v, want ErrManifestRefused", err)
	}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"fedguard_participant_manifests_refused_total", []string{"reason", "unsigned"}, 1},
		{"fedguard_participant_manifests_refused_total", []string{"reason", "fork"}, 0},
		{"fedguard_participant_rounds_sat_out_total", []string{"reason", participant.SatOutManifestRefused}, 1},
		{"fedguard_participant_rounds_completed_total", nil, 0},
	} {
		if got := gathered(t, a.Gatherer(), tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestMetricsDataValidation: findings are counted by severity, and in
// enforce mode the rounds sat out are counted as data_refused.
func TestMetricsDataValidation(t *testing.T) {
	t.Parallel()
	expect, withEmail := validationFiles(t)
	p := newPKI(t)

	t.Run("warn", func(t *testing.T) {
		fake := newFake(t, 2)
		a, _ := p.agentFor(t, fake, func(c *participant.Config) {
			c.Expectations, c.ValidationData, c.ValidationMode = expect, withEmail, participant.ValidationWarn
		})
		if err := run(t, a, 15*time.Second); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		fake.mu.Lock()
		reports := slices.Clone(fake.validations)
		fake.mu.Unlock()
		if len(reports) != 2 {
			t.Fatalf("%d validation reports, want 2", len(reports))
		}
		// Three identical checks: before the statistics, and before each
		// round.
		want := map[string]float64{}
		for _, f := range reports[0].GetFindings() {
			want[f.GetSeverity()] += 3
		}
		if want["error"] == 0 || want["warn"] == 0 {
			t.Fatalf("findings %v: want errors and warnings for the test to mean something", reports[0].GetFindings())
		}
		for _, sev := range []string{"warn", "error"} {
			if got := gathered(t, a.Gatherer(), "fedguard_participant_validation_findings_total", "severity", sev); got != want[sev] {
				t.Errorf("validation findings{severity=%q} = %v, want %v", sev, got, want[sev])
			}
		}
	})

	t.Run("enforce", func(t *testing.T) {
		fake := newFake(t, 2)
		fake.reportStats(t) // another hospital fixed the scaling
		a, _ := p.agentFor(t, fake, func(c *participant.Config) {
			c.Expectations, c.ValidationData, c.ValidationMode = expect, withEmail, participant.ValidationEnforce
		})
		if err := run(t, a, 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want the context's deadline (the agent sits every round out)", err)
		}
		if got := gathered(t, a.Gatherer(), "fedguard_participant_rounds_sat_out_total", "reason", participant.SatOutDataRefused); got < 1 {
			t.Errorf("rounds sat out{reason=data_refused} = %v, want at least 1", got)
		}
		if got := gathered(t, a.Gatherer(), "fedguard_participant_rounds_completed_total"); got != 0 {
			t.Errorf("rounds completed = %v, want 0", got)
		}
	})
}

// TestMetricsSecure: a secure round times each phase, and a declined one
// is counted as sat out.
func TestMetricsSecure(t *testing.T) {
	t.Parallel()
	t.Run("phases", func(t *testing.T) {
		fake, addr, tlsCfgs := secureFederation(t, 1, nil)
		dir := t.TempDir()
		agents := map[string]*participant.Agent{}
		for _, name := range secureNames {
			agents[name], _ = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"))
		}
		runAllOK(t, agents, 60*time.Second)
		n := float64(len(fake.global))
		for name, a := range agents {
			for _, phase := range []string{"advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking"} {
				if got := gathered(t, a.Gatherer(), "fedguard_participant_secure_phase_duration_seconds", "phase", phase); got != 1 {
					t.Errorf("%s: secure phase %s observed %v times, want 1", name, phase, got)
				}
			}
			for _, tt := range []struct {
				name string
				want float64
			}{
				{"fedguard_participant_rounds_completed_total", 1},
				{"fedguard_participant_round_duration_seconds", 1},
				{"fedguard_participant_training_duration_seconds", 1},
				{"fedguard_participant_bytes_sent_total", 4 * (n + 1)},
				{"fedguard_participant_last_round", 1},
			} {
				if got := gathered(t, a.Gatherer(), tt.name); got != tt.want {
					t.Errorf("%s: %s = %v, want %v", name, tt.name, got, tt.want)
				}
			}
		}
	})
	t.Run("declined", func(t *testing.T) {
		_, a := runBelowMinBucket(t)
		if got := gathered(t, a.Gatherer(), "fedguard_participant_rounds_sat_out_total", "reason", participant.SatOutDeclined); got != 1 {
			t.Errorf("rounds sat out{reason=declined} = %v, want 1", got)
		}
		if got := gathered(t, a.Gatherer(), "fedguard_participant_round_duration_seconds"); got != 0 {
			t.Errorf("round duration observed %v times, want 0 for a declined round", got)
		}
	})
}
