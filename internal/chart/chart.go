// Package chart draws small line charts as inline SVG for the status page
// and the HTML provenance report.
//
// Both pages are served under a Content-Security-Policy that allows no
// script, no image source and one style block, so a chart has to be
// markup inside the page: an <svg> element whose colours are SVG
// presentation attributes (fill, stroke), which the policy does not
// govern, never a style attribute, which it blocks. gonum/plot (already a
// dependency) writes SVG too, but its vgsvg canvas styles every element
// with a style attribute (73 of them for a 50-point line chart), which the
// status page's policy would block, leaving the chart unstyled; it also
// starts with an XML prolog, carries no <title> or ARIA label, draws
// points as anonymous paths that a test cannot count, and is about 1.5
// times the size (10.9 kB against 7.1 kB for that chart, its 51 <title>
// elements included). A chart here is plain elements: each series is a <g> labelled with its
// name, holding a polyline and one <circle class="point"> per point with
// a <title> a screen reader (and a mouse hover) reads out; bands and flag
// markers are the same.
//
// A chart draws at most MaxPoints points per series, MaxBands band points
// and MaxMarkers markers (the latest ones), so a federation with ten
// thousand rounds cannot make a page of megabytes; callers keep their own,
// smaller, window of rounds.
package chart

import (
	"cmp"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on what one chart draws: the last points, bands and markers are
// kept, the oldest dropped.
const (
	MaxPoints  = 500
	MaxBands   = 500
	MaxMarkers = 200
)

// Default size of a chart, in CSS pixels (the SVG scales with its box).
const (
	DefaultWidth  = 480
	DefaultHeight = 150
)

// Layout of the plot area inside the SVG.
const (
	marginLeft  = 52
	marginRight = 10
	marginTop   = 10
	// legendHeight is added above the plot for the legend's row.
	legendHeight = 14
	marginBottom = 26
)

// Palette are the series colours, in order; a series may name its own.
var Palette = []string{"#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"}

// MarkerColour is the colour of a marker of each kind; kinds not listed
// are drawn in red.
var MarkerColour = map[string]string{
	"norm":     "#d62728",
	"cosine":   "#ff7f0e",
	"excluded": "#e377c2",
	"drift":    "#bcbd22",
}

// Point is one value of a series at X (a round number).
type Point struct {
	X, Y float64
}

// Series is one line of a chart. Points are drawn in X order.
type Series struct {
	// Name labels the series (its aria-label and data-series attribute).
	Name   string
	Points []Point
	// Colour is the stroke colour; empty takes the next Palette colour.
	Colour string
}

// BandPoint is the interval [Lo, Hi] a value was expected in at X.
type BandPoint struct {
	X, Lo, Hi float64
}

// Marker marks an event at X on the time line, as a vertical line across
// the plot.
type Marker struct {
	X float64
	// Kind selects the colour (MarkerColour) and the data-kind attribute.
	Kind string
	// Label is the marker's <title>.
	Label string
}

// Chart is one line chart. ID must be unique in the page: the SVG's
// <title> and <desc> take their element ids from it.
type Chart struct {
	ID    string
	Title string
	// Desc says what the chart shows, for screen readers (<desc>).
	Desc   string
	XLabel string
	YLabel string
	// Width and Height are the SVG's size; zero takes the defaults.
	Width, Height int
	// YMin and YMax fix the Y range when YMax > YMin (accuracy is 0 to
	// 1); otherwise the range fits the data.
	YMin, YMax float64
	Series     []Series
	// Band is drawn as a shaded area behind the series; BandName labels
	// it.
	Band     []BandPoint
	BandName string
	Markers  []Marker
}

// frame maps data coordinates to SVG coordinates.
type frame struct {
	x0, x1, y0, y1 float64 // data range
	w, h           float64 // SVG size
	top            float64 // the plot's top edge
}

// padX keeps the first and last points off the axes.
const padX = 6

func (f frame) px(x float64) float64 {
	return marginLeft + padX + (x-f.x0)/(f.x1-f.x0)*(f.w-marginLeft-marginRight-2*padX)
}

func (f frame) py(y float64) float64 {
	return f.h - marginBottom - (y-f.y0)/(f.y1-f.y0)*(f.h-f.top-marginBottom)
}

// num formats a coordinate with one decimal: enough for a screen, and
// stable for golden files. A coordinate is always finite (see maxValue);
// were it not, it is drawn at 0 rather than written as NaN.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// Value formats a data value for labels: whole numbers (rounds) in full,
// others to four significant digits.
func Value(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// maxValue bounds the values drawn: beyond it (and for NaN and the
// infinities) a value is left out, so that no range overflows into an
// infinite or NaN coordinate.
const maxValue = 1e300

func finite(v float64) bool { return math.Abs(v) <= maxValue }

// text is s for an SVG text node or attribute: control characters (which
// XML forbids) become spaces, and the rest is escaped.
func text(s string) string {
	return template.HTMLEscapeString(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s))
}

// last returns the last n elements of s.
func last[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// bounded returns the chart with its points sorted by X, non-finite values
// dropped, and each list cut to its bound. The values are finite when they
// are sorted, so cmp.Compare orders them as < does.
func (c Chart) bounded() Chart {
	out := c
	out.Series = make([]Series, len(c.Series))
	for i, s := range c.Series {
		var pts []Point
		for _, p := range s.Points {
			if finite(p.X) && finite(p.Y) {
				pts = append(pts, p)
			}
		}
		slices.SortStableFunc(pts, func(a, b Point) int { return cmp.Compare(a.X, b.X) })
		s.Points = last(pts, MaxPoints)
		out.Series[i] = s
	}
	var band []BandPoint
	for _, b := range c.Band {
		if finite(b.X) && finite(b.Lo) && finite(b.Hi) && b.Hi >= b.Lo {
			band = append(band, b)
		}
	}
	slices.SortStableFunc(band, func(a, b BandPoint) int { return cmp.Compare(a.X, b.X) })
	out.Band = last(band, MaxBands)
	var marks []Marker
	for _, m := range c.Markers {
		if finite(m.X) {
			marks = append(marks, m)
		}
	}
	slices.SortStableFunc(marks, func(a, b Marker) int { return cmp.Compare(a.X, b.X) })
	out.Markers = last(marks, MaxMarkers)
	return out
}

// Points is the number of points the chart draws, over all its series.
func (c Chart) Points() int {
	n := 0
	for _, s := range c.bounded().Series {
		n += len(s.Points)
	}
	return n
}

// frame computes the data ranges, padding empty or flat ones.
func (c Chart) frame() frame {
	f := frame{x0: math.Inf(1), x1: math.Inf(-1), y0: math.Inf(1), y1: math.Inf(-1), w: float64(c.Width), h: float64(c.Height), top: marginTop}
	if c.hasLegend() {
		f.top += legendHeight
	}
	if f.w <= 0 {
		f.w = DefaultWidth
	}
	if f.h <= 0 {
		f.h = DefaultHeight
	}
	xs := func(x float64) { f.x0, f.x1 = min(f.x0, x), max(f.x1, x) }
	ys := func(y float64) { f.y0, f.y1 = min(f.y0, y), max(f.y1, y) }
	for _, s := range c.Series {
		for _, p := range s.Points {
			xs(p.X)
			ys(p.Y)
		}
	}
	for _, b := range c.Band {
		xs(b.X)
		ys(b.Lo)
		ys(b.Hi)
	}
	for _, m := range c.Markers {
		xs(m.X)
	}
	if c.YMax > c.YMin {
		f.y0, f.y1 = c.YMin, c.YMax
	}
	if f.x0 > f.x1 {
		f.x0, f.x1 = 0, 1
	}
	if f.y0 > f.y1 {
		f.y0, f.y1 = 0, 1
	}
	if f.x0 == f.x1 {
		pad := math.Max(math.Abs(f.x0)*0.1, 1)
		f.x0, f.x1 = f.x0-pad, f.x1+pad
	}
	if f.y0 == f.y1 {
		pad := math.Max(math.Abs(f.y0)*0.1, 1e-9)
		f.y0, f.y1 = f.y0-pad, f.y1+pad
	}
	return f
}

// SVG renders the chart as an <svg> element to put inside an HTML page.
// Every text taken from the chart is escaped.
func (c Chart) SVG() template.HTML {
	c = c.bounded()
	f := c.frame()
	var b strings.Builder
	e := text
	id := e(c.ID)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-title %s-desc">`,
		id, int(f.w), int(f.h), int(f.w), int(f.h), id, id)
	fmt.Fprintf(&b, "\n<title id=\"%s-title\">%s</title>\n<desc id=\"%s-desc\">%s</desc>\n", id, e(c.Title), id, e(c.Desc))

	// Axes: the plot's frame, the Y range's ends and the X range's ends.
	left, right := num(marginLeft), num(f.w-marginRight)
	top, bottom := num(f.top), num(f.h-marginBottom)
	fmt.Fprintf(&b, `<g class="axes" aria-hidden="true" font-family="sans-serif" font-size="10" fill="#555">`+
		`<path d="M%s %sV%sH%s" fill="none" stroke="#999"/>`, left, top, bottom, right)
	fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`, num(marginLeft-4), num(f.top+8), e(Value(f.y1)))
	fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`, num(marginLeft-4), bottom, e(Value(f.y0)))
	fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="start">%s</text>`, left, num(f.h-marginBottom+12), e(Value(f.x0)))
	fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`, right, num(f.h-marginBottom+12), e(Value(f.x1)))
	if c.XLabel != "" {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">%s</text>`, num((marginLeft+f.w-marginRight)/2), num(f.h-4), e(c.XLabel))
	}
	if c.YLabel != "" {
		fmt.Fprintf(&b, `<text x="4" y="%s" text-anchor="start">%s</text>`, num(f.top+(f.h-f.top-marginBottom)/2+4), e(c.YLabel))
	}
	b.WriteString("</g>\n")

	if len(c.Band) > 0 {
		name := cmp.Or(c.BandName, "band")
		fmt.Fprintf(&b, `<g class="band" aria-label="%s">`, e(name))
		for _, run := range bandRuns(c.Band) {
			b.WriteString(bandPath(f, run, name, c.XLabel))
		}
		b.WriteString("</g>\n")
	}

	if len(c.Markers) > 0 {
		b.WriteString(`<g class="markers" aria-label="flags">`)
		for _, m := range c.Markers {
			colour, ok := MarkerColour[m.Kind]
			if !ok {
				colour = "#d62728"
			}
			x := num(f.px(m.X))
			fmt.Fprintf(&b, `<line class="marker" data-kind="%s" x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.5" stroke-dasharray="3 2"><title>%s</title></line>`,
				e(m.Kind), x, top, x, bottom, colour, e(m.Label))
		}
		b.WriteString("</g>\n")
	}

	for i, s := range c.Series {
		colour := s.Colour
		if colour == "" {
			colour = Palette[i%len(Palette)]
		}
		fmt.Fprintf(&b, `<g class="series" data-series="%s" aria-label="%s">`, e(s.Name), e(s.Name))
		if len(s.Points) > 1 {
			b.WriteString(`<polyline fill="none" stroke="` + colour + `" stroke-width="1.5" points="`)
			for j, p := range s.Points {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(num(f.px(p.X)) + "," + num(f.py(p.Y)))
			}
			b.WriteString(`"/>`)
		}
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle class="point" cx="%s" cy="%s" r="2.5" fill="%s"><title>%s %s: %s</title></circle>`,
				num(f.px(p.X)), num(f.py(p.Y)), colour, e(s.Name), e(c.xName(p.X)), e(Value(p.Y)))
		}
		b.WriteString("</g>\n")
	}
	if c.hasLegend() {
		b.WriteString(c.legend(f))
	}
	b.WriteString("</svg>")
	return template.HTML(b.String())
}

// xName names an X value in a label: "round 3" when XLabel is "round".
func (c Chart) xName(x float64) string {
	if c.XLabel == "" {
		return Value(x)
	}
	return c.XLabel + " " + Value(x)
}

// hasLegend says whether the chart names its series and band in a legend
// (a lone series without a band needs none: the title names it).
func (c Chart) hasLegend() bool { return len(c.Series) > 1 || len(c.Band) > 0 }

// legend names the series and the band in a row above the plot, from the
// right edge leftwards (text widths estimated at 6 px a character).
func (c Chart) legend(f frame) string {
	var b strings.Builder
	b.WriteString(`<g class="legend" aria-hidden="true" font-family="sans-serif" font-size="10" fill="#333">`)
	x := f.w - marginRight
	y := float64(marginTop + 8)
	item := func(name, colour string) {
		fmt.Fprintf(&b, `<rect x="%s" y="%s" width="8" height="8" fill="%s"/><text x="%s" y="%s" text-anchor="end">%s</text>`,
			num(x-8), num(y-8), colour, num(x-11), num(y), text(name))
		x -= 11 + 6*float64(utf8.RuneCountInString(name)) + 12
	}
	for i, s := range c.Series {
		colour := s.Colour
		if colour == "" {
			colour = Palette[i%len(Palette)]
		}
		item(s.Name, colour)
	}
	if len(c.Band) > 0 {
		name := cmp.Or(c.BandName, "band")
		item(name, "#c6dbef")
	}
	b.WriteString("</g>\n")
	return b.String()
}

// bandRuns splits band points into runs of consecutive X values (a
// missing round breaks the shaded area rather than bridging it).
func bandRuns(band []BandPoint) [][]BandPoint {
	var runs [][]BandPoint
	start := 0
	for i := 1; i <= len(band); i++ {
		if i == len(band) || band[i].X-band[i-1].X > 1 {
			runs = append(runs, band[start:i])
			start = i
		}
	}
	return runs
}

// bandPath is one run of the band as a closed path: along the highs, back
// along the lows. A run of one point is a short bar.
func bandPath(f frame, run []BandPoint, name, xlabel string) string {
	var d strings.Builder
	if len(run) == 1 {
		x := f.px(run[0].X)
		fmt.Fprintf(&d, "M%s %sH%sV%sH%sZ", num(x-3), num(f.py(run[0].Hi)), num(x+3), num(f.py(run[0].Lo)), num(x-3))
	} else {
		for i, p := range run {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s", cmd, num(f.px(p.X)), num(f.py(p.Hi)))
		}
		for i := len(run) - 1; i >= 0; i-- {
			fmt.Fprintf(&d, "L%s %s", num(f.px(run[i].X)), num(f.py(run[i].Lo)))
		}
		d.WriteString("Z")
	}
	first, lastX := run[0].X, run[len(run)-1].X
	what := fmt.Sprintf("%s, %ss %s to %s", name, xlabel, Value(first), Value(lastX))
	if first == lastX {
		what = fmt.Sprintf("%s, %s %s: [%s, %s]", name, xlabel, Value(first), Value(run[0].Lo), Value(run[0].Hi))
	}
	return fmt.Sprintf(`<path class="band-area" d="%s" fill="#c6dbef" stroke="none"><title>%s</title></path>`, d.String(), text(what))
}
