package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/chart"
	"github.com/fedguard/fedguard/manifest"
)

// The privacy section reads what differential privacy each round's model
// was made under from the round's signed manifest (its manifest_signed
// event), whatever the mechanism: the federation-level mechanism (central
// DP on the coordinator, distributed DP inside secure aggregation) with the
// ε of all rounds so far, the record-level ε each included hospital
// reported with its update, against its budget, and, in a secure
// federation with distributed DP, the federation-level ε each included
// hospital's own ledger holds, as it reported it with its masked input. The signature status of
// each manifest is shown beside it, so a row read from an unverified
// manifest says so. privacy_exhausted events (a round not opened because
// the budget was spent) are listed too.

// PrivacyReport is the report's privacy section; nil when no manifest in
// the log has a privacy record.
type PrivacyReport struct {
	Rounds []PrivacyRound
	// Hospitals are the names of the hospitals that reported a
	// record-level ledger in any round, sorted.
	Hospitals []string
	// HospitalsDistributed are the names of the hospitals that reported a
	// federation-level (distributed DP) ledger in any round, sorted.
	HospitalsDistributed []string
	// Exhausted are the privacy_exhausted events, in log order.
	Exhausted []PrivacyExhausted
}

// PrivacyRound is one round's privacy record, as its manifest has it.
type PrivacyRound struct {
	Round     uint64
	Seq       uint64 // of the manifest_signed event
	Signature string
	Mechanism string
	Epsilon   float64
	Delta     float64
	Hospitals []manifest.HospitalPrivacy
	// HospitalsDistributed are the hospitals' own federation-level
	// ledgers.
	HospitalsDistributed []manifest.HospitalDistributedPrivacy
}

// PrivacyExhausted is one privacy_exhausted event.
type PrivacyExhausted struct {
	Seq   uint64
	Round uint64
	audit.PrivacyExhausted
}

// manifestPrivacy is the part of a round manifest's in-toto statement the
// section reads (package manifest's predicate, fields privacy and round).
type manifestPrivacy struct {
	Predicate struct {
		Round   uint64            `json:"round"`
		Privacy *manifest.Privacy `json:"privacy"`
	} `json:"predicate"`
}

// privacySection builds the section from the log's manifest_signed and
// privacy_exhausted events; round != 0 keeps that round only.
func (b *reportBuilder) privacySection(events []audit.Event, round uint64) *PrivacyReport {
	p := &PrivacyReport{}
	byRound := map[uint64]PrivacyRound{}
	names, distributed := map[string]bool{}, map[string]bool{}
	for _, ev := range events {
		if round != 0 && ev.Round != round {
			continue
		}
		switch ev.Kind {
		case audit.KindPrivacyExhausted:
			v, err := reportPayload[audit.PrivacyExhausted](ev)
			if err == nil {
				p.Exhausted = append(p.Exhausted, PrivacyExhausted{Seq: ev.Seq, Round: ev.Round, PrivacyExhausted: v})
			}
		case audit.KindManifestSigned:
			if ev.Round == 0 {
				continue
			}
			v, err := reportPayload[audit.ManifestSigned](ev)
			if err != nil {
				continue
			}
			payload, ok := manifestPayload(v.Envelope)
			if !ok {
				continue
			}
			var st manifestPrivacy
			if json.Unmarshal(payload, &st) != nil || st.Predicate.Privacy == nil || st.Predicate.Round != ev.Round {
				continue
			}
			pr := st.Predicate.Privacy
			byRound[ev.Round] = PrivacyRound{
				Round: ev.Round, Seq: ev.Seq, Signature: b.signature(v.Envelope),
				Mechanism: pr.Mechanism, Epsilon: pr.Epsilon, Delta: pr.Delta, Hospitals: pr.Hospitals, HospitalsDistributed: pr.HospitalsDistributed,
			}
			for _, h := range pr.Hospitals {
				names[h.Name] = true
			}
			for _, h := range pr.HospitalsDistributed {
				distributed[h.Name] = true
			}
		}
	}
	if len(byRound) == 0 && len(p.Exhausted) == 0 {
		return nil
	}
	for _, r := range slices.Sorted(maps.Keys(byRound)) {
		p.Rounds = append(p.Rounds, byRound[r])
	}
	p.Hospitals = slices.Sorted(maps.Keys(names))
	p.HospitalsDistributed = slices.Sorted(maps.Keys(distributed))
	return p
}

// ledgerCells appends to row a cell for each hospital of names: cell of
// the round's ledger from it (the one of ledgers that name gives its
// name), or a dash when the round has none.
func ledgerCells[L any](row []docLine, names []string, ledgers []L, name func(L) string, cell func(L) docLine) []docLine {
	for _, n := range names {
		i := slices.IndexFunc(ledgers, func(l L) bool { return name(l) == n })
		if i < 0 {
			row = append(row, docLine{spanText("–")})
			continue
		}
		row = append(row, cell(ledgers[i]))
	}
	return row
}

// docSection renders the section: one row per round, the federation's ε
// and each hospital's ε (with its budget), then the refusals.
func (p *PrivacyReport) docSection() docSection {
	s := docSection{ID: "privacy", Heading: "Privacy",
		Summary: docLine{spanText("ε (natural log) spent up to each round, as the round's signed manifest records it: the federation-level mechanism's, " +
			"each included hospital's record-level ε as it reported it (its own claim: the coordinator cannot check it), against its budget, " +
			"and, under distributed DP, the federation-level ε each hospital's own ledger holds (the sums with its noise it sent an input to), against its budget.")}}
	head := []string{"round", "manifest signature", "mechanism", "federation ε (δ)"}
	for _, n := range p.Hospitals {
		head = append(head, n+" ε / budget")
	}
	for _, n := range p.HospitalsDistributed {
		head = append(head, n+" federation-level ε / budget")
	}
	t := docTable{Head: head, Empty: "No manifest has a privacy record."}
	for _, r := range p.Rounds {
		fed := docLine{spanText("–")}
		mech := "record-level only"
		if r.Mechanism != "" {
			mech = r.Mechanism
			fed = docLine{spanText(fmt.Sprintf("%s (%s)", reportFloat(r.Epsilon), reportFloat(r.Delta)))}
		}
		row := []docLine{{spanText(strconv.FormatUint(r.Round, 10))}, {signatureSpan(r.Signature)}, {spanText(mech)}, fed}
		row = ledgerCells(row, p.Hospitals, r.Hospitals,
			func(h manifest.HospitalPrivacy) string { return h.Name },
			func(h manifest.HospitalPrivacy) docLine { return budgetCell(h.Epsilon, h.Budget, "") })
		row = ledgerCells(row, p.HospitalsDistributed, r.HospitalsDistributed,
			func(h manifest.HospitalDistributedPrivacy) string { return h.Name },
			func(h manifest.HospitalDistributedPrivacy) docLine {
				return budgetCell(h.Epsilon, h.Budget, fmt.Sprintf(" (%d releases)", h.Releases))
			})
		t.Rows = append(t.Rows, row)
	}
	s.Tables = append(s.Tables, t)
	if len(p.Exhausted) > 0 {
		et := docTable{Title: "Rounds not opened: budget spent", Head: []string{"seq", "round", "mechanism", "ε it would reach", "budget", "δ"}}
		for _, e := range p.Exhausted {
			et.Rows = append(et.Rows, []docLine{{spanText(strconv.FormatUint(e.Seq, 10))}, {spanText(strconv.FormatUint(e.Round, 10))},
				{spanText(e.Mechanism)}, {spanBad(reportFloat(e.Epsilon))}, {spanText(reportFloat(e.Budget))}, {spanText(reportFloat(e.Delta))}})
		}
		s.Tables = append(s.Tables, et)
	}
	return s
}

// budgetCell is a hospital's ε against its budget (0: none), then note;
// marked when over the budget.
func budgetCell(epsilon, budget float64, note string) docLine {
	cell := reportFloat(epsilon)
	switch {
	case budget > 0 && epsilon > budget:
		return docLine{spanBad(cell + " / " + reportFloat(budget) + " (over budget)" + note)}
	case budget > 0:
		cell += " / " + reportFloat(budget)
	default:
		cell += " / none"
	}
	return docLine{spanText(cell + note)}
}

// chart draws ε over rounds: the federation's and each hospital's, with
// each hospital's budget as a dashed line at its height (drawn as a
// two-point series).
func (p *PrivacyReport) chart() template.HTML {
	if p == nil || len(p.Rounds) == 0 {
		return ""
	}
	rounds := p.Rounds
	if len(rounds) > ChartRounds {
		rounds = rounds[len(rounds)-ChartRounds:]
	}
	var series []chart.Series
	var fed []chart.Point
	per, perDistributed := map[string][]chart.Point{}, map[string][]chart.Point{}
	budget := map[string]float64{}
	for _, r := range rounds {
		if r.Mechanism != "" {
			fed = append(fed, chart.Point{X: float64(r.Round), Y: r.Epsilon})
		}
		for _, h := range r.Hospitals {
			per[h.Name] = append(per[h.Name], chart.Point{X: float64(r.Round), Y: h.Epsilon})
			if h.Budget > 0 && !math.IsInf(h.Budget, 0) {
				budget[h.Name] = h.Budget
			}
		}
		for _, h := range r.HospitalsDistributed {
			perDistributed[h.Name] = append(perDistributed[h.Name], chart.Point{X: float64(r.Round), Y: h.Epsilon})
		}
	}
	if len(fed) > 0 {
		series = append(series, chart.Series{Name: "federation (" + rounds[len(rounds)-1].Mechanism + ")", Points: fed})
	}
	x0, x1 := float64(rounds[0].Round), float64(rounds[len(rounds)-1].Round)
	for _, n := range p.Hospitals {
		if len(per[n]) > 0 {
			series = append(series, chart.Series{Name: n, Points: per[n]})
		}
		if b, ok := budget[n]; ok {
			series = append(series, chart.Series{Name: n + " budget", Points: []chart.Point{{X: x0, Y: b}, {X: x1, Y: b}}})
		}
	}
	for _, n := range p.HospitalsDistributed {
		if len(perDistributed[n]) > 0 {
			series = append(series, chart.Series{Name: n + " (federation-level)", Points: perDistributed[n]})
		}
	}
	return chart.Chart{
		ID: "chart-privacy", Title: "Privacy spent over rounds",
		Desc: "ε spent up to each round, from the signed manifests: the federation-level mechanism's, each hospital's record-level ε as it reported it, with each hospital's budget as a flat line, " +
			"and each hospital's own federation-level ε under distributed DP.",
		XLabel: "round", YLabel: "ε", YMin: 0, Series: series,
	}.SVG()
}
