package report

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
)

// In a secure round the coordinator never sees one participant's update:
// each bucket's members run a SecAgg+ session, the coordinator learns the
// bucket's sum, and the robust rule rules on the buckets' means. The log
// then holds no update_received events; one secure_session event per
// bucket says who was in the session, whose masked input is in the sum,
// who left it and at which phase, and the aggregation report names the
// buckets ("bucket-1", "bucket-2", …) rather than participants. This file
// turns those events into the report's contributors, exclusions and sums.

// droppedPhase is the phase a secure_session event's drop reason names:
// the coordinator writes "Phase: why", with the phase's name from
// secagg's one list of phases.
func droppedPhase(why string) (secagg.Phase, bool) {
	name, _, _ := strings.Cut(why, ":")
	return secagg.ParsePhase(name)
}

// bucketEntryID is the ID the aggregation report gives a bucket's mean.
func bucketEntryID(bucket int) string { return "bucket-" + strconv.Itoa(bucket) }

// secureSums reports the secure sessions of attempt a, by bucket, with
// the rule's verdict on each completed one; final marks the round's final
// attempt.
func secureSums(a *attemptState, final bool) []SecureSumReport {
	entries := map[string]ruleEntry{}
	if a.agg != nil {
		for _, e := range a.agg.v.Entries {
			if _, dup := entries[e.ID]; !dup {
				entries[e.ID] = e
			}
		}
	}
	var out []SecureSumReport
	for _, s := range a.sessions {
		sr := SecureSumReport{Attempt: a.number, Seq: s.seq, Bucket: s.v.Bucket, Members: s.v.Members, Survivors: s.v.Survivors,
			Dropped: s.v.Dropped, SumSHA256: s.v.SumSHA256, Weight: s.v.Weight, Error: s.v.Error, Final: final}
		if e, ok := entries[bucketEntryID(s.v.Bucket)]; ok && s.v.Error == "" {
			sr.Ruled, sr.Selected, sr.Score, sr.RuleWeight, sr.RuleReason = true, e.Selected, e.Score, e.Weight, e.Reason
		}
		out = append(out, sr)
	}
	slices.SortStableFunc(out, func(x, y SecureSumReport) int { return cmp.Compare(x.Bucket, y.Bucket) })
	return out
}

// secureContributors fills rep's contributors and exclusions from the
// final attempt a of round r when a ran with secure aggregation:
// rep.Sums must hold a's sessions already. The contributors are the
// survivors of the completed sessions, each ruled as its bucket was.
func (b *reportBuilder) secureContributors(rep *RoundReport, r *roundState, a *attemptState, notef func(string, ...any)) {
	rule := cmp.Or(rep.Rule, "the rule")
	entries := map[string]bool{}
	switch {
	case a.agg != nil:
		for _, e := range a.agg.v.Entries {
			if entries[e.ID] {
				notef("seq %d: the aggregation report has two entries for %s; the first is reported", a.agg.seq, e.ID)
			}
			entries[e.ID] = true
		}
	case a.closing != nil:
		notef("No aggregation_report event for attempt %d: the rule's verdict is unknown", a.number)
	}
	for _, u := range a.received {
		notef("seq %d: an update from %s is recorded in attempt %d, a secure attempt, which takes no plain update; it is not counted", u.seq, u.actor, a.number)
	}
	declined := map[string]actord[audit.SecureDeclined]{}
	for _, d := range a.declined {
		declined[d.actor] = d
	}

	contributed, explained, used := map[string]bool{}, map[string]bool{}, map[string]bool{}
	bucketOf := map[string]int{}
	exclude := func(name, kind, reason string, seq uint64) {
		explained[name] = true
		rep.Excluded = append(rep.Excluded, ExclusionReport{Participant: name, Kind: kind, Reason: reason, Seq: seq})
	}
	for _, s := range rep.Sums {
		if !s.Final {
			continue
		}
		for _, m := range s.Members {
			if other, dup := bucketOf[m]; dup {
				notef("seq %d: %s is a member of bucket %d and of bucket %d", s.Seq, m, other, s.Bucket)
				continue
			}
			bucketOf[m] = s.Bucket
		}
		id := bucketEntryID(s.Bucket)
		used[id] = true
		if s.Failed() {
			if entries[id] {
				notef("seq %d: the aggregation report has an entry for %s, whose secure session failed", a.agg.seq, id)
			}
			for _, m := range s.Members {
				if _, ok := declined[m]; !ok {
					exclude(m, ExcludedSessionFailed, fmt.Sprintf("the secure session of bucket %d failed: %s", s.Bucket, s.Error), s.Seq)
				}
			}
			continue
		}
		if a.agg != nil && !s.Ruled {
			notef("seq %d: the aggregation report has no entry for %s, whose secure session completed", a.agg.seq, id)
		}
		member, survived := map[string]bool{}, map[string]bool{}
		for _, m := range s.Members {
			member[m] = true
		}
		for _, m := range s.Survivors {
			survived[m] = true
			if !member[m] {
				notef("seq %d: %s is a survivor of the secure session of bucket %d, but not one of its members", s.Seq, m, s.Bucket)
			}
			if d, ok := declined[m]; ok {
				notef("seq %d: %s declined the secure round (seq %d), yet its input is in the sum of bucket %d", s.Seq, m, d.seq, s.Bucket)
			}
			if contributed[m] {
				notef("seq %d: %s is a survivor of more than one secure session; the first is reported", s.Seq, m)
				continue
			}
			contributed[m] = true
			rep.Contributors = append(rep.Contributors, ContributorReport{Participant: m, Seq: s.Seq, SecureBucket: s.Bucket,
				Ruled: s.Ruled, Selected: s.Selected, Score: s.Score, Weight: s.RuleWeight, RuleReason: s.RuleReason})
			if s.Ruled && !s.Selected {
				reason := fmt.Sprintf("excluded by %s with its bucket (bucket %d)", rule, s.Bucket)
				if s.RuleReason != "" {
					reason += ": " + s.RuleReason
				}
				exclude(m, ExcludedByRule, reason, a.agg.seq)
			}
		}
		for _, m := range slices.Sorted(maps.Keys(s.Dropped)) {
			switch _, ok := declined[m]; {
			case ok:
			case survived[m]:
				notef("seq %d: %s is both a survivor of the secure session of bucket %d and dropped from it (%s)", s.Seq, m, s.Bucket, s.Dropped[m])
			default:
				if _, ok := droppedPhase(s.Dropped[m]); !ok {
					notef("seq %d: %s left the secure session of bucket %d at %q, which names no phase of the protocol", s.Seq, m, s.Bucket, s.Dropped[m])
				}
				exclude(m, ExcludedDropped, fmt.Sprintf("left the secure session of bucket %d at %s", s.Bucket, s.Dropped[m]), s.Seq)
			}
		}
		for _, m := range s.Members {
			if _, ok := declined[m]; !ok && !survived[m] && s.Dropped[m] == "" {
				exclude(m, ExcludedDropped, fmt.Sprintf("not among the survivors of the secure session of bucket %d", s.Bucket), s.Seq)
			}
		}
	}
	if a.agg != nil {
		for _, e := range a.agg.v.Entries {
			if !used[e.ID] {
				used[e.ID] = true
				notef("seq %d: the aggregation report has an entry for %s, which names no secure session of attempt %d", a.agg.seq, e.ID, a.number)
			}
		}
	}
	slices.SortFunc(rep.Contributors, func(x, y ContributorReport) int { return strings.Compare(x.Participant, y.Participant) })

	inCohort := map[string]bool{}
	for _, n := range a.cohort {
		inCohort[n] = true
	}
	for _, d := range a.declined {
		if a.cohorted && !inCohort[d.actor] {
			notef("seq %d: %s declined attempt %d but is not in its cohort", d.seq, d.actor, a.number)
		}
		exclude(d.actor, ExcludedDeclined, cmp.Or(d.v.Reason, "no reason given"), d.seq)
	}
	for _, f := range a.refused {
		if contributed[f.actor] {
			notef("seq %d: an update from %s was refused (%s: %s); its input in a secure sum counts", f.seq, f.actor, f.v.Code, f.v.Reason)
			continue
		}
		exclude(f.actor, ExcludedUpdateRefused, fmt.Sprintf("%s: %s", f.v.Code, f.v.Reason), f.seq)
	}
	for _, m := range r.mrefused {
		if !contributed[m.actor] {
			exclude(m.actor, ExcludedManifestRefused, strings.TrimPrefix(manifestRefusal(m.v), "refused the "), m.seq)
		}
	}
	if end, ended := a.ended(); ended {
		for _, name := range a.cohort {
			if !contributed[name] && !explained[name] {
				exclude(name, ExcludedDropped, fmt.Sprintf("in no secure session of attempt %d", a.number), end)
			}
		}
	}
	slices.SortStableFunc(rep.Excluded, func(x, y ExclusionReport) int {
		return cmp.Or(strings.Compare(x.Participant, y.Participant), cmp.Compare(x.Seq, y.Seq))
	})
	if a.cohorted {
		for _, c := range rep.Contributors {
			if !inCohort[c.Participant] {
				notef("seq %d: the sum of bucket %d holds the input of %s, which is not in the cohort of attempt %d", c.Seq, c.SecureBucket, c.Participant, a.number)
			}
		}
	}
}

// secureContributions is the secure round's part of its summary.
func (r RoundReport) secureContributions() string {
	sums, selected := 0, 0
	for _, s := range r.Sums {
		if s.Final && !s.Failed() {
			sums++
			if s.Ruled && s.Selected {
				selected++
			}
		}
	}
	c := fmt.Sprintf("secure round: %d of %d cohort members contributed through %s", len(r.Contributors), len(r.Cohort),
		reportPlural(sums, "secure sum", "secure sums"))
	if r.Rule != "" {
		c += fmt.Sprintf("; %d of %d sums selected by %s", selected, sums, r.Rule)
	}
	return c
}

// secureFact says how the final attempt's sessions ended.
func (r RoundReport) secureFact() docLine {
	var buckets, failed int
	for _, s := range r.Sums {
		if s.Final {
			buckets++
			if s.Failed() {
				failed++
			}
		}
	}
	if buckets == 0 {
		return docLine{spanBad("no secure session recorded")}
	}
	l := docLine{spanText(fmt.Sprintf("%s, %d completed", reportPlural(buckets, "bucket", "buckets"), buckets-failed))}
	if failed > 0 {
		l = append(l, spanText(", "), spanBad(fmt.Sprintf("%d failed", failed)))
	}
	return append(l, spanText("; the coordinator learned each bucket's sum, never one participant's update"))
}

// secureShaped answers "which data sources shaped the model" for a secure
// round: the survivors of the sums the rule selected.
func (r RoundReport) secureShaped() docLine {
	shaped, unknown := r.shapedBy()
	var buckets []string
	for _, s := range r.Sums {
		if s.Final && s.Ruled && s.Selected {
			buckets = append(buckets, strconv.Itoa(s.Bucket))
		}
	}
	text := fmt.Sprintf("%s (%d of %d inputs to secure sums", reportList(shaped), len(shaped), len(r.Contributors))
	switch len(buckets) {
	case 0:
		text += ")"
	case 1:
		text += ", through bucket " + buckets[0] + ")"
	default:
		text += ", through buckets " + strings.Join(buckets, ", ") + ")"
	}
	value := docLine{spanText(text)}
	if len(unknown) > 0 {
		value = append(value, spanBad(fmt.Sprintf("; unknown for %s: the aggregation report does not name their buckets", reportList(unknown))))
	}
	return value
}

// secureAttemptInputs fills a secure attempt's cell of the updates column.
func secureAttemptInputs(a AttemptReport) string {
	s := fmt.Sprintf("secure: %s in %s", reportPlural(a.Inputs, "input", "inputs"), reportPlural(a.Sums, "sum", "sums"))
	if a.FailedSums > 0 {
		s += fmt.Sprintf(", %d failed", a.FailedSums)
	}
	return s
}

// sumsTable lists the round's secure sessions.
func (r RoundReport) sumsTable() docTable {
	t := docTable{Title: "Secure sums",
		Caption: "One secure aggregation session per bucket: the coordinator learned the sum of the survivors' updates, never one of them, " +
			"and the rule ruled on the buckets' means (bucket-1, bucket-2, … in its report).",
		Head: []string{"attempt", "bucket", "seq", "members", "survivors", "dropped", "input weight", "sum sha256", "selected", "score", "rule weight", "rule's note"}}
	var scored, weighted bool
	for _, s := range r.Sums {
		scored = scored || s.Score != 0
		weighted = weighted || s.RuleWeight != 0
	}
	for _, s := range r.Sums {
		var dropped []string
		for _, m := range slices.Sorted(maps.Keys(s.Dropped)) {
			dropped = append(dropped, fmt.Sprintf("%s (%s)", m, s.Dropped[m]))
		}
		weight, sum := spanText(strconv.FormatUint(s.Weight, 10)), spanDigest(s.SumSHA256)
		score, ruleWeight, note := "n/a", "n/a", s.RuleReason
		var selected docSpan
		switch {
		case s.Failed():
			weight, sum, selected, note = spanText("n/a"), spanText("n/a"), spanBad("session failed"), s.Error
		case !s.Final:
			selected = spanText(fmt.Sprintf("not used: attempt %d did not close", s.Attempt))
		case s.Ruled:
			selected = spanGood("yes")
			if !s.Selected {
				selected = spanBad("no")
			}
			if scored {
				score = reportFloat(s.Score)
			}
			if weighted {
				ruleWeight = strconv.FormatFloat(s.RuleWeight, 'f', 4, 64)
			}
		case r.Status == RoundStatusOpen:
			selected = spanText("pending")
		default:
			selected = spanBad("unknown")
		}
		t.Rows = append(t.Rows, []docLine{
			{spanText(strconv.FormatUint(uint64(s.Attempt), 10))}, {spanText(strconv.Itoa(s.Bucket))}, {spanText(strconv.FormatUint(s.Seq, 10))},
			{spanText(reportList(s.Members))}, {spanText(reportList(s.Survivors))}, {spanText(reportList(dropped))},
			{weight}, {sum}, {selected}, {spanText(score)}, {spanText(ruleWeight)}, {spanText(note)},
		})
	}
	return t
}

// secureContributorsTable lists a secure round's contributors: no
// figures of their own, only their bucket and its verdict.
func (r RoundReport) secureContributorsTable() docTable {
	t := docTable{Title: "Contributors", Empty: "None: no secure sum completed.",
		Caption: "The members whose masked input is in a completed secure sum. The coordinator never saw individual updates, only each " +
			"bucket's sum: there are no per-participant samples, norms or update digests, and the rule's verdict is the bucket's.",
		Head: []string{"participant", "bucket", "seq", "selected"}}
	for _, c := range r.Contributors {
		selected := spanBad("unknown")
		switch {
		case c.Ruled && c.Selected:
			selected = spanGood("yes")
		case c.Ruled:
			selected = spanBad("no")
		case r.Status == RoundStatusOpen:
			selected = spanText("pending")
		}
		t.Rows = append(t.Rows, []docLine{{spanText(c.Participant)}, {spanText(strconv.Itoa(c.SecureBucket))},
			{spanText(strconv.FormatUint(c.Seq, 10))}, {selected}})
	}
	return t
}
