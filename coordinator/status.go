package coordinator

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/model"
)

// The status page, in detail. GET /status on Config.MetricsListen is a
// read-only HTML page for operators (server-rendered, no script, a strict
// Content-Security-Policy, refreshed by the browser every
// StatusRefreshSeconds); GET /status.json is the same Status as JSON, for
// scripts; GET / redirects to /status. The page shows the round and phase,
// charts of the last closed rounds as inline SVG (status_charts.go),
// every enrolled participant's last status, the last StatusKeep anomaly
// flags, exclusions and secure sessions, and the audit log's head and last
// checkpoint. It holds what the audit log and the metrics already say:
// names, counts, norms and reasons, never an update's values.

// StatusKeep is how many anomaly flags, exclusions and secure sessions the
// status keeps (the most recent ones).
const StatusKeep = 50

// StatusRefreshSeconds is how often the status page asks the browser to
// reload it.
const StatusRefreshSeconds = 5

// statusInFlight bounds the status requests served at the same time; more
// are answered 503.
const statusInFlight = 4

// Participant statuses: the values of ParticipantStatus.Status.
const (
	// ParticipantEnrolled: enrolled, not heard from since the coordinator
	// started.
	ParticipantEnrolled = "enrolled"
	// ParticipantJoined: it joined (connected and called Join).
	ParticipantJoined = "joined"
	// ParticipantReady: it is waiting for the next round's cohort.
	ParticipantReady = "ready"
	// ParticipantInCohort: it is in the open round's cohort and has not
	// sent its update yet.
	ParticipantInCohort = "in cohort"
	// ParticipantUpdateReceived: its update (or, in a secure round, its
	// masked input) is in the open round.
	ParticipantUpdateReceived = "update received"
	// ParticipantIncluded: its update went into the model of its last round.
	ParticipantIncluded = "included"
	// ParticipantFlagged: its update went into the model of its last round
	// but was flagged as an anomaly (see Flags).
	ParticipantFlagged = "anomaly-flagged"
	// ParticipantExcluded: the aggregation rule left its update (or its
	// secure bucket) out of its last round's model.
	ParticipantExcluded = "excluded by the rule"
	// ParticipantDropped: it sent no update (or left its secure session)
	// before its round ended.
	ParticipantDropped = "dropped"
	// ParticipantRefused: the coordinator refused its update, or it
	// refused: to train on invalid data, to accept a manifest, to take part
	// in a secure round (see Reason).
	ParticipantRefused = "refused"
	// ParticipantSatOut: it said it sits its round out, and why (its
	// trainer failed; see Reason).
	ParticipantSatOut = "sat out"
)

// Exclusion kinds: the values of ExclusionStatus.Kind.
const (
	ExclusionByRule  = "excluded"
	ExclusionDropped = "dropped"
	ExclusionRefused = "refused"
	ExclusionSatOut  = "sat out"
)

// Status is a snapshot of a coordinator for operators: what the status
// page shows and GET /status.json returns. Lists of events are newest
// first.
type Status struct {
	Federation string    `json:"federation"`
	Time       time.Time `json:"time"`
	// Phase is stats, cohort, training, closing or finished. Closing is
	// the time after the round took its updates, while the rule runs and
	// the model is signed and committed outside the coordinator's lock;
	// the fedguard_phase metric counts it as training.
	Phase string `json:"phase"`
	// Model is the model's kind and size ("mlp, 101770 parameters";
	// "tensors: 8 tensors, 421642 parameters").
	Model string `json:"model"`
	// Statistics is "skipped" for a model without feature columns (a
	// tensor layout whose trainers read their own data: there is nothing
	// to standardize, so no statistics phase), else "pending" until the
	// federation's feature scaling is fixed and "fixed" after.
	Statistics string `json:"statistics"`
	// Round is the open round, or the last closed one when none is open.
	Round uint64 `json:"round"`
	// Open reports whether Round is being trained.
	Open bool `json:"open"`
	// Attempt is the open round's attempt, or the attempt the next round
	// will open with.
	Attempt    uint32 `json:"attempt"`
	LastClosed uint64 `json:"last_closed"`
	// FailedAttempts is how many attempts of the round after LastClosed
	// failed in a row, LastFailure why the last one did, and NextAttempt
	// how long the coordinator backs off: the next attempt opens no
	// earlier.
	FailedAttempts int       `json:"failed_attempts,omitempty"`
	LastFailure    string    `json:"last_failure,omitempty"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
	// Wedged says why the round after LastClosed cannot open (too few
	// participants left that have not declined it as already revealed, or
	// its last attempts failed identically); empty when it can.
	// SittingOut are the participants that declined it so.
	Wedged     string   `json:"wedged,omitempty"`
	SittingOut []string `json:"sitting_out,omitempty"`
	// Rounds is the number of rounds the federation trains.
	Rounds int `json:"rounds"`
	// Deadline is the open round's deadline.
	Deadline time.Time `json:"deadline,omitzero"`
	// Cohort is the open round's cohort, or the last closed round's when
	// none is open; CohortRound says which round it is.
	Cohort      []string `json:"cohort"`
	CohortRound uint64   `json:"cohort_round"`
	Rule        string   `json:"rule"`
	Secure      bool     `json:"secure"`
	// Participants are the enrolled participants, by name.
	Participants []ParticipantStatus `json:"participants"`
	Flags        []FlagStatus        `json:"flags"`
	Exclusions   []ExclusionStatus   `json:"exclusions"`
	// SecureSessions are the outcomes of the last secure sessions (secure
	// federations only).
	SecureSessions []SessionStatus `json:"secure_sessions,omitempty"`
	Audit          AuditStatus     `json:"audit"`
	// Charts are the figures of the last StatusChartRounds closed rounds
	// that the page's charts draw.
	Charts ChartStatus `json:"charts"`
	// Privacy is the federation-level DP mechanism's account (central or
	// distributed DP); nil without one.
	Privacy *PrivacyStatus `json:"privacy,omitempty"`
}

// ParticipantStatus is one enrolled participant's last status.
type ParticipantStatus struct {
	Name string `json:"name"`
	// Status is one of the Participant* constants.
	Status string `json:"status"`
	// Reason says why, for refused, dropped and excluded participants.
	Reason string `json:"reason,omitempty"`
	// Since is when Status was set (zero for ParticipantEnrolled).
	Since time.Time `json:"since,omitzero"`
	// Round is the last round whose cohort it was in (0: none since the
	// coordinator started), and Attempt that round's attempt.
	Round   uint64 `json:"round,omitempty"`
	Attempt uint32 `json:"attempt,omitempty"`
	// Flags are the anomaly kinds its update was flagged with in
	// FlagsRound, the last closed round whose cohort it was in, or its
	// data statistics (drift) in the round they were reported for; they
	// stay while it takes part in the next round.
	Flags      []string `json:"flags,omitempty"`
	FlagsRound uint64   `json:"flags_round,omitempty"`
	// Privacy is its record-level DP ledger as it reported it with its
	// last update that went into a model; nil if it reported none.
	Privacy *HospitalPrivacyStatus `json:"privacy,omitempty"`
	// DistributedPrivacy is its federation-level (distributed DP) ledger
	// as it reported it with its last masked input that went into a
	// model; nil if it reported none.
	DistributedPrivacy *HospitalPrivacyStatus `json:"distributed_privacy,omitempty"`
}

// FlagStatus is one anomaly flag (see AnomalyConfig).
type FlagStatus struct {
	Round       uint64    `json:"round"`
	Attempt     uint32    `json:"attempt"`
	Participant string    `json:"participant"`
	Kind        string    `json:"kind"`
	Value       float64   `json:"value"`
	Band        []float64 `json:"band,omitempty"`
	Time        time.Time `json:"time"`
}

// ExclusionStatus is a cohort member whose update is not in a closed
// round's model, or in a failed attempt.
type ExclusionStatus struct {
	Round       uint64 `json:"round"`
	Attempt     uint32 `json:"attempt"`
	Participant string `json:"participant"`
	// Kind is one of the Exclusion* constants.
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// SessionStatus is how one secure-aggregation session (one bucket) ended.
type SessionStatus struct {
	Round     uint64   `json:"round"`
	Attempt   uint32   `json:"attempt"`
	Bucket    int      `json:"bucket"`
	Members   []string `json:"members"`
	Survivors []string `json:"survivors,omitempty"`
	// Dropped maps members that left to the phase they left in, and why.
	Dropped map[string]string `json:"dropped,omitempty"`
	// Error is why the session failed; empty when it completed.
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// AuditStatus is the audit log's head and last checkpoint.
type AuditStatus struct {
	Origin string `json:"origin"`
	// Size is the number of events in the log.
	Size       uint64            `json:"size"`
	Checkpoint *CheckpointStatus `json:"checkpoint,omitempty"`
}

// CheckpointStatus is a signed checkpoint of the audit log.
type CheckpointStatus struct {
	Size uint64 `json:"size"`
	// Root is the tree's root hash, in base64 as in the checkpoint note.
	Root string `json:"root"`
	// Time is when this process signed it; zero for a checkpoint made
	// before the coordinator started.
	Time time.Time `json:"time,omitzero"`
}

// statusBook is the state of the status page that the coordinator does not
// keep otherwise. c.mu guards it; every list is bounded (participants by
// the enrolment, events by StatusKeep).
type statusBook struct {
	participants map[string]*ParticipantStatus
	flags        []FlagStatus
	exclusions   []ExclusionStatus
	sessions     []SessionStatus
	checkpoint   *CheckpointStatus
	// rounds and chartFlags are what the charts draw (status_charts.go),
	// bounded by StatusChartRounds and StatusChartFlags.
	rounds     []RoundPoint
	chartFlags []ChartFlag
	privacy    *PrivacyStatus
}

func newStatusBook(enrolled []string) statusBook {
	b := statusBook{participants: map[string]*ParticipantStatus{}}
	for _, n := range enrolled {
		b.participants[n] = &ParticipantStatus{Name: n, Status: ParticipantEnrolled}
	}
	return b
}

// keepLast appends v to s and keeps the last StatusKeep elements.
func keepLast[T any](s []T, v ...T) []T {
	s = append(s, v...)
	if n := len(s) - StatusKeep; n > 0 {
		s = slices.Delete(s, 0, n)
	}
	return s
}

// set sets name's status and returns it; names outside the enrolment
// are ignored (nil).
func (b *statusBook) set(name, status, reason string, now time.Time) *ParticipantStatus {
	p := b.participants[name]
	if p == nil {
		return nil
	}
	p.Status, p.Reason, p.Since = status, reason, now
	return p
}

// noteStatusLocked sets name's status; c.mu must be held.
func (c *Coordinator) noteStatusLocked(name, status, reason string) {
	c.status.set(name, status, reason, c.opts.now())
}

// noteStatus is noteStatusLocked for callers that do not hold c.mu.
func (c *Coordinator) noteStatus(name, status, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteStatusLocked(name, status, reason)
}

// noteReadyLocked marks name as waiting for a cohort, unless it is in the
// open round's cohort (where its status says how far it got).
func (c *Coordinator) noteReadyLocked(name string) {
	if c.phase == phaseTraining && c.round.inCohort(name) {
		return
	}
	c.noteStatusLocked(name, ParticipantReady, "")
}

// noteCohortLocked marks the members of the round r just opened.
func (c *Coordinator) noteCohortLocked(r *openRound) {
	now := c.opts.now()
	for _, m := range r.cohort {
		if p := c.status.set(m, ParticipantInCohort, "", now); p != nil {
			p.Round, p.Attempt = r.number, r.attempt
		}
	}
}

// noteSessionsLocked records how the secure sessions of the open round
// ended, and what that means for their members.
func (c *Coordinator) noteSessionsLocked(rec RoundRecord) {
	now := c.opts.now()
	for _, b := range rec.Secure {
		s := SessionStatus{
			Round: rec.Round, Attempt: rec.Attempt, Bucket: b.Bucket, Members: slices.Clone(b.Members),
			Survivors: slices.Clone(b.Survivors), Dropped: maps.Clone(b.Dropped), Error: b.Error, Time: now,
		}
		c.status.sessions = keepLast(c.status.sessions, s)
		for _, m := range b.Members {
			switch {
			case b.Error != "":
				c.status.set(m, ParticipantRefused, fmt.Sprintf("secure session of bucket %d failed: %s", b.Bucket, b.Error), now)
			case slices.Contains(b.Survivors, m):
				c.status.set(m, ParticipantUpdateReceived, "", now)
			default:
				why := cmp.Or(b.Dropped[m], "not among the survivors")
				c.status.set(m, ParticipantDropped, fmt.Sprintf("left the secure session of bucket %d at %s", b.Bucket, why), now)
			}
		}
	}
}

// noteFailedLocked records a failed attempt of the open round: members
// with no update are dropped, the others' updates are discarded.
func (c *Coordinator) noteFailedLocked(r *openRound, reason string) {
	now := c.opts.now()
	for _, m := range r.cohort {
		p := c.status.participants[m]
		if p == nil {
			continue
		}
		switch p.Status {
		case ParticipantInCohort:
			p.Status, p.Since = ParticipantDropped, now
			p.Reason = fmt.Sprintf("no update before attempt %d failed: %s", r.attempt, reason)
			c.status.exclusions = keepLast(c.status.exclusions, ExclusionStatus{
				Round: r.number, Attempt: r.attempt, Participant: m, Kind: ExclusionDropped, Reason: p.Reason, Time: now,
			})
		case ParticipantUpdateReceived:
			p.Reason = fmt.Sprintf("attempt %d failed (%s): the update is discarded and the round retried", r.attempt, reason)
		}
	}
}

// noteClosedLocked records a closed round: each cohort member's outcome,
// the round's exclusions and its anomaly flags.
func (c *Coordinator) noteClosedLocked(rec RoundRecord, flags []audit.AnomalyFlagged) {
	now := rec.Closed
	for _, m := range rec.Cohort {
		if p := c.status.participants[m]; p != nil {
			if p.FlagsRound != rec.Round {
				p.Flags = nil // drift flags of this round's data stay
			}
			p.FlagsRound = rec.Round
		}
	}
	selected := map[string]reportEntry{}
	for _, e := range rec.Report.Entries {
		selected[e.ID] = reportEntry{e.Selected, e.Reason}
	}
	var excl []ExclusionStatus
	for _, p := range rec.Participants {
		key := p.Name
		if p.Bucket > 0 {
			key = bucketID(p.Bucket - 1)
		}
		if e, ok := selected[key]; ok && !e.selected {
			reason := "excluded by " + c.ruleName()
			if e.reason != "" {
				reason += ": " + e.reason
			}
			c.status.set(p.Name, ParticipantExcluded, reason, now)
			excl = append(excl, ExclusionStatus{Round: rec.Round, Attempt: rec.Attempt, Participant: p.Name, Kind: ExclusionByRule, Reason: reason, Time: now})
			continue
		}
		if ps := c.status.set(p.Name, ParticipantIncluded, "", now); ps != nil && len(ps.Flags) > 0 {
			ps.Status = ParticipantFlagged
		}
	}
	satOut := map[string]string{}
	for _, s := range rec.SatOut {
		satOut[s.Name] = s.Reason
	}
	for _, n := range rec.Dropped {
		if why, ok := satOut[n]; ok {
			c.status.set(n, ParticipantSatOut, why, now)
			excl = append(excl, ExclusionStatus{Round: rec.Round, Attempt: rec.Attempt, Participant: n, Kind: ExclusionSatOut, Reason: "sat out: " + why, Time: now})
			continue
		}
		reason := "no update before the deadline"
		if ps := c.status.participants[n]; ps != nil && ps.Status == ParticipantDropped && ps.Reason != "" {
			reason = ps.Reason // a secure session said more
		}
		c.status.set(n, ParticipantDropped, reason, now)
		excl = append(excl, ExclusionStatus{Round: rec.Round, Attempt: rec.Attempt, Participant: n, Kind: ExclusionDropped, Reason: reason, Time: now})
	}
	for _, r := range rec.Refused {
		c.status.set(r.Name, ParticipantRefused, r.Reason, now)
		excl = append(excl, ExclusionStatus{Round: rec.Round, Attempt: rec.Attempt, Participant: r.Name, Kind: ExclusionRefused, Reason: r.Reason, Time: now})
	}
	for _, f := range flags {
		if p := c.status.participants[f.Participant]; p != nil {
			p.Flags = append(p.Flags, f.Kind)
			if p.Status == ParticipantIncluded {
				p.Status = ParticipantFlagged
			}
		}
		c.status.flags = keepLast(c.status.flags, FlagStatus{
			Round: rec.Round, Attempt: f.Attempt, Participant: f.Participant, Kind: f.Kind, Value: f.Value, Band: slices.Clone(f.Band), Time: now,
		})
	}
	c.status.exclusions = keepLast(c.status.exclusions, excl...)
	var marks []ChartFlag
	for _, f := range flags {
		marks = append(marks, ChartFlag{Round: rec.Round, Participant: f.Participant, Kind: f.Kind})
	}
	c.status.noteChart(c.roundPoint(rec), marks...)
}

// noteDrift records a drift flag raised on a participant's data
// statistics for round, when its report arrived: in the recent flags,
// and among the participant's flags of that round.
func (c *Coordinator) noteDrift(round uint64, f audit.AnomalyFlagged) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.now()
	if p := c.status.participants[f.Participant]; p != nil {
		if p.FlagsRound != round {
			p.Flags, p.FlagsRound = nil, round
		}
		if !slices.Contains(p.Flags, f.Kind) {
			p.Flags = append(p.Flags, f.Kind)
		}
	}
	c.status.flags = keepLast(c.status.flags, FlagStatus{
		Round: round, Attempt: f.Attempt, Participant: f.Participant, Kind: f.Kind, Value: f.Value, Band: slices.Clone(f.Band), Time: now,
	})
	c.status.noteChartFlags(ChartFlag{Round: round, Participant: f.Participant, Kind: f.Kind})
}

// reportEntry is what the status needs of an aggregation report entry.
type reportEntry struct {
	selected bool
	reason   string
}

// noteCheckpointLocked records the checkpoint the coordinator just signed.
func (c *Coordinator) noteCheckpointLocked(cp audit.Checkpoint) {
	c.status.checkpoint = checkpointStatus(cp, c.opts.now())
}

func checkpointStatus(cp audit.Checkpoint, at time.Time) *CheckpointStatus {
	return &CheckpointStatus{Size: cp.Size, Root: base64.StdEncoding.EncodeToString(cp.Root[:]), Time: at}
}

// StatisticsSkipped is Status.Statistics for a federation whose model has
// no feature columns.
const StatisticsSkipped = "skipped"

// describeSpec names a model's kind and size for the status page.
func describeSpec(s model.Spec) string {
	if s.Kind == model.Tensors {
		return fmt.Sprintf("tensors: %d tensors, %d parameters", len(s.Tensors), s.NumParams())
	}
	return fmt.Sprintf("%s, %d parameters", s.Kind, s.NumParams())
}

// Status returns a snapshot of the coordinator's state for operators (see
// the status page above). It is safe to call at any time.
func (c *Coordinator) Status() Status {
	size := c.audit.Size()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{
		Federation: c.cfg.Federation,
		Time:       c.opts.now(),
		Phase:      c.phase.String(),
		Model:      describeSpec(c.spec),
		Statistics: "fixed",
		Round:      c.lastRound,
		Attempt:    c.attempt,
		LastClosed: c.lastRound,
		Rounds:     c.cfg.Training.Rounds,
		Cohort:     slices.Clone(c.lastCohort),
		Rule:       c.ruleName(),
		Secure:     c.cfg.Secure,
		Audit:      AuditStatus{Origin: c.audit.Origin(), Size: size},
	}
	switch {
	case c.spec.Features == 0:
		s.Statistics = StatisticsSkipped
	case c.scaling == nil:
		s.Statistics = "pending"
	}
	if s.Cohort != nil {
		s.CohortRound = c.lastRound
	}
	s.FailedAttempts, s.LastFailure, s.Wedged = c.retry.failures, c.retry.reason, c.retry.wedged
	if c.retry.at.After(s.Time) {
		s.NextAttempt = c.retry.at
	}
	if len(c.retry.sitOut) > 0 {
		s.SittingOut = slices.Sorted(maps.Keys(c.retry.sitOut))
	}
	if v := c.status.privacy; v != nil {
		cp := *v
		s.Privacy = &cp
	}
	if r := c.round; r != nil {
		s.Round, s.Open, s.Attempt, s.Deadline = r.number, true, r.attempt, r.deadline
		if r.closing {
			s.Phase = "closing"
		}
		s.Cohort, s.CohortRound = slices.Clone(r.cohort), r.number
	}
	if s.Cohort == nil {
		s.Cohort = []string{}
	}
	s.Participants = make([]ParticipantStatus, 0, len(c.status.participants))
	for _, n := range slices.Sorted(maps.Keys(c.status.participants)) {
		p := *c.status.participants[n]
		p.Flags = slices.Clone(p.Flags)
		if p.Privacy != nil {
			v := *p.Privacy
			p.Privacy = &v
		}
		if p.DistributedPrivacy != nil {
			v := *p.DistributedPrivacy
			p.DistributedPrivacy = &v
		}
		s.Participants = append(s.Participants, p)
	}
	s.Flags = newestFirst(c.status.flags, func(f FlagStatus) FlagStatus { f.Band = slices.Clone(f.Band); return f })
	s.Exclusions = newestFirst(c.status.exclusions, func(e ExclusionStatus) ExclusionStatus { return e })
	if c.cfg.Secure {
		s.SecureSessions = newestFirst(c.status.sessions, func(v SessionStatus) SessionStatus {
			v.Members, v.Survivors, v.Dropped = slices.Clone(v.Members), slices.Clone(v.Survivors), maps.Clone(v.Dropped)
			return v
		})
	}
	if cp := c.status.checkpoint; cp != nil {
		cp := *cp
		s.Audit.Checkpoint = &cp
	}
	s.Charts = c.status.charts()
	return s
}

// newestFirst copies s in reverse order, with copy making each element's
// own copy; the result is never nil.
func newestFirst[T any](s []T, copy func(T) T) []T {
	out := make([]T, 0, len(s))
	for i := len(s) - 1; i >= 0; i-- {
		out = append(out, copy(s[i]))
	}
	return out
}

// statusCSS is the page's only style; the Content-Security-Policy allows
// exactly it, by hash.
const statusCSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f2}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0}dt{font-weight:600}
.meta{color:#555}.none{color:#777;font-style:italic}.mono{font-family:ui-monospace,monospace}
.anomaly-flagged,.excluded-by-the-rule,.refused,.flag{background:#fde2e1}.dropped{background:#fff3cd}
.charts{display:flex;flex-wrap:wrap;gap:.5em 1.5em;align-items:flex-start}svg.chart{max-width:100%;height:auto}
`

// statusHTML is the page. Every value goes through html/template's
// contextual escaping.
const statusHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>fedguard status: {{.S.Federation}}</title>
<style>` + statusCSS + `</style>
</head>
<body>
<h1>fedguard federation <span id="federation">{{.S.Federation}}</span></h1>
<p class="meta">Read-only status at {{tm .S.Time}}; this page reloads every {{.Refresh}} s. Also as <a href="/status.json">JSON</a> and <a href="/metrics">metrics</a>.</p>

<h2>Round</h2>
<dl id="round">
<dt>Phase</dt><dd id="phase">{{.S.Phase}}</dd>
<dt>Model</dt><dd id="model">{{.S.Model}}</dd>
<dt>Statistics</dt><dd id="statistics">{{if eq .S.Statistics "skipped"}}skipped: the model has no feature columns (a tensor layout whose trainers read their own data), so there is no feature scaling to fix{{else}}{{.S.Statistics}}{{end}}</dd>
<dt>Round</dt><dd id="round-number">{{if .S.Open}}round {{.S.Round}} (open){{else if .S.Round}}round {{.S.Round}} (closed){{else}}none closed yet{{end}}</dd>
<dt>Attempt</dt><dd id="attempt">{{.S.Attempt}}</dd>
{{if .S.Wedged}}<dt>Wedged</dt><dd id="wedged" class="refused">{{.S.Wedged}}</dd>
{{end}}{{if .S.FailedAttempts}}<dt>Failed attempts</dt><dd id="failed-attempts">{{.S.FailedAttempts}} in a row; the last: {{.S.LastFailure}}{{if not .S.NextAttempt.IsZero}}; the next opens no earlier than {{tm .S.NextAttempt}}{{end}}</dd>
{{end}}{{if .S.SittingOut}}<dt>Sitting out</dt><dd id="sitting-out">{{join .S.SittingOut}} (already revealed their shares for this round's model)</dd>
{{end}}<dt>Rounds closed</dt><dd>{{.S.LastClosed}} of {{.S.Rounds}}</dd>
{{if .S.Open}}<dt>Deadline</dt><dd>{{tm .S.Deadline}}</dd>
{{end}}<dt>Cohort</dt><dd id="cohort">{{if .S.Cohort}}{{join .S.Cohort}} (round {{.S.CohortRound}}){{else}}<span class="none">none yet</span>{{end}}</dd>
<dt>Aggregation</dt><dd>{{.S.Rule}}{{if .S.Secure}}, secure aggregation (the coordinator sees only sums){{end}}</dd>
{{with .S.Privacy}}<dt>Privacy</dt><dd id="privacy"{{if .Exhausted}} class="refused"{{end}}>{{.Mechanism}}: ε = {{num .Epsilon}} at δ = {{num .Delta}} after round {{.Round}}{{if .Budget}}, budget {{num .Budget}} ({{num .Remaining}} left){{end}}{{if .Exhausted}}; {{.Exhausted}}{{end}}</dd>
{{end}}</dl>

<h2>Training</h2>
{{if .C.Global}}<div class="charts" id="charts-global">
{{range .C.Global}}{{.}}
{{end}}</div>{{else}}<p id="charts-global" class="none">No round has closed yet.</p>{{end}}
{{if .C.Norms}}<h2>Update norms</h2>
<p class="meta">Each participant's update norm in the last {{.ChartRounds}} closed rounds; the shaded area is the norm band the anomaly flags use, dashed lines are its flags.</p>
<div class="charts" id="charts-norms">
{{range .C.Norms}}{{.}}
{{end}}</div>
{{end}}
<h2>Participants</h2>
<table id="participants">
<thead><tr><th>participant</th><th>status</th><th>reason</th><th>last round</th><th>anomaly flags</th><th>record-level ε (its claim)</th><th>federation-level ε (its claim)</th><th>since</th></tr></thead>
<tbody>
{{range .S.Participants}}<tr class="{{class .Status}}"><td>{{.Name}}</td><td>{{.Status}}</td><td>{{.Reason}}</td><td>{{if .Round}}{{.Round}} (attempt {{.Attempt}}){{end}}</td><td>{{if .Flags}}{{join .Flags}} (round {{.FlagsRound}}){{end}}</td><td>{{with .Privacy}}{{num .Epsilon}} at δ = {{num .Delta}} (round {{.Round}}){{if .Budget}} of {{num .Budget}}, {{num .Remaining}} left{{end}}{{end}}</td><td>{{with .DistributedPrivacy}}{{num .Epsilon}} at δ = {{num .Delta}} after {{.Releases}} releases (round {{.Round}}){{if .Budget}} of {{num .Budget}}, {{num .Remaining}} left{{end}}{{end}}</td><td>{{tm .Since}}</td></tr>
{{end}}</tbody>
</table>

<h2>Recent anomaly flags</h2>
{{if .S.Flags}}<table id="flags">
<thead><tr><th>round</th><th>attempt</th><th>participant</th><th>kind</th><th>value</th><th>band</th><th>time</th></tr></thead>
<tbody>
{{range .S.Flags}}<tr class="flag"><td>{{.Round}}</td><td>{{.Attempt}}</td><td>{{.Participant}}</td><td>{{.Kind}}</td><td>{{num .Value}}</td><td>{{band .Band}}</td><td>{{tm .Time}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p id="flags" class="none">No anomaly flags.</p>{{end}}

<h2>Recent exclusions</h2>
{{if .S.Exclusions}}<table id="exclusions">
<thead><tr><th>round</th><th>attempt</th><th>participant</th><th>kind</th><th>reason</th><th>time</th></tr></thead>
<tbody>
{{range .S.Exclusions}}<tr><td>{{.Round}}</td><td>{{.Attempt}}</td><td>{{.Participant}}</td><td>{{.Kind}}</td><td>{{.Reason}}</td><td>{{tm .Time}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p id="exclusions" class="none">No exclusions.</p>{{end}}
{{if .S.Secure}}
<h2>Secure sessions</h2>
{{if .S.SecureSessions}}<table id="secure-sessions">
<thead><tr><th>round</th><th>attempt</th><th>bucket</th><th>members</th><th>survivors</th><th>dropped</th><th>outcome</th></tr></thead>
<tbody>
{{range .S.SecureSessions}}<tr{{if .Error}} class="refused"{{end}}><td>{{.Round}}</td><td>{{.Attempt}}</td><td>{{.Bucket}}</td><td>{{join .Members}}</td><td>{{len .Survivors}}</td><td>{{range $n, $why := .Dropped}}{{$n}} ({{$why}}) {{end}}</td><td>{{if .Error}}failed: {{.Error}}{{else}}completed{{end}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p id="secure-sessions" class="none">No secure session has ended yet.</p>{{end}}
{{end}}
<h2>Audit log</h2>
<dl id="audit">
<dt>Origin</dt><dd class="mono">{{.S.Audit.Origin}}</dd>
<dt>Head</dt><dd id="audit-size">{{.S.Audit.Size}} events</dd>
{{with .S.Audit.Checkpoint}}<dt>Last checkpoint</dt><dd id="checkpoint">tree size {{.Size}}, root <span class="mono">{{.Root}}</span>, {{if .Time.IsZero}}signed before this start{{else}}signed {{tm .Time}}{{end}}</dd>
{{else}}<dt>Last checkpoint</dt><dd id="checkpoint" class="none">none yet</dd>
{{end}}</dl>
</body>
</html>
`

var (
	statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
		"tm": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"join": func(s []string) string { return strings.Join(s, ", ") },
		"num":  func(v float64) string { return fmt.Sprintf("%.4g", v) },
		"band": func(b []float64) string {
			if len(b) != 2 {
				return ""
			}
			return fmt.Sprintf("[%.4g, %.4g]", b[0], b[1])
		},
		"class": func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	}).Parse(statusHTML))

	// statusCSP allows the page's one style block and nothing else: no
	// script, no image, no frame, no form, no plugin.
	statusCSP = func() string {
		sum := sha256.Sum256([]byte(statusCSS))
		return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
			"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	}()
)

// statusHandler serves /status and /status.json from a Coordinator.
type statusHandler struct {
	status func() Status
	slots  chan struct{}
}

func newStatusHandler(status func() Status) *statusHandler {
	return &statusHandler{status: status, slots: make(chan struct{}, statusInFlight)}
}

// secureHeaders are set on every status response.
func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// acquire takes a slot, or answers 503 and returns false.
func (h *statusHandler) acquire(w http.ResponseWriter) bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many status requests", http.StatusServiceUnavailable)
		return false
	}
}

func (h *statusHandler) page(w http.ResponseWriter, _ *http.Request) {
	secureHeaders(w.Header())
	if !h.acquire(w) {
		return
	}
	defer func() { <-h.slots }()
	var b strings.Builder
	s := h.status()
	err := statusTemplate.Execute(&b, struct {
		S           Status
		C           statusChartSet
		Refresh     int
		ChartRounds int
	}{s, statusCharts(s), StatusRefreshSeconds, StatusChartRounds})
	if err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (h *statusHandler) json(w http.ResponseWriter, _ *http.Request) {
	secureHeaders(w.Header())
	if !h.acquire(w) {
		return
	}
	defer func() { <-h.slots }()
	b, err := json.MarshalIndent(h.status(), "", "  ")
	if err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// register adds /, /status and /status.json to mux.
func (h *statusHandler) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", h.page)
	mux.HandleFunc("GET /status.json", h.json)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
}
