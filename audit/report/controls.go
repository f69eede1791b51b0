package report

import (
	"cmp"
	"slices"

	"github.com/fedguard/fedguard/audit"
)

// The controls section answers a compliance officer's question of a log:
// which safeguard acted, against what kind of attack, and where in the log
// that is recorded. Each flagged event (a refusal, an exclusion, a flag, a
// failed round) is linked to the control of docs/threat-model.md that
// produced it and to the MITRE ATLAS technique that control answers. The
// table below is the only place the mapping lives; a test checks it against
// the threat model, so the report and the document cannot disagree.

// ControlFinding is one line of the controls section: the flagged events of
// one kind and detail, by one actor, that one control produced. Events are
// grouped rather than listed so that a flood of refusals stays one line,
// with its count and the first and last sequence numbers.
type ControlFinding struct {
	// Control is the threat model's control id ("C9") and name.
	Control, ControlName string
	// Technique is the MITRE ATLAS technique id ("AML.T0020") and name.
	Technique, TechniqueName string
	// Kind is the event kind; Detail narrows it (the flag kind, the
	// refusal's status code or reason).
	Kind, Detail string
	// Actor is who the events are about: the flagged or refused
	// participant, or the coordinator.
	Actor string
	// Count is how many events, suppressed ones included where the log
	// counts them; FirstSeq and LastSeq bound where they stand.
	Count             uint64
	FirstSeq, LastSeq uint64
}

// controlRule maps a flagged event to a control and a technique. match
// returns false for events of the kind that flag nothing (a data check
// without findings), and the detail and actor to group by.
type controlRule struct {
	kind                     string
	control, controlName     string
	technique, techniqueName string
	match                    func(ev audit.Event, payload any) (detail, actor string, n uint64, ok bool)
}

// controlRules lists, per flagged kind, the rules in order; the first that
// matches wins. The ids and names are those of docs/threat-model.md and of
// MITRE ATLAS (atlas.mitre.org).
var controlRules = []controlRule{
	{audit.KindAnomalyFlagged, "C9", "anomaly flags", "AML.T0059", "Erode Dataset Integrity", func(_ audit.Event, p any) (string, string, uint64, bool) {
		f := p.(audit.AnomalyFlagged)
		return f.Kind, f.Participant, 1, f.Kind == "drift"
	}},
	{audit.KindAnomalyFlagged, "C1", "robust aggregation", "AML.T0020", "Poison Training Data", func(_ audit.Event, p any) (string, string, uint64, bool) {
		f := p.(audit.AnomalyFlagged)
		return f.Kind, f.Participant, 1, true
	}},
	{audit.KindUpdateRefused, "C12", "bounded resources", "AML.T0029", "Denial of AI Service", func(ev audit.Event, p any) (string, string, uint64, bool) {
		r := p.(audit.UpdateRefused)
		return r.Code, ev.Actor, 1, r.Code == "ResourceExhausted" || r.Code == "DeadlineExceeded"
	}},
	{audit.KindUpdateRefused, "C12", "bounded resources", "AML.T0018.000", "Poison AI Model", func(ev audit.Event, p any) (string, string, uint64, bool) {
		return p.(audit.UpdateRefused).Code, ev.Actor, 1, true
	}},
	{audit.KindManifestRefused, "C7", "signed manifests", "AML.T0010.003", "AI Supply Chain Compromise: Model", func(ev audit.Event, p any) (string, string, uint64, bool) {
		return p.(audit.ManifestRefused).Reason, ev.Actor, 1, true
	}},
	{audit.KindConnectionRefused, "C3", "mutual TLS", "AML.T0012", "Valid Accounts", func(_ audit.Event, p any) (string, string, uint64, bool) {
		r := p.(audit.ConnectionRefused)
		return r.Reason, "", 1 + r.Suppressed, true
	}},
	{audit.KindCallRefused, "C4", "revocation", "AML.T0012", "Valid Accounts", func(ev audit.Event, p any) (string, string, uint64, bool) {
		r := p.(audit.CallRefused)
		return r.Code, ev.Actor, 1, r.Code == "PermissionDenied" || r.Code == "Unauthenticated"
	}},
	{audit.KindCallRefused, "C12", "bounded resources", "AML.T0029", "Denial of AI Service", func(ev audit.Event, p any) (string, string, uint64, bool) {
		return p.(audit.CallRefused).Code, ev.Actor, 1, true
	}},
	{audit.KindCertificateRevoked, "C4", "revocation", "AML.T0012", "Valid Accounts", func(ev audit.Event, p any) (string, string, uint64, bool) {
		r := p.(audit.CertificateRevoked)
		actor := r.Identity
		if actor == "" {
			actor = "serial " + r.Serial
		}
		return "revoked", actor, 1, true
	}},
	{audit.KindDataValidation, "C8", "data validation", "AML.T0059", "Erode Dataset Integrity", func(ev audit.Event, p any) (string, string, uint64, bool) {
		v := p.(audit.DataValidation)
		detail := "findings"
		if !v.Training {
			detail = "sat out"
		}
		return detail, ev.Actor, 1, len(v.Findings) > 0
	}},
	{audit.KindSecureDeclined, "C5", "secure aggregation", "AML.T0025", "Exfiltration via Cyber Means", func(ev audit.Event, p any) (string, string, uint64, bool) {
		return "declined", ev.Actor, 1, true
	}},
	{audit.KindRoundFailed, "C13", "crash safety", "AML.T0029", "Denial of AI Service", func(_ audit.Event, _ any) (string, string, uint64, bool) {
		return "round failed", audit.ActorCoordinator, 1, true
	}},
	{audit.KindEventsSuppressed, "C11", "refusal audit and quota", "AML.T0046", "Spamming AI System with Chaff Data", func(_ audit.Event, p any) (string, string, uint64, bool) {
		s := p.(audit.EventsSuppressed)
		return "over the quota", s.Participant, s.Total, s.Total > 0
	}},
}

// controls groups the flagged events of a log by control line.
type controls struct {
	lines map[controlKey]*ControlFinding
}

type controlKey struct {
	rule          int
	detail, actor string
}

// add files ev under the first rule that matches it; events no rule flags
// are ignored. A payload that does not decode is left to the rest of the
// report, which names it.
func (c *controls) add(ev audit.Event) {
	var payload any
	for i, r := range controlRules {
		if r.kind != ev.Kind {
			continue
		}
		if payload == nil {
			spec, ok := audit.LookupKind(ev.Kind)
			if !ok {
				return
			}
			p, err := spec.Decode(ev)
			if err != nil {
				return
			}
			payload = p
		}
		detail, actor, n, ok := r.match(ev, payload)
		if !ok {
			continue
		}
		if c.lines == nil {
			c.lines = map[controlKey]*ControlFinding{}
		}
		k := controlKey{i, detail, actor}
		f := c.lines[k]
		if f == nil {
			f = &ControlFinding{Control: r.control, ControlName: r.controlName, Technique: r.technique, TechniqueName: r.techniqueName,
				Kind: ev.Kind, Detail: detail, Actor: actor, FirstSeq: ev.Seq}
			c.lines[k] = f
		}
		f.Count += n
		f.LastSeq = ev.Seq
		return
	}
}

// findings returns the lines ordered by control, then by first appearance.
func (c *controls) findings() []ControlFinding {
	out := make([]ControlFinding, 0, len(c.lines))
	for _, f := range c.lines {
		out = append(out, *f)
	}
	slices.SortFunc(out, func(a, b ControlFinding) int {
		return cmp.Or(cmp.Compare(controlNumber(a.Control), controlNumber(b.Control)), cmp.Compare(a.FirstSeq, b.FirstSeq),
			cmp.Compare(a.Detail, b.Detail), cmp.Compare(a.Actor, b.Actor))
	})
	return out
}

// controlNumber orders "C2" before "C10".
func controlNumber(id string) int {
	n := 0
	for _, r := range id[1:] {
		n = n*10 + int(r-'0')
	}
	return n
}
