package chart_test

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/chart"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

// golden compares got with testdata/name, or rewrites it under -update.

// counts parses an SVG as XML and counts its points per series, its band
// areas and its markers per kind.
type counts struct {
	points  map[string]int
	bands   int
	markers map[string]int
	titles  int
}

func count(t *testing.T, svg string) counts {
	t.Helper()
	c := counts{points: map[string]int{}, markers: map[string]int{}}
	d := xml.NewDecoder(strings.NewReader(svg))
	var series string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, svg)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := func(name string) string {
			for _, a := range se.Attr {
				if a.Name.Local == name {
					return a.Value
				}
			}
			return ""
		}
		if attr("style") != "" {
			t.Errorf("<%s> has a style attribute, which the status page's CSP blocks", se.Name.Local)
		}
		switch {
		case se.Name.Local == "title":
			c.titles++
		case se.Name.Local == "g" && attr("class") == "series":
			series = attr("data-series")
		case se.Name.Local == "circle" && attr("class") == "point":
			c.points[series]++
		case se.Name.Local == "path" && attr("class") == "band-area":
			c.bands++
		case se.Name.Local == "line" && attr("class") == "marker":
			c.markers[attr("data-kind")]++
		}
	}
	return c
}

func rounds(n int, f func(r int) float64) []chart.Point {
	var p []chart.Point
	for r := 1; r <= n; r++ {
		p = append(p, chart.Point{X: float64(r), Y: f(r)})
	}
	return p
}

func TestSVG(t *testing.T) {
	tests := []struct {
		name    string
		chart   chart.Chart
		points  map[string]int
		bands   int
		markers map[string]int
	}{
		{
			name:    "empty",
			chart:   chart.Chart{ID: "empty", Title: "Nothing yet", Desc: "No round has closed."},
			points:  map[string]int{},
			markers: map[string]int{},
		},
		{
			name: "accuracy",
			chart: chart.Chart{
				ID: "accuracy", Title: "Global accuracy", Desc: "Holdout accuracy of each round's starting model.",
				XLabel: "round", YLabel: "accuracy", YMin: 0, YMax: 1,
				Series:  []chart.Series{{Name: "accuracy", Points: rounds(5, func(r int) float64 { return 0.5 + 0.08*float64(r) })}},
				Markers: []chart.Marker{{X: 2, Kind: "norm", Label: "round 2: hospital-d norm"}, {X: 2, Kind: "cosine", Label: "round 2: hospital-d cosine"}, {X: 4, Kind: "drift", Label: "round 4: hospital-b drift"}},
			},
			points:  map[string]int{"accuracy": 5},
			markers: map[string]int{"norm": 1, "cosine": 1, "drift": 1},
		},
		{
			name: "norm-band-gap",
			chart: chart.Chart{
				ID: "norm-hospital-a", Title: "hospital-a update norm", Desc: "Update norm with the cohort's norm band.",
				XLabel: "round", YLabel: "norm", BandName: "norm band",
				Series:  []chart.Series{{Name: "hospital-a", Points: []chart.Point{{1, 1.2}, {2, 1.1}, {4, 9.5}}}},
				Band:    []chart.BandPoint{{1, 0.8, 1.6}, {2, 0.7, 1.5}, {4, 0.9, 1.4}},
				Markers: []chart.Marker{{X: 4, Kind: "norm", Label: "round 4: norm 9.5 outside [0.9, 1.4]"}},
			},
			points:  map[string]int{"hospital-a": 3},
			bands:   2, // rounds 1-2 and round 4: round 3 is missing
			markers: map[string]int{"norm": 1},
		},
		{
			name: "escaped",
			chart: chart.Chart{
				ID: `x"><script>`, Title: "<b>t</b>", Desc: "a & b",
				Series:  []chart.Series{{Name: `"><script>alert(1)</script>`, Points: []chart.Point{{1, 1}}}, {Name: "second", Points: []chart.Point{{1, 2}}}},
				Markers: []chart.Marker{{X: 1, Kind: `"k`, Label: "<i>"}},
			},
			points:  map[string]int{`"><script>alert(1)</script>`: 1, "second": 1},
			markers: map[string]int{`"k`: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svg := string(tt.chart.SVG())
			golden.Check(t, filepath.Join("testdata", tt.name+".svg"), []byte(svg))
			if strings.Contains(svg, "<script") {
				t.Error("the SVG holds a <script> element")
			}
			c := count(t, svg)
			if len(c.points) != len(tt.points) {
				t.Errorf("series with points %v, want %v", c.points, tt.points)
			}
			for s, n := range tt.points {
				if c.points[s] != n {
					t.Errorf("series %q: %d points, want %d", s, c.points[s], n)
				}
			}
			if c.bands != tt.bands {
				t.Errorf("%d band areas, want %d", c.bands, tt.bands)
			}
			if len(c.markers) != len(tt.markers) {
				t.Errorf("markers %v, want %v", c.markers, tt.markers)
			}
			for k, n := range tt.markers {
				if c.markers[k] != n {
					t.Errorf("markers of kind %q: %d, want %d", k, c.markers[k], n)
				}
			}
			if want := 1 + c.bands + len(tt.chart.Markers) + tt.chart.Points(); c.titles != want {
				t.Errorf("%d <title> elements, want %d (the chart's, one per band area, marker and point)", c.titles, want)
			}
		})
	}
}

// TestSVGBounded checks that a chart of a long federation draws only its
// latest MaxPoints points, MaxBands band points and MaxMarkers markers.
func TestSVGBounded(t *testing.T) {
	const n = 10_000
	var band []chart.BandPoint
	var marks []chart.Marker
	for r := 1; r <= n; r++ {
		band = append(band, chart.BandPoint{X: float64(r), Lo: 1, Hi: 2})
		marks = append(marks, chart.Marker{X: float64(r), Kind: "norm"})
	}
	c := chart.Chart{ID: "long", Series: []chart.Series{{Name: "s", Points: rounds(n, func(r int) float64 { return float64(r % 7) })}}, Band: band, Markers: marks}
	svg := string(c.SVG())
	got := count(t, svg)
	if got.points["s"] != chart.MaxPoints {
		t.Errorf("%d points drawn, want %d", got.points["s"], chart.MaxPoints)
	}
	if got.markers["norm"] != chart.MaxMarkers {
		t.Errorf("%d markers drawn, want %d", got.markers["norm"], chart.MaxMarkers)
	}
	if got.bands != 1 {
		t.Errorf("%d band areas, want 1", got.bands)
	}
	if !strings.Contains(svg, ">10000</text>") || !strings.Contains(svg, fmt.Sprint(">", n-chart.MaxPoints+1, "</text>")) {
		t.Errorf("the X axis does not run from round %d to %d", n-chart.MaxPoints+1, n)
	}
	if len(svg) > 200_000 {
		t.Errorf("a chart of %d rounds is %d bytes", n, len(svg))
	}
	if got := c.Points(); got != chart.MaxPoints {
		t.Errorf("Points() = %d, want %d", got, chart.MaxPoints)
	}
}

// TestSVGNonFinite checks that NaN and infinite values are left out
// rather than written as coordinates a browser rejects.
func TestSVGNonFinite(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	c := chart.Chart{ID: "nf", Series: []chart.Series{{Name: "s", Points: []chart.Point{{1, 1}, {2, nan}, {3, inf}, {nan, 2}, {4, 2}}}},
		Band: []chart.BandPoint{{1, nan, 1}, {2, 1, 0}}}
	svg := string(c.SVG())
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Errorf("the SVG holds a non-finite number:\n%s", svg)
	}
	got := count(t, svg)
	if got.points["s"] != 2 || got.bands != 0 {
		t.Errorf("points %v, bands %d; want 2 points and no band", got.points, got.bands)
	}
}
