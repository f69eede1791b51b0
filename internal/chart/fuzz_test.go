package chart_test

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/chart"
)

// FuzzSVG: whatever the names, labels and values, the SVG is well-formed
// XML with no script, no style attribute and at most MaxPoints points.
func FuzzSVG(f *testing.F) {
	f.Add("accuracy", "norm", "round 2: <x>", 1.0, 0.5, 2.0, 3)
	f.Add(`"><script>`, "&", "]]>", -1e308, 1e308, 0.0, 0)
	f.Fuzz(func(t *testing.T, name, kind, label string, y, lo, hi float64, n int) {
		n = min(max(n, 0), 2*chart.MaxPoints)
		c := chart.Chart{ID: name, Title: label, Desc: label, XLabel: kind, YLabel: name, BandName: label}
		s := chart.Series{Name: name}
		for i := range n {
			s.Points = append(s.Points, chart.Point{X: float64(i), Y: y * float64(i%5)})
			c.Band = append(c.Band, chart.BandPoint{X: float64(i), Lo: lo, Hi: hi})
		}
		c.Series = []chart.Series{s}
		c.Markers = []chart.Marker{{X: y, Kind: kind, Label: label}}
		svg := string(c.SVG())
		if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>") {
			t.Fatalf("not one <svg> element: %.200s", svg)
		}
		d := xml.NewDecoder(strings.NewReader(svg))
		points := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("not well-formed XML: %v\n%s", err, svg)
			}
			if se, ok := tok.(xml.StartElement); ok {
				if se.Name.Local == "script" {
					t.Fatal("a <script> element")
				}
				for _, a := range se.Attr {
					if a.Name.Local == "style" || strings.HasPrefix(a.Name.Local, "on") {
						t.Fatalf("<%s> has attribute %s", se.Name.Local, a.Name.Local)
					}
				}
				if se.Name.Local == "circle" {
					points++
				}
			}
		}
		if points > chart.MaxPoints {
			t.Fatalf("%d points drawn, more than %d", points, chart.MaxPoints)
		}
	})
}
