package lineage

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/fedguard/fedguard/manifest"
)

// Changes of a hospital's data version, as [Trace] reports them.
const (
	// ChangeFirst: the hospital's first contribution in the trace with a
	// data version.
	ChangeFirst = "first"
	// ChangeSame: the same data version as its previous contribution.
	ChangeSame = "same"
	// ChangeChanged: another data version than its previous contribution.
	ChangeChanged = "changed"
	// ChangeUnreported: the hospital reported no data version.
	ChangeUnreported = "not reported"
)

// ModelVersion is the lineage of one round's model: the hospitals whose
// updates went into it and the data versions they trained on.
type ModelVersion struct {
	Round       uint64 `json:"round"`
	ModelSHA256 string `json:"model_sha256"`
	// Hospitals are the round's included contributors, in manifest order.
	Hospitals []Contribution `json:"hospitals"`
	// Absent are hospitals that contributed to an earlier round of the
	// trace but not to this one, sorted.
	Absent []string `json:"absent,omitempty"`
}

// Contribution is one hospital's part in a model version.
type Contribution struct {
	Name string `json:"name"`
	// DataSHA256 is the data version; empty if not reported.
	DataSHA256 string `json:"data_sha256,omitempty"`
	// Change compares it with the hospital's previous contribution (one
	// of the Change* constants).
	Change string `json:"change"`
	// PreviousRound and PreviousSHA256 are that previous contribution's
	// round and data version, when there is one.
	PreviousRound  uint64 `json:"previous_round,omitempty"`
	PreviousSHA256 string `json:"previous_data_sha256,omitempty"`
}

// Trace lists the lineage of the model of round upTo: for every round from
// 1 to upTo whose manifest is in rounds, which hospitals' data versions
// trained it, and what changed since each hospital's previous
// contribution. Every model version builds on the one before, so the model
// of round upTo owes something to all of them. rounds must be verified
// manifests of one federation; round 0 (the initial model, trained on
// nothing) and rounds after upTo are skipped. It fails when a round
// between 1 and upTo is missing or present twice; when upTo is past the
// newest manifest, the error names the newest, which is what an auditor
// who asked for a round the federation has not reached wants to know.
func Trace(rounds []manifest.Round, upTo uint64) ([]ModelVersion, error) {
	byRound := make(map[uint64]manifest.Round, len(rounds))
	var newest uint64
	for _, r := range rounds {
		if _, dup := byRound[r.Round]; dup {
			return nil, fmt.Errorf("lineage: two manifests of round %d", r.Round)
		}
		byRound[r.Round] = r
		newest = max(newest, r.Round)
	}
	if len(rounds) > 0 && upTo > newest {
		return nil, fmt.Errorf("lineage: no manifest of round %d: the newest is round %d", upTo, newest)
	}
	type last struct {
		round uint64
		data  string
	}
	seen := map[string]last{}
	var out []ModelVersion
	for n := uint64(1); n <= upTo; n++ {
		r, ok := byRound[n]
		if !ok {
			return nil, fmt.Errorf("lineage: no manifest of round %d, which the model of round %d builds on", n, upTo)
		}
		mv := ModelVersion{Round: n, ModelSHA256: r.ModelSHA256, Hospitals: []Contribution{}}
		here := map[string]bool{}
		for _, c := range r.Included {
			here[c.Name] = true
			ct := Contribution{Name: c.Name, DataSHA256: c.DataSHA256}
			prev, had := seen[c.Name]
			if had {
				ct.PreviousRound, ct.PreviousSHA256 = prev.round, prev.data
			}
			switch {
			case c.DataSHA256 == "":
				ct.Change = ChangeUnreported
			case !had || prev.data == "":
				ct.Change = ChangeFirst
			case prev.data == c.DataSHA256:
				ct.Change = ChangeSame
			default:
				ct.Change = ChangeChanged
			}
			mv.Hospitals = append(mv.Hospitals, ct)
			seen[c.Name] = last{n, c.DataSHA256}
		}
		for name := range seen {
			if !here[name] {
				mv.Absent = append(mv.Absent, name)
			}
		}
		slices.Sort(mv.Absent)
		out = append(out, mv)
	}
	return out, nil
}

// short abbreviates a digest for a table.
func short(d string) string {
	if d == "" {
		return "-"
	}
	return d[:min(len(d), 12)]
}

// WriteTable writes a trace as a table, one row per round and hospital,
// digests abbreviated to 12 hex digits.
func WriteTable(w io.Writer, trace []ModelVersion) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUND\tMODEL\tHOSPITAL\tDATA VERSION\tCHANGE")
	for _, mv := range trace {
		model := short(mv.ModelSHA256)
		if len(mv.Hospitals) == 0 {
			fmt.Fprintf(tw, "%d\t%s\t(none)\t-\tno update went into this model\n", mv.Round, model)
			model = ""
		}
		for _, c := range mv.Hospitals {
			change := c.Change
			switch c.Change {
			case ChangeSame:
				change = fmt.Sprintf("same as round %d", c.PreviousRound)
			case ChangeChanged:
				change = fmt.Sprintf("changed since round %d (was %s)", c.PreviousRound, short(c.PreviousSHA256))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", mv.Round, model, c.Name, short(c.DataSHA256), change)
			model = ""
		}
		if len(mv.Absent) > 0 {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", mv.Round, model, strings.Join(mv.Absent, ","), "-", "did not contribute")
		}
	}
	return tw.Flush()
}
