package report

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedguard/fedguard/audit"
)

// reportBuilder accumulates events; finish turns a round's state into its
// report once the whole log has been read.
type reportBuilder struct {
	opts       Options
	rounds     map[uint64]*roundState
	federation string
	timeline   []TimelineEntry
	refBy      map[string]uint64
	starts     []uint64 // seqs of coordinator_started events
	notes      []string
	controls   controls
	// open is the round between its first round_opened and its
	// round_closed event; nil between rounds.
	open *roundState
	// pending are manifest refusals recorded between rounds, waiting for
	// the next round to open.
	pending []actord[audit.ManifestRefused]
	// initial are the manifest_signed events of round 0.
	initial []seqd[audit.ManifestSigned]
	// flags are the anomaly_flagged events, for the charts.
	flags []FlagReport
}

type roundState struct {
	number    uint64
	attempts  []*attemptState
	closed    *seqd[audit.RoundClosed]
	closedAt  time.Time
	manifests []seqd[audit.ManifestSigned]
	published []seqd[audit.ModelPublished]
	mrefused  []actord[audit.ManifestRefused]
	// early are update refusals recorded before any attempt opened.
	early []actord[audit.UpdateRefused]
	// real is set by any event but a refusal: a round that only refusals
	// name never opened.
	real      bool
	touched   bool
	firstSeq  uint64
	lastSeq   uint64
	lastIndex uint64 // position of the round's last event in the log
	notes     []string
}

type attemptState struct {
	number   uint32
	seq      uint64 // round_opened, or the first event naming the attempt
	unopened bool   // no round_opened event opened the attempt
	opened   time.Time
	deadline string
	cohort   []string
	cohorted bool
	received []actord[audit.UpdateReceived]
	refused  []actord[audit.UpdateRefused]
	agg      *seqd[ruleReport]
	aggRule  string
	failed   *seqd[audit.RoundFailed]
	closing  *seqd[audit.RoundClosed] // the round_closed event naming this attempt
	// unpublished is the attempt's close when the round opened again after
	// it (at seq reopened): the close was never committed, as after a
	// coordinator crash between recording a close and committing it.
	unpublished *seqd[audit.RoundClosed]
	reopened    uint64
	// sessions are the attempt's secure sessions, one per bucket, in log
	// order; declined its declines of the secure round.
	sessions []seqd[audit.SecureSession]
	declined []actord[audit.SecureDeclined]
}

// secure says whether the attempt ran with secure aggregation, as its
// secure sessions and declines show.
func (a *attemptState) secure() bool { return len(a.sessions) > 0 || len(a.declined) > 0 }

// ended returns the sequence number of the attempt's outcome, and false
// while it has none.
func (a *attemptState) ended() (uint64, bool) {
	switch {
	case a.failed != nil:
		return a.failed.seq, true
	case a.closing != nil:
		return a.closing.seq, true
	case a.unpublished != nil:
		return a.unpublished.seq, true
	}
	return 0, false
}

// seqd is a payload with the sequence number of its event.
type seqd[T any] struct {
	seq uint64
	v   T
}

// actord is a payload with its event's position, sequence number, time
// and actor.
type actord[T any] struct {
	index uint64
	seq   uint64
	time  time.Time
	actor string
	v     T
}

func newActord[T any](index uint64, ev audit.Event, v T) actord[T] {
	return actord[T]{index: index, seq: ev.Seq, time: ev.Time, actor: ev.Actor, v: v}
}

// reportPayload decodes ev's payload as a T, naming the event on failure.
func reportPayload[T any](ev audit.Event) (T, error) {
	var v T
	if err := json.Unmarshal(ev.Payload, &v); err != nil {
		return v, fmt.Errorf("audit: report: seq %d (%s): decode payload: %w", ev.Seq, ev.Kind, err)
	}
	return v, nil
}

func (b *reportBuilder) notef(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func (r *roundState) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// touch counts the event at index, with sequence number seq, in the
// round's span.
func (r *roundState) touch(index, seq uint64) {
	if !r.touched || seq < r.firstSeq {
		r.firstSeq = seq
	}
	if !r.touched || index > r.lastIndex {
		r.lastSeq, r.lastIndex = seq, index
	}
	r.touched = true
}

// round returns the state of the event's round, counting the event in
// the round's span.
func (b *reportBuilder) round(index uint64, ev audit.Event) *roundState {
	r := b.rounds[ev.Round]
	if r == nil {
		r = &roundState{number: ev.Round}
		b.rounds[ev.Round] = r
	}
	r.touch(index, ev.Seq)
	return r
}

// attempt returns the latest attempt numbered n of r. An event naming an
// attempt that no round_opened event opened gets one made up, with a note,
// so that what it records is still reported.
func (r *roundState) attempt(n uint32, ev audit.Event) *attemptState {
	for _, a := range slices.Backward(r.attempts) {
		if a.number == n {
			return a
		}
	}
	r.notef("seq %d: %s names attempt %d, which no round_opened event opened", ev.Seq, ev.Kind, n)
	a := &attemptState{number: n, seq: ev.Seq, unopened: true}
	r.attempts = append(r.attempts, a)
	return a
}

// lastOpened returns the attempt of r opened last, nil if none was.
func (r *roundState) lastOpened() *attemptState {
	for _, a := range slices.Backward(r.attempts) {
		if !a.unopened {
			return a
		}
	}
	return nil
}

// lookupKind finds an event's row in the table of event kinds; tests swap
// it to show that a new kind is one row of the table.
var lookupKind = audit.LookupKind

func (b *reportBuilder) add(index uint64, ev audit.Event) error {
	spec, ok := lookupKind(ev.Kind)
	if !ok {
		return nil // an unknown kind: a newer log than this reader
	}
	switch spec.Section {
	case audit.SectionByPosition:
		p, err := reportPayload[audit.ManifestRefused](ev)
		if err != nil {
			return err
		}
		m := newActord(index, ev, p)
		if b.open == nil {
			b.pending = append(b.pending, m)
			return nil
		}
		b.open.touch(index, ev.Seq)
		b.open.mrefused = append(b.open.mrefused, m)
		return nil
	case audit.SectionRound:
		if ev.Kind == audit.KindManifestSigned && ev.Round == 0 {
			// The genesis manifest, signed for the initial model.
			p, err := reportPayload[audit.ManifestSigned](ev)
			if err != nil {
				return err
			}
			b.initial = append(b.initial, seqd[audit.ManifestSigned]{ev.Seq, p})
			return nil
		}
		if ev.Round == 0 {
			// Rounds count from 1: a round event for round 0 cannot be
			// placed, so it is named rather than dropped silently; its
			// payload must decode as anywhere else in the log.
			b.notef("seq %d: %s names round 0, and rounds count from 1; it is left out of the rounds", ev.Seq, ev.Kind)
			_, err := decodePayload(spec, ev)
			return err
		}
		return b.addRoundEvent(index, b.round(index, ev), ev)
	}
	p, err := decodePayload(spec, ev)
	if err != nil {
		return err
	}
	switch p := p.(type) {
	case audit.ConnectionRefused:
		// Counted, not listed: a flood of refusals would bury the events
		// that matter.
		b.refBy[p.Reason] += 1 + p.Suppressed
	case audit.CoordinatorStarted:
		if b.federation != "" && p.Federation != b.federation {
			b.notef("seq %d: the coordinator started for federation %q, earlier for %q", ev.Seq, p.Federation, b.federation)
		}
		b.federation = p.Federation
		b.starts = append(b.starts, ev.Seq)
	case audit.AnomalyFlagged:
		b.noteFlag(ev, p)
	case audit.EventsSuppressed:
		// Refused handshakes beyond the limit count with the others, under
		// a reason of their own: which one each had is not recorded.
		if n := p.Kinds[audit.KindConnectionRefused]; n > 0 {
			b.refBy[RefusedOverLimit] += n
		}
	}
	if spec.Section == audit.SectionTimeline {
		entry := TimelineEntry{Seq: ev.Seq, Time: ev.Time, Kind: ev.Kind, Actor: ev.Actor}
		if spec.Detail != nil {
			entry.Detail = spec.Detail(ev, p)
		}
		b.timeline = append(b.timeline, entry)
	}
	return nil
}

// decodePayload decodes ev's payload by its row of the table, naming the
// event on failure.
func decodePayload(spec audit.KindSpec, ev audit.Event) (any, error) {
	p, err := spec.Decode(ev)
	if err != nil {
		return nil, fmt.Errorf("audit: report: seq %d (%s): decode payload: %w", ev.Seq, ev.Kind, err)
	}
	return p, nil
}

// addFirst appends ev's payload v to list, one per actor and attempt:
// when ev's actor already has one there, the first is kept and the second
// (what, recorded in attempt) is noted.
func addFirst[T any](r *roundState, list *[]actord[T], index uint64, ev audit.Event, attempt uint32, what string, v T) {
	for _, x := range *list {
		if x.actor == ev.Actor {
			r.notef("seq %d: a second %s from %s recorded in attempt %d; the first (seq %d) is reported", ev.Seq, what, ev.Actor, attempt, x.seq)
			return
		}
	}
	*list = append(*list, newActord(index, ev, v))
}

func (b *reportBuilder) addRoundEvent(index uint64, r *roundState, ev audit.Event) error {
	if ev.Kind != audit.KindUpdateRefused {
		r.real = true
	}
	switch ev.Kind {
	case audit.KindRoundOpened:
		p, err := reportPayload[audit.RoundOpened](ev)
		if err != nil {
			return err
		}
		if next := b.rounds[r.number+1]; r.closed != nil && b.open == nil && (next == nil || !next.real) {
			// The round opens again after its close, and before any later
			// round: the close was never committed (the coordinator
			// crashed between recording and committing it) and the round
			// is run again. The later close is the round's.
			for _, a := range r.attempts {
				if a.closing == r.closed {
					a.unpublished, a.closing, a.reopened = a.closing, nil, ev.Seq
				}
			}
			r.closed = nil
		}
		a := &attemptState{number: p.Attempt, seq: ev.Seq, opened: ev.Time, deadline: p.Deadline}
		a.refused, r.early = r.early, nil
		r.attempts = append(r.attempts, a)
		if r.closed == nil {
			b.open = r
		}
		for _, m := range b.pending {
			r.touch(m.index, m.seq)
		}
		r.mrefused, b.pending = append(r.mrefused, b.pending...), nil
	case audit.KindCohort:
		p, err := reportPayload[audit.Cohort](ev)
		if err != nil {
			return err
		}
		a := r.attempt(p.Attempt, ev)
		if a.cohorted {
			r.notef("seq %d: a second cohort event for attempt %d; the later one is reported", ev.Seq, p.Attempt)
		}
		a.cohort, a.cohorted = p.Members, true
	case audit.KindModelPublished:
		p, err := reportPayload[audit.ModelPublished](ev)
		if err != nil {
			return err
		}
		r.published = append(r.published, seqd[audit.ModelPublished]{ev.Seq, p})
	case audit.KindUpdateReceived:
		p, err := reportPayload[audit.UpdateReceived](ev)
		if err != nil {
			return err
		}
		a := r.attempt(p.Attempt, ev)
		addFirst(r, &a.received, index, ev, p.Attempt, "update", p)
	case audit.KindUpdateRefused:
		p, err := reportPayload[audit.UpdateRefused](ev)
		if err != nil {
			return err
		}
		f := newActord(index, ev, p)
		a := r.lastOpened()
		if a == nil {
			r.early = append(r.early, f)
			return nil
		}
		if p.Attempt != 0 && p.Attempt != a.number {
			r.notef("seq %d: the refusal names attempt %d, but attempt %d was the one open", ev.Seq, p.Attempt, a.number)
		}
		a.refused = append(a.refused, f)
	case audit.KindAggregationReport:
		p, err := reportPayload[audit.AggregationReport](ev)
		if err != nil {
			return err
		}
		var rr ruleReport
		if err := json.Unmarshal(p.Report, &rr); err != nil {
			return fmt.Errorf("audit: report: seq %d (%s): decode the rule's report: %w", ev.Seq, ev.Kind, err)
		}
		a := r.attempt(p.Attempt, ev)
		if a.agg != nil {
			r.notef("seq %d: a second aggregation report for attempt %d; the later one is reported", ev.Seq, p.Attempt)
		}
		a.agg, a.aggRule = &seqd[ruleReport]{ev.Seq, rr}, cmp.Or(p.Rule, rr.Rule)
	case audit.KindRoundFailed:
		p, err := reportPayload[audit.RoundFailed](ev)
		if err != nil {
			return err
		}
		a := r.attempt(p.Attempt, ev)
		if end, ok := a.ended(); ok {
			r.notef("seq %d: round_failed for attempt %d, which already ended at seq %d", ev.Seq, p.Attempt, end)
			return nil
		}
		// The round stays open: its next attempt forms a new cohort.
		a.failed = &seqd[audit.RoundFailed]{ev.Seq, p}
	case audit.KindRoundClosed:
		p, err := reportPayload[audit.RoundClosed](ev)
		if err != nil {
			return err
		}
		if r.closed != nil {
			r.notef("seq %d: round_closed again (first at seq %d, model %s); the first is reported", ev.Seq, r.closed.seq, r.closed.v.ModelSHA256)
			return nil
		}
		a := r.attempt(p.Attempt, ev)
		if end, ok := a.ended(); ok {
			r.notef("seq %d: round_closed for attempt %d, which failed at seq %d", ev.Seq, p.Attempt, end)
		}
		r.closed, r.closedAt = &seqd[audit.RoundClosed]{ev.Seq, p}, ev.Time
		a.closing = r.closed
		if b.open == r {
			b.open = nil
		}
	case audit.KindManifestSigned:
		p, err := reportPayload[audit.ManifestSigned](ev)
		if err != nil {
			return err
		}
		r.manifests = append(r.manifests, seqd[audit.ManifestSigned]{ev.Seq, p})
	case audit.KindSecureSession:
		p, err := reportPayload[audit.SecureSession](ev)
		if err != nil {
			return err
		}
		a := r.attempt(p.Attempt, ev)
		for _, s := range a.sessions {
			if s.v.Bucket == p.Bucket {
				r.notef("seq %d: a second secure_session for bucket %d of attempt %d; the first (seq %d) is reported", ev.Seq, p.Bucket, p.Attempt, s.seq)
				return nil
			}
		}
		if end, ok := a.ended(); ok {
			r.notef("seq %d: secure_session for bucket %d of attempt %d, which already ended at seq %d", ev.Seq, p.Bucket, p.Attempt, end)
		}
		a.sessions = append(a.sessions, seqd[audit.SecureSession]{ev.Seq, p})
	case audit.KindSecureDeclined:
		p, err := reportPayload[audit.SecureDeclined](ev)
		if err != nil {
			return err
		}
		a := r.attempt(p.Attempt, ev)
		addFirst(r, &a.declined, index, ev, p.Attempt, "decline", p)
	}
	return nil
}

// settle places what the end of the log leaves unplaced: refusals of
// rounds that never opened, and manifest refusals no round followed, go to
// the timeline.
func (b *reportBuilder) settle() {
	for n, r := range b.rounds {
		if len(r.early) == 0 {
			continue
		}
		if r.real && len(r.attempts) > 0 {
			// The round's attempts were all made up from other events.
			a := r.attempts[0]
			a.refused = append(r.early, a.refused...)
			continue
		}
		for _, f := range r.early {
			b.timeline = append(b.timeline, TimelineEntry{Seq: f.seq, Time: f.time, Kind: audit.KindUpdateRefused, Actor: f.actor,
				Detail: fmt.Sprintf("update for round %d refused before the round opened: %s: %s", n, f.v.Code, f.v.Reason)})
		}
		if !r.real {
			delete(b.rounds, n)
		}
	}
	for _, m := range b.pending {
		b.timeline = append(b.timeline, TimelineEntry{Seq: m.seq, Time: m.time, Kind: audit.KindManifestRefused, Actor: m.actor,
			Detail: manifestRefusal(m.v) + "; no round opened after it"})
	}
	slices.SortFunc(b.timeline, func(x, y TimelineEntry) int { return cmp.Compare(x.Seq, y.Seq) })
}

func manifestRefusal(m audit.ManifestRefused) string {
	s := fmt.Sprintf("refused the manifest of round %d: %s", m.ManifestRound, m.Reason)
	if m.Detail != "" {
		s += " (" + m.Detail + ")"
	}
	return s
}

// initialManifest reports on the genesis manifest.
func (b *reportBuilder) initialManifest() *InitialManifest {
	n := len(b.initial)
	if n == 0 {
		return nil
	}
	m := b.initial[n-1]
	if n > 1 {
		b.notef("%d manifests were signed for round 0; the last (seq %d) is reported", n, m.seq)
	}
	model, note := b.checkManifest(m)
	if note != "" {
		b.notes = append(b.notes, note)
	}
	return &InitialManifest{Seq: m.seq, ManifestSHA256: m.v.SHA256, ModelSHA256: model, Signature: b.signature(m.v.Envelope)}
}

// signature checks a manifest envelope with the caller's callback.
func (b *reportBuilder) signature(envelope []byte) string {
	if b.opts.VerifyManifest == nil {
		return SignatureNotChecked
	}
	if err := b.opts.VerifyManifest(envelope); err != nil {
		return SignatureInvalid + err.Error()
	}
	return SignatureVerified
}

// checkManifest reads the model digest a manifest names, and checks that
// the digest the event gives the manifest is its payload's, as package
// manifest defines it; note says what does not match. The signature check,
// not this, says whether the payload is authentic.
func (b *reportBuilder) checkManifest(m seqd[audit.ManifestSigned]) (model, note string) {
	payload, ok := manifestPayload(m.v.Envelope)
	if !ok {
		return "", ""
	}
	if sum := sha256.Sum256(payload); !strings.EqualFold(hex.EncodeToString(sum[:]), m.v.SHA256) {
		note = fmt.Sprintf("seq %d: the manifest is recorded as %s, but its payload's SHA-256 is %x", m.seq, m.v.SHA256, sum)
	}
	return statementModel(payload), note
}

// finish reports on round r; checkpoints are sorted by size.
func (b *reportBuilder) finish(r *roundState, checkpoints []audit.Checkpoint) RoundReport {
	rep := RoundReport{Round: r.number, FirstSeq: r.firstSeq, LastSeq: r.lastSeq}
	notes := slices.Clone(r.notes)
	notef := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }

	// Attempts and their outcomes.
	for i, a := range r.attempts {
		ar := AttemptReport{Attempt: a.number, Seq: a.seq, Unopened: a.unopened, Opened: a.opened, Deadline: a.deadline,
			Cohort: a.cohort, Updates: len(a.received), Refused: len(a.refused)}
		var next *attemptState
		for _, n := range r.attempts[i+1:] {
			if !n.unopened {
				next = n
				break
			}
		}
		switch {
		case a.unpublished != nil:
			ar.Outcome, ar.Reason = AttemptInterrupted, fmt.Sprintf("closed at seq %d with model %s, never published: the round opened again at seq %d",
				a.unpublished.seq, a.unpublished.v.ModelSHA256, a.reopened)
			for _, s := range b.starts {
				if s > a.unpublished.seq && s < a.reopened {
					ar.Reason += fmt.Sprintf(", after the coordinator restarted at seq %d", s)
					break
				}
			}
		case a.closing != nil:
			ar.Outcome = AttemptClosed
		case a.failed != nil && a.secure():
			// A secure attempt's count is of inputs or of buckets,
			// depending on why it failed: the sums say which.
			ar.Outcome, ar.Reason = AttemptFailed, a.failed.v.Reason
		case a.failed != nil:
			ar.Outcome, ar.Reason = AttemptFailed, fmt.Sprintf("%s (%s)", a.failed.v.Reason, reportPlural(a.failed.v.Updates, "update", "updates"))
		case a.unopened:
			ar.Outcome = AttemptNeverOpened
		case next != nil:
			ar.Outcome, ar.Reason = AttemptInterrupted, fmt.Sprintf("no outcome recorded; attempt %d opened at seq %d", next.number, next.seq)
			for _, s := range b.starts {
				if s > a.seq && s < next.seq {
					ar.Reason = fmt.Sprintf("no outcome recorded; the coordinator restarted at seq %d", s)
					break
				}
			}
		default:
			ar.Outcome = AttemptOpen
		}
		if a.secure() {
			ar.Secure = true
			for _, s := range a.sessions {
				if s.v.Error != "" {
					ar.FailedSums++
				} else {
					ar.Sums++
					ar.Inputs += len(s.v.Survivors)
				}
			}
		}
		if !a.opened.IsZero() && (rep.Opened.IsZero() || a.opened.Before(rep.Opened)) {
			rep.Opened = a.opened
		}
		rep.Attempts = append(rep.Attempts, ar)
	}

	// The final attempt: the closing one, or the one opened last.
	final := r.lastOpened()
	switch {
	case r.closed != nil:
		rep.Status, rep.Closed, rep.Recovered = RoundStatusClosed, r.closedAt, r.closed.v.Recovered
		rep.ModelSHA256 = r.closed.v.ModelSHA256
		for _, a := range r.attempts {
			if a.closing == r.closed {
				final = a
			}
		}
	case final != nil && final.failed != nil:
		rep.Status = RoundStatusNotCompleted
	default:
		rep.Status = RoundStatusOpen
	}
	if final == nil && len(r.attempts) > 0 {
		final = r.attempts[len(r.attempts)-1]
	}

	b.lineage(&rep, r, notef)

	// Contributors, the rule's verdict and the exclusions.
	for _, a := range r.attempts {
		rep.Sums = append(rep.Sums, secureSums(a, a == final)...)
	}
	if final != nil {
		rep.Cohort, rep.Rule, rep.Secure = final.cohort, final.aggRule, final.secure()
		if !final.cohorted {
			notef("Attempt %d has no cohort event: dropped participants cannot be named", final.number)
		}
		if rep.Secure {
			b.secureContributors(&rep, r, final, notef)
		} else {
			b.contributors(&rep, r, final, notef)
		}
	}
	if r.closed != nil {
		b.checkClosed(&rep, r.closed.v, notef)
	}

	// The signed manifest.
	rep.Signature = SignatureMissing
	// Manifests signed before the round opened again, or before its
	// close, are of closes that were never published.
	var cut uint64
	for _, a := range r.attempts {
		cut = max(cut, a.reopened)
	}
	if r.closed != nil {
		cut = max(cut, r.closed.seq)
	}
	manifests := slices.DeleteFunc(slices.Clone(r.manifests), func(m seqd[audit.ManifestSigned]) bool { return m.seq < cut })
	if n := len(manifests); n > 0 {
		m := manifests[n-1]
		if n > 1 {
			notef("%d manifest_signed events; the last (seq %d) is reported", n, m.seq)
		}
		if r.closed == nil {
			notef("seq %d: a manifest was signed for a round not closed", m.seq)
		}
		rep.ManifestSHA256, rep.Signature = m.v.SHA256, b.signature(m.v.Envelope)
		var note string
		if rep.ManifestModelSHA256, note = b.checkManifest(m); note != "" {
			notef("%s", note)
		}
		if rep.ManifestModelSHA256 != "" && rep.ModelSHA256 != "" && !strings.EqualFold(rep.ManifestModelSHA256, rep.ModelSHA256) {
			notef("seq %d: the manifest names model %s, but the round closed with model %s", m.seq, rep.ManifestModelSHA256, rep.ModelSHA256)
		}
	} else if r.closed != nil {
		notef("No manifest_signed event: nothing vouches for the model outside this log")
	}

	for i, c := range checkpoints {
		if c.Size > r.lastIndex {
			rep.Checkpoint = &checkpoints[i]
			break
		}
	}
	rep.Notes = notes
	return rep
}

// lineage fills in the model the round trained on and checks it is the
// one the previous round produced and signed.
func (b *reportBuilder) lineage(rep *RoundReport, r *roundState, notef func(string, ...any)) {
	for i, p := range r.published {
		if i > 0 && (p.v.ModelSHA256 != rep.ParentModelSHA256 || p.v.ManifestSHA256 != rep.ParentManifestSHA256) {
			notef("seq %d: a different model was published for the round (model %s, manifest %s) than at seq %d",
				p.seq, p.v.ModelSHA256, p.v.ManifestSHA256, r.published[0].seq)
			continue
		}
		rep.Published, rep.ParentRound = true, p.v.ModelRound
		rep.ParentModelSHA256, rep.ParentManifestSHA256 = p.v.ModelSHA256, p.v.ManifestSHA256
	}
	if !rep.Published {
		return
	}
	if rep.ParentRound+1 != r.number {
		notef("The round trained on the model of round %d, not of round %d", rep.ParentRound, r.number-1)
	}
	var model, manifest string
	var manifestRound uint64
	if prev := b.rounds[rep.ParentRound]; rep.ParentRound > 0 && prev != nil {
		if prev.closed != nil {
			model = prev.closed.v.ModelSHA256
		}
		if n := len(prev.manifests); n > 0 {
			manifest, manifestRound = prev.manifests[n-1].v.SHA256, rep.ParentRound
		}
	} else if n := len(b.initial); rep.ParentRound == 0 && n > 0 {
		m := b.initial[n-1]
		model, _ = b.checkManifest(m)
		manifest = m.v.SHA256
	}
	if model != "" && !strings.EqualFold(model, rep.ParentModelSHA256) {
		notef("The model published for this round (%s) is not the one round %d produced (%s)", rep.ParentModelSHA256, rep.ParentRound, model)
	}
	if manifest != "" && !strings.EqualFold(manifest, rep.ParentManifestSHA256) {
		notef("The manifest published for this round (%s) is not the one signed for round %d (%s)", rep.ParentManifestSHA256, manifestRound, manifest)
	}
}

// contributors fills rep's contributors and exclusions from the final
// attempt a of round r, and from the round's manifest refusals.
//
// The coordinator records an update when it arrives, before the update
// joins the round; one that arrives as the round closes is then refused,
// and that refusal recorded after the round closed. So an update counts
// when the aggregation report (or, without one, round_closed) names it;
// one recorded but not named, and refused later, is an exclusion.
func (b *reportBuilder) contributors(rep *RoundReport, r *roundState, a *attemptState, notef func(string, ...any)) {
	entries := map[string]ruleEntry{}
	var named map[string]bool // the updates the coordinator used; nil while unknown
	switch {
	case a.agg != nil:
		named = map[string]bool{}
		for _, e := range a.agg.v.Entries {
			if _, dup := entries[e.ID]; dup {
				notef("seq %d: the aggregation report has two entries for %s; the first is reported", a.agg.seq, e.ID)
				continue
			}
			entries[e.ID], named[e.ID] = e, true
		}
	case a.closing != nil:
		notef("No aggregation_report event for attempt %d: the rule's verdict is unknown", a.number)
		named = map[string]bool{}
		for _, n := range a.closing.v.Participants {
			named[n] = true
		}
	}
	end, ended := a.ended()
	refusedAfter := func(name string, seq uint64) *actord[audit.UpdateRefused] {
		for i, f := range a.refused {
			if f.actor == name && f.seq > seq {
				return &a.refused[i]
			}
		}
		return nil
	}

	contributed, explained, handled := map[string]bool{}, map[string]bool{}, map[uint64]bool{}
	for _, u := range a.received {
		if (named != nil && !named[u.actor]) || (named == nil && ended && u.seq > end) {
			if f := refusedAfter(u.actor, u.seq); f != nil {
				handled[f.seq], explained[u.actor] = true, true
				rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: u.actor, Kind: ExcludedUpdateRefused,
					Reason: fmt.Sprintf("%s: %s (its arrival was recorded at seq %d)", f.v.Code, f.v.Reason, u.seq), Seq: f.seq})
				continue
			}
			if named == nil {
				notef("seq %d: an update from %s was recorded after attempt %d ended at seq %d", u.seq, u.actor, a.number, end)
			}
		}
		c := ContributorReport{Participant: u.actor, Seq: u.seq, Samples: u.v.Samples, Norm: u.v.Norm,
			UpdateSHA256: u.v.SHA256, HoldoutCount: u.v.HoldoutCount, HoldoutAccuracy: u.v.HoldoutAccuracy}
		if e, ok := entries[u.actor]; ok {
			c.Ruled, c.Selected, c.Score, c.Weight, c.Clip, c.Bucket, c.RuleReason = true, e.Selected, e.Score, e.Weight, e.Clip, e.Bucket, e.Reason
			if !e.Selected {
				reason := cmp.Or(e.Reason, "not selected by "+rep.Rule)
				rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: u.actor, Kind: ExcludedByRule, Reason: reason, Seq: a.agg.seq})
			}
		} else if a.agg != nil {
			notef("seq %d: the update from %s is missing from the aggregation report", u.seq, u.actor)
		}
		contributed[u.actor] = true
		rep.Contributors = append(rep.Contributors, c)
	}
	slices.SortFunc(rep.Contributors, func(x, y ContributorReport) int { return strings.Compare(x.Participant, y.Participant) })
	if a.agg != nil {
		for _, e := range a.agg.v.Entries {
			if !contributed[e.ID] {
				notef("seq %d: the aggregation report has an entry for %s, whose update the log does not show accepted", a.agg.seq, e.ID)
			}
		}
	}

	for _, f := range a.refused {
		switch {
		case handled[f.seq]:
		case contributed[f.actor]:
			notef("seq %d: an update from %s was refused (%s: %s); its accepted update counts", f.seq, f.actor, f.v.Code, f.v.Reason)
		default:
			explained[f.actor] = true
			rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: f.actor, Kind: ExcludedUpdateRefused,
				Reason: fmt.Sprintf("%s: %s", f.v.Code, f.v.Reason), Seq: f.seq})
		}
	}
	for _, m := range r.mrefused {
		if contributed[m.actor] {
			continue // refused one manifest, then trained on the model it was sent
		}
		explained[m.actor] = true
		rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: m.actor, Kind: ExcludedManifestRefused,
			Reason: strings.TrimPrefix(manifestRefusal(m.v), "refused the "), Seq: m.seq})
	}
	if ended {
		for _, name := range a.cohort {
			if !contributed[name] && !explained[name] {
				reason := "no update before the deadline"
				if a.deadline != "" {
					reason += " " + a.deadline
				}
				rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: name, Kind: ExcludedDropped, Reason: reason, Seq: end})
			}
		}
	}
	slices.SortStableFunc(rep.Excluded, func(x, y ExclusionReport) int {
		return cmp.Or(strings.Compare(x.Participant, y.Participant), cmp.Compare(x.Seq, y.Seq))
	})
	if a.cohorted {
		inCohort := map[string]bool{}
		for _, n := range a.cohort {
			inCohort[n] = true
		}
		for _, c := range rep.Contributors {
			if !inCohort[c.Participant] {
				notef("seq %d: %s sent an accepted update but is not in the cohort of attempt %d", c.Seq, c.Participant, a.number)
			}
		}
	}
}

// checkClosed compares what round_closed claims with what the round's
// events show.
func (b *reportBuilder) checkClosed(rep *RoundReport, c audit.RoundClosed, notef func(string, ...any)) {
	var got, dropped []string
	in := map[string]bool{}
	for _, x := range rep.Contributors {
		got = append(got, x.Participant)
		in[x.Participant] = true
	}
	if rep.Secure {
		// round_closed lists as dropped the members that left a completed
		// session; the members of a failed one are in neither list.
		for _, s := range rep.Sums {
			if s.Final && !s.Failed() {
				for _, n := range s.Members {
					if !in[n] {
						dropped = append(dropped, n)
					}
				}
			}
		}
	} else {
		for _, n := range rep.Cohort {
			if !in[n] {
				dropped = append(dropped, n)
			}
		}
	}
	want := slices.Sorted(slices.Values(c.Participants))
	if !slices.Equal(want, got) {
		if rep.Secure {
			notef("The round_closed event lists participants %s, but the completed secure sums hold the inputs of %s", reportList(want), reportList(got))
		} else {
			notef("The round_closed event lists participants %s, but the log shows accepted updates from %s", reportList(want), reportList(got))
		}
	}
	slices.Sort(dropped)
	if wantDropped := slices.Sorted(slices.Values(c.Dropped)); !slices.Equal(wantDropped, dropped) {
		if rep.Secure {
			notef("The round_closed event lists dropped %s, but the members that left a completed secure session are %s", reportList(wantDropped), reportList(dropped))
		} else {
			notef("The round_closed event lists dropped %s, but the cohort less the accepted updates is %s", reportList(wantDropped), reportList(dropped))
		}
	}
	if c.ModelSHA256 == "" {
		notef("The round_closed event names no model digest")
	}
}

// manifestPayload returns the payload of a DSSE envelope carrying an
// in-toto statement, and false if the envelope is not one. Base64 is the
// standard padded alphabet, the only one package manifest writes.
func manifestPayload(envelope []byte) ([]byte, bool) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if json.Unmarshal(envelope, &env) != nil || env.PayloadType != "application/vnd.in-toto+json" {
		return nil, false
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, false
	}
	return payload, true
}

// statementModel returns the model digest an in-toto statement names: the
// sha256 digest of its first subject, the model in wire format (a second
// subject is the same model as a safetensors file), or "" if it names
// none, or more than those two.
func statementModel(statement []byte) string {
	var st struct {
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(statement, &st) != nil || len(st.Subject) == 0 || len(st.Subject) > 2 {
		return ""
	}
	return st.Subject[0].Digest["sha256"]
}

// roundRanges names sorted round numbers compactly: "round 4",
// "rounds 1 to 9", "rounds 1 to 3, 5, 7 to 9".
func roundRanges(numbers []uint64) string {
	var parts []string
	for i := 0; i < len(numbers); {
		j := i
		for j+1 < len(numbers) && numbers[j+1] == numbers[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatUint(numbers[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d to %d", numbers[i], numbers[j]))
		}
		i = j + 1
	}
	if len(numbers) == 1 {
		return "round " + parts[0] + " only"
	}
	return "rounds " + strings.Join(parts, ", ")
}

func reportList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
