package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// KindSpec is one row of the table of event kinds (see "Event kinds" in
// the package documentation): everything the log's readers know of a
// kind. The provenance report (package audit/report) places and renders
// an event by its row, and the coordinator's metrics take their kind
// labels from the table, so a new kind is one row plus its emitter.
type KindSpec struct {
	// Name is the events' Kind.
	Name string
	// Payload is the type of the events' payload, a struct of this
	// package named after the kind; Decode fills one.
	Payload reflect.Type
	// Writers are the logs that append the kind.
	Writers Writers
	// Quota marks a kind a client's calls cause: the coordinator counts
	// it under the caller's per-identity quota of audited events (the
	// kind label of fedguard_audit_events_suppressed_total).
	Quota bool
	// Section says where the provenance report places the events.
	Section Section
	// Detail renders an event of a SectionTimeline kind, with its payload
	// as Decode returns it, as the report's timeline line; nil for the
	// other sections, whose events the report's round logic reads.
	Detail func(ev Event, payload any) string
}

// Writers is a set of logs that append a kind.
type Writers uint8

const (
	// WriterCoordinator is the coordinator's log; the coordinator's
	// metrics count its kinds from zero (fedguard_audit_events_total).
	WriterCoordinator Writers = 1 << iota
	// WriterCA is a federation CA's own log (`fedguard ca`).
	WriterCA
)

// Section is where the provenance report places an event.
type Section uint8

const (
	// SectionTimeline is the federation-wide timeline: one line per
	// event, rendered by KindSpec.Detail.
	SectionTimeline Section = iota + 1
	// SectionRound is the round the event's Round names; the report's
	// round logic reads the payload (who trained, who was left out).
	SectionRound
	// SectionByPosition is the round open where the event stands in the
	// log, or the next one to open (manifest refusals, recorded from the
	// refusing participant's point of view).
	SectionByPosition
	// SectionCounted is a count by reason, not a line per event, so that
	// a flood cannot bury the events that matter (refused connections).
	SectionCounted
)

// Decode decodes ev's payload as the kind's Payload type and returns it
// (a value of that type, not a pointer).
func (k KindSpec) Decode(ev Event) (any, error) {
	v := reflect.New(k.Payload)
	if err := json.Unmarshal(ev.Payload, v.Interface()); err != nil {
		return nil, err
	}
	return v.Elem().Interface(), nil
}

// Kinds returns the table of event kinds, in the order of the Kind
// constants.
func Kinds() []KindSpec { return slices.Clone(kindTable) }

// LookupKind returns the row of the kind named name, and false for a kind
// this build does not know (a newer log's, or none).
func LookupKind(name string) (KindSpec, bool) {
	i := slices.IndexFunc(kindTable, func(k KindSpec) bool { return k.Name == name })
	if i < 0 {
		return KindSpec{}, false
	}
	return kindTable[i], true
}

// KindNames returns the names of the kinds for which keep is true, in
// table order.
func KindNames(keep func(KindSpec) bool) []string {
	var names []string
	for _, k := range kindTable {
		if keep(k) {
			names = append(names, k.Name)
		}
	}
	return names
}

// timeline makes the row of a kind in the report's timeline; detail
// renders its line.
func timeline[T any](name string, w Writers, quota bool, detail func(Event, T) string) KindSpec {
	return KindSpec{
		Name: name, Payload: reflect.TypeFor[T](), Writers: w, Quota: quota, Section: SectionTimeline,
		Detail: func(ev Event, p any) string { return detail(ev, p.(T)) },
	}
}

// placed makes the row of a kind the report places in a round (SectionRound
// or SectionByPosition) or counts (SectionCounted).
func placed[T any](name string, w Writers, quota bool, s Section) KindSpec {
	return KindSpec{Name: name, Payload: reflect.TypeFor[T](), Writers: w, Quota: quota, Section: s}
}

// listOrNone joins names, or says "none".
func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// describeValidation says what a hospital's data check found, in counts:
// what the hospital sent, and whether it trained.
func describeValidation(p DataValidation) string {
	errs, warns := 0, 0
	var parts []string
	for _, f := range p.Findings {
		if f.Severity == "error" {
			errs++
		} else {
			warns++
		}
		col := cmp.Or(f.Column, "a column the expectations do not name")
		parts = append(parts, fmt.Sprintf("%s %s on %s (%d of %d)", f.Severity, f.Rule, col, f.Count, f.Total))
	}
	trained := "trained"
	if !p.Training {
		trained = "sat the round out"
	}
	d := fmt.Sprintf("data checked (%s mode, attempt %d): %d rows, %d columns, %d errors, %d warnings; %s", p.Mode, p.Attempt, p.Rows, p.Columns, errs, warns, trained)
	if st := p.FeatureStats; st != nil {
		d += fmt.Sprintf("; sent %s of %d rows over %d features", listOrNone(st.Aggregates), st.Rows, st.Features)
	}
	if len(parts) > 0 {
		d += ": " + strings.Join(parts, "; ")
	}
	return d
}
