package coordinator

import (
	"fmt"
	"html/template"
	"maps"
	"slices"

	"github.com/fedguard/fedguard/internal/chart"
)

// The status page's charts. The page draws, as inline SVG (package
// internal/chart: no script, no style attribute, so the page's
// Content-Security-Policy stays as strict as it is), the global accuracy
// and loss over the last StatusChartRounds closed rounds, each enrolled
// participant's update norm over those rounds with the norm band the
// anomaly flags use, and the anomaly flags of those rounds on the time
// line. GET /status.json carries the same figures under "charts".

// StatusChartRounds is how many of the last closed rounds the charts
// draw, so that a federation of ten thousand rounds still has a small
// page; StatusChartFlags bounds the flags kept for them.
const (
	StatusChartRounds = 50
	StatusChartFlags  = 200
)

// ChartStatus is what the status page's charts draw: the last closed
// rounds, oldest first, and the anomaly flags raised in them.
type ChartStatus struct {
	Rounds []RoundPoint `json:"rounds"`
	Flags  []ChartFlag  `json:"flags"`
}

// RoundPoint is one closed round's figures.
type RoundPoint struct {
	Round uint64 `json:"round"`
	// Holdout says whether any participant evaluated the round's
	// starting model on its holdout; HoldoutAccuracy and HoldoutLoss are
	// then their evaluations weighted by holdout size.
	Holdout         bool    `json:"holdout"`
	HoldoutAccuracy float64 `json:"holdout_accuracy,omitempty"`
	HoldoutLoss     float64 `json:"holdout_loss,omitempty"`
	// Norms are the L2 norms of the round's accepted updates, by
	// participant (plain rounds: a secure round's updates are never seen).
	Norms map[string]float64 `json:"norms,omitempty"`
	// NormBand is the [low, high] interval the norm flags held the norms
	// to; empty when the round had too few updates to compute one.
	NormBand []float64 `json:"norm_band,omitempty"`
}

// ChartFlag is one anomaly flag on the charts' time line.
type ChartFlag struct {
	Round       uint64 `json:"round"`
	Participant string `json:"participant"`
	Kind        string `json:"kind"`
}

// roundPoint is the chart figures of a closed round.
func (c *Coordinator) roundPoint(rec RoundRecord) RoundPoint {
	p := RoundPoint{Round: rec.Round}
	var norms []float64
	for _, u := range rec.Participants {
		if u.HoldoutCount > 0 {
			p.Holdout = true
		}
		if u.Bucket > 0 {
			continue
		}
		if p.Norms == nil {
			p.Norms = map[string]float64{}
		}
		p.Norms[u.Name] = u.Norm
		norms = append(norms, u.Norm)
	}
	if p.Holdout {
		p.HoldoutAccuracy, p.HoldoutLoss = rec.HoldoutAccuracy, rec.HoldoutLoss
	}
	if lo, hi, ok := normBand(c.cfg.Anomaly, norms); ok {
		p.NormBand = []float64{lo, hi}
	}
	return p
}

// noteChart keeps a closed round's figures and flags for the charts.
func (b *statusBook) noteChart(p RoundPoint, flags ...ChartFlag) {
	b.rounds = append(b.rounds, p)
	if n := len(b.rounds) - StatusChartRounds; n > 0 {
		b.rounds = slices.Delete(b.rounds, 0, n)
	}
	b.noteChartFlags(flags...)
}

// noteChartFlags keeps flags for the charts.
func (b *statusBook) noteChartFlags(flags ...ChartFlag) {
	b.chartFlags = append(b.chartFlags, flags...)
	if n := len(b.chartFlags) - StatusChartFlags; n > 0 {
		b.chartFlags = slices.Delete(b.chartFlags, 0, n)
	}
}

// charts copies the chart figures.
func (b *statusBook) charts() ChartStatus {
	cs := ChartStatus{Rounds: make([]RoundPoint, 0, len(b.rounds)), Flags: slices.Clone(b.chartFlags)}
	for _, p := range b.rounds {
		p.Norms, p.NormBand = maps.Clone(p.Norms), slices.Clone(p.NormBand)
		cs.Rounds = append(cs.Rounds, p)
	}
	if cs.Flags == nil {
		cs.Flags = []ChartFlag{}
	}
	return cs
}

// statusChartSet is the charts of one status page.
type statusChartSet struct {
	Global []template.HTML
	Norms  []template.HTML
}

// statusCharts draws s's charts: accuracy and loss, then one norm chart
// per enrolled participant, in name order, unless no round drawn has a
// norm (a secure federation: the coordinator never sees an update). Flags
// of rounds before the charts' first round are left off.
func statusCharts(s Status) statusChartSet {
	var set statusChartSet
	rounds := s.Charts.Rounds
	if len(rounds) == 0 {
		return set
	}
	first := float64(rounds[0].Round)
	var acc, loss []chart.Point
	for _, r := range rounds {
		if r.Holdout {
			acc = append(acc, chart.Point{X: float64(r.Round), Y: r.HoldoutAccuracy})
			loss = append(loss, chart.Point{X: float64(r.Round), Y: r.HoldoutLoss})
		}
	}
	var all []chart.Marker
	mine := map[string][]chart.Marker{}
	for _, f := range s.Charts.Flags {
		if float64(f.Round) < first {
			continue
		}
		m := chart.Marker{X: float64(f.Round), Kind: f.Kind, Label: fmt.Sprintf("round %d: %s flagged (%s)", f.Round, f.Participant, f.Kind)}
		all = append(all, m)
		mine[f.Participant] = append(mine[f.Participant], m)
	}
	set.Global = append(set.Global,
		chart.Chart{
			ID: "chart-accuracy", Title: "Global accuracy over rounds",
			Desc:   "The participants' holdout accuracy of each round's starting model, weighted by holdout size; dashed lines mark anomaly flags.",
			XLabel: "round", YLabel: "accuracy", YMin: 0, YMax: 1,
			Series: []chart.Series{{Name: "accuracy", Points: acc}}, Markers: all,
		}.SVG(),
		chart.Chart{
			ID: "chart-loss", Title: "Global loss over rounds",
			Desc:   "The participants' holdout loss of each round's starting model, weighted by holdout size; dashed lines mark anomaly flags.",
			XLabel: "round", YLabel: "loss",
			Series: []chart.Series{{Name: "loss", Points: loss, Colour: "#ff7f0e"}}, Markers: all,
		}.SVG(),
	)
	if !slices.ContainsFunc(rounds, func(r RoundPoint) bool { return len(r.Norms) > 0 }) {
		return set
	}
	for _, p := range s.Participants {
		var pts []chart.Point
		var band []chart.BandPoint
		for _, r := range rounds {
			if v, ok := r.Norms[p.Name]; ok {
				pts = append(pts, chart.Point{X: float64(r.Round), Y: v})
			}
			if len(r.NormBand) == 2 {
				band = append(band, chart.BandPoint{X: float64(r.Round), Lo: r.NormBand[0], Hi: r.NormBand[1]})
			}
		}
		set.Norms = append(set.Norms, chart.Chart{
			ID: "chart-norm-" + p.Name, Title: p.Name + " update norm over rounds",
			Desc:   "The L2 norm of " + p.Name + "'s update in each round, the cohort's norm band around it, and its anomaly flags as dashed lines.",
			XLabel: "round", YLabel: "norm", Width: 360, Height: 130,
			Series: []chart.Series{{Name: p.Name, Points: pts}}, Band: band, BandName: "norm band", Markers: mine[p.Name],
		}.SVG())
	}
	return set
}
