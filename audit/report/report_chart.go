package report

import (
	"fmt"
	"html/template"
	"slices"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/chart"
)

// The HTML report's charts draw what the status page draws, from the log
// alone: the global holdout accuracy over rounds (the contributors'
// update_received claims, weighted by holdout size, as the coordinator
// weighs them), each participant's update norm over rounds with the norm
// band its round's norm flags recorded, and the anomaly_flagged events on
// the time line. The log holds no holdout loss (update_received records
// accuracy only), so the report has no loss chart, and a round's norm band
// is known only when a norm flag of that round recorded it. The charts are
// inline SVG (package internal/chart), drawn for the last ChartRounds
// rounds of a whole-log report; a report of one round (Options.Round) has
// none. The Markdown report has no charts.

// ChartRounds is how many of the last rounds the HTML report's charts draw.
const ChartRounds = 200

// FlagReport is one anomaly_flagged event.
type FlagReport struct {
	Seq         uint64
	Round       uint64
	Participant string
	// Kind is "norm", "cosine", "excluded" or "drift"; Value and Band are
	// as recorded (Band empty for "excluded").
	Kind  string
	Value float64
	Band  []float64
}

// noteFlag keeps an anomaly_flagged event for the charts.
func (b *reportBuilder) noteFlag(ev audit.Event, p audit.AnomalyFlagged) {
	b.flags = append(b.flags, FlagReport{Seq: ev.Seq, Round: ev.Round, Participant: p.Participant, Kind: p.Kind, Value: p.Value, Band: slices.Clone(p.Band)})
}

// charts draws the report's charts; nil for a one-round report or a log
// without a round.
func (r Report) charts() []template.HTML {
	if r.Round != 0 || len(r.Rounds) == 0 {
		return nil
	}
	rounds := r.Rounds
	if len(rounds) > ChartRounds {
		rounds = rounds[len(rounds)-ChartRounds:]
	}
	first := rounds[0].Round
	var acc []chart.Point
	norms := map[string][]chart.Point{}
	var names []string
	for _, rr := range rounds {
		var n, sum float64
		for _, c := range rr.Contributors {
			if c.SecureBucket > 0 {
				continue
			}
			if c.HoldoutCount > 0 {
				n += float64(c.HoldoutCount)
				sum += float64(c.HoldoutCount) * c.HoldoutAccuracy
			}
			if _, ok := norms[c.Participant]; !ok {
				names = append(names, c.Participant)
			}
			norms[c.Participant] = append(norms[c.Participant], chart.Point{X: float64(rr.Round), Y: c.Norm})
		}
		if n > 0 {
			acc = append(acc, chart.Point{X: float64(rr.Round), Y: sum / n})
		}
	}
	slices.Sort(names)
	var all []chart.Marker
	mine := map[string][]chart.Marker{}
	bands := map[uint64]chart.BandPoint{}
	for _, f := range r.Flags {
		if f.Round < first {
			continue
		}
		m := chart.Marker{X: float64(f.Round), Kind: f.Kind, Label: fmt.Sprintf("round %d: %s flagged (%s, seq %d)", f.Round, f.Participant, f.Kind, f.Seq)}
		all = append(all, m)
		mine[f.Participant] = append(mine[f.Participant], m)
		if _, ok := bands[f.Round]; !ok && f.Kind == "norm" && len(f.Band) == 2 {
			bands[f.Round] = chart.BandPoint{X: float64(f.Round), Lo: f.Band[0], Hi: f.Band[1]}
		}
	}
	var band []chart.BandPoint
	for _, rr := range rounds {
		if b, ok := bands[rr.Round]; ok {
			band = append(band, b)
		}
	}
	out := []template.HTML{chart.Chart{
		ID: "chart-accuracy", Title: "Global accuracy over rounds",
		Desc:   "The contributors' claimed holdout accuracy of each round's starting model, weighted by holdout size; dashed lines mark anomaly_flagged events.",
		XLabel: "round", YLabel: "accuracy", YMin: 0, YMax: 1,
		Series: []chart.Series{{Name: "accuracy", Points: acc}}, Markers: all,
	}.SVG()}
	if c := r.Privacy.chart(); c != "" {
		out = append(out, c)
	}
	for _, n := range names {
		out = append(out, chart.Chart{
			ID: "chart-norm-" + n, Title: n + " update norm over rounds",
			Desc:   "The L2 norm of " + n + "'s update in each round it contributed to, the norm band its rounds' norm flags recorded, and its anomaly_flagged events as dashed lines.",
			XLabel: "round", YLabel: "norm", Width: 360, Height: 130,
			Series: []chart.Series{{Name: n, Points: norms[n]}}, Band: band, BandName: "norm band (from norm flags)", Markers: mine[n],
		}.SVG())
	}
	return out
}
