package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
)

// go test ./audit/report -run TestReportGolden -update rewrites the
// golden files (internal/fedtest/golden).

// reportLog builds a log event by event: consecutive sequence numbers from
// 0, one minute apart.
type reportLog struct {
	t      *testing.T
	events []audit.Event
}

var reportEpoch = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func newReportLog(t *testing.T) *reportLog { return &reportLog{t: t} }

// add appends an event whose payload is p marshalled, or p itself when it
// is a json.RawMessage (to write payloads no struct produces).
func (l *reportLog) add(kind, actor string, round uint64, p any) *reportLog {
	l.t.Helper()
	raw, ok := p.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(p); err != nil {
			l.t.Fatalf("marshal %s payload: %v", kind, err)
		}
	}
	seq := uint64(len(l.events))
	l.events = append(l.events, audit.Event{Seq: seq, Kind: kind, Actor: actor, Round: round,
		Time: reportEpoch.Add(time.Duration(seq) * time.Minute), Payload: raw})
	return l
}

// reportSum is a stand-in digest: the SHA-256 of a label.
func reportSum(label string) string {
	h := sha256.Sum256([]byte(label))
	return hex.EncodeToString(h[:])
}

func reportModelSum(round uint64) string { return reportSum(fmt.Sprintf("model %d", round)) }
func reportUpdateSum(name string, round uint64) string {
	return reportSum(fmt.Sprintf("update %s %d", name, round))
}

// reportStatement is an in-toto statement naming model, in the shape of
// package manifest's.
func reportStatement(model string) []byte {
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"model.bin","digest":{"sha256":%q}}],"predicateType":"https://fedguard.dev/round-manifest/v1","predicate":{}}`, model)
}

// reportManifestSum is the digest of the manifest of round's model: the
// SHA-256 of its statement, as package manifest names manifests.
func reportManifestSum(round uint64) string {
	h := sha256.Sum256(reportStatement(reportModelSum(round)))
	return hex.EncodeToString(h[:])
}

// reportManifest is a manifest_signed payload for model: a DSSE envelope
// around its statement, sig standing in for the signatures reportVerify
// checks.
func reportManifest(model, sig string) audit.ManifestSigned {
	st := reportStatement(model)
	env, err := json.Marshal(map[string]any{
		"payloadType": "application/vnd.in-toto+json",
		"payload":     base64.StdEncoding.EncodeToString(st),
		"signatures":  []map[string]string{{"keyid": "coordinator", "sig": sig}},
	})
	if err != nil {
		panic(err)
	}
	h := sha256.Sum256(st)
	return audit.ManifestSigned{SHA256: hex.EncodeToString(h[:]), Envelope: env}
}

// reportVerify accepts envelopes whose signature reads "valid", standing in
// for the Ed25519 and ML-DSA checks.
func reportVerify(env []byte) error {
	var e struct {
		Signatures []struct {
			Sig string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return err
	}
	if len(e.Signatures) == 0 || e.Signatures[0].Sig != "valid" {
		return errors.New("ed25519: signature does not verify")
	}
	return nil
}

func (l *reportLog) start() *reportLog {
	return l.add(audit.KindCoordinatorStarted, audit.ActorCoordinator, 0, audit.CoordinatorStarted{Version: "v0.9.0", Federation: "lung-xray"})
}

func (l *reportLog) open(round uint64, attempt uint32, cohort ...string) *reportLog {
	l.add(audit.KindRoundOpened, audit.ActorCoordinator, round, audit.RoundOpened{Attempt: attempt,
		Deadline: reportEpoch.Add(time.Duration(len(l.events)+30) * time.Minute).Format(time.RFC3339)})
	l.add(audit.KindCohort, audit.ActorCoordinator, round, audit.Cohort{Attempt: attempt, Members: cohort})
	return l.add(audit.KindModelPublished, audit.ActorCoordinator, round, audit.ModelPublished{ModelRound: round - 1,
		ModelSHA256: reportModelSum(round - 1), ManifestSHA256: reportManifestSum(round - 1)})
}

func (l *reportLog) update(round uint64, attempt uint32, name string) *reportLog {
	return l.add(audit.KindUpdateReceived, name, round, audit.UpdateReceived{Attempt: attempt, SHA256: reportUpdateSum(name, round),
		Norm: 1.25, Samples: 1000, HoldoutCount: 200, HoldoutAccuracy: 0.875})
}

func (l *reportLog) refuse(round uint64, attempt uint32, name, code, reason string) *reportLog {
	return l.add(audit.KindUpdateRefused, name, round, audit.UpdateRefused{Attempt: attempt, Code: code, Reason: reason})
}

// aggregate records a rule's report; entries are "name" (selected) or
// "name!" (not selected), scored 10, 20, 30, … in order, with the reasons
// the aggregation package writes.
func (l *reportLog) aggregate(round uint64, attempt uint32, rule string, weighted bool, entries ...string) *reportLog {
	l.t.Helper()
	rep := aggregation.Report{Rule: rule}
	kept, highest := 0, 0.0
	for i, e := range entries {
		if !strings.HasSuffix(e, "!") {
			kept, highest = kept+1, float64(10*(i+1))
		}
	}
	for i, e := range entries {
		id, out := strings.CutSuffix(e, "!")
		en := aggregation.Entry{ID: id, Selected: !out}
		if weighted && !out {
			en.Weight = 1 / float64(kept)
		}
		if rule != "fedavg" {
			en.Score = float64(10 * (i + 1))
		}
		switch {
		case rule == "krum" && out:
			en.Reason = fmt.Sprintf("krum: score %.6g not the lowest (%.6g)", en.Score, highest)
		case rule == "krum":
			en.Reason = fmt.Sprintf("krum: score %.6g is the lowest", en.Score)
		case rule == "multi-krum" && out:
			en.Reason = fmt.Sprintf("multi-krum: score %.6g not among the %d lowest (highest kept %.6g)", en.Score, kept, highest)
		case rule == "multi-krum":
			en.Reason = fmt.Sprintf("multi-krum: score %.6g among the %d lowest", en.Score, kept)
		}
		rep.Entries = append(rep.Entries, en)
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.add(audit.KindAggregationReport, audit.ActorCoordinator, round, audit.AggregationReport{Attempt: attempt, Rule: rule, Report: raw})
}

func (l *reportLog) fail(round uint64, attempt uint32, reason string, updates int) *reportLog {
	return l.add(audit.KindRoundFailed, audit.ActorCoordinator, round, audit.RoundFailed{Attempt: attempt, Reason: reason, Updates: updates})
}

func (l *reportLog) close(round uint64, attempt uint32, participants, dropped []string) *reportLog {
	return l.add(audit.KindRoundClosed, audit.ActorCoordinator, round, audit.RoundClosed{Attempt: attempt, ModelSHA256: reportModelSum(round),
		Participants: participants, Dropped: dropped})
}

func (l *reportLog) sign(round uint64, sig string) *reportLog {
	return l.add(audit.KindManifestSigned, audit.ActorCoordinator, round, reportManifest(reportModelSum(round), sig))
}

// clean is one round in which a, b and c all contribute under fedavg.
func (l *reportLog) clean(round uint64) *reportLog {
	l.open(round, 0, "a", "b", "c").update(round, 0, "a").update(round, 0, "b").update(round, 0, "c")
	return l.aggregate(round, 0, "fedavg", true, "a", "b", "c").close(round, 0, []string{"a", "b", "c"}, nil).sign(round, "valid")
}

// reportRoundSummary is the part of a RoundReport the table tests compare, in
// words so that a want reads like the report.
type reportRoundSummary struct {
	Round        uint64
	Status       string
	Attempts     []string
	Contributors []string
	Excluded     []string
	Model        string
	Signature    string
	Notes        []string
}

func summarizeRound(r RoundReport) reportRoundSummary {
	s := reportRoundSummary{Round: r.Round, Status: r.Status, Model: r.ModelSHA256, Signature: r.Signature, Notes: r.Notes}
	for _, a := range r.Attempts {
		s.Attempts = append(s.Attempts, strings.TrimSpace(fmt.Sprintf("%d %s %s", a.Attempt, a.Outcome, a.Reason)))
	}
	for _, c := range r.Contributors {
		verdict := "unruled"
		if c.Ruled {
			verdict = map[bool]string{true: "selected", false: "not selected"}[c.Selected]
		}
		s.Contributors = append(s.Contributors, c.Participant+" "+verdict)
	}
	for _, e := range r.Excluded {
		s.Excluded = append(s.Excluded, fmt.Sprintf("%s %s: %s (seq %d)", e.Participant, e.Kind, e.Reason, e.Seq))
	}
	return s
}

func TestBuildReportRounds(t *testing.T) {
	abc := []string{"a", "b", "c"}
	tests := []struct {
		name  string
		build func(l *reportLog)
		opts  Options
		want  []reportRoundSummary
	}{
		{
			name:  "clean round",
			build: func(l *reportLog) { l.start().clean(1) },
			opts:  Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c selected"}, Model: reportModelSum(1), Signature: SignatureVerified}},
		},
		{
			name: "failed attempt then success",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b", "c").update(1, 0, "a").fail(1, 0, "1 update, at least 2 needed", 1)
				l.open(1, 1, "b", "c").update(1, 1, "b").update(1, 1, "c").aggregate(1, 1, "fedavg", true, "b", "c")
				l.close(1, 1, []string{"b", "c"}, nil).sign(1, "valid")
			},
			opts: Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed,
				Attempts:     []string{"0 failed 1 update, at least 2 needed (1 update)", "1 closed"},
				Contributors: []string{"b selected", "c selected"}, Model: reportModelSum(1), Signature: SignatureVerified}},
		},
		{
			name: "every attempt failed",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "a").fail(1, 0, "deadline passed", 1)
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusNotCompleted, Attempts: []string{"0 failed deadline passed (1 update)"},
				Contributors: []string{"a unruled"}, Excluded: []string{"b dropped: no update before the deadline 2025-03-01T09:31:00Z (seq 5)"},
				Signature: SignatureMissing}},
		},
		{
			// Issue 12 item 6: the coordinator recorded the close of round
			// 1 and its manifest, crashed before committing the round,
			// and ran round 1 again. The report showed the unpublished
			// first close as the round's model, the real attempt as open
			// and the real manifest as "NOT the round's model".
			name: "round run again after a crash before its commit",
			build: func(l *reportLog) {
				unpublished := reportSum("unpublished model 1")
				l.start().open(1, 0, abc...).update(1, 0, "a").update(1, 0, "b").update(1, 0, "c").aggregate(1, 0, "fedavg", true, "a", "b", "c")
				l.add(audit.KindRoundClosed, audit.ActorCoordinator, 1, audit.RoundClosed{Attempt: 0, ModelSHA256: unpublished, Participants: abc})
				l.add(audit.KindManifestSigned, audit.ActorCoordinator, 1, reportManifest(unpublished, "valid"))
				l.start().open(1, 0, "a", "b").update(1, 0, "a").update(1, 0, "b").aggregate(1, 0, "fedavg", true, "a", "b")
				l.close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			opts: Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed,
				Attempts: []string{
					"0 interrupted closed at seq 8 with model " + reportSum("unpublished model 1") + ", never published: the round opened again at seq 11, after the coordinator restarted at seq 10",
					"0 closed",
				},
				Contributors: []string{"a selected", "b selected"}, Model: reportModelSum(1), Signature: SignatureVerified}},
		},
		{
			name: "dropped participant",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b", "c").update(1, 0, "a").update(1, 0, "c").aggregate(1, 0, "fedavg", true, "a", "c")
				l.close(1, 0, []string{"a", "c"}, []string{"b"}).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "c selected"},
				Excluded:     []string{"b dropped: no update before the deadline 2025-03-01T09:31:00Z (seq 7)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "refused update",
			build: func(l *reportLog) {
				l.start().open(1, 0, abc...).update(1, 0, "a").refuse(1, 0, "b", "InvalidArgument", "update has 10 values, the model 12").update(1, 0, "c")
				l.aggregate(1, 0, "fedavg", true, "a", "c").close(1, 0, []string{"a", "c"}, []string{"b"}).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "c selected"},
				Excluded:     []string{"b update refused: InvalidArgument: update has 10 values, the model 12 (seq 5)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "a refused duplicate does not exclude a contributor",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "a").refuse(1, 0, "a", "AlreadyExists", "update already received").update(1, 0, "b")
				l.aggregate(1, 0, "fedavg", true, "a", "b").close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"seq 5: an update from a was refused (AlreadyExists: update already received); its accepted update counts"}}},
		},
		{
			name: "krum leaves one out",
			build: func(l *reportLog) {
				l.start().open(1, 0, abc...).update(1, 0, "a").update(1, 0, "b").update(1, 0, "c")
				l.aggregate(1, 0, "krum", true, "a", "b!", "c!").close(1, 0, abc, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b not selected", "c not selected"},
				Excluded: []string{"b excluded by rule: krum: score 20 not the lowest (10) (seq 7)",
					"c excluded by rule: krum: score 30 not the lowest (10) (seq 7)"},
				Model: reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "manifest refused",
			build: func(l *reportLog) {
				l.start().open(1, 0, abc...)
				l.add(audit.KindManifestRefused, "c", 1, audit.ManifestRefused{ManifestRound: 0, Reason: "rollback", Detail: "round 0 after round 4"})
				l.update(1, 0, "a").update(1, 0, "b").aggregate(1, 0, "fedavg", true, "a", "b").close(1, 0, []string{"a", "b"}, []string{"c"}).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"},
				Excluded:     []string{"c manifest refused: manifest of round 0: rollback (round 0 after round 4) (seq 4)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "manifest fails verification",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a"}, nil).sign(1, "forged")
			},
			opts: Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Model: reportModelSum(1), Signature: "INVALID: ed25519: signature does not verify"}},
		},
		{
			name:  "no callback",
			build: func(l *reportLog) { l.start().clean(1) },
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "manifest missing",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a"}, nil)
			},
			opts: Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Model: reportModelSum(1), Signature: SignatureMissing,
				Notes: []string{"No manifest_signed event: nothing vouches for the model outside this log"}}},
		},
		{
			name: "manifest names another model",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a"}, nil)
				l.add(audit.KindManifestSigned, audit.ActorCoordinator, 1, reportManifest(reportModelSum(99), "valid"))
			},
			opts: Options{VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Model: reportModelSum(1), Signature: SignatureVerified,
				Notes: []string{fmt.Sprintf("seq 7: the manifest names model %s, but the round closed with model %s", reportModelSum(99), reportModelSum(1))}}},
		},
		{
			name: "open round",
			build: func(l *reportLog) {
				l.start().clean(1).open(2, 0, abc...).update(2, 0, "b").refuse(2, 0, "c", "InvalidArgument", "norm 9e+09 is not finite")
			},
			opts: Options{Round: 2},
			want: []reportRoundSummary{{Round: 2, Status: RoundStatusOpen, Attempts: []string{"0 open"}, Contributors: []string{"b unruled"},
				Excluded:  []string{"c update refused: InvalidArgument: norm 9e+09 is not finite (seq 14)"},
				Signature: SignatureMissing}},
		},
		{
			name: "round filter",
			build: func(l *reportLog) {
				l.start().clean(1).clean(2).clean(3)
			},
			opts: Options{Round: 2, VerifyManifest: reportVerify},
			want: []reportRoundSummary{{Round: 2, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c selected"}, Model: reportModelSum(2), Signature: SignatureVerified}},
		},
		{
			name: "restart interrupts an attempt",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "a").start()
				l.open(1, 0, "a", "b").update(1, 0, "a").update(1, 0, "b").aggregate(1, 0, "fedavg", true, "a", "b")
				l.close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed,
				Attempts:     []string{"0 interrupted no outcome recorded; the coordinator restarted at seq 5", "0 closed"},
				Contributors: []string{"a selected", "b selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "round_closed disagrees with the updates",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Excluded: []string{"b dropped: no update before the deadline 2025-03-01T09:31:00Z (seq 6)"},
				Model:    reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"The round_closed event lists participants a, b, but the log shows accepted updates from a",
					"The round_closed event lists dropped none, but the cohort less the accepted updates is b"}}},
		},
		{
			name: "published model is not the previous round's",
			build: func(l *reportLog) {
				l.start().clean(1)
				l.add(audit.KindRoundOpened, audit.ActorCoordinator, 2, audit.RoundOpened{Attempt: 0, Deadline: "2025-03-01T11:00:00Z"})
				l.add(audit.KindCohort, audit.ActorCoordinator, 2, audit.Cohort{Attempt: 0, Members: []string{"a"}})
				l.add(audit.KindModelPublished, audit.ActorCoordinator, 2, audit.ModelPublished{ModelRound: 1, ModelSHA256: reportSum("swapped"), ManifestSHA256: reportManifestSum(1)})
				l.update(2, 0, "a").aggregate(2, 0, "fedavg", true, "a").close(2, 0, []string{"a"}, nil).sign(2, "valid")
			},
			opts: Options{Round: 2},
			want: []reportRoundSummary{{Round: 2, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Model: reportModelSum(2), Signature: SignatureNotChecked,
				Notes: []string{fmt.Sprintf("The model published for this round (%s) is not the one round 1 produced (%s)", reportSum("swapped"), reportModelSum(1))}}},
		},
		{
			name: "update for an attempt never opened",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").update(1, 3, "z").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a"}, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed", "3 never opened"}, Contributors: []string{"a selected"},
				Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"seq 4: update_received names attempt 3, which no round_opened event opened"}}},
		},
		{
			// The coordinator records an update on arrival; one that
			// arrives as the round closes is refused afterwards, with no
			// attempt. It did not shape the model.
			name: "update recorded as the round closed, then refused",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").fail(1, 0, "no update", 0)
				l.open(1, 1, "a", "b").update(1, 1, "a").update(1, 1, "b").aggregate(1, 1, "fedavg", true, "a")
				l.close(1, 1, []string{"a"}, []string{"b"})
				l.refuse(1, 0, "b", "FailedPrecondition", "round 1 is closed")
				l.sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 failed no update (0 updates)", "1 closed"},
				Contributors: []string{"a selected"},
				Excluded:     []string{"b update refused: FailedPrecondition: round 1 is closed (its arrival was recorded at seq 9) (seq 12)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "update recorded after the round closed, then refused",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a")
				l.close(1, 0, []string{"a"}, []string{"b"}).update(1, 0, "b")
				l.refuse(1, 0, "b", "FailedPrecondition", "round 1 is closed").sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected"},
				Excluded:     []string{"b update refused: FailedPrecondition: round 1 is closed (its arrival was recorded at seq 7) (seq 8)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			name: "refusal of an outsider during a retry",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").fail(1, 0, "no update", 0).open(1, 1, "a").update(1, 1, "a")
				l.refuse(1, 0, "z", "FailedPrecondition", "z is not in the cohort")
				l.aggregate(1, 1, "fedavg", true, "a").close(1, 1, []string{"a"}, nil).sign(1, "valid")
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 failed no update (0 updates)", "1 closed"},
				Contributors: []string{"a selected"},
				Excluded:     []string{"z update refused: FailedPrecondition: z is not in the cohort (seq 9)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked}},
		},
		{
			// The coordinator records a manifest refusal under the last
			// closed round; it excludes the participant from the next.
			name: "manifest refused between rounds",
			build: func(l *reportLog) {
				l.start().clean(1)
				l.add(audit.KindManifestRefused, "c", 1, audit.ManifestRefused{ManifestRound: 1, Reason: "fork"})
				l.open(2, 0, "a", "b").update(2, 0, "a").update(2, 0, "b").aggregate(2, 0, "fedavg", true, "a", "b")
				l.close(2, 0, []string{"a", "b"}, nil).sign(2, "valid")
			},
			opts: Options{Round: 2},
			want: []reportRoundSummary{{Round: 2, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"},
				Excluded:     []string{"c manifest refused: manifest of round 1: fork (seq 10)"},
				Model:        reportModelSum(2), Signature: SignatureNotChecked}},
		},
		{
			name: "manifest digest is not its payload's",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").update(1, 0, "a").aggregate(1, 0, "fedavg", true, "a").close(1, 0, []string{"a"}, nil)
				m := reportManifest(reportModelSum(1), "valid")
				m.SHA256 = reportSum("another manifest")
				l.add(audit.KindManifestSigned, audit.ActorCoordinator, 1, m)
			},
			want: []reportRoundSummary{{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"}, Contributors: []string{"a selected"},
				Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{fmt.Sprintf("seq 7: the manifest is recorded as %s, but its payload's SHA-256 is %s", reportSum("another manifest"), reportManifestSum(1))}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newReportLog(t)
			tt.build(l)
			rep, err := Build(l.events, tt.opts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			var got []reportRoundSummary
			for _, r := range rep.Rounds {
				got = append(got, summarizeRound(r))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Build rounds mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildReportRoundNotFound(t *testing.T) {
	l := newReportLog(t)
	l.start().clean(1).clean(2)
	_, err := Build(l.events, Options{Round: 7})
	if !errors.Is(err, ErrRoundNotFound) {
		t.Fatalf("Build(Round: 7) = %v, want ErrRoundNotFound", err)
	}
	if want := "round 7 requested, the log holds rounds 1 to 2"; !strings.Contains(err.Error(), want) {
		t.Errorf("Build(Round: 7) = %q, want it to say %q", err, want)
	}
	for _, tt := range []struct {
		in   []uint64
		want string
	}{
		{[]uint64{4}, "round 4 only"},
		{[]uint64{1, 2, 3}, "rounds 1 to 3"},
		{[]uint64{1, 3}, "rounds 1, 3"},
		{[]uint64{1, 2, 3, 5, 7, 8, 9}, "rounds 1 to 3, 5, 7 to 9"},
	} {
		if got := roundRanges(tt.in); got != tt.want {
			t.Errorf("roundRanges(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := Build(newReportLog(t).start().events, Options{Round: 1}); !errors.Is(err, ErrRoundNotFound) {
		t.Errorf("Build(no rounds, Round: 1) = %v, want ErrRoundNotFound", err)
	}
}

// TestBuildReportUnknownKind checks that events of kinds this reader does
// not know, even with payloads it could not parse, change nothing.
func TestBuildReportUnknownKind(t *testing.T) {
	l := newReportLog(t)
	l.start().clean(1)
	base := mustBuild(t, l.events, Options{})
	l.add("secagg_unmasked", audit.ActorCoordinator, 1, json.RawMessage(`not json`))
	l.add("federation_renamed", audit.ActorCoordinator, 0, json.RawMessage(`{"federation":"other"}`))
	got, err := Build(l.events, Options{})
	if err != nil {
		t.Fatalf("Build with unknown kinds: %v", err)
	}
	if diff := cmp.Diff(base.Rounds, got.Rounds); diff != "" {
		t.Errorf("unknown kinds changed the rounds (-without +with):\n%s", diff)
	}
	if diff := cmp.Diff(base.Timeline, got.Timeline); diff != "" {
		t.Errorf("unknown kinds changed the timeline (-without +with):\n%s", diff)
	}
	if got.Federation != "lung-xray" {
		t.Errorf("Federation = %q, want lung-xray", got.Federation)
	}
}

// TestBuildReportOutsideRounds checks what belongs to no round: the
// genesis manifest, refusals naming a round that never opened, and a
// manifest refusal no round followed.
func TestBuildReportOutsideRounds(t *testing.T) {
	l := newReportLog(t)
	l.start()
	l.add(audit.KindManifestSigned, audit.ActorCoordinator, 0, reportManifest(reportModelSum(0), "valid"))
	l.refuse(7, 0, "z", "FailedPrecondition", "round 7 is not open")
	l.clean(1)
	l.add(audit.KindManifestRefused, "c", 1, audit.ManifestRefused{ManifestRound: 1, Reason: "rollback"})
	rep := mustBuild(t, l.events, Options{VerifyManifest: reportVerify})
	wantInitial := &InitialManifest{Seq: 1, ManifestSHA256: reportManifestSum(0), ModelSHA256: reportModelSum(0), Signature: SignatureVerified}
	if diff := cmp.Diff(wantInitial, rep.Initial); diff != "" {
		t.Errorf("Initial mismatch (-want +got):\n%s", diff)
	}
	if got := len(rep.Rounds); got != 1 || rep.RoundCount != 1 {
		t.Errorf("Build made %d rounds (RoundCount %d), want 1: a refusal must not invent round 7", got, rep.RoundCount)
	}
	var got []string
	for _, e := range rep.Timeline {
		if e.Kind == audit.KindUpdateRefused || e.Kind == audit.KindManifestRefused {
			got = append(got, fmt.Sprintf("%d %s %s: %s", e.Seq, e.Kind, e.Actor, e.Detail))
		}
	}
	want := []string{
		"2 update_refused z: update for round 7 refused before the round opened: FailedPrecondition: round 7 is not open",
		"12 manifest_refused c: refused the manifest of round 1: rollback; no round opened after it",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refusals in the timeline (-want +got):\n%s", diff)
	}
	if _, err := Build(l.events, Options{Round: 7}); !errors.Is(err, ErrRoundNotFound) {
		t.Errorf("Build(Round: 7) = %v, want ErrRoundNotFound", err)
	}
	if notes := rep.Rounds[0].Notes; len(notes) != 0 {
		t.Errorf("round 1 notes = %q, want none: it trained on the genesis model", notes)
	}

	// A round 1 that trained on another model than the genesis one.
	l = newReportLog(t)
	l.start()
	l.add(audit.KindManifestSigned, audit.ActorCoordinator, 0, reportManifest(reportSum("another initial model"), "valid"))
	l.clean(1)
	rep = mustBuild(t, l.events, Options{})
	wantNotes := []string{
		fmt.Sprintf("The model published for this round (%s) is not the one round 0 produced (%s)", reportModelSum(0), reportSum("another initial model")),
		fmt.Sprintf("The manifest published for this round (%s) is not the one signed for round 0 (%s)", reportManifestSum(0), rep.Initial.ManifestSHA256),
	}
	if diff := cmp.Diff(wantNotes, rep.Rounds[0].Notes); diff != "" {
		t.Errorf("round 1 notes (-want +got):\n%s", diff)
	}
}

// TestBuildReportDataValidation: every hospital's data check is in the
// timeline, with what it found (as counts) and whether the hospital trained.
func TestBuildReportDataValidation(t *testing.T) {
	l := newReportLog(t)
	l.start()
	l.add(audit.KindDataValidation, "hospital-a", 1, audit.DataValidation{Attempt: 0, Mode: "enforce", Training: true, Rows: 60, Columns: 32})
	l.add(audit.KindDataValidation, "hospital-b", 1, audit.DataValidation{Attempt: 0, Mode: "enforce", Training: false, Rows: 60, Columns: 33,
		Findings: []audit.ValidationFinding{{Rule: "pii", Severity: "error", Count: 60, Total: 60}, {Column: "id", Rule: "pii", Severity: "warn"}}})
	rep := mustBuild(t, l.events, Options{})
	var got []string
	for _, e := range rep.Timeline {
		if e.Kind == audit.KindDataValidation {
			got = append(got, e.Actor+": "+e.Detail)
		}
	}
	l.add(audit.KindAnomalyFlagged, audit.ActorCoordinator, 2, audit.AnomalyFlagged{Attempt: 1, Participant: "hospital-d", Kind: "norm", Value: 50, Band: []float64{0.7, 1.4}})
	rep = mustBuild(t, l.events, Options{})
	last := rep.Timeline[len(rep.Timeline)-1]
	if want := "round 2 attempt 1: hospital-d's update flagged (norm): value 50 outside [0.7, 1.4]"; last.Kind != audit.KindAnomalyFlagged || last.Detail != want {
		t.Errorf("last timeline entry %s %q, want the anomaly flag %q", last.Kind, last.Detail, want)
	}
	want := []string{
		"hospital-a: data checked (enforce mode, attempt 0): 60 rows, 32 columns, 0 errors, 0 warnings; trained",
		"hospital-b: data checked (enforce mode, attempt 0): 60 rows, 33 columns, 1 errors, 1 warnings; sat the round out: error pii on a column the expectations do not name (60 of 60); warn pii on id (0 of 0)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("data checks in the timeline (-want +got):\n%s", diff)
	}
}

// TestBuildReportBadPayload breaks the payload of every known kind in turn.
func TestBuildReportBadPayload(t *testing.T) {
	kinds := []string{audit.KindCoordinatorStarted, audit.KindCoordinatorStopped, audit.KindConfigLoaded, audit.KindEnrolment,
		audit.KindCertificateIssued, audit.KindCertificateAccepted, audit.KindCertificateRevoked, audit.KindConnectionRefused, audit.KindStatsReceived, audit.KindScalingFixed,
		audit.KindRoundOpened, audit.KindCohort, audit.KindModelPublished, audit.KindUpdateReceived, audit.KindUpdateRefused, audit.KindAggregationReport,
		audit.KindRoundFailed, audit.KindRoundClosed, audit.KindManifestSigned, audit.KindManifestRefused, audit.KindSecureSession, audit.KindSecureDeclined, audit.KindDataValidation, audit.KindAnomalyFlagged,
		audit.KindCallRefused, audit.KindEventsSuppressed}
	for _, kind := range kinds {
		for _, payload := range []string{`{"attempt":`, `["an array"]`, ``} {
			t.Run(kind+" "+payload, func(t *testing.T) {
				l := newReportLog(t)
				l.start().clean(1)
				l.add(kind, audit.ActorCoordinator, 1, json.RawMessage(payload))
				l.sign(1, "valid")
				_, err := Build(l.events, Options{})
				want := fmt.Sprintf("seq 10 (%s)", kind)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Build with %s payload %q = %v, want an error naming %q", kind, payload, err, want)
				}
			})
		}
	}
	t.Run("rule report", func(t *testing.T) {
		l := newReportLog(t)
		l.start().open(1, 0, "a").update(1, 0, "a")
		l.add(audit.KindAggregationReport, audit.ActorCoordinator, 1, audit.AggregationReport{Attempt: 0, Rule: "krum", Report: json.RawMessage(`{"entries":{}}`)})
		_, err := Build(l.events, Options{})
		var typeErr *json.UnmarshalTypeError
		if err == nil || !strings.Contains(err.Error(), "seq 5 (aggregation_report)") || !errors.As(err, &typeErr) {
			t.Fatalf("Build with a bad rule report = %v, want a JSON type error naming seq 5", err)
		}
	})
}

func TestBuildReportSequenceGap(t *testing.T) {
	l := newReportLog(t)
	l.start().clean(1)
	events := slices.Delete(slices.Clone(l.events), 4, 5)
	_, err := Build(events, Options{})
	if err == nil || !strings.Contains(err.Error(), "seq 5 follows seq 3") {
		t.Fatalf("Build with seq 4 missing = %v, want an error naming seq 5 after seq 3", err)
	}
}

// TestBuildReportCheckpoint checks the boundary: a tree of size n covers
// the events at positions 0 to n-1.
func TestBuildReportCheckpoint(t *testing.T) {
	l := newReportLog(t)
	l.start().clean(1).clean(2)
	// Round 1 ends with the event at position 9, round 2 at 18.
	tests := []struct {
		sizes []uint64
		want  []uint64 // the covering size per round, 0 for none
	}{
		{nil, []uint64{0, 0}},
		{[]uint64{9}, []uint64{0, 0}},
		{[]uint64{10}, []uint64{10, 0}},
		{[]uint64{19, 10}, []uint64{10, 19}},
		{[]uint64{18, 25}, []uint64{18, 25}},
	}
	for _, tt := range tests {
		var cps []audit.Checkpoint
		for _, s := range tt.sizes {
			c := audit.Checkpoint{Size: s}
			c.Root[0] = byte(s)
			cps = append(cps, c)
		}
		rep := mustBuild(t, l.events, Options{Checkpoints: cps})
		var got []uint64
		for _, r := range rep.Rounds {
			var size uint64
			if r.Checkpoint != nil {
				size = r.Checkpoint.Size
				if r.Checkpoint.Root[0] != byte(size) {
					t.Errorf("checkpoints %v: round %d covered by size %d with the root of size %d", tt.sizes, r.Round, size, r.Checkpoint.Root[0])
				}
			}
			got = append(got, size)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("checkpoints %v: covering sizes %v, want %v", tt.sizes, got, tt.want)
		}
	}
}

// TestBuildReportContributorFigures checks that each figure of an update
// and of the rule's entry lands in its own field.
func TestBuildReportContributorFigures(t *testing.T) {
	l := newReportLog(t)
	l.start().open(1, 0, "a")
	l.add(audit.KindUpdateReceived, "a", 1, audit.UpdateReceived{Attempt: 0, SHA256: reportUpdateSum("a", 1), Norm: 2.5, Samples: 321, HoldoutCount: 40, HoldoutAccuracy: 0.9})
	rule, err := json.Marshal(aggregation.Report{Rule: "bucket(krum)", Entries: []aggregation.Entry{
		{ID: "a", Weight: 0.5, Score: 7, Selected: true, Reason: "bucket 1 of 1", Clip: 0.25, Bucket: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	l.add(audit.KindAggregationReport, audit.ActorCoordinator, 1, audit.AggregationReport{Attempt: 0, Report: rule})
	l.close(1, 0, []string{"a"}, nil)
	rep := mustBuild(t, l.events, Options{})
	want := []ContributorReport{{Participant: "a", Seq: 4, Samples: 321, Norm: 2.5, UpdateSHA256: reportUpdateSum("a", 1), HoldoutCount: 40,
		HoldoutAccuracy: 0.9, Ruled: true, Selected: true, Score: 7, Weight: 0.5, Clip: 0.25, Bucket: 1, RuleReason: "bucket 1 of 1"}}
	if diff := cmp.Diff(want, rep.Rounds[0].Contributors); diff != "" {
		t.Errorf("Contributors mismatch (-want +got):\n%s", diff)
	}
	if got := rep.Rounds[0].Rule; got != "bucket(krum)" {
		t.Errorf("Rule = %q, want the rule report's own name when the event has none", got)
	}
}

// TestRuleReportMirrorsAggregation pins ruleEntry to aggregation.Entry: a
// field added there must be added here, and both must read the same JSON.
func TestRuleReportMirrorsAggregation(t *testing.T) {
	tags := func(typ reflect.Type) []string {
		var out []string
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out = append(out, name)
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff(tags(reflect.TypeFor[aggregation.Entry]()), tags(reflect.TypeFor[ruleEntry]())); diff != "" {
		t.Errorf("ruleEntry fields differ from aggregation.Entry (-aggregation +audit):\n%s", diff)
	}
	if diff := cmp.Diff(tags(reflect.TypeFor[aggregation.Report]()), tags(reflect.TypeFor[ruleReport]())); diff != "" {
		t.Errorf("ruleReport fields differ from aggregation.Report (-aggregation +audit):\n%s", diff)
	}
	in := aggregation.Report{Rule: "multi-krum", Entries: []aggregation.Entry{
		{ID: "a", Weight: 0.5, Score: 3.5, Selected: true, Reason: "r", Clip: 0.75, Bucket: 2}, {ID: "b"}}}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got ruleReport
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := ruleReport{Rule: "multi-krum", Entries: []ruleEntry{
		{ID: "a", Weight: 0.5, Score: 3.5, Selected: true, Reason: "r", Clip: 0.75, Bucket: 2}, {ID: "b"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded rule report mismatch (-want +got):\n%s", diff)
	}
}

// reportGoldenLog is the log of the golden files: setup events; a round in
// which Multi-Krum leaves two updates out; a round with a failed attempt,
// a refused manifest, a refused update and a drop; and a round still open.
func reportGoldenLog(t *testing.T) *reportLog {
	l := newReportLog(t)
	names := []string{"st-marys", "northgate", "riverside", "lakeview", "eastfield", "westbrook"}
	l.start()
	l.add(audit.KindConfigLoaded, audit.ActorCoordinator, 0, audit.ConfigLoaded{SHA256: reportSum("config"), MinParticipants: 3, Rounds: 10,
		Aggregation: json.RawMessage(`{"rule": "multi-krum", "f": 0, "m": 3}`)})
	l.add(audit.KindManifestSigned, audit.ActorCoordinator, 0, reportManifest(reportModelSum(0), "valid"))
	l.add(audit.KindEnrolment, audit.ActorCoordinator, 0, audit.Enrolment{Enrolled: names, Added: names})
	for _, n := range names {
		l.add(audit.KindCertificateAccepted, n, 0, audit.CertificateAccepted{Participant: n, Serial: "0x" + reportSum(n)[:8], SHA256: reportSum("cert " + n),
			NotBefore: "2025-01-01T00:00:00Z", NotAfter: "2026-01-01T00:00:00Z"})
	}
	l.add(audit.KindConnectionRefused, "", 0, audit.ConnectionRefused{Reason: "unknown_authority", Remote: "203.0.113.9:51000", Suppressed: 4})
	l.add(audit.KindConnectionRefused, "", 0, audit.ConnectionRefused{Reason: "revoked", Remote: "198.51.100.7:40222", Serial: "0x1f"})
	for _, n := range names {
		l.add(audit.KindStatsReceived, n, 0, audit.StatsReceived{Rows: 1200, Features: 14, Aggregates: []string{"count", "sum", "sum_squares"}})
	}
	l.add(audit.KindScalingFixed, audit.ActorCoordinator, 0, audit.ScalingFixed{Participants: names, Rows: 7200, SHA256: reportSum("scaling")})

	// Round 1: five hospitals contribute; Multi-Krum keeps three.
	l.open(1, 0, names[:5]...)
	for _, n := range names[:5] {
		l.update(1, 0, n)
	}
	l.aggregate(1, 0, "multi-krum", true, "st-marys", "northgate", "riverside", "lakeview!", "eastfield!")
	l.close(1, 0, names[:5], nil).sign(1, "valid")

	// Round 2: attempt 0 fails; in attempt 1 riverside refuses the
	// manifest, lakeview's update is refused and eastfield drops out.
	l.open(2, 0, names...).update(2, 0, "st-marys").fail(2, 0, "1 update before the deadline, 3 needed", 1)
	l.open(2, 1, names...)
	l.add(audit.KindManifestRefused, "riverside", 2, audit.ManifestRefused{ManifestRound: 1, Reason: "parent_mismatch", Detail: "parent digest differs from the last accepted manifest"})
	l.update(2, 1, "st-marys").refuse(2, 1, "lakeview", "InvalidArgument", "update norm 41.7 exceeds the bound 10")
	l.add(audit.KindUpdateReceived, "northgate", 2, audit.UpdateReceived{Attempt: 1, SHA256: reportUpdateSum("northgate", 2), Norm: 9.5, Samples: 50000})
	l.update(2, 1, "westbrook")
	l.aggregate(2, 1, "multi-krum", true, "st-marys", "northgate", "westbrook")
	l.close(2, 1, []string{"st-marys", "northgate", "westbrook"}, []string{"eastfield", "lakeview", "riverside"}).sign(2, "valid")
	l.add(audit.KindCertificateRevoked, audit.ActorCoordinator, 0, audit.CertificateRevoked{Serial: "0x" + reportSum("lakeview")[:8], RevokedAt: "2025-03-01T10:30:00Z"})

	// Round 3: open at the end of the log.
	l.open(3, 0, "st-marys", "northgate", "westbrook").update(3, 0, "northgate")
	return l
}

// reportTamperedLog is the log of the tampered golden files: a forged manifest
// signature, a model swapped between rounds, a round_closed event naming
// a participant whose update the log does not hold, and an event placed
// in round 0.
func reportTamperedLog(t *testing.T) *reportLog {
	l := newReportLog(t)
	l.start()
	l.open(1, 0, "st-marys", "northgate").update(1, 0, "st-marys").update(1, 0, "northgate")
	l.aggregate(1, 0, "median", false, "st-marys", "northgate")
	l.close(1, 0, []string{"st-marys", "northgate"}, nil).sign(1, "forged")
	l.add(audit.KindRoundOpened, audit.ActorCoordinator, 2, audit.RoundOpened{Attempt: 0, Deadline: "2025-03-01T09:40:00Z"})
	l.add(audit.KindCohort, audit.ActorCoordinator, 2, audit.Cohort{Attempt: 0, Members: []string{"st-marys", "northgate"}})
	l.add(audit.KindModelPublished, audit.ActorCoordinator, 2, audit.ModelPublished{ModelRound: 1, ModelSHA256: reportSum("swapped"), ManifestSHA256: reportManifestSum(1)})
	l.update(2, 0, "st-marys")
	l.add(audit.KindUpdateReceived, "northgate", 0, audit.UpdateReceived{Attempt: 0, SHA256: reportUpdateSum("northgate", 2)})
	l.aggregate(2, 0, "median", false, "st-marys")
	l.close(2, 0, []string{"st-marys", "northgate"}, nil).sign(2, "valid")
	return l
}

// reportGoldenCheckpoint is a checkpoint of the given size with a made-up root.
func reportGoldenCheckpoint(size uint64) audit.Checkpoint {
	c := audit.Checkpoint{Origin: "coordinator.lung-xray.example/audit", Size: size}
	c.Root = sha256.Sum256(fmt.Appendf(nil, "root %d", size))
	return c
}

func TestReportGolden(t *testing.T) {
	for _, g := range []struct {
		name string
		log  func(*testing.T) *reportLog
		opts Options
	}{
		{"report", reportGoldenLog, Options{
			VerifyManifest: reportVerify,
			LogStatus:      "verified: 51 events, hash chain intact, 1 signed checkpoint, the last covering 39 events (12 later events not yet covered)",
			Origin:         "coordinator.lung-xray.example/audit",
			Checkpoints:    []audit.Checkpoint{reportGoldenCheckpoint(39)},
		}},
		{"report_tampered", reportTamperedLog, Options{VerifyManifest: reportVerify}},
		{"report_secure", reportSecureLog, Options{VerifyManifest: reportVerify, LogStatus: "verified: 29 events, hash chain intact",
			Origin: "coordinator.lung-xray.example/audit"}},
	} {
		rep, err := Build(g.log(t).events, g.opts)
		if err != nil {
			t.Fatalf("Build(%s): %v", g.name, err)
		}
		for _, f := range []struct {
			ext   string
			write func(*bytes.Buffer) error
		}{
			{".md.golden", func(b *bytes.Buffer) error { return rep.WriteMarkdown(b) }},
			{".html.golden", func(b *bytes.Buffer) error { return rep.WriteHTML(b) }},
		} {
			t.Run(g.name+f.ext, func(t *testing.T) {
				var got bytes.Buffer
				if err := f.write(&got); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join("testdata", g.name+f.ext)
				golden.Check(t, path, got.Bytes())
				// The same log renders to the same bytes: nothing depends
				// on the clock or on map order.
				var again bytes.Buffer
				if err := f.write(&again); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), again.Bytes()) {
					t.Errorf("%s: two renderings of one report differ", path)
				}
			})
		}
	}
}

// reportHostileLog puts markup into every free-text field a participant or a
// compromised coordinator controls.
func reportHostileLog(t *testing.T) *reportLog {
	const evil = `<script>alert("x")</script>`
	l := newReportLog(t)
	l.add(audit.KindCoordinatorStarted, audit.ActorCoordinator, 0, audit.CoordinatorStarted{Version: "v1", Federation: "fed " + evil})
	l.open(1, 0, evil, "a|b", "ok")
	l.add(audit.KindUpdateReceived, evil, 1, audit.UpdateReceived{Attempt: 0, SHA256: evil + "|`", Norm: 1, Samples: 1})
	l.update(1, 0, "ok")
	l.refuse(1, 0, "a|b", "InvalidArgument", "bad | row\n| injected | cell |")
	l.aggregate(1, 0, "krum", true, "ok", evil+"!")
	l.close(1, 0, []string{evil, "ok"}, []string{"a|b"})
	return l
}

func TestReportHTMLEscapes(t *testing.T) {
	rep := mustBuild(t, reportHostileLog(t).events, Options{})
	html := writeHTML(t, rep)
	if strings.Contains(strings.ToLower(html), "<script") {
		t.Errorf("WriteHTML let a <script> element through:\n%s", html)
	}
	if want := "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"; strings.Count(html, want) < 4 {
		t.Errorf("WriteHTML shows the hostile name escaped %d times, want it in the title, contributors, exclusions and cohort", strings.Count(html, want))
	}
}

func TestReportMarkdownEscapes(t *testing.T) {
	rep := mustBuild(t, reportHostileLog(t).events, Options{})
	md := writeMarkdown(t, rep)
	if !strings.Contains(md, `\<script\>alert("x")\</script\>`) {
		t.Errorf("WriteMarkdown does not show the hostile name escaped:\n%s", md)
	}
	checkMarkdownEscaped(t, md)
}

// checkMarkdownEscaped checks a Markdown report that holds hostile text:
// outside code spans, no '<' is unescaped (inside one, markup is shown,
// not interpreted), and every table row keeps its header's number of
// cells, whatever pipes and line breaks the log holds.
func checkMarkdownEscaped(t *testing.T, md string) {
	t.Helper()
	cells := 0
	for i, ln := range strings.Split(md, "\n") {
		if strings.Contains(strings.ReplaceAll(stripCodeSpans(ln), `\<`, ""), "<") {
			t.Errorf("line %d has an unescaped '<': %s", i+1, ln)
		}
		if !strings.HasPrefix(ln, "|") {
			cells = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(ln, `\|`, ""), "|")
		if cells == 0 {
			cells = n
		} else if n != cells {
			t.Errorf("table row has %d cell separators, its header %d: %s", n, cells, ln)
		}
	}
}

// stripCodeSpans removes the code spans of a Markdown line, as mdCode
// writes them.
func stripCodeSpans(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '`')
		if i < 0 {
			return b.String() + s
		}
		b.WriteString(s[:i])
		n := len(s[i:]) - len(strings.TrimLeft(s[i:], "`"))
		fence := s[i : i+n]
		end := strings.Index(s[i+n:], fence)
		if end < 0 {
			return b.String() + s[i:]
		}
		s = s[i+n+end+n:]
	}
}

func TestMarkdownCodeSpan(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "`abc`"},
		{"a`b", "``a`b``"},
		{"`x", "`` `x ``"},
		{"a|b", "`a\\|b`"},
		{"a\nb", "`a b`"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := mdCode(tt.in); got != tt.want {
			t.Errorf("mdCode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestBuildReportQuotaEvents: refused calls are in the timeline, and
// refused handshakes counted by an events_suppressed event are counted
// with the others, under RefusedOverLimit.
func TestBuildReportQuotaEvents(t *testing.T) {
	l := newReportLog(t)
	l.start()
	l.add(audit.KindConnectionRefused, audit.ActorCoordinator, 0, audit.ConnectionRefused{Reason: "revoked", Remote: "198.51.100.7:40222"})
	l.add(audit.KindCallRefused, "hospital-a", 0, audit.CallRefused{Method: "/fedguard.v1.CoordinatorService/WaitRound", Code: "PermissionDenied", Reason: "certificate revoked"})
	l.add(audit.KindEventsSuppressed, audit.ActorCoordinator, 0, audit.EventsSuppressed{Kinds: map[string]uint64{audit.KindConnectionRefused: 40}, Total: 40,
		Since: "2026-01-01T00:00:00Z", Until: "2026-01-01T00:01:00Z"})
	l.add(audit.KindEventsSuppressed, audit.ActorCoordinator, 0, audit.EventsSuppressed{Participant: "hospital-b",
		Kinds: map[string]uint64{audit.KindDataValidation: 7, audit.KindCallRefused: 2}, Total: 9, Since: "2026-01-01T00:00:00Z", Until: "2026-01-01T00:01:00Z"})
	rep := mustBuild(t, l.events, Options{})
	if rep.ConnectionsRefused != 41 || !slices.Contains(rep.RefusedBy, RefusalCount{Reason: RefusedOverLimit, Count: 40}) {
		t.Errorf("ConnectionsRefused %d by %+v, want 41 with 40 %s", rep.ConnectionsRefused, rep.RefusedBy, RefusedOverLimit)
	}
	var details []string
	for _, e := range rep.Timeline {
		if e.Kind == audit.KindCallRefused || e.Kind == audit.KindEventsSuppressed {
			details = append(details, e.Detail)
		}
	}
	want := []string{
		"/fedguard.v1.CoordinatorService/WaitRound refused (PermissionDenied): certificate revoked",
		"40 events of callers without a verified identity beyond the per-minute limit, counted not listed (connection_refused 40), 2026-01-01T00:00:00Z to 2026-01-01T00:01:00Z",
		"9 events of hospital-b beyond the per-minute limit, counted not listed (call_refused 2, data_validation 7), 2026-01-01T00:00:00Z to 2026-01-01T00:01:00Z",
	}
	if diff := cmp.Diff(want, details); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
}

// mustBuild is Build for tests whose log must build.
func mustBuild(t *testing.T, events []audit.Event, opts Options) Report {
	t.Helper()
	rep, err := Build(events, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// writeHTML and writeMarkdown render rep, failing the test on an error.
func writeHTML(t *testing.T, rep Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func writeMarkdown(t *testing.T, rep Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestBuildReportSecondFromActor: a second update, or a second decline,
// from one participant in one attempt is noted and the first is the one
// reported.
func TestBuildReportSecondFromActor(t *testing.T) {
	for _, tt := range []struct {
		name  string
		build func(l *reportLog)
		want  string
	}{
		{"update", func(l *reportLog) { l.update(1, 0, "a").update(1, 0, "a") },
			"seq 5: a second update from a recorded in attempt 0; the first (seq 4) is reported"},
		{"decline", func(l *reportLog) { l.decline(1, 0, "a", "first").decline(1, 0, "a", "second") },
			"seq 5: a second decline from a recorded in attempt 0; the first (seq 4) is reported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newReportLog(t)
			l.start().open(1, 0, "a", "b")
			tt.build(l)
			rep := mustBuild(t, l.events, Options{})
			if len(rep.Rounds) != 1 || !slices.Contains(rep.Rounds[0].Notes, tt.want) {
				t.Fatalf("round notes %q, want %q", rep.Rounds[0].Notes, tt.want)
			}
		})
	}
}
