// Package charttest counts what the charts of package chart draw in a
// page that embeds them: the coordinator's status page, the HTML
// provenance report, or either as a browser dumped its DOM. The tests of
// those pages check their charts by these counts, so the markup they
// count (one <circle class="point"> per point, one <path
// class="band-area"> per band area, one <line class="marker"> per flag
// marker, in an <svg> with the chart's id) is read in this one place.
//
// Only tests import it.
package charttest

import (
	"regexp"
	"strings"
	"testing"
)

// Counts is what one chart draws.
type Counts struct {
	Points  int // <circle class="point">, one per point of every series
	Bands   int // band areas
	Markers int // flag markers
}

// Count counts what the markup svg draws: one chart's, or a whole page's
// (all its charts together).
func Count(svg string) Counts {
	return Counts{
		Points:  strings.Count(svg, `<circle class="point"`),
		Bands:   strings.Count(svg, `class="band-area"`),
		Markers: strings.Count(svg, `<line class="marker"`),
	}
}

var svgID = regexp.MustCompile(`^[^>]*\bid="([^"]+)"`)

// Charts cuts every <svg> element out of page and returns each one's
// markup, from its attributes to its closing tag, by its id. An <svg>
// without an id, one not closed, or two with the same id fail the test.
func Charts(t testing.TB, page string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, part := range strings.Split(page, "<svg ")[1:] {
		m := svgID.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("charttest: an <svg> without an id: %.200s", part)
		}
		body, _, ok := strings.Cut(part, "</svg>")
		if !ok {
			t.Fatalf("charttest: <svg id=%q> is not closed", m[1])
		}
		if _, dup := out[m[1]]; dup {
			t.Fatalf("charttest: two charts with id %q", m[1])
		}
		out[m[1]] = body
	}
	return out
}

// CountAll is Count of each of page's Charts, by id.
func CountAll(t testing.TB, page string) map[string]Counts {
	t.Helper()
	out := map[string]Counts{}
	for id, svg := range Charts(t, page) {
		out[id] = Count(svg)
	}
	return out
}
