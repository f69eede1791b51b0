package simulation

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// WriteCSV writes one row per result: attack, rule, final_accuracy,
// attack_success (empty unless the attack is a backdoor), the anomaly
// heuristics' detection_rate and false_positive_rate (any of norm, cosine
// and drift; see Detection) and the same per heuristic
// (detection_norm, false_positive_norm, … for cosine, drift and the
// rule's exclusions, excluded), each empty when there was no update of
// its kind (no Byzantine client), then the
// accuracy after each evaluated round (round_1, round_2, … named by the
// round numbers of the result with the most; empty cells when a result
// has fewer). It holds no wall time, so the same grid gives the same file
// byte for byte, in one run or merged from shards; WriteTimingCSV writes
// the times.
func WriteCSV(w io.Writer, results []Result) error {
	var longest []RoundResult
	for _, r := range results {
		if len(r.Rounds) > len(longest) {
			longest = r.Rounds
		}
	}
	rounds := len(longest)
	cw := csv.NewWriter(w)
	head := []string{"attack", "rule", "final_accuracy", "attack_success"}
	head = append(head, detectionColumns()...)
	for _, rr := range longest {
		head = append(head, "round_"+strconv.Itoa(rr.Round))
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, r := range results {
		row := []string{AttackLabel(r.Options.Attack), RuleLabel(r.Options.Aggregation), fmtFloat(r.Accuracy), ""}
		if r.AttackSuccess != nil {
			row[3] = fmtFloat(*r.AttackSuccess)
		}
		row = append(row, detectionCells(r.Detection)...)
		for i := range rounds {
			if i < len(r.Rounds) {
				row = append(row, fmtFloat(r.Rounds[i].Accuracy))
			} else {
				row = append(row, "")
			}
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteTimingCSV writes one row per result: attack, rule and the run's
// wall time in seconds.
func WriteTimingCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"attack", "rule", "seconds"}); err != nil {
		return err
	}
	for _, r := range results {
		if err := cw.Write([]string{AttackLabel(r.Options.Attack), RuleLabel(r.Options.Aggregation), strconv.FormatFloat(r.Seconds, 'f', 3, 64)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// detectionColumns are the CSV columns of a Detection: the rates of
// DetectAny first, unsuffixed, then those of each heuristic.
func detectionColumns() []string {
	var cols []string
	for _, k := range DetectionKinds {
		if k == DetectAny {
			cols = append(cols, "detection_rate", "false_positive_rate")
			continue
		}
		cols = append(cols, "detection_"+k, "false_positive_"+k)
	}
	return cols
}

// detectionCells are d's rates in the order of detectionColumns, empty
// where undefined.
func detectionCells(d Detection) []string {
	var cells []string
	for _, k := range DetectionKinds {
		for _, f := range []func(string) (float64, bool){d.DetectionRate, d.FalsePositiveRate} {
			v, ok := f(k)
			c := ""
			if ok {
				c = fmtFloat(v)
			}
			cells = append(cells, c)
		}
	}
	return cells
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }

// axes returns the distinct attack and rule labels of results, in order of
// first appearance, and the index of each result's cell.
func axes(results []Result) (attacks, rules []string, cell map[[2]int]Result) {
	cell = map[[2]int]Result{}
	for _, r := range results {
		a, ru := AttackLabel(r.Options.Attack), RuleLabel(r.Options.Aggregation)
		if !slices.Contains(attacks, a) {
			attacks = append(attacks, a)
		}
		if !slices.Contains(rules, ru) {
			rules = append(rules, ru)
		}
		cell[[2]int{slices.Index(attacks, a), slices.Index(rules, ru)}] = r
	}
	return attacks, rules, cell
}

// heatGrid is the final accuracies as a plotter.GridXYZ: column c is rule
// c, row r is attack r counted from the top, so the first attack is drawn
// on the first line.
type heatGrid struct {
	attacks, rules int
	z              map[[2]int]float64
}

func (g heatGrid) Dims() (c, r int) { return g.rules, g.attacks }
func (g heatGrid) X(c int) float64  { return float64(c) }
func (g heatGrid) Y(r int) float64  { return float64(r) }
func (g heatGrid) Z(c, r int) float64 {
	if v, ok := g.z[[2]int{g.attacks - 1 - r, c}]; ok {
		return v
	}
	return nanValue
}

var nanValue = math.NaN()

// WriteHeatmap draws the final accuracy of each (attack, rule) result as a
// PNG heat map at path: attacks down, rules across, red (0) to green (1),
// the accuracy printed in each cell and, for a backdoor, the attack
// success rate under it.
func WriteHeatmap(path string, results []Result) error {
	attacks, rules, cells := axes(results)
	if len(attacks) == 0 {
		return fmt.Errorf("simulation: heatmap: no results")
	}
	pal, err := brewer.GetPalette(brewer.TypeAny, "RdYlGn", 11)
	if err != nil {
		return fmt.Errorf("simulation: heatmap: %w", err)
	}
	g := heatGrid{attacks: len(attacks), rules: len(rules), z: map[[2]int]float64{}}
	var labels plotter.XYLabels
	for k, r := range cells {
		g.z[k] = r.Accuracy
		s := fmt.Sprintf("%.3f", r.Accuracy)
		if r.AttackSuccess != nil {
			s += fmt.Sprintf("\nASR %.2f", *r.AttackSuccess)
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: float64(k[1]), Y: float64(len(attacks) - 1 - k[0])})
		labels.Labels = append(labels.Labels, s)
	}
	h := plotter.NewHeatMap(g, pal)
	h.Min, h.Max = 0, 1
	h.NaN = color.Gray{Y: 0xdd}

	p := plot.New()
	p.Title.Text = "final test accuracy (" + describe(results[0].Options) + ")"
	p.X.Label.Text = "aggregation rule"
	p.Y.Label.Text = "attack"
	p.Add(h)
	lb, err := plotter.NewLabels(labels)
	if err != nil {
		return fmt.Errorf("simulation: heatmap: %w", err)
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = text.XCenter
		lb.TextStyle[i].YAlign = text.YCenter
		lb.TextStyle[i].Font.Size = vg.Points(9)
	}
	p.Add(lb)
	ticks := func(names []string, reverse bool) plot.ConstantTicks {
		var t plot.ConstantTicks
		for i, n := range names {
			v := float64(i)
			if reverse {
				v = float64(len(names) - 1 - i)
			}
			t = append(t, plot.Tick{Value: v, Label: n})
		}
		return t
	}
	p.X.Tick.Marker = ticks(rules, false)
	p.Y.Tick.Marker = ticks(attacks, true)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = text.XRight
	p.X.Tick.Label.YAlign = text.YCenter
	p.X.Padding, p.Y.Padding = 0, 0
	p.X.Min, p.X.Max = -0.5, float64(len(rules))-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(len(attacks))-0.5
	w := vg.Length(150+95*len(rules)) * vg.Points(1)
	ht := vg.Length(130+50*len(attacks)) * vg.Points(1)
	if err := p.Save(w, ht, path); err != nil {
		return fmt.Errorf("simulation: heatmap: %w", err)
	}
	return nil
}

// describe summarizes the options a grid shares, for plot titles.
func describe(o Options) string {
	m := o.Model
	if len(o.Hidden) > 0 && o.Model == "mlp" {
		m = fmt.Sprintf("mlp %v", o.Hidden)
	}
	d := fmt.Sprintf("%s, %s, %d clients, %d Byzantine, %s, %d rounds", o.Dataset, m, o.Clients, o.Byzantine, o.Partition, o.Rounds)
	if o.Secure {
		d += ", secure"
	}
	return d
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// AccuracyPlotName is the file WriteAccuracyPlots writes for an attack.
func AccuracyPlotName(attackLabel string) string {
	return "accuracy-" + unsafeName.ReplaceAllString(attackLabel, "_") + ".png"
}

// WriteAccuracyPlots writes into dir one PNG per attack (named by
// AccuracyPlotName) with the test accuracy after each round, one line per
// rule, and returns the files' paths.
func WriteAccuracyPlots(dir string, results []Result) ([]string, error) {
	attacks, rules, cells := axes(results)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("simulation: accuracy plots: %w", err)
	}
	var paths []string
	for a, name := range attacks {
		p := plot.New()
		p.Title.Text = "attack " + name + " (" + describe(results[0].Options) + ")"
		p.Title.TextStyle.Font.Size = vg.Points(10)
		p.X.Label.Text = "round"
		p.Y.Label.Text = "test accuracy"
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		p.Legend.Top = false
		p.Legend.Left = false
		p.Legend.TextStyle.Font = font.From(plot.DefaultFont, vg.Points(9))
		for r, rule := range rules {
			res, ok := cells[[2]int{a, r}]
			if !ok || len(res.Rounds) == 0 {
				continue
			}
			xys := make(plotter.XYs, len(res.Rounds))
			for i, rr := range res.Rounds {
				xys[i] = plotter.XY{X: float64(rr.Round), Y: rr.Accuracy}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("simulation: accuracy plot: %w", err)
			}
			l.Color = plotutil.Color(r)
			l.Dashes = plotutil.Dashes(r / len(plotutil.DefaultColors))
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(rule, l)
		}
		path := filepath.Join(dir, AccuracyPlotName(name))
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
			return nil, fmt.Errorf("simulation: accuracy plot: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// WriteRoundsCSV writes one run's rounds: round, accuracy, loss,
// attack_success (empty unless the attack is a backdoor), diverged and
// seconds.
func WriteRoundsCSV(w io.Writer, res Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"round", "accuracy", "loss", "attack_success", "diverged", "seconds"}); err != nil {
		return err
	}
	for _, r := range res.Rounds {
		asr := ""
		if r.AttackSuccess != nil {
			asr = fmtFloat(*r.AttackSuccess)
		}
		row := []string{strconv.Itoa(r.Round), fmtFloat(r.Accuracy), strconv.FormatFloat(r.Loss, 'g', 6, 64), asr,
			strconv.Itoa(r.Diverged), strconv.FormatFloat(r.Seconds, 'f', 3, 64)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
