package report_test

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/report"
)

// reportEvents is a one-round log: the coordinator starts, asks two
// hospitals to train, receives one update and closes the round without
// the other.
func reportEvents() []audit.Event {
	var events []audit.Event
	add := func(kind, actor string, round uint64, payload any) {
		raw, err := json.Marshal(payload)
		if err != nil {
			panic(err)
		}
		seq := uint64(len(events))
		events = append(events, audit.Event{Seq: seq, Kind: kind, Actor: actor, Round: round,
			Time: time.Date(2025, 3, 1, 9, int(seq), 0, 0, time.UTC), Payload: raw})
	}
	add(audit.KindCoordinatorStarted, audit.ActorCoordinator, 0, audit.CoordinatorStarted{Version: "v1.0.0", Federation: "lung-xray"})
	add(audit.KindRoundOpened, audit.ActorCoordinator, 1, audit.RoundOpened{Deadline: "2025-03-01T09:30:00Z"})
	add(audit.KindCohort, audit.ActorCoordinator, 1, audit.Cohort{Members: []string{"st-marys", "northgate"}})
	add(audit.KindUpdateReceived, "st-marys", 1, audit.UpdateReceived{SHA256: "48d924ff46068598367fa2c1d505333e0a98a2346a8cbff97bf05d780adc0ac6", Norm: 0.8, Samples: 900, HoldoutCount: 100, HoldoutAccuracy: 0.91})
	add(audit.KindAggregationReport, audit.ActorCoordinator, 1, audit.AggregationReport{Rule: "fedavg",
		Report: json.RawMessage(`{"rule":"fedavg","entries":[{"id":"st-marys","weight":1,"selected":true}]}`)})
	add(audit.KindRoundClosed, audit.ActorCoordinator, 1, audit.RoundClosed{ModelSHA256: "cd36b49d7b2a8b5e4e13663cb54c5e1338c17b7d3af1c506fb3842bd08291822",
		Participants: []string{"st-marys"}, Dropped: []string{"northgate"}})
	return events
}

func ExampleBuild() {
	rep, err := report.Build(reportEvents(), report.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := rep.Rounds[0]
	fmt.Printf("round %d %s, model %s, signature %s\n", r.Round, r.Status, r.ModelSHA256, r.Signature)
	for _, c := range r.Contributors {
		fmt.Printf("contributor %s: %d samples, selected %t\n", c.Participant, c.Samples, c.Selected)
	}
	for _, e := range r.Excluded {
		fmt.Printf("excluded %s: %s, %s\n", e.Participant, e.Kind, e.Reason)
	}
	for _, n := range r.Notes {
		fmt.Println("note:", n)
	}
	// Output:
	// round 1 closed, model cd36b49d7b2a8b5e4e13663cb54c5e1338c17b7d3af1c506fb3842bd08291822, signature missing
	// contributor st-marys: 900 samples, selected true
	// excluded northgate: dropped, no update before the deadline 2025-03-01T09:30:00Z
	// note: No manifest_signed event: nothing vouches for the model outside this log
}

func ExampleBuild_roundNotFound() {
	_, err := report.Build(reportEvents(), report.Options{Round: 4})
	fmt.Println(err)
	// Output:
	// audit: round not in the log: round 4 requested, the log holds round 1 only
}

func ExampleReport_WriteMarkdown() {
	rep, err := report.Build(reportEvents(), report.Options{Round: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := rep.WriteMarkdown(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// # Provenance report: lung-xray
	//
	// - **Origin:** not given
	// - **Federation:** lung-xray
	// - **Log status:** **not verified**
	// - **Events:** 6 (seq 0 to 5)
	// - **Checkpoints:** **none supplied: no round is shown as covered by a signed checkpoint**
	// - **Rounds:** round 1 only, of 1 in the log
	// - **Refused connections:** none
	// - **Initial model:** **no manifest signed for round 0**
	//
	// Digests are SHA-256, in hex. Sample counts and holdout accuracy are each hospital's own claims, measured on its own rows; the coordinator never sees the data. A signature reads "verified" only when it was checked with the coordinator's public keys while this report was made.
	//
	// ## Federation events
	//
	// | seq | time | event | actor | detail |
	// | --- | --- | --- | --- | --- |
	// | 0 | 2025-03-01T09:00:00Z | coordinator_started | coordinator | version v1.0.0, federation lung-xray, resuming after round 0 |
	//
	// ## Controls
	//
	// Every flagged event, linked to the control of docs/threat-model.md that produced it and to its MITRE ATLAS technique.
	//
	// Nothing flagged.
	//
	// ## Round 1
	//
	// Closed. Model `cd36b49d7b2a8b5e4e13663cb54c5e1338c17b7d3af1c506fb3842bd08291822`; signature **missing**; 1 of 2 cohort members contributed, 1 selected by fedavg; 1 exclusion. **See 1 note below.**
	//
	// - Opened: 2025-03-01T09:01:00Z
	// - Closed: 2025-03-01T09:05:00Z
	// - Trained on: **unknown: no model_published event**
	// - Rule: fedavg
	// - Shaped the model: st-marys (1 of 1 accepted updates)
	// - Cohort (2): st-marys, northgate
	// - Manifest: **none signed**
	// - Checkpoint: **not checked: no checkpoints supplied**
	// - Events: seq 1 to 5
	//
	// ### Contributors
	//
	// | participant | seq | samples | norm | update sha256 | holdout accuracy | score | weight | selected | rule's note |
	// | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
	// | st-marys | 3 | 900 | 0.8 | `48d924ff46068598367fa2c1d505333e0a98a2346a8cbff97bf05d780adc0ac6` | 91.0% of 100 | n/a | 1.0000 | yes |  |
	//
	// ### Exclusions
	//
	// | participant | exclusion | reason | seq |
	// | --- | --- | --- | --- |
	// | northgate | dropped | no update before the deadline 2025-03-01T09:30:00Z | 5 |
	//
	// ### Notes
	//
	// - No manifest_signed event: nothing vouches for the model outside this log
}

// A secure round: the coordinator saw only each bucket's sum, so the
// contributors are the survivors of the sessions, ruled as their bucket.
func ExampleBuild_secure() {
	events := reportEvents()[:3] // started, round_opened, cohort
	add := func(kind, actor string, payload any) {
		raw, err := json.Marshal(payload)
		if err != nil {
			panic(err)
		}
		seq := uint64(len(events))
		events = append(events, audit.Event{Seq: seq, Kind: kind, Actor: actor, Round: 1,
			Time: time.Date(2025, 3, 1, 9, int(seq), 0, 0, time.UTC), Payload: raw})
	}
	add(audit.KindSecureSession, audit.ActorCoordinator, audit.SecureSession{Bucket: 1, Members: []string{"st-marys", "northgate"},
		Survivors: []string{"st-marys"}, Dropped: map[string]string{"northgate": "MaskedInput: stream ended"},
		SumSHA256: "5b2e0b1a0b3e6d7c0f3c1de0c6e8a3b1f9b0d2c4e6a8b0c2d4e6f8a0b2c4d6e8", Weight: 900})
	add(audit.KindAggregationReport, audit.ActorCoordinator, audit.AggregationReport{Rule: "fedavg",
		Report: json.RawMessage(`{"rule":"fedavg","entries":[{"id":"bucket-1","weight":1,"selected":true}]}`)})
	add(audit.KindRoundClosed, audit.ActorCoordinator, audit.RoundClosed{ModelSHA256: "cd36b49d7b2a8b5e4e13663cb54c5e1338c17b7d3af1c506fb3842bd08291822",
		Participants: []string{"st-marys"}, Dropped: []string{"northgate"}})
	rep, err := report.Build(events, report.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := rep.Rounds[0]
	for _, s := range r.Sums {
		fmt.Printf("bucket %d: %d of %d members in the sum, selected %t\n", s.Bucket, len(s.Survivors), len(s.Members), s.Selected)
	}
	for _, c := range r.Contributors {
		fmt.Printf("contributor %s through bucket %d, selected %t\n", c.Participant, c.SecureBucket, c.Selected)
	}
	for _, e := range r.Excluded {
		fmt.Printf("excluded %s: %s, %s\n", e.Participant, e.Kind, e.Reason)
	}
	// Output:
	// bucket 1: 1 of 2 members in the sum, selected true
	// contributor st-marys through bucket 1, selected true
	// excluded northgate: dropped, left the secure session of bucket 1 at MaskedInput: stream ended
}
