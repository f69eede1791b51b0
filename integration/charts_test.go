package integration

import (
	"context"
	"flag"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/chart/charttest"
	"github.com/fedguard/fedguard/internal/fedtest"
)

// screenshots, when set, is a directory the chart tests copy their browser
// screenshots to: the pictures in docs/ are made with
//
//	go test ./integration -run 'TestStatusPageCharts' -count=1 -screenshots=$PWD/docs
var screenshots = flag.String("screenshots", "", "copy the chart tests' screenshots (status-page.png, audit-report.png) to this directory")

// screenshot loads url in headless Chromium at width×height and returns
// the PNG it took, checked to be a picture of that size that is not one
// colour and that holds pixels of the charts' series colour #1f77b4 (drawn
// by nothing but the SVG charts). With -screenshots it is copied there as
// name.
func screenshot(t *testing.T, browser, url, name string, width, height int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), name)
	cmd := exec.CommandContext(ctx, browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--hide-scrollbars", "--user-data-dir="+t.TempDir(), fmt.Sprintf("--window-size=%d,%d", width, height),
		"--screenshot="+path, url)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s --screenshot %s: %v\n%s", browser, url, err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the screenshot of %s: %v", url, err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot of %s is not a PNG: %v", url, err)
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Errorf("the screenshot of %s is %v, want %dx%d", url, b, width, height)
	}
	colours, series := map[[3]uint32]bool{}, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if near(r>>8, 0x1f) && near(g>>8, 0x77) && near(bl>>8, 0xb4) {
				series++
			}
		}
	}
	if len(colours) < 16 {
		t.Errorf("the screenshot of %s has %d colours: a blank page?", url, len(colours))
	}
	if series < 20 {
		t.Errorf("the screenshot of %s has %d pixels of the series colour #1f77b4: the charts were not drawn", url, series)
	}
	t.Logf("screenshot of %s: %dx%d, %d colours, %d series pixels", url, b.Dx(), b.Dy(), len(colours), series)
	if *screenshots != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(*screenshots, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func near(v, want uint32) bool { return v+3 >= want && v <= want+3 }

// TestStatusPageCharts runs a real coordinator process and four hospitals,
// one of them poisoned, for three rounds, holding round 3 until the test
// has looked at the status page: loaded in headless Chromium, its charts
// hold one point per closed round with a holdout (accuracy, loss), one per
// round each hospital contributed to (norms), the norm band, and a
// marker per anomaly flag, as /status.json says; the page holds no
// script; a screenshot shows them. After the last round, the HTML
// provenance report made by `fedguard audit report --html` from the
// audit log is checked the same way through a file:// URL.
func TestStatusPageCharts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation and a browser")
	}
	t.Parallel()
	browser := chromium(t)
	dir, _, hospitals := demoFederation(t)
	const poisoned, rounds, hold = "hospital-d", 3, 3
	run := startHeldFederation(t, dir, hospitals, poisoned, rounds, hold)
	addr := run.addr
	run.coord.waitLog("round 2 closed", 60*time.Second, msgRound("round closed", hold-1))

	// What the charts must draw, from the same coordinator's JSON (round
	// 3 is held, so nothing changes in between).
	st := fedtest.Status(t, addr)
	if len(st.Charts.Rounds) != hold-1 {
		t.Fatalf("/status.json charts %+v: want %d rounds", st.Charts, hold-1)
	}
	want := map[string]charttest.Counts{}
	holdout := 0
	for _, r := range st.Charts.Rounds {
		if r.Holdout {
			holdout++
		}
	}
	if holdout != hold-1 {
		t.Errorf("%d of %d closed rounds have a holdout evaluation, want all", holdout, hold-1)
	}
	want["chart-accuracy"] = charttest.Counts{Points: holdout, Markers: len(st.Charts.Flags)}
	want["chart-loss"] = charttest.Counts{Points: holdout, Markers: len(st.Charts.Flags)}
	flagsOf := map[string]int{}
	for _, f := range st.Charts.Flags {
		flagsOf[f.Participant]++
	}
	if flagsOf[poisoned] == 0 {
		t.Errorf("no flag on %s in /status.json charts: %+v", poisoned, st.Charts.Flags)
	}
	for _, h := range hospitals {
		n := 0
		for _, r := range st.Charts.Rounds {
			if _, ok := r.Norms[h]; ok {
				n++
			}
		}
		if n != hold-1 {
			t.Errorf("%s has norms in %d of %d rounds", h, n, hold-1)
		}
		want["chart-norm-"+h] = charttest.Counts{Points: n, Bands: 1, Markers: flagsOf[h]} // rounds 1-2: one band area
	}

	dom := dumpDOM(t, browser, "http://"+addr+"/status")
	if strings.Contains(dom, "<script") {
		t.Error("the status page holds a script")
	}
	got := charttest.CountAll(t, dom)
	for id, w := range want {
		if g, ok := got[id]; !ok {
			t.Errorf("the status page has no chart %s", id)
		} else if g != w {
			t.Errorf("status page chart %s: %+v, want %+v", id, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the status page has charts %v, want %v", got, want)
	}
	screenshot(t, browser, "http://"+addr+"/status", "status-page.png", 1280, 1600)

	run.finish(t)

	// The HTML provenance report of the whole log.
	out := filepath.Join(t.TempDir(), "report.html")
	mustFedguard(t, "audit", "report", "--db", filepath.Join(run.cfg.DataDir, coordinator.AuditFile), "--html", "--out", out)
	dom = dumpDOM(t, browser, "file://"+out)
	if strings.Contains(dom, "<script") {
		t.Error("the report holds a script")
	}
	got = charttest.CountAll(t, dom)
	if g := got["chart-accuracy"]; g.Points != rounds || g.Markers < flagsOf[poisoned] {
		t.Errorf("report chart-accuracy: %+v, want %d points and at least the %d flags of %s", g, rounds, flagsOf[poisoned], poisoned)
	}
	for _, h := range hospitals {
		g, ok := got["chart-norm-"+h]
		switch {
		case !ok:
			t.Errorf("the report has no chart-norm-%s", h)
		case g.Points != rounds:
			t.Errorf("report chart-norm-%s: %d points, want %d", h, g.Points, rounds)
		case h == poisoned && (g.Markers < flagsOf[h] || g.Bands == 0):
			t.Errorf("report chart-norm-%s: %+v, want its flags (at least %d) and the norm band", h, g, flagsOf[h])
		}
	}
	if _, ok := got["chart-loss"]; ok {
		t.Error("the report has a loss chart, but the log records no loss")
	}
	screenshot(t, browser, "file://"+out, "audit-report.png", 1280, 1100)
}
