package chart_test

import (
	"fmt"
	"strings"

	"github.com/fedguard/fedguard/internal/chart"
)

// A chart of accuracy over three rounds with a flag in round 2, written
// into a page as inline SVG.
func ExampleChart_SVG() {
	c := chart.Chart{
		ID: "accuracy", Title: "Global accuracy", Desc: "Holdout accuracy per round.",
		XLabel: "round", YMin: 0, YMax: 1,
		Series:  []chart.Series{{Name: "accuracy", Points: []chart.Point{{X: 1, Y: 0.61}, {X: 2, Y: 0.74}, {X: 3, Y: 0.80}}}},
		Markers: []chart.Marker{{X: 2, Kind: "norm", Label: "round 2: hospital-d norm flag"}},
	}
	svg := string(c.SVG())
	fmt.Println(strings.Count(svg, `class="point"`), "points,", strings.Count(svg, `class="marker"`), "marker")
	// Output: 3 points, 1 marker
}
