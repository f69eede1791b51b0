package report

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/audit"
)

// session records the secure session of a bucket: members are "name"
// (survivor) or "name!" (dropped at the masked input); fail, when set,
// makes the session failed, with no survivors.
func (l *reportLog) session(round uint64, attempt uint32, bucket int, fail string, members ...string) *reportLog {
	p := audit.SecureSession{Attempt: attempt, Bucket: bucket, Error: fail}
	for _, m := range members {
		name, dropped := strings.CutSuffix(m, "!")
		p.Members = append(p.Members, name)
		switch {
		case dropped:
			if p.Dropped == nil {
				p.Dropped = map[string]string{}
			}
			p.Dropped[name] = "MaskedInput: stream ended"
		case fail == "":
			p.Survivors = append(p.Survivors, name)
		}
	}
	if fail == "" {
		p.SumSHA256 = reportSum(fmt.Sprintf("sum %d %d %d", round, attempt, bucket))
		p.Weight = 1000 * uint64(len(p.Survivors))
	}
	return l.add(audit.KindSecureSession, audit.ActorCoordinator, round, p)
}

// decline records name sitting the secure round out.
func (l *reportLog) decline(round uint64, attempt uint32, name, reason string) *reportLog {
	return l.add(audit.KindSecureDeclined, name, round, audit.SecureDeclined{Attempt: attempt, Reason: reason})
}

// summarizeSums is the part of a secure round's sums the table tests
// compare, in words.
func summarizeSums(r RoundReport) []string {
	var out []string
	for _, s := range r.Sums {
		verdict := "unruled"
		switch {
		case s.Failed():
			verdict = "failed: " + s.Error
		case s.Ruled:
			verdict = map[bool]string{true: "selected", false: "not selected"}[s.Selected]
		}
		out = append(out, fmt.Sprintf("attempt %d bucket %d final=%t %s of %s: %s", s.Attempt, s.Bucket, s.Final,
			reportList(s.Survivors), reportList(s.Members), verdict))
	}
	return out
}

func TestBuildReportSecure(t *testing.T) {
	abcd := []string{"a", "b", "c", "d"}
	tests := []struct {
		name       string
		build      func(l *reportLog)
		want       reportRoundSummary
		wantSecure bool
		wantSums   []string
	}{
		{
			name: "one bucket, every member in the sum",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", abcd...).aggregate(1, 0, "fedavg", true, "bucket-1")
				l.close(1, 0, abcd, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c selected", "d selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b, c, d of a, b, c, d: selected"},
		},
		{
			name: "a member drops from its session",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", "a", "b", "c!", "d").aggregate(1, 0, "fedavg", true, "bucket-1")
				l.close(1, 0, []string{"a", "b", "d"}, []string{"c"}).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "d selected"},
				Excluded:     []string{"c dropped: left the secure session of bucket 1 at MaskedInput: stream ended (seq 4)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b, d of a, b, c, d: selected"},
		},
		{
			name: "a session fails",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", "a", "b").session(1, 0, 2, "ShareKeys: 1 of 2 members left, 2 needed", "c", "d")
				l.aggregate(1, 0, "fedavg", true, "bucket-1").close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"},
				Excluded: []string{
					"c secure sum failed: the secure session of bucket 2 failed: ShareKeys: 1 of 2 members left, 2 needed (seq 5)",
					"d secure sum failed: the secure session of bucket 2 failed: ShareKeys: 1 of 2 members left, 2 needed (seq 5)"},
				Model: reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums: []string{"attempt 0 bucket 1 final=true a, b of a, b: selected",
				"attempt 0 bucket 2 final=true none of c, d: failed: ShareKeys: 1 of 2 members left, 2 needed"},
		},
		{
			name: "krum leaves a bucket out",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", "a", "b").session(1, 0, 2, "", "c", "d")
				l.aggregate(1, 0, "krum", true, "bucket-1", "bucket-2!").close(1, 0, abcd, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c not selected", "d not selected"},
				Excluded: []string{
					"c excluded by rule: excluded by krum with its bucket (bucket 2): krum: score 20 not the lowest (10) (seq 6)",
					"d excluded by rule: excluded by krum with its bucket (bucket 2): krum: score 20 not the lowest (10) (seq 6)"},
				Model: reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums: []string{"attempt 0 bucket 1 final=true a, b of a, b: selected",
				"attempt 0 bucket 2 final=true c, d of c, d: not selected"},
		},
		{
			// A member that declines leaves its session at the first
			// phase; the decline, not the drop, explains it.
			name: "a member declines",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).decline(1, 0, "d", "the ethics board has not approved secure rounds")
				l.add(audit.KindSecureSession, audit.ActorCoordinator, 1, audit.SecureSession{Attempt: 0, Bucket: 1, Members: abcd, Survivors: []string{"a", "b", "c"},
					Dropped: map[string]string{"d": "AdvertiseKeys: stream ended"}, SumSHA256: reportSum("sum"), Weight: 3000})
				l.aggregate(1, 0, "fedavg", true, "bucket-1").close(1, 0, []string{"a", "b", "c"}, []string{"d"}).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected", "c selected"},
				Excluded:     []string{"d declined: the ethics board has not approved secure rounds (seq 4)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b, c of a, b, c, d: selected"},
		},
		{
			name: "a failed secure attempt, then a closed one",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", "a", "b!").session(1, 0, 2, "MaskedInput: 0 of 2 members left, 2 needed", "c", "d")
				l.fail(1, 0, "1 inputs in the completed secure sessions, 3 needed", 1)
				l.open(1, 1, abcd...).session(1, 1, 1, "", abcd...).aggregate(1, 1, "fedavg", true, "bucket-1").close(1, 1, abcd, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed,
				Attempts:     []string{"0 failed 1 inputs in the completed secure sessions, 3 needed", "1 closed"},
				Contributors: []string{"a selected", "b selected", "c selected", "d selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked},
			wantSecure: true,
			wantSums: []string{"attempt 0 bucket 1 final=false a of a, b: unruled",
				"attempt 0 bucket 2 final=false none of c, d: failed: MaskedInput: 0 of 2 members left, 2 needed",
				"attempt 1 bucket 1 final=true a, b, c, d of a, b, c, d: selected"},
		},
		{
			name: "every secure attempt failed",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").session(1, 0, 1, "AdvertiseKeys: 1 of 2 members left, 2 needed", "a", "b")
				l.fail(1, 0, "every secure session failed: bucket 1: AdvertiseKeys: 1 of 2 members left, 2 needed", 0)
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusNotCompleted,
				Attempts: []string{"0 failed every secure session failed: bucket 1: AdvertiseKeys: 1 of 2 members left, 2 needed"},
				Excluded: []string{
					"a secure sum failed: the secure session of bucket 1 failed: AdvertiseKeys: 1 of 2 members left, 2 needed (seq 4)",
					"b secure sum failed: the secure session of bucket 1 failed: AdvertiseKeys: 1 of 2 members left, 2 needed (seq 4)"},
				Signature: SignatureMissing},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true none of a, b: failed: AdvertiseKeys: 1 of 2 members left, 2 needed"},
		},
		{
			name: "round_closed disagrees with the sessions",
			build: func(l *reportLog) {
				l.start().open(1, 0, abcd...).session(1, 0, 1, "", "a", "b", "c!").aggregate(1, 0, "fedavg", true, "bucket-1")
				l.close(1, 0, abcd, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"},
				Excluded: []string{"c dropped: left the secure session of bucket 1 at MaskedInput: stream ended (seq 4)",
					"d dropped: in no secure session of attempt 0 (seq 6)"},
				Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"The round_closed event lists participants a, b, c, d, but the completed secure sums hold the inputs of a, b",
					"The round_closed event lists dropped none, but the members that left a completed secure session are c"}},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b of a, b, c: selected"},
		},
		{
			name: "the rule's report and the sessions disagree",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").session(1, 0, 1, "", "a").session(1, 0, 2, "", "b")
				l.aggregate(1, 0, "fedavg", true, "bucket-1", "bucket-7").close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b unruled"}, Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"seq 6: the aggregation report has no entry for bucket-2, whose secure session completed",
					"seq 6: the aggregation report has an entry for bucket-7, which names no secure session of attempt 0"}},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a of a: selected", "attempt 0 bucket 2 final=true b of b: unruled"},
		},
		{
			name: "a plain update in a secure attempt",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b").update(1, 0, "b").session(1, 0, 1, "", "a", "b").aggregate(1, 0, "fedavg", true, "bucket-1")
				l.close(1, 0, []string{"a", "b"}, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"seq 4: an update from b is recorded in attempt 0, a secure attempt, which takes no plain update; it is not counted"}},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b of a, b: selected"},
		},
		{
			// The coordinator writes "Phase: why" with a phase of
			// secagg.Phases; anything else is pointed out.
			name: "a drop at no phase of the protocol",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a", "b", "c")
				l.add(audit.KindSecureSession, audit.ActorCoordinator, 1, audit.SecureSession{Attempt: 0, Bucket: 1, Members: []string{"a", "b", "c"}, Survivors: []string{"a", "b"},
					Dropped: map[string]string{"c": "Rebooting: stream ended"}, SumSHA256: reportSum("sum"), Weight: 2000})
				l.aggregate(1, 0, "fedavg", true, "bucket-1").close(1, 0, []string{"a", "b"}, []string{"c"}).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected", "b selected"},
				Excluded:     []string{"c dropped: left the secure session of bucket 1 at Rebooting: stream ended (seq 4)"},
				Model:        reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{`seq 4: c left the secure session of bucket 1 at "Rebooting: stream ended", which names no phase of the protocol`}},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a, b of a, b, c: selected"},
		},
		{
			name: "a second session for one bucket",
			build: func(l *reportLog) {
				l.start().open(1, 0, "a").session(1, 0, 1, "", "a").session(1, 0, 1, "", "z")
				l.aggregate(1, 0, "fedavg", true, "bucket-1").close(1, 0, []string{"a"}, nil).sign(1, "valid")
			},
			want: reportRoundSummary{Round: 1, Status: RoundStatusClosed, Attempts: []string{"0 closed"},
				Contributors: []string{"a selected"}, Model: reportModelSum(1), Signature: SignatureNotChecked,
				Notes: []string{"seq 5: a second secure_session for bucket 1 of attempt 0; the first (seq 4) is reported"}},
			wantSecure: true,
			wantSums:   []string{"attempt 0 bucket 1 final=true a of a: selected"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newReportLog(t)
			tt.build(l)
			rep, err := Build(l.events, Options{})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if len(rep.Rounds) != 1 {
				t.Fatalf("Build made %d rounds, want 1", len(rep.Rounds))
			}
			r := rep.Rounds[0]
			if diff := cmp.Diff(tt.want, summarizeRound(r)); diff != "" {
				t.Errorf("Build round mismatch (-want +got):\n%s", diff)
			}
			if r.Secure != tt.wantSecure {
				t.Errorf("Secure = %t, want %t", r.Secure, tt.wantSecure)
			}
			if diff := cmp.Diff(tt.wantSums, summarizeSums(r)); diff != "" {
				t.Errorf("Sums mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildReportSecureContributor checks the figures of a secure
// contributor: its bucket's, none of its own.
func TestBuildReportSecureContributor(t *testing.T) {
	l := newReportLog(t)
	l.start().open(1, 0, "a", "b").session(1, 0, 1, "", "a").session(1, 0, 2, "", "b")
	l.aggregate(1, 0, "multi-krum", true, "bucket-1", "bucket-2!").close(1, 0, []string{"a", "b"}, nil)
	rep := mustBuild(t, l.events, Options{})
	want := []ContributorReport{
		{Participant: "a", Seq: 4, SecureBucket: 1, Ruled: true, Selected: true, Score: 10, Weight: 1, RuleReason: "multi-krum: score 10 among the 1 lowest"},
		{Participant: "b", Seq: 5, SecureBucket: 2, Ruled: true, Score: 20, RuleReason: "multi-krum: score 20 not among the 1 lowest (highest kept 10)"},
	}
	if diff := cmp.Diff(want, rep.Rounds[0].Contributors); diff != "" {
		t.Errorf("Contributors mismatch (-want +got):\n%s", diff)
	}
}

// TestBuildReportPlainUnchanged checks that a plain round reports no
// secure figures, so that its rendering is the one it always was.
func TestBuildReportPlainUnchanged(t *testing.T) {
	rep := mustBuild(t, newReportLog(t).start().clean(1).events, Options{})
	r := rep.Rounds[0]
	if r.Secure || len(r.Sums) > 0 {
		t.Errorf("plain round: Secure = %t, %d sums; want false, none", r.Secure, len(r.Sums))
	}
	for _, a := range r.Attempts {
		if a.Secure {
			t.Errorf("plain round: attempt %d is marked secure", a.Attempt)
		}
	}
}

// reportSecureLog is the log of the secure golden files: a secure round
// whose first attempt fails, and whose second closes with a member
// dropped from its session, a member that declined, a bucket whose
// session failed and a bucket Multi-Krum left out; then a plain round.
func reportSecureLog(t *testing.T) *reportLog {
	l := newReportLog(t)
	names := []string{"st-marys", "northgate", "riverside", "lakeview", "eastfield", "westbrook", "harbourview", "millbrook", "kingsway", "hillcrest"}
	l.start()
	l.add(audit.KindConfigLoaded, audit.ActorCoordinator, 0, audit.ConfigLoaded{SHA256: reportSum("config"), MinParticipants: 6, Rounds: 10,
		Aggregation: json.RawMessage(`{"rule": "multi-krum", "f": 1, "m": 2, "bucket": 2}`), Secure: true})
	l.add(audit.KindManifestSigned, audit.ActorCoordinator, 0, reportManifest(reportModelSum(0), "valid"))
	l.add(audit.KindEnrolment, audit.ActorCoordinator, 0, audit.Enrolment{Enrolled: names, Added: names})

	// Attempt 0: one bucket's session fails, and the other holds too
	// few inputs.
	l.open(1, 0, names[:4]...)
	l.session(1, 0, 1, "", "st-marys", "northgate!")
	l.session(1, 0, 2, "ShareKeys: 1 of 2 members left, the threshold is 2", "riverside", "lakeview")
	l.fail(1, 0, "1 inputs in the completed secure sessions, 6 needed", 1)

	// Attempt 1: four buckets. In bucket 2 eastfield drops at the masked
	// input and westbrook declines; bucket 3 is left out by the rule;
	// bucket 4's session fails.
	l.open(1, 1, names...)
	l.decline(1, 1, "westbrook", "secure rounds not yet approved by the data protection officer")
	l.session(1, 1, 1, "", "st-marys", "northgate")
	l.add(audit.KindSecureSession, audit.ActorCoordinator, 1, audit.SecureSession{Attempt: 1, Bucket: 2,
		Members: []string{"riverside", "lakeview", "eastfield", "westbrook"}, Survivors: []string{"riverside", "lakeview"},
		Dropped:   map[string]string{"eastfield": "MaskedInput: stream ended", "westbrook": "AdvertiseKeys: stream ended"},
		SumSHA256: reportSum("sum 1 1 2"), Weight: 2400})
	l.session(1, 1, 3, "", "harbourview", "millbrook")
	l.session(1, 1, 4, "ConsistencyCheck: 1 of 2 members left, the threshold is 2", "kingsway", "hillcrest")
	l.aggregate(1, 1, "multi-krum", true, "bucket-1", "bucket-2", "bucket-3!")
	l.close(1, 1, []string{"st-marys", "northgate", "riverside", "lakeview", "harbourview", "millbrook"}, []string{"eastfield", "westbrook"}).sign(1, "valid")

	// Round 2 is plain, and reads as plain rounds always have.
	l.open(2, 0, "st-marys", "northgate", "riverside").update(2, 0, "st-marys").update(2, 0, "northgate")
	l.aggregate(2, 0, "fedavg", true, "st-marys", "northgate").close(2, 0, []string{"st-marys", "northgate"}, []string{"riverside"}).sign(2, "valid")
	return l
}

// TestReportSecureEscapes puts markup and table syntax into the secure
// events' free text: a decline reason comes from a participant, and drop
// reasons and session errors quote peer input.
func TestReportSecureEscapes(t *testing.T) {
	const evil = "<script>x</script> | cell\n| row |"
	l := newReportLog(t)
	l.start().open(1, 0, "a", "b|c", "d").decline(1, 0, "d", evil)
	l.add(audit.KindSecureSession, audit.ActorCoordinator, 1, audit.SecureSession{Attempt: 0, Bucket: 1, Members: []string{"a", "b|c"}, Survivors: []string{"a"},
		Dropped: map[string]string{"b|c": evil}, SumSHA256: evil, Weight: 1})
	l.session(1, 0, 2, evil, "d")
	l.aggregate(1, 0, "krum", true, "bucket-1").close(1, 0, []string{"a"}, []string{"b|c"})
	rep := mustBuild(t, l.events, Options{})
	var md, html strings.Builder
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html.String(), "<script") {
		t.Errorf("WriteHTML let a <script> element through")
	}
	checkMarkdownEscaped(t, md.String())
}
