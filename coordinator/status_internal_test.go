package coordinator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/internal/chart/charttest"
)

// hostile is text a participant controls (a secure-round decline reason,
// say), made to break out of the page if it were not escaped.
const hostile = `</td><script>alert("x")</script><img src=x onerror=alert(1)>&`

// sampleStatus is a status with one of everything.
func sampleStatus() Status {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	return Status{
		Federation: "demo", Time: at, Phase: "training", Round: 3, Open: true, Attempt: 1, LastClosed: 2, Rounds: 20,
		Deadline: at.Add(time.Minute), Cohort: []string{"hospital-a", "hospital-b"}, CohortRound: 3, Rule: "fedavg", Secure: true,
		Participants: []ParticipantStatus{
			{Name: "hospital-a", Status: ParticipantUpdateReceived, Since: at, Round: 3, Attempt: 1},
			{Name: "hospital-b", Status: ParticipantFlagged, Since: at, Round: 2, Flags: []string{AnomalyNorm}, FlagsRound: 2},
			{Name: "hospital-c", Status: ParticipantRefused, Reason: "declined the secure round: " + hostile, Since: at, Round: 3, Attempt: 1},
			{Name: "hospital-d", Status: ParticipantEnrolled},
		},
		Flags: []FlagStatus{{Round: 2, Participant: "hospital-b", Kind: AnomalyNorm, Value: 52.25, Band: []float64{0.5, 1.5}, Time: at}},
		Exclusions: []ExclusionStatus{
			{Round: 2, Participant: "hospital-d", Kind: ExclusionDropped, Reason: "no update before the deadline", Time: at},
		},
		SecureSessions: []SessionStatus{{
			Round: 2, Bucket: 1, Members: []string{"hospital-a", "hospital-b", "hospital-c"}, Survivors: []string{"hospital-a", "hospital-b"},
			Dropped: map[string]string{"hospital-c": "masked input: " + hostile}, Time: at,
		}},
		Audit:          AuditStatus{Origin: "fedguard/demo", Size: 123, Checkpoint: &CheckpointStatus{Size: 120, Root: "q83vEjRWeJA=", Time: at}},
		FailedAttempts: 2, LastFailure: "every secure session failed: " + hostile, NextAttempt: at.Add(30 * time.Second),
		Wedged: "round 3 cannot open: too few left", SittingOut: []string{"hospital-c"},
		Charts: ChartStatus{
			Rounds: []RoundPoint{
				{Round: 1, Holdout: true, HoldoutAccuracy: 0.61, HoldoutLoss: 0.9, Norms: map[string]float64{"hospital-a": 1, "hospital-b": 1.1, "hospital-d": 0.9}, NormBand: []float64{0.5, 1.5}},
				{Round: 2, Holdout: true, HoldoutAccuracy: 0.72, HoldoutLoss: 0.7, Norms: map[string]float64{"hospital-a": 1, "hospital-b": 52.25, "hospital-c": 0.9}, NormBand: []float64{0.5, 1.5}},
			},
			Flags: []ChartFlag{{Round: 2, Participant: "hospital-b", Kind: AnomalyNorm}, {Round: 2, Participant: "hospital-b", Kind: AnomalyCosine}},
		},
	}
}

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestStatusPage(t *testing.T) {
	mux := http.NewServeMux()
	newStatusHandler(sampleStatus).register(mux)
	resp := get(t, mux, "/status")
	body, _ := io.ReadAll(resp.Body)
	page := string(body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status = %s, want 200", resp.Status)
	}
	if got, want := resp.Header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'sha256-", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "script-src", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("Content-Security-Policy %q allows %q", csp, bad)
		}
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v: want nosniff and no-store", resp.Header)
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<span id="federation">demo</span>`,
		`<dd id="phase">training</dd>`,
		`round 3 (open)`,
		`<dd id="attempt">1</dd>`,
		`2 of 20`,
		`hospital-a, hospital-b (round 3)`,
		`<td>hospital-b</td><td>anomaly-flagged</td><td></td><td>2 (attempt 0)</td><td>norm (round 2)</td>`,
		`<td>hospital-d</td><td>enrolled</td>`,
		`<td>hospital-b</td><td>norm</td><td>52.25</td><td>[0.5, 1.5]</td>`,
		`<td>hospital-d</td><td>dropped</td><td>no update before the deadline</td>`,
		`Secure sessions`,
		`<dd id="audit-size">123 events</dd>`,
		`<dd id="wedged" class="refused">round 3 cannot open: too few left</dd>`,
		`<dd id="failed-attempts">2 in a row; the last: every secure session failed: &lt;/td&gt;`,
		`the next opens no earlier than 2025-03-04 05:06:37Z</dd>`,
		`<dd id="sitting-out">hospital-c (already revealed`,
		`tree size 120, root <span class="mono">q83vEjRWeJA=</span>, signed 2025-03-04 05:06:07Z`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /status lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Errorf("GET /status holds unescaped participant text:\n%s", page)
	}
	if !strings.Contains(page, "&lt;/td&gt;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Errorf("GET /status does not show the hostile reason escaped:\n%s", page)
	}
	// The charts: accuracy and loss with both flags, one norm chart per
	// participant with its own points, band areas and flags.
	charts := charttest.Charts(t, page)
	got := map[string]charttest.Counts{}
	for id, svg := range charts {
		got[id] = charttest.Count(svg)
		if !strings.Contains(svg, `<title id="`+id+`-title">`) {
			t.Errorf("chart %s has no <title>", id)
		}
	}
	want := map[string]charttest.Counts{
		"chart-accuracy":        {Points: 2, Markers: 2},
		"chart-loss":            {Points: 2, Markers: 2},
		"chart-norm-hospital-a": {Points: 2, Bands: 1},
		"chart-norm-hospital-b": {Points: 2, Markers: 2, Bands: 1},
		"chart-norm-hospital-c": {Points: 1, Bands: 1},
		"chart-norm-hospital-d": {Points: 1, Bands: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("what GET /status's charts draw (-want +got):\n%s", diff)
	}
	if strings.Contains(page, " style=") {
		t.Error("GET /status has a style attribute, which its CSP blocks")
	}
	// The style block is what the policy's hash allows.
	if !strings.Contains(page, "<style>"+statusCSS+"</style>") {
		t.Error("the page's style block is not statusCSS, so the CSP hash does not allow it")
	}
}

func TestStatusPageEmpty(t *testing.T) {
	mux := http.NewServeMux()
	newStatusHandler(func() Status {
		return Status{Federation: "demo", Phase: "stats", Rounds: 3, Cohort: []string{}, Audit: AuditStatus{Size: 2}}
	}).register(mux)
	resp := get(t, mux, "/status")
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"none closed yet", "No round has closed yet.", "No anomaly flags.", "No exclusions.", `<dd id="checkpoint" class="none">none yet</dd>`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /status of a new federation lacks %q", want)
		}
	}
	if strings.Contains(string(body), "Secure sessions") {
		t.Error("a plain federation's page has a secure sessions section")
	}
}

func TestStatusJSON(t *testing.T) {
	mux := http.NewServeMux()
	newStatusHandler(sampleStatus).register(mux)
	resp := get(t, mux, "/status.json")
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("GET /status.json has no Content-Security-Policy")
	}
	var got Status
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	if diff := cmp.Diff(sampleStatus(), got); diff != "" {
		t.Errorf("GET /status.json mismatch (-want +got):\n%s", diff)
	}
}

func TestStatusRoutes(t *testing.T) {
	mux := http.NewServeMux()
	newStatusHandler(sampleStatus).register(mux)
	resp := get(t, mux, "/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/status" {
		t.Errorf("GET / = %s to %q, want 302 to /status", resp.Status, resp.Header.Get("Location"))
	}
	if resp := get(t, mux, "/nonesuch"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nonesuch = %s, want 404", resp.Status)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /status = %d, want 405", rec.Code)
	}
}

// TestStatusBusy: requests beyond statusInFlight are turned away rather
// than queued on the coordinator's lock.
func TestStatusBusy(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, statusInFlight)
	h := newStatusHandler(func() Status {
		entered <- struct{}{}
		<-release
		return sampleStatus()
	})
	mux := http.NewServeMux()
	h.register(mux)
	done := make(chan int, statusInFlight)
	for range statusInFlight {
		go func() { done <- get(t, mux, "/status").StatusCode }()
	}
	for range statusInFlight {
		<-entered
	}
	if resp := get(t, mux, "/status.json"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /status.json with %d in flight = %s, want 503", statusInFlight, resp.Status)
	}
	close(release)
	for range statusInFlight {
		if code := <-done; code != http.StatusOK {
			t.Errorf("GET /status in flight = %d, want 200", code)
		}
	}
}

func TestKeepLast(t *testing.T) {
	var s []int
	for i := range StatusKeep + 7 {
		s = keepLast(s, i)
	}
	if len(s) != StatusKeep || s[0] != 7 || s[len(s)-1] != StatusKeep+6 {
		t.Errorf("keepLast after %d appends = %d elements from %d to %d, want %d from 7 to %d", StatusKeep+7, len(s), s[0], s[len(s)-1], StatusKeep, StatusKeep+6)
	}
}

// TestStatusChartsBounded: a long federation keeps only the last
// StatusChartRounds rounds and StatusChartFlags flags, and its page stays
// small.
func TestStatusChartsBounded(t *testing.T) {
	names := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
	b := newStatusBook(names)
	const rounds = 10_000
	for r := uint64(1); r <= rounds; r++ {
		p := RoundPoint{Round: r, Holdout: true, HoldoutAccuracy: 0.8, HoldoutLoss: 0.4, Norms: map[string]float64{}, NormBand: []float64{0.5, 1.5}}
		for _, n := range names {
			p.Norms[n] = 1
		}
		b.noteChart(p, ChartFlag{Round: r, Participant: "hospital-d", Kind: AnomalyNorm}, ChartFlag{Round: r, Participant: "hospital-d", Kind: AnomalyCosine})
	}
	cs := b.charts()
	if len(cs.Rounds) != StatusChartRounds || cs.Rounds[0].Round != rounds-StatusChartRounds+1 || cs.Rounds[len(cs.Rounds)-1].Round != rounds {
		t.Fatalf("charts keep %d rounds from %d, want the last %d", len(cs.Rounds), cs.Rounds[0].Round, StatusChartRounds)
	}
	if len(cs.Flags) != StatusChartFlags {
		t.Errorf("charts keep %d flags, want %d", len(cs.Flags), StatusChartFlags)
	}
	s := Status{Federation: "demo", Cohort: []string{}, Charts: cs}
	for _, n := range names {
		s.Participants = append(s.Participants, ParticipantStatus{Name: n})
	}
	mux := http.NewServeMux()
	newStatusHandler(func() Status { return s }).register(mux)
	body, _ := io.ReadAll(get(t, mux, "/status").Body)
	if got, want := charttest.Count(string(body)).Points, (2+len(names))*StatusChartRounds; got != want {
		t.Errorf("the page draws %d points, want %d", got, want)
	}
	// Flags older than the charts' first round are left off: the last
	// StatusChartFlags flags span 100 rounds, the charts 50.
	if got, want := charttest.Count(string(body)).Markers, 2*2*StatusChartRounds+2*StatusChartRounds; got != want {
		t.Errorf("the page draws %d flag markers, want %d", got, want)
	}
	if len(body) > 400_000 {
		t.Errorf("the status page of %d rounds is %d bytes", rounds, len(body))
	}
	t.Logf("status page of %d rounds, %d participants: %d bytes", rounds, len(names), len(body))
}

// TestStatusChartsSecure: a secure federation's rounds have no norms (the
// coordinator never sees an update), so the page draws accuracy and loss
// but no norm chart.
func TestStatusChartsSecure(t *testing.T) {
	s := Status{Federation: "demo", Cohort: []string{}, Secure: true,
		Participants: []ParticipantStatus{{Name: "hospital-a"}, {Name: "hospital-b"}},
		Charts:       ChartStatus{Rounds: []RoundPoint{{Round: 1, Holdout: true, HoldoutAccuracy: 0.7, HoldoutLoss: 0.6}, {Round: 2}}, Flags: []ChartFlag{}}}
	mux := http.NewServeMux()
	newStatusHandler(func() Status { return s }).register(mux)
	body, _ := io.ReadAll(get(t, mux, "/status").Body)
	page := string(body)
	if !strings.Contains(page, `id="chart-accuracy"`) || !strings.Contains(page, `id="chart-loss"`) {
		t.Error("a secure federation's page has no accuracy or loss chart")
	}
	if strings.Contains(page, "chart-norm-") || strings.Contains(page, "Update norms") {
		t.Error("a secure federation's page draws norm charts, which it has no norms for")
	}
	if got := charttest.Count(page).Points; got != 2 {
		t.Errorf("%d points drawn, want 2 (accuracy and loss of round 1; round 2 has no holdout)", got)
	}
}
