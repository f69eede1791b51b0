package report

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fedguard/fedguard/audit"
)

// The provenance report answers, per round, the three questions a
// regulator asks of a model: which data sources shaped it, who was left out
// and why, and whether the record it is read from is intact. It is derived
// from the events alone, so anyone holding an export can rebuild it, and it
// states what it could not check rather than assume it: an unverified log,
// an unchecked signature and a round no checkpoint covers each say so.
//
// Facts that contradict each other (a round_closed event listing a
// participant the log never saw send an update, a published model that is
// not the one the previous round closed with) are reported as notes next
// to the round, never smoothed over.

// ErrRoundNotFound is returned by Build when Options.Round names
// a round of which the log holds no event.
var ErrRoundNotFound = errors.New("audit: round not in the log")

// Options selects and qualifies what Build reports.
type Options struct {
	// Round restricts the report to one round; 0 reports every round.
	Round uint64
	// VerifyManifest checks the signatures of a manifest_signed event's
	// DSSE envelope with the coordinator's public keys. Nil leaves the
	// signatures unchecked, and the report says "not checked" rather than
	// imply a verification that did not happen.
	VerifyManifest func(envelope []byte) error
	// LogStatus says whether the log itself verified (hash chain, Merkle
	// tree, checkpoints) and up to which event. The report only repeats
	// it: the caller runs the verification. Empty reads "not verified".
	LogStatus string
	// Origin names the log, as its checkpoints do.
	Origin string
	// Checkpoints are checkpoints the caller verified against the events
	// (signature and root, as Verify does). A round is reported as
	// covered by the smallest one whose tree includes the round's last
	// event; rounds after the last checkpoint are protected by the hash
	// chain only, and the report says so. Only Size and Root are read.
	Checkpoints []audit.Checkpoint
}

// Report is the provenance report of a log: federation-wide events, then
// one RoundReport per round.
type Report struct {
	// Origin and LogStatus are Options.Origin and LogStatus.
	Origin    string
	LogStatus string
	// Federation is the federation name the coordinator started with.
	Federation string
	// Events is the number of events read, FirstSeq and LastSeq their
	// sequence numbers.
	Events            int
	FirstSeq, LastSeq uint64
	// Checkpoints are Options.Checkpoints, by size.
	Checkpoints []audit.Checkpoint
	// Initial is the manifest of round 0, the genesis: the model the
	// federation started from. Nil when the log holds none.
	Initial *InitialManifest
	// Round is Options.Round: 0 when Rounds holds every round.
	Round uint64
	// RoundCount is the number of rounds in the log, whatever Round.
	RoundCount int
	// Timeline lists the events outside rounds that shape or qualify the
	// federation: coordinator starts and stops, configurations, enrolment
	// changes, certificates, feature statistics and scaling.
	Timeline []TimelineEntry
	// ConnectionsRefused counts refused TLS handshakes, those the rate
	// limit kept out of the log included; RefusedBy breaks the count down
	// by reason.
	ConnectionsRefused uint64
	RefusedBy          []RefusalCount // RefusedOverLimit: beyond the limit, reason not recorded
	Rounds             []RoundReport
	// Controls links every flagged event of the log (refusals, flags,
	// exclusions, failed rounds) to the control of the threat model that
	// produced it and its MITRE ATLAS technique, grouped by control,
	// kind, detail and actor.
	Controls []ControlFinding
	// Flags are the log's anomaly_flagged events, in log order: what the
	// HTML report's charts mark (report_chart.go).
	Flags []FlagReport
	// Notes are anomalies of the log outside any one round.
	Notes []string
	// Privacy is the privacy section (report_privacy.go): ε over rounds
	// from the signed manifests; nil when no manifest has a privacy record.
	Privacy *PrivacyReport
}

// TimelineEntry is one federation-wide event, summarized.
type TimelineEntry struct {
	Seq    uint64
	Time   time.Time
	Kind   string
	Actor  string
	Detail string
}

// RefusalCount is the number of refused connections for one reason.
type RefusalCount struct {
	Reason string
	Count  uint64
}

// Round statuses, as RoundReport.Status says them.
const (
	// RoundStatusClosed: a round_closed event committed a model.
	RoundStatusClosed = "closed"
	// RoundStatusOpen: the last attempt has no outcome in the log.
	RoundStatusOpen = "open"
	// RoundStatusNotCompleted: the last attempt failed and the log holds
	// no retry.
	RoundStatusNotCompleted = "not completed"
)

// Attempt outcomes, as AttemptReport.Outcome says them.
const (
	AttemptClosed = "closed"
	AttemptFailed = "failed"
	// AttemptInterrupted: a later attempt of the same round opened with
	// no outcome recorded for this one (a coordinator restart).
	AttemptInterrupted = "interrupted"
	AttemptOpen        = "open"
	// AttemptNeverOpened: events name the attempt, but no round_opened
	// event opened it.
	AttemptNeverOpened = "never opened"
)

// Signature statuses, as RoundReport.Signature says them; a failed check
// reads SignatureInvalid followed by the error.
const (
	SignatureVerified   = "verified"
	SignatureNotChecked = "not checked"
	SignatureMissing    = "missing"
	SignatureInvalid    = "INVALID: "
)

// Exclusion kinds, as ExclusionReport.Kind says them.
const (
	// ExcludedDropped: in the cohort, but no update arrived before the
	// deadline.
	ExcludedDropped = "dropped"
	// ExcludedUpdateRefused: the coordinator refused the update.
	ExcludedUpdateRefused = "update refused"
	// ExcludedByRule: the update arrived but the robust rule left it out.
	ExcludedByRule = "excluded by rule"
	// ExcludedManifestRefused: the participant refused the model it was
	// sent, because its manifest did not verify.
	ExcludedManifestRefused = "manifest refused"
	// ExcludedSessionFailed: the secure session of the participant's
	// bucket failed, so no sum of the bucket reached the rule.
	ExcludedSessionFailed = "secure sum failed"
	// ExcludedDeclined: the participant sat the secure round out.
	ExcludedDeclined = "declined"
)

// InitialManifest is the signed manifest of round 0: the model every
// later round descends from.
type InitialManifest struct {
	// Seq is the manifest_signed event's sequence number.
	Seq uint64
	// ManifestSHA256 is the manifest's digest, ModelSHA256 the model digest
	// its in-toto statement names ("" when it names none that could be
	// read).
	ManifestSHA256 string
	ModelSHA256    string
	// Signature is one of the Signature* constants.
	Signature string
}

// RoundReport is the provenance of one round's model.
type RoundReport struct {
	Round uint64
	// Status is one of the RoundStatus* constants.
	Status string
	// Recovered marks a round_closed event written at start-up, after a
	// crash that the round's commit outlived.
	Recovered bool
	// Opened is the time of the round's first round_opened event, Closed
	// that of its round_closed event; zero when absent.
	Opened, Closed time.Time
	// ParentRound, ParentModelSHA256 and ParentManifestSHA256 name the
	// model the round trained on, as model_published recorded it; Published
	// is false when no model_published event exists.
	Published            bool
	ParentRound          uint64
	ParentModelSHA256    string
	ParentManifestSHA256 string
	// Attempts are every attempt of the round in the order they opened,
	// failed and interrupted ones included.
	Attempts []AttemptReport
	// Cohort, Rule, Contributors and Excluded describe the final attempt:
	// the one round_closed names, or the last one for a round not closed.
	Cohort []string
	// Rule is the robust rule as the aggregation report names it.
	Rule string
	// Secure marks a final attempt run with secure aggregation: the
	// coordinator saw only each bucket's sum, the rule ruled on the
	// buckets' means, and Contributors are the members whose masked input
	// is in a completed sum.
	Secure bool
	// Sums are the secure sessions of every attempt, in the order the
	// attempts opened and then by bucket; empty for a plain round.
	Sums []SecureSumReport
	// Contributors are the participants whose update was accepted, by
	// name; Selected says which of them the rule kept. An update recorded
	// on arrival and refused afterwards (it came as the round closed) is
	// an exclusion, not a contribution.
	Contributors []ContributorReport
	// Excluded are the participants left out, by name and then sequence
	// number; a participant may appear once per reason.
	Excluded []ExclusionReport
	// ModelSHA256 is the committed model's digest (round_closed).
	ModelSHA256 string
	// ManifestSHA256 is the signed manifest's digest (manifest_signed):
	// the SHA-256 of its payload, as package manifest names manifests.
	// ManifestModelSHA256 is the model digest its in-toto statement names,
	// empty when the envelope does not carry one that could be read.
	ManifestSHA256      string
	ManifestModelSHA256 string
	// Signature is one of the Signature* constants.
	Signature string
	// Checkpoint is the smallest supplied checkpoint covering the round's
	// last event; nil when none does.
	Checkpoint *audit.Checkpoint
	// FirstSeq and LastSeq bound the round's events.
	FirstSeq, LastSeq uint64
	// Notes are anomalies found in the round's events.
	Notes []string
}

// SelectedCount is the number of contributors the rule kept.
func (r RoundReport) SelectedCount() int {
	n := 0
	for _, c := range r.Contributors {
		if c.Selected {
			n++
		}
	}
	return n
}

// AttemptReport is one attempt of a round: a round that fails to reach its
// quorum is retried under the same number.
type AttemptReport struct {
	Attempt uint32
	// Seq is the round_opened event's sequence number. Unopened marks an
	// attempt that events name but no round_opened event opened; its Seq
	// is then the first event naming it.
	Seq      uint64
	Unopened bool
	Opened   time.Time
	Deadline string
	Cohort   []string
	// Updates and Refused count the accepted and refused updates.
	Updates, Refused int
	// Secure marks an attempt run with secure aggregation (a secure
	// session or a decline names it). Sums and FailedSums count its
	// completed and failed sessions, Inputs the members whose masked
	// input is in a completed sum.
	Secure                   bool
	Sums, FailedSums, Inputs int
	// Outcome is one of the Attempt* constants; Reason explains a failed
	// or interrupted attempt.
	Outcome string
	Reason  string
}

// ContributorReport is one accepted update and what the rule did with it.
// Samples and the holdout figures are the participant's own claims.
type ContributorReport struct {
	Participant     string
	Seq             uint64
	Samples         uint64
	Norm            float64
	UpdateSHA256    string
	HoldoutCount    uint64
	HoldoutAccuracy float64
	// Ruled says whether the aggregation report has an entry for the
	// update; without one, Selected, Score, Weight, Clip, Bucket and
	// RuleReason are unknown and zero.
	Ruled      bool
	Selected   bool
	Score      float64
	Weight     float64
	Clip       float64
	Bucket     int
	RuleReason string
	// SecureBucket is, in a secure round, the bucket whose sum carried the
	// participant's update; 0 in a plain round. The coordinator saw only
	// the sum: Samples, Norm, UpdateSHA256 and the holdout figures are
	// zero, Seq is the secure_session event, and the rule's figures are
	// the bucket's.
	SecureBucket int
}

// SecureSumReport is one bucket's secure session: who was in it, whose
// masked input is in its sum, and what the rule did with the sum.
type SecureSumReport struct {
	Attempt uint32
	// Seq is the secure_session event's sequence number.
	Seq    uint64
	Bucket int
	// Members are the participants assigned to the bucket, Survivors those
	// whose masked input is in the sum; Dropped maps a member that left
	// the session to "Phase: why".
	Members   []string
	Survivors []string
	Dropped   map[string]string
	// SumSHA256 is the digest of the unmasked sum, Weight the total weight
	// of the survivors' updates.
	SumSHA256 string
	Weight    uint64
	// Error says why the session failed; empty when it completed.
	Error string
	// Final says the session belongs to the round's final attempt, the one
	// the contributors and exclusions describe; a session of an earlier
	// attempt shaped no model.
	Final bool
	// Ruled says whether the attempt's aggregation report has an entry for
	// the bucket ("bucket-N"); Selected, Score, RuleWeight and RuleReason
	// are that entry's.
	Ruled      bool
	Selected   bool
	Score      float64
	RuleWeight float64
	RuleReason string
}

// Failed says whether the session failed, leaving no sum.
func (s SecureSumReport) Failed() bool { return s.Error != "" }

// ExclusionReport is one reason a participant is not among the round's
// selected contributors.
type ExclusionReport struct {
	Participant string
	// Kind is one of the Excluded* constants.
	Kind   string
	Reason string
	// Seq is the event that records the exclusion: the refusal, the
	// aggregation report, or for a dropped participant the attempt's
	// outcome.
	Seq uint64
}

// ruleReport mirrors the JSON of aggregation.Report, which
// aggregation_report carries. A copy rather than an import keeps the audit
// package, and every export it reads, independent of the rules' code; a
// test pins the two encodings together.
type ruleReport struct {
	Rule    string      `json:"rule"`
	Entries []ruleEntry `json:"entries"`
}

// ruleEntry mirrors aggregation.Entry.
type ruleEntry struct {
	ID       string  `json:"id"`
	Weight   float64 `json:"weight"`
	Score    float64 `json:"score"`
	Selected bool    `json:"selected"`
	Reason   string  `json:"reason"`
	Clip     float64 `json:"clip"`
	Bucket   int     `json:"bucket"`
}

// RefusedOverLimit is the reason RefusedBy gives the refused handshakes
// that an events_suppressed event counts: their reasons were not recorded.
const RefusedOverLimit = "over_the_limit"

// Build reads a log's events, in sequence order, and reports on
// them. events must be one contiguous run of the log from its first event,
// as an export holds it: checkpoint coverage counts events from the start.
//
// Events of unknown kinds are skipped, so that an older reader still
// reports on a newer log. A known kind whose payload does not decode is an
// error naming the event's sequence number: the report would otherwise be
// silently incomplete.
//
// Refusals are placed by where they stand in the log, not by their Round
// and Attempt fields alone, because they are recorded from the refused
// party's point of view: an update refusal belongs to the attempt of its
// round opened last before it (the refusal of an update that arrived as
// the round closed is recorded afterwards, without an attempt), and a
// manifest refusal to the round open when it was recorded or, between
// rounds, to the next one to open. Refusals that name a round that never
// opened are listed with the federation events rather than invent a round.
func Build(events []audit.Event, opts Options) (Report, error) {
	b := &reportBuilder{
		opts:   opts,
		rounds: map[uint64]*roundState{},
		refBy:  map[string]uint64{},
	}
	for i, ev := range events {
		if i > 0 && ev.Seq != events[i-1].Seq+1 {
			return Report{}, fmt.Errorf("audit: report: seq %d follows seq %d: the events are not one contiguous run of the log", ev.Seq, events[i-1].Seq)
		}
		if err := b.add(uint64(i), ev); err != nil {
			return Report{}, err
		}
		b.controls.add(ev)
	}
	b.settle()
	rep := Report{
		Origin:      opts.Origin,
		LogStatus:   opts.LogStatus,
		Federation:  b.federation,
		Events:      len(events),
		Checkpoints: slices.SortedFunc(slices.Values(opts.Checkpoints), func(a, b audit.Checkpoint) int { return cmp.Compare(a.Size, b.Size) }),
		Initial:     b.initialManifest(),
		Round:       opts.Round,
		RoundCount:  len(b.rounds),
		Timeline:    b.timeline,
		Controls:    b.controls.findings(),
		Flags:       b.flags,
		Privacy:     b.privacySection(events, opts.Round),
	}
	if len(events) > 0 {
		rep.FirstSeq, rep.LastSeq = events[0].Seq, events[len(events)-1].Seq
	}
	for reason, n := range b.refBy {
		rep.ConnectionsRefused += n
		rep.RefusedBy = append(rep.RefusedBy, RefusalCount{Reason: reason, Count: n})
	}
	slices.SortFunc(rep.RefusedBy, func(a, b RefusalCount) int { return strings.Compare(a.Reason, b.Reason) })

	numbers := slices.Sorted(maps.Keys(b.rounds))
	if opts.Round != 0 && b.rounds[opts.Round] == nil {
		if len(numbers) == 0 {
			return Report{}, fmt.Errorf("%w: round %d requested, the log holds no round", ErrRoundNotFound, opts.Round)
		}
		return Report{}, fmt.Errorf("%w: round %d requested, the log holds %s", ErrRoundNotFound, opts.Round, roundRanges(numbers))
	}
	for _, n := range numbers {
		if opts.Round != 0 && n != opts.Round {
			continue
		}
		// Only reported rounds are finished (and their manifests
		// verified); lineage checks read the previous round's state,
		// which the whole log filled.
		rep.Rounds = append(rep.Rounds, b.finish(b.rounds[n], rep.Checkpoints))
	}
	rep.Notes = b.notes
	return rep, nil
}
