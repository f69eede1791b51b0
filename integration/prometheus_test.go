package integration

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/participant"
)

// prometheusServer finds Debian's Prometheus server (package prometheus,
// which .ci/run installs). Without it the test fails in CI (CI set) and is
// skipped elsewhere.
func prometheusServer(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	msg := "the prometheus server is not installed: the live monitoring test runs it against real coordinators. " +
		"Install it with `apt-get update && apt-get install -y --no-install-recommends prometheus` (.ci/run does)"
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// monitoredFederation is a demo federation whose coordinator and first
// hospital are real fedguard processes with their metrics listeners on;
// the other hospitals run in process (one of them poisoned, perhaps:
// the binary has no way to poison its updates, and should not have one).
// It trains round 1 once release is called and stops in round 3, so both
// processes stay up, to be scraped, after round 2 has closed.
type monitoredFederation struct {
	coord                 *coordProc
	coordAddr, partAddr   string // metrics listeners
	release               func()
	coordJob, participJob string
}

// startMonitoredFederation starts a federation of the demo's four
// hospitals (seed 1); poison names the hospital whose update is
// multiplied by demo.PoisonFactor, or is empty. The first hospital checks
// its data against expectations proposed from it (`participant validate
// --init`), so that it reports its rows' aggregates and the coordinator
// checks them for drift. With drift, that hospital's agent starts only
// once the federation's scaling is fixed from the others' statistics, on
// data whose every feature is moved by driftStds standard deviations
// after its expectations were made (as an export changed between
// enrolment and a restart would be). Its Prometheus jobs are
// coordinator-NAME and participant-NAME.
func startMonitoredFederation(t *testing.T, name, poison string, drift bool) *monitoredFederation {
	t.Helper()
	dir, _, hospitals := demoFederation(t)
	if len(hospitals) < 3 || hospitals[0] == poison {
		t.Fatalf("demo hospitals %v: want at least 3 (the norm check needs 3 updates), the first one honest", hospitals)
	}
	quorum := len(hospitals)
	if drift {
		quorum-- // the scaling is fixed without the first hospital
	}
	cfg := fedConfig(t, dir, demo.Federation, hospitals, quorum, 3)
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.RoundTimeout = coordinator.Duration(5 * time.Minute) // round 1 waits for release, round 3 for the end
	coord := startCoordinator(t, writeConfig(t, dir, cfg))
	rec := coord.waitLog("metrics listening", 30*time.Second, func(r map[string]any) bool { return r["msg"] == "metrics listening" })
	m := &monitoredFederation{coord: coord, coordJob: "coordinator-" + name, participJob: "participant-" + name}
	m.coordAddr, _ = rec["addr"].(string)
	if m.coordAddr == "" {
		t.Fatalf("%s: metrics listening record %v has no addr", name, rec)
	}

	release := make(chan struct{})
	m.release = sync.OnceFunc(func() { close(release) })
	t.Cleanup(m.release)
	never := make(chan struct{}) // round 3 ends with the test
	agents := map[string]*participant.Agent{}
	for _, h := range hospitals[1:] {
		var tr participant.Trainer = localTrainer(dir, h)
		if h == poison {
			tr = &demo.Poisoned{Trainer: tr, Factor: demo.PoisonFactor}
		}
		tr = &gate{Trainer: &gate{Trainer: tr, holdRound: 3, release: never}, holdRound: 1, release: release}
		agents[h] = newAgent(t, dir, h, coord.Addr, tr)
	}
	runAgents(t, context.Background(), agents)

	first := hospitals[0]
	data := filepath.Join(dir, first, "data.csv")
	expect := filepath.Join(dir, first, "expectations.json")
	mustFedguard(t, "participant", "validate", "--init", "--data", data, "--label", wdbc.Label, "--out", expect)
	if drift {
		coord.waitLog("feature scaling fixed", 60*time.Second, func(r map[string]any) bool { return r["msg"] == "feature scaling fixed" })
		shiftFeatures(t, data, wdbcFeatures(t), driftStds)
	}
	hp := startParticipant(t, first, "--coordinator", coord.Addr, "--federation", demo.Federation,
		"--ca", filepath.Join(dir, "ca", "ca.crt"),
		"--cert", filepath.Join(dir, first, first+".crt"), "--key", filepath.Join(dir, first, first+".key"),
		"--data", data, "--expect", expect,
		"--coordinator-key", filepath.Join(cfg.DataDir, "signing.pub"),
		"--metrics-listen", "127.0.0.1:0")
	m.partAddr, _ = waitParticipantRecord(t, hp, "metrics listening", 30*time.Second)["addr"].(string)
	if m.partAddr == "" {
		t.Fatalf("%s: %s's metrics listening record has no addr", name, first)
	}
	return m
}

// driftStds is how many standard deviations (of the whole WDBC data set)
// a drifted hospital's features are moved: well above
// coordinator.DefaultDriftShift. The hospital starts after the scaling is
// fixed because a hospital whose data is moved from the start is part of
// the reference it is compared with: holding a fraction p of the rows and
// moved by d standard deviations, it lies (1−p)d/√(1+p(1−p)d²) <
// √((1−p)/p) reference standard deviations from the reference mean
// however large d is. The demo's hospital-a holds 145 of 364 rows: at
// most 1.22 (1.15 measured at d = 5), under the default 2.
const driftStds = 5

// shiftFeatures adds k standard deviations of each feature, over all of
// WDBC, to every value of that feature in the CSV file at path.
func shiftFeatures(t *testing.T, path string, features []string, k float64) {
	t.Helper()
	all, err := csv.NewReader(bytes.NewReader(wdbc.CSV)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	std := map[string]float64{}
	for j, col := range all[0] {
		if !slices.Contains(features, col) {
			continue
		}
		var sum, sq float64
		for _, row := range all[1:] {
			v, err := strconv.ParseFloat(row[j], 64)
			if err != nil {
				t.Fatalf("WDBC %s: %v", col, err)
			}
			sum += v
			sq += v * v
		}
		n := float64(len(all) - 1)
		std[col] = math.Sqrt(sq/n - (sum/n)*(sum/n))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	shifted := 0
	for j, col := range rows[0] {
		sd, ok := std[col]
		if !ok {
			continue
		}
		shifted++
		for _, row := range rows[1:] {
			v, err := strconv.ParseFloat(row[j], 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", path, col, err)
			}
			row[j] = strconv.FormatFloat(v+k*sd, 'g', -1, 64)
		}
	}
	if shifted != len(features) {
		t.Fatalf("%s: shifted %d columns, want the %d features", path, shifted, len(features))
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitParticipantRecord waits until a participant process logged a JSON
// record with the given msg, and returns it.
func waitParticipantRecord(t *testing.T, p *participantProc, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(p.out.String(), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
				return r
			}
		}
		select {
		case <-p.done:
			t.Fatalf("participant %s exited (%v) before logging %q:\n%s", p.name, p.err, msg, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("participant %s did not log %q within %v:\n%s", p.name, msg, timeout, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// promServer is a Prometheus server process owned by a test.
type promServer struct {
	base string // http://127.0.0.1:PORT
	out  *fedtest.LogBuffer
	done chan struct{}
}

// startPrometheus runs the prometheus server on a free loopback port,
// scraping each job's target every second and evaluating the real
// deploy/prometheus/alerts.yml every second. It is stopped when the test
// ends.
func startPrometheus(t *testing.T, bin string, jobs map[string]string) *promServer {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The rules are loaded as written, not a test copy: PoisoningSuspected
	// has no `for:` (the test checks, through the rules API), so it fires
	// at the first evaluation that sees a flag.
	rules := filepath.Join(root, "deploy", "prometheus", "alerts.yml")
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n")
	fmt.Fprintf(&cfg, "rule_files:\n  - %q\n", rules)
	fmt.Fprintf(&cfg, "scrape_configs:\n")
	names := make([]string, 0, len(jobs))
	for job := range jobs {
		names = append(names, job)
	}
	slices.Sort(names)
	for _, job := range names {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", job, jobs[job])
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port: bound and released here, so another process could take
	// it before Prometheus does; Prometheus then exits and the test says so.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	p := &promServer{base: "http://" + addr, out: &fedtest.LogBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("prometheus configuration:\n%s\nprometheus output:\n%s", cfg.String(), p.out.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("prometheus exited before it was ready (%v):\n%s", waitErr, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready 60s after start:\n%s", p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs Prometheus' HTTP API at path with query and decodes its data.
func (p *promServer) api(t *testing.T, path string, query url.Values, data any) {
	t.Helper()
	u := p.base + path
	if query != nil {
		u += "?" + query.Encode()
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %s: %v", u, resp.Status, err)
	}
	if body.Status != "success" {
		t.Fatalf("GET %s: %s: status %q, error %q", u, resp.Status, body.Status, body.Error)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatalf("GET %s: data: %v", u, err)
	}
}

// promAlert is an alert in /api/v1/alerts.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
	Value  string            `json:"value"`
}

func (p *promServer) alerts(t *testing.T) []promAlert {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	p.api(t, "/api/v1/alerts", nil, &data)
	return data.Alerts
}

// query evaluates an instant query and returns its samples as
// labels → value.
func (p *promServer) query(t *testing.T, q string) map[string]float64 {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query", url.Values{"query": {q}}, &data)
	if data.ResultType != "vector" {
		t.Fatalf("query %s: result type %q, want vector", q, data.ResultType)
	}
	out := map[string]float64{}
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, r.Value, err)
		}
		out[fmt.Sprint(r.Metric)] = v
	}
	return out
}

// promSingle is the value of a query's only sample; false unless there is
// exactly one.
func promSingle(samples map[string]float64) (float64, bool) {
	if len(samples) != 1 {
		return 0, false
	}
	for _, v := range samples {
		return v, true
	}
	return 0, false
}

// promRule is an alerting rule in /api/v1/rules.
type promRule struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"`
	Duration       float64   `json:"duration"` // for:, in seconds
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

func (p *promServer) rules(t *testing.T) map[string]promRule {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	p.api(t, "/api/v1/rules", url.Values{"type": {"alert"}}, &data)
	out := map[string]promRule{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r
		}
	}
	return out
}

// promPoll calls cond every 250ms until it returns true, failing the test
// with what after timeout.
func promPoll(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestPrometheusAlerts runs Debian's Prometheus server against three demo
// federations, each a real coordinator process and a real participant
// process (with metrics listeners) plus in-process hospitals: in one,
// hospital-d sends its update multiplied by demo.PoisonFactor; in another,
// hospital-a's data drifted (see startMonitoredFederation). Prometheus
// scrapes all six every second and evaluates deploy/prometheus/alerts.yml
// every second. PoisoningSuspected must fire, in Prometheus' own alerts
// API, for the poisoned federation's coordinator, and FedguardDataDrift
// for the drifted one's; once the honest
// federation has closed two rounds and Prometheus has evaluated its rules
// on them, no alert may be firing for it, and PoisoningSuspected may never
// have been pending or firing for it.
func TestPrometheusAlerts(t *testing.T) {
	fedtest.SkipIfShort(t, "runs two federations and a Prometheus server")
	t.Parallel()
	bin := prometheusServer(t)
	poisoned := startMonitoredFederation(t, "poisoned", "hospital-d", false)
	drifted := startMonitoredFederation(t, "drifted", "", true)
	honest := startMonitoredFederation(t, "honest", "", false)
	feds := []*monitoredFederation{poisoned, drifted, honest}
	jobs := map[string]string{}
	for _, f := range feds {
		jobs[f.coordJob] = f.coordAddr
		jobs[f.participJob] = f.partAddr
	}
	prom := startPrometheus(t, bin, jobs)

	// The real rules loaded, PoisoningSuspected without a `for:` the test
	// would have to wait out.
	var rules map[string]promRule
	promPoll(t, "the rules loaded and evaluated", 30*time.Second, func() bool {
		rules = prom.rules(t)
		r, ok := rules["PoisoningSuspected"]
		return ok && !r.LastEvaluation.IsZero()
	})
	for _, name := range []string{"PoisoningSuspected", "FedguardDataDrift", "FedguardRoundsFailing"} {
		if r, ok := rules[name]; !ok || r.Health == "err" {
			t.Errorf("rule %s: %+v (loaded %d rules); want it loaded from alerts.yml and healthy", name, r, len(rules))
		}
	}
	for _, name := range []string{"PoisoningSuspected", "FedguardDataDrift"} {
		if d := rules[name].Duration; d > 0 {
			t.Fatalf("%s has for: %vs: this test loads alerts.yml as written; load a copy with a shortened for: instead", name, d)
		}
	}

	// Every target scraped at least once before any round trains, so that
	// increase() sees the flag counter go up from 0.
	promPoll(t, "every target up", 60*time.Second, func() bool {
		var data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		}
		prom.api(t, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
		up := 0
		for _, tg := range data.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		return up == len(jobs)
	})
	for _, f := range feds {
		f.release()
	}

	// firing waits until alert fires for f's coordinator.
	firing := func(alert string, f *monitoredFederation) promAlert {
		t.Helper()
		var fired promAlert
		promPoll(t, alert+" firing for "+f.coordJob, 3*time.Minute, func() bool {
			for _, a := range prom.alerts(t) {
				if a.Labels["alertname"] == alert && a.Labels["job"] == f.coordJob && a.State == "firing" {
					fired = a
					return true
				}
			}
			return false
		})
		t.Logf("firing: %+v", fired)
		if fired.Labels["instance"] != f.coordAddr {
			t.Errorf("%s labels %v: want instance %s", alert, fired.Labels, f.coordAddr)
		}
		return fired
	}
	if a := firing("PoisoningSuspected", poisoned); !slices.Contains([]string{"norm", "cosine"}, a.Labels["kind"]) || a.Labels["severity"] != "critical" {
		t.Errorf("PoisoningSuspected labels %v: want kind norm or cosine, severity critical", a.Labels)
	}
	if a := firing("FedguardDataDrift", drifted); a.Labels["severity"] != "warning" {
		t.Errorf("FedguardDataDrift labels %v: want severity warning", a.Labels)
	}
	// Who was flagged is in the coordinators' logs (and audit logs), not
	// in the alerts: the poisoned hospital's norm and the drifted one's
	// data.
	poisoned.coord.waitLog("hospital-d's norm flagged", 10*time.Second, func(r map[string]any) bool {
		return r["msg"] == "anomaly flagged" && r["participant"] == "hospital-d" && r["kind"] == coordinator.AnomalyNorm
	})
	rec := drifted.coord.waitLog("hospital-a's data drift", 10*time.Second, func(r map[string]any) bool {
		return r["msg"] == "participant data drift" && r["participant"] == "hospital-a"
	})
	if shift, _ := rec["shift"].(float64); shift < coordinator.DefaultDriftShift {
		t.Errorf("drift record %v: shift below the default %v", rec, coordinator.DefaultDriftShift)
	}
	t.Logf("drift: %v", rec)

	// The honest federation: two rounds closed, scraped, and the rules
	// evaluated after that scrape.
	honest.coord.waitLog("honest round 2 closed", 3*time.Minute, msgRound("round closed", 2))
	closed := fmt.Sprintf(`fedguard_rounds_closed_total{job=%q}`, honest.coordJob)
	promPoll(t, "Prometheus scraped the honest coordinator's two closed rounds", time.Minute, func() bool {
		v, ok := promSingle(prom.query(t, closed))
		return ok && v == 2
	})
	scraped := time.Now()
	promPoll(t, "a rule evaluation after the scrape", 30*time.Second, func() bool {
		return prom.rules(t)["PoisoningSuspected"].LastEvaluation.After(scraped)
	})
	for _, a := range prom.alerts(t) {
		job := a.Labels["job"]
		if job != honest.coordJob && job != honest.participJob {
			continue
		}
		if a.State == "firing" || a.Labels["alertname"] == "PoisoningSuspected" {
			t.Errorf("honest federation: alert %s %s (%v)", a.Labels["alertname"], a.State, a.Labels)
		}
	}
	// ALERTS keeps every pending and firing state the rules went through.
	for _, q := range []string{
		fmt.Sprintf(`max_over_time(ALERTS{alertname="PoisoningSuspected", job=%q}[1h])`, honest.coordJob),
		fmt.Sprintf(`max_over_time(ALERTS{alertstate="firing", job=~%q}[1h])`, honest.coordJob+"|"+honest.participJob),
	} {
		if got := prom.query(t, q); len(got) != 0 {
			t.Errorf("%s = %v, want no series: an alert was pending or firing for the honest federation", q, got)
		}
	}
	if got, ok := promSingle(prom.query(t, fmt.Sprintf(`sum(fedguard_anomaly_flags_total{job=%q, kind=~"norm|cosine|drift"})`, honest.coordJob))); !ok || got != 0 {
		t.Errorf("honest federation's norm, cosine and drift flags, as scraped: %v, want 0", got)
	}
	// Its first hospital's data was checked for drift before each round.
	if got, ok := promSingle(prom.query(t, fmt.Sprintf(`fedguard_audit_events_total{job=%q, kind="data_validation"}`, honest.coordJob))); !ok || got < 2 {
		t.Errorf("honest federation's data_validation events, as scraped: %v, want at least 2 (rounds 1 and 2)", got)
	}

	// The participant processes were scraped too, with their rounds.
	for _, f := range feds {
		q := fmt.Sprintf(`fedguard_participant_rounds_completed_total{job=%q}`, f.participJob)
		promPoll(t, q+" ≥ 1", time.Minute, func() bool {
			v, ok := promSingle(prom.query(t, q))
			return ok && v >= 1
		})
	}
}
