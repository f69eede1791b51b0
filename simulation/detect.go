package simulation

import (
	"fmt"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/anomaly"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

// DetectAny is the Detection kind "any of the detectors": an update
// flagged by the norm, the cosine or the drift heuristic. The rule's own
// exclusions (anomaly.Excluded) are counted on their own, not in it: they
// say what the rule did, not what the monitoring caught.
const DetectAny = "any"

// DetectionKinds are the kinds a Detection counts, in the order of the
// grid's columns.
var DetectionKinds = []string{DetectAny, anomaly.Norm, anomaly.Cosine, anomaly.Drift, anomaly.Excluded}

// Detection is how often the coordinator's anomaly heuristics (package
// anomaly, at their default settings) flagged the updates of a run. They
// run on every simulated round, evaluated or not, as the coordinator runs
// them on every plain round: norm, cosine and excluded on the round's
// updates as the rule receives them (the Byzantine clients' crafted ones
// included), drift on each client's training rows (the Byzantine
// clients' after poisoning) against its drift reference, the robust
// scaling of all the other clients' statistics (anomaly.References), as
// the coordinator fixes it at the start. A
// client's drift is the same every round, so it counts once per round.
// In a secure run (Options.Secure) the coordinator sees no update, only
// bucket means: norm and cosine are not run, and a client is excluded
// when its bucket is.
type Detection struct {
	// ByzantineUpdates and HonestUpdates are the updates checked: clients
	// × rounds.
	ByzantineUpdates int `json:"byzantine_updates"`
	HonestUpdates    int `json:"honest_updates"`
	// Byzantine and Honest count the flagged updates of each kind.
	Byzantine FlagCounts `json:"byzantine_flagged"`
	Honest    FlagCounts `json:"honest_flagged"`
}

// FlagCounts counts flagged updates by kind (see DetectionKinds).
type FlagCounts struct {
	Any      int `json:"any"`
	Norm     int `json:"norm"`
	Cosine   int `json:"cosine"`
	Drift    int `json:"drift"`
	Excluded int `json:"excluded"`
}

// Of returns the count of kind (0 for an unknown kind).
func (c FlagCounts) Of(kind string) int {
	switch kind {
	case DetectAny:
		return c.Any
	case anomaly.Norm:
		return c.Norm
	case anomaly.Cosine:
		return c.Cosine
	case anomaly.Drift:
		return c.Drift
	case anomaly.Excluded:
		return c.Excluded
	}
	return 0
}

// DetectionRate is the share of the Byzantine updates flagged with kind;
// false when there were none.
func (d Detection) DetectionRate(kind string) (float64, bool) {
	return rate(d.Byzantine.Of(kind), d.ByzantineUpdates)
}

// FalsePositiveRate is the share of the honest updates flagged with kind;
// false when there were none.
func (d Detection) FalsePositiveRate(kind string) (float64, bool) {
	return rate(d.Honest.Of(kind), d.HonestUpdates)
}

func rate(k, n int) (float64, bool) {
	if n == 0 {
		return 0, false
	}
	return float64(k) / float64(n), true
}

// detector runs the heuristics of one simulation.
type detector struct {
	cfg anomaly.Config
	byz []bool
	// drifted marks the clients whose rows the drift heuristic flags.
	drifted []bool
	d       Detection
}

// newDetector computes every client's drift against the robust scaling
// of the other clients' statistics.
func newDetector(s *sim) (*detector, error) {
	det := &detector{byz: s.byz, drifted: make([]bool, len(s.clientX))}
	parties := make([]dataset.Party, len(s.clientX))
	for i, rows := range s.clientX {
		t := dataset.Table{Features: make([]string, len(rows[0])), X: rows}
		parties[i] = dataset.Party{Name: clientID(i), Stats: t.Stats()}
	}
	refs, err := anomaly.References(parties)
	if err != nil {
		return nil, fmt.Errorf("simulation: drift reference: %w", err)
	}
	for i, p := range parties {
		ref, ok := refs[p.Name]
		if !ok { // a single client: the federation is itself
			if ref, _, err = dataset.RobustScaling(parties); err != nil {
				return nil, fmt.Errorf("simulation: drift reference: %w", err)
			}
		}
		sh, ok := anomaly.DriftOf(p.Stats, ref)
		det.drifted[i] = ok && det.cfg.Drifted(sh)
	}
	return det, nil
}

// round counts the flags of one round. updates are what the coordinator
// sees (nil in a secure round), and excluded[i] says whether the rule
// left client i's input out.
func (det *detector) round(updates []aggregation.Update, excluded []bool) {
	flags := make([]map[string]bool, len(det.byz))
	for i := range flags {
		flags[i] = map[string]bool{anomaly.Drift: det.drifted[i], anomaly.Excluded: excluded[i]}
	}
	if updates != nil {
		in := make([]anomaly.Update, len(updates))
		index := make(map[string]int, len(updates))
		for i, u := range updates {
			in[i] = anomaly.Update{ID: u.ID, Delta: u.Delta, Samples: u.Samples, Norm: model.Norm(u.Delta)}
			index[u.ID] = i
		}
		// The rule's exclusions come from excluded, so the report is
		// not passed on.
		for _, f := range anomaly.Check(det.cfg, in, aggregation.Report{}) {
			flags[index[f.ID]][f.Kind] = true
		}
	}
	for i, fl := range flags {
		c, n := &det.d.Honest, &det.d.HonestUpdates
		if det.byz[i] {
			c, n = &det.d.Byzantine, &det.d.ByzantineUpdates
		}
		*n++
		if fl[anomaly.Norm] {
			c.Norm++
		}
		if fl[anomaly.Cosine] {
			c.Cosine++
		}
		if fl[anomaly.Drift] {
			c.Drift++
		}
		if fl[anomaly.Excluded] {
			c.Excluded++
		}
		if fl[anomaly.Norm] || fl[anomaly.Cosine] || fl[anomaly.Drift] {
			c.Any++
		}
	}
}

// excludedBy returns, for each of n inputs named by ids, whether the
// rule's report leaves it out.
func excludedBy(report aggregation.Report, ids []string) []bool {
	sel := map[string]bool{}
	for _, e := range report.Entries {
		sel[e.ID] = e.Selected
	}
	out := make([]bool, len(ids))
	for i, id := range ids {
		if s, ok := sel[id]; ok && !s {
			out[i] = true
		}
	}
	return out
}
