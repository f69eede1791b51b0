package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// gate blocks every hospital's training of round holdRound until release
// is closed, so the federation stays up, between rounds, while the test
// looks at it.
type gate struct {
	participant.Trainer
	holdRound uint64
	release   <-chan struct{}
}

func (g *gate) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	if a.GetRound() == g.holdRound {
		select {
		case <-g.release:
		case <-ctx.Done():
			return participant.Result{}, ctx.Err()
		}
	}
	return g.Trainer.Train(ctx, a, start)
}

// chromium finds Debian's headless browser; the test fails without it
// (.ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: the status page test loads the page in headless Chromium. " +
		"Install it with `apt-get update && apt-get install -y --no-install-recommends chromium` (.ci/run does)")
	return ""
}

// dumpDOM loads url in headless Chromium and returns the DOM it built.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --dump-dom %s: %v\n%s", browser, url, err, stderr.String())
	}
	return string(out)
}

// scrapeSample reads one series (name{labels} as written) from /metrics.
func scrapeSample(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("GET %s: %s: %v", url, series, err)
			}
			return f
		}
	}
	t.Fatalf("GET %s: no %s", url, series)
	return 0
}

// TestStatusPagePoisoned runs a real coordinator process with its metrics
// listener on and four in-process hospitals, one of which sends its
// update multiplied by demo.PoisonFactor. Once round 1 has closed (the
// hospitals hold round 2 until the test is done looking), /metrics counts
// a norm flag and the status page, loaded in headless Chromium, shows the
// round, the poisoned hospital flagged, and the audit log's head and
// checkpoint.
func TestStatusPagePoisoned(t *testing.T) {
	fedtest.SkipIfShort(t, "runs a federation and a browser")
	t.Parallel()
	browser := chromium(t)
	dir, _, hospitals := demoFederation(t)
	const poisoned = "hospital-d"
	run := startHeldFederation(t, dir, hospitals, poisoned, 2, 2)
	base := "http://" + run.addr
	run.coord.waitLog("round 1 closed", 40*time.Second, msgRound("round closed", 1))

	if got := scrapeSample(t, base+"/metrics", `fedguard_anomaly_flags_total{kind="norm"}`); got < 1 {
		t.Errorf(`fedguard_anomaly_flags_total{kind="norm"} = %v after round 1, want at least 1`, got)
	}

	dom := dumpDOM(t, browser, base+"/")
	t.Logf("status page DOM (%d bytes):\n%s", len(dom), dom)
	text := regexp.MustCompile(`\s+`).ReplaceAllString(dom, " ")
	checks := []struct {
		what string
		re   string
	}{
		{"the federation", `<span id="federation">demo</span>`},
		{"round 1 closed or round 2 open", `<dd id="round-number">round (1 \(closed\)|2 \(open\))</dd>`},
		{"one round closed of two", `<dd>1 of 2</dd>`},
		{"the poisoned hospital flagged in the table", `<td>` + poisoned + `</td><td>[^<]*</td><td>[^<]*</td><td>[12] \(attempt 0\)</td><td>norm \(round 1\)</td>`},
		{"its norm flag of round 1", `<tr class="flag"><td>1</td><td>0</td><td>` + poisoned + `</td><td>norm</td><td>[0-9.e+]+</td><td>\[[-0-9.e+]+, [-0-9.e+]+\]</td>`},
		{"the audit head", `<dd id="audit-size">[1-9][0-9]* events</dd>`},
		{"the last checkpoint", `<dd id="checkpoint">tree size [1-9][0-9]*, root <span class="mono">[A-Za-z0-9+/]{43}=</span>, signed [0-9]{4}-`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(text) {
			t.Errorf("the status page does not show %s (no match for %s)", c.what, c.re)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Error("the status page holds a script")
	}

	run.finish(t)
}

// heldFederation is a coordinator, with a metrics listener, and the
// demo's hospitals as agents (poisoned scaling its updates) whose trainers
// hold one round until finish releases them.
type heldFederation struct {
	cfg     coordinator.Config
	coord   *coordProc
	addr    string // the metrics listener's
	release func()
	errs    chan error
	agents  int
}

// startHeldFederation starts the coordinator for rounds rounds with a
// minute's round timeout and an agent per hospital; round hold waits for
// finish (or the test's end).
func startHeldFederation(t *testing.T, dir string, hospitals []string, poisoned string, rounds int, hold uint64) *heldFederation {
	t.Helper()
	cfg := fedConfig(t, dir, demo.Federation, hospitals, len(hospitals), rounds)
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.RoundTimeout = coordinator.Duration(time.Minute) // the held round waits for the test
	coord := startCoordinator(t, writeConfig(t, dir, cfg))
	rec := coord.waitLog("metrics listening", 30*time.Second, func(r map[string]any) bool { return r["msg"] == "metrics listening" })
	addr, _ := rec["addr"].(string)
	if addr == "" {
		t.Fatalf("metrics listening record %v has no addr", rec)
	}

	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	errs := make(chan error, len(hospitals))
	for _, h := range hospitals {
		var tr participant.Trainer = localTrainer(dir, h)
		if h == poisoned {
			tr = &demo.Poisoned{Trainer: tr, Factor: demo.PoisonFactor}
		}
		a := newAgent(t, dir, h, coord.Addr, &gate{Trainer: tr, holdRound: hold, release: release})
		go func() {
			err := a.Run(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", h, err)
			} else {
				err = nil
			}
			errs <- err
		}()
	}
	return &heldFederation{cfg: cfg, coord: coord, addr: addr, release: releaseOnce, errs: errs, agents: len(hospitals)}
}

// finish releases the held round and waits for every agent and the
// coordinator to end cleanly.
func (f *heldFederation) finish(t *testing.T) {
	t.Helper()
	f.release()
	for range f.agents {
		select {
		case err := <-f.errs:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("agents still running a minute after release")
		}
	}
	if err := f.coord.waitExit(30 * time.Second); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("coordinator exited with %v", err)
	}
}
