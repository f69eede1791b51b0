package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/chart/charttest"
)

// chartOf is the markup of the chart whose id is id in page.
func chartOf(t *testing.T, page, id string) string {
	t.Helper()
	svg, ok := charttest.Charts(t, page)[id]
	if !ok {
		t.Fatalf("the report has no chart %s", id)
	}
	return svg
}

// TestReportCharts: three clean rounds, with a norm flag on c in round 2
// and a drift flag on a in round 3, chart three accuracy points, three
// norm points per participant, the norm flag's band in round 2 only, and
// each flag on the time line of the accuracy chart and of its
// participant's norm chart. A report of one round has no charts, and the
// Markdown report never has any.
func TestReportCharts(t *testing.T) {
	l := newReportLog(t).start()
	l.clean(1).clean(2)
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 2, audit.AnomalyFlagged{Participant: "c", Kind: "norm", Value: 9, Band: []float64{0.5, 2}})
	l.clean(3)
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 3, audit.AnomalyFlagged{Participant: "a", Kind: "drift", Value: 4, Band: []float64{0, 3}})
	rep := mustBuild(t, l.events, Options{})
	if len(rep.Flags) != 2 || rep.Flags[0].Round != 2 || rep.Flags[0].Participant != "c" || rep.Flags[1].Kind != "drift" {
		t.Errorf("Flags = %+v, want c's norm flag of round 2 and a's drift flag of round 3", rep.Flags)
	}
	page := writeHTML(t, rep)
	want := map[string]charttest.Counts{
		"chart-accuracy": {Points: 3, Markers: 2},
		"chart-norm-a":   {Points: 3, Markers: 1, Bands: 1},
		"chart-norm-b":   {Points: 3, Bands: 1},
		"chart-norm-c":   {Points: 3, Markers: 1, Bands: 1},
	}
	if diff := cmp.Diff(want, charttest.CountAll(t, page)); diff != "" {
		t.Errorf("what the charts draw (-want +got):\n%s", diff)
	}
	if svg := chartOf(t, page, "chart-norm-c"); !strings.Contains(svg, "<title>norm band (from norm flags), round 2: [0.5, 2]</title>") {
		t.Errorf("c's norm chart does not draw round 2's band [0.5, 2]:\n%s", svg)
	}

	one := mustBuild(t, l.events, Options{Round: 2})
	if strings.Contains(writeHTML(t, one), "<svg") {
		t.Error("the report of round 2 alone has charts")
	}
	if strings.Contains(writeMarkdown(t, rep), "<svg") {
		t.Error("the Markdown report has charts")
	}
}

// TestReportChartsBounded: a long log charts only its last ChartRounds
// rounds.
func TestReportChartsBounded(t *testing.T) {
	l := newReportLog(t).start()
	const rounds = ChartRounds + 50
	for r := uint64(1); r <= rounds; r++ {
		l.clean(r)
	}
	rep := mustBuild(t, l.events, Options{})
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	svg := chartOf(t, b.String(), "chart-accuracy")
	if got := charttest.Count(svg).Points; got != ChartRounds {
		t.Errorf("the accuracy chart of %d rounds draws %d points, want %d", rounds, got, ChartRounds)
	}
	if !strings.Contains(svg, "<title>accuracy round 51: ") || strings.Contains(svg, "<title>accuracy round 50: ") {
		t.Errorf("the accuracy chart does not start at round 51")
	}
}
