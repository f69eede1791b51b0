package coordinator_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

var abc = []string{"hospital-a", "hospital-b", "hospital-c"}

// The statistics of the stats-phase tests: feature f1 varies, f2 is the
// constant 7 everywhere (so its deviation is 1 by the constant-column rule).
var (
	statsA = statsOf([2]float64{1, 7}, [2]float64{3, 7})
	statsB = statsOf([2]float64{5, 7})
	statsC = statsOf([2]float64{-2, 7}, [2]float64{0, 7}, [2]float64{2, 7}, [2]float64{8, 7})
)

func TestStatsPhase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		timeout  time.Duration
		report   []int // indexes into abc, with statsA, statsB, statsC
		fixed    bool
		wantMean []float64
		wantStd  []float64
	}{
		{
			// f1 over {1, 3}, {5} and {-2, 0, 2, 8}, by the robust rule
			// (dataset.RobustScaling): counts capped at the median 2, so
			// weights 2, 1, 2; means 2, 5, 2 and variances 1, 0, 14, none
			// clipped; pooled mean 13/5 and variance
			// (2·(1+0.36) + 5.76 + 2·(14+0.36))/5 = 7.44. (Pooled as sent,
			// 17/7 and 460/49.)
			name: "all enrolled fix it at once", timeout: 30 * time.Second, report: []int{0, 1, 2}, fixed: true,
			wantMean: []float64{13.0 / 5, 7}, wantStd: []float64{math.Sqrt(7.44), 1},
		},
		{
			// f1 over {1, 3} and {5}: weights 1, 1 (capped at the lower
			// median count 1); means 2 and 5, variances 1 and 0; pooled
			// mean 3.5, variance (1 + 2.25 + 0 + 2.25)/2 = 2.75.
			name: "min participants after stats_timeout", timeout: 700 * time.Millisecond, report: []int{0, 1}, fixed: true,
			wantMean: []float64{3.5, 7}, wantStd: []float64{math.Sqrt(2.75), 1},
		},
		{
			name: "below min never", timeout: 200 * time.Millisecond, report: []int{2}, fixed: false,
		},
	}
	all := []stats{statsA, statsB, statsC}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFederation(t, abc)
			f.cfg.StatsTimeout = coordinator.Duration(tt.timeout)
			f.cfg.LongPoll = coordinator.Duration(time.Second)
			_, ps := f.startConnected(t, abc...)
			if !ps[0].statsNeeded(t) {
				t.Fatal("Join on a new federation: StatsNeeded = false, want true")
			}
			begin := time.Now()
			for _, i := range tt.report {
				ps[i].reportStats(t, all[i])
			}
			if !tt.fixed {
				time.Sleep(5 * tt.timeout)
				if !ps[0].statsNeeded(t) {
					t.Fatalf("scaling fixed with %d of %d participants, min %d", len(tt.report), len(abc), f.cfg.MinParticipants)
				}
				return
			}
			at := waitScalingFixed(t, ps[0], tt.timeout+10*time.Second)
			elapsed := at.Sub(begin)
			if len(tt.report) < len(abc) && elapsed < tt.timeout {
				t.Errorf("scaling fixed %v after the first report with %d of %d participants, want >= stats_timeout %v", elapsed, len(tt.report), len(abc), tt.timeout)
			}
			if len(tt.report) == len(abc) && elapsed > 10*time.Second {
				t.Errorf("scaling fixed only after %v with every participant reporting", elapsed)
			}
			// Statistics after the scaling is fixed are acknowledged and
			// change nothing.
			ps[2].reportStats(t, statsOf([2]float64{1000, 1000}))

			as := assignments(t, ps)
			for i, a := range as {
				sc := a.GetScaling()
				opt := cmpopts.EquateApprox(1e-12, 0)
				if diff := cmp.Diff(tt.wantMean, sc.GetMean(), opt); diff != "" {
					t.Errorf("%s: assignment scaling mean (-want +got):\n%s", abc[i], diff)
				}
				if diff := cmp.Diff(tt.wantStd, sc.GetStd(), opt); diff != "" {
					t.Errorf("%s: assignment scaling std (-want +got):\n%s", abc[i], diff)
				}
			}
		})
	}
}

func TestCohort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		cohortTimeout time.Duration
		longPoll      time.Duration
		ready         []int // indexes into abc that wait for a round
		wantOpen      bool
	}{
		{"all enrolled open at once", 30 * time.Second, 5 * time.Second, []int{0, 1, 2}, true},
		{"min ready after cohort_timeout", 700 * time.Millisecond, 5 * time.Second, []int{0, 2}, true},
		{"below min: long poll returns empty", 100 * time.Millisecond, 600 * time.Millisecond, []int{1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFederation(t, abc)
			f.cfg.CohortTimeout = coordinator.Duration(tt.cohortTimeout)
			f.cfg.LongPoll = coordinator.Duration(tt.longPoll)
			_, ps := f.startScaled(t, abc...)

			var ready []*participant
			for _, i := range tt.ready {
				ready = append(ready, ps[i])
			}
			begin := time.Now()
			if !tt.wantOpen {
				resp, err := ready[0].waitRound(t)
				elapsed := time.Since(begin)
				if err != nil {
					t.Fatalf("WaitRound = %v", err)
				}
				if resp.GetAssignment() != nil || resp.GetFinished() {
					t.Fatalf("WaitRound with 1 ready of min 2 = %v, want an empty response", resp)
				}
				if elapsed < tt.longPoll || elapsed > tt.longPoll+5*time.Second {
					t.Errorf("WaitRound returned empty after %v, want about long_poll %v", elapsed, tt.longPoll)
				}
				return
			}
			as := assignments(t, ready)
			elapsed := time.Since(begin)
			if len(ready) < len(abc) && elapsed < tt.cohortTimeout {
				t.Errorf("round opened %v after %d of %d were ready, want >= cohort_timeout %v", elapsed, len(ready), len(abc), tt.cohortTimeout)
			}
			if len(ready) == len(abc) && elapsed > 10*time.Second {
				t.Errorf("round opened only after %v with every participant ready", elapsed)
			}
			for i, a := range as {
				if a.GetRound() != 1 || a.GetAttempt() != 0 {
					t.Errorf("%s: assignment round %d attempt %d, want round 1 attempt 0", ready[i].name, a.GetRound(), a.GetAttempt())
				}
				wantPlan := &fedguardv1.TrainingPlan{
					LocalEpochs: uint32(f.cfg.Training.LocalEpochs), LearningRate: f.cfg.Training.LearningRate,
					BatchSize: uint32(f.cfg.Training.BatchSize), L2: f.cfg.Training.L2,
				}
				if diff := cmp.Diff(wantPlan, a.GetPlan(), protocmp.Transform()); diff != "" {
					t.Errorf("%s: assignment plan (-want +got):\n%s", ready[i].name, diff)
				}
				if d := time.Until(a.GetDeadline().AsTime()); d <= 0 || d > time.Duration(f.cfg.RoundTimeout) {
					t.Errorf("%s: assignment deadline in %v, want within round_timeout %v", ready[i].name, d, time.Duration(f.cfg.RoundTimeout))
				}
				if len(a.GetModelSha256()) != 32 || a.GetModel().GetNumParams() != numParams {
					t.Errorf("%s: assignment model %v sha256 %x", ready[i].name, a.GetModel(), a.GetModelSha256())
				}
				params, sum, err := ready[i].getModel(t, 1)
				if err != nil {
					t.Fatalf("%s (in cohort): GetModel(1) = %v", ready[i].name, err)
				}
				if !slices.Equal(sum[:], a.GetModelSha256()) || len(params) != numParams {
					t.Errorf("%s: GetModel(1) digest %x, assignment says %x", ready[i].name, sum, a.GetModelSha256())
				}
			}
			for _, p := range ps {
				if slices.Contains(ready, p) {
					continue
				}
				_, _, err := p.getModel(t, 1)
				wantCode(t, p.name+" (not in cohort): GetModel(1)", err, codes.FailedPrecondition)
				_, err = p.submit(t, 1, update{delta: make([]float32, numParams), samples: 1})
				wantCode(t, p.name+" (not in cohort): SubmitUpdate(1)", err, codes.FailedPrecondition)
			}
		})
	}
}

// deltas returns a recognisable update of numParams values for seed.
func deltas(seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 99))
	d := make([]float32, numParams)
	for i := range d {
		d[i] = float32(rng.NormFloat64() * 0.3)
	}
	return d
}

// wantRecord is the record a round with these updates and this resulting
// model must have.
func wantRecord(round uint64, attempt uint32, cohort []string, updates map[string]update, next []float32) coordinator.RoundRecord {
	rec := coordinator.RoundRecord{Round: round, Attempt: attempt, Cohort: cohort, Report: aggregation.Report{Rule: "fedavg"}}
	var total float64
	for _, u := range updates {
		total += float64(u.samples)
	}
	for _, n := range cohort {
		u, ok := updates[n]
		if !ok {
			rec.Dropped = append(rec.Dropped, n)
			continue
		}
		sum := sha256.Sum256(model.AppendBytes(nil, u.delta))
		rec.Participants = append(rec.Participants, coordinator.ParticipantRecord{
			Name: n, Samples: u.samples, Norm: refNorm(u.delta), SHA256: hex.EncodeToString(sum[:]),
			HoldoutCount: u.holdout.GetCount(), HoldoutLoss: u.holdout.GetLoss(), HoldoutAccuracy: u.holdout.GetAccuracy(),
		})
		rec.Report.Entries = append(rec.Report.Entries, aggregation.Entry{ID: n, Weight: float64(u.samples) / total, Selected: true})
	}
	sum := sha256.Sum256(model.AppendBytes(nil, next))
	rec.ModelSHA256 = hex.EncodeToString(sum[:])
	return rec
}

// submitAll has each participant submit its update concurrently and checks
// each is accepted with the norm the coordinator measured.
func submitAll(t *testing.T, round uint64, ps []*participant, updates map[string]update) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range ps {
		u, ok := updates[p.name]
		if !ok {
			continue
		}
		wg.Go(func() {
			resp, err := p.submit(t, round, u)
			if err != nil {
				t.Errorf("%s: SubmitUpdate(round %d) = %v", p.name, round, err)
				return
			}
			if resp.GetRound() != round || math.Abs(resp.GetNorm()-refNorm(u.delta)) > 1e-12*refNorm(u.delta) {
				t.Errorf("%s: SubmitUpdate response %v, want round %d norm %v", p.name, resp, round, refNorm(u.delta))
			}
		})
	}
	wg.Wait()
}

// waitRounds waits until c has n closed rounds and returns their records.
func waitRounds(t *testing.T, c *coordinator.Coordinator, n int, within time.Duration) []coordinator.RoundRecord {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		recs, err := c.Rounds()
		if err != nil {
			t.Fatalf("Rounds() = %v", err)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds closed after %v, want %d", len(recs), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var recordOpts = cmp.Options{
	cmpopts.IgnoreFields(coordinator.RoundRecord{}, "Opened", "Closed"),
	cmpopts.EquateApprox(1e-12, 0),
	cmpopts.EquateEmpty(),
}

// TestTraining runs a whole federation through the service: FedAvg commits
// bit for bit, the round records, a dropped participant, a restart and the
// end of the training.
func TestTraining(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.RoundTimeout = coordinator.Duration(1500 * time.Millisecond)
	f.cfg.LongPoll = coordinator.Duration(2 * time.Second)
	s, ps := f.startScaled(t, abc...)

	ev := func(n uint64, loss, acc float64) *fedguardv1.Evaluation {
		return &fedguardv1.Evaluation{Count: n, Loss: loss, Accuracy: acc}
	}
	rounds := []struct {
		updates map[string]update // absent cohort members drop out
		// The round's holdout figures: the reported evaluations weighed
		// by their counts.
		holdoutLoss, holdoutAccuracy float64
	}{
		{map[string]update{
			"hospital-a": {deltas(1), 10, ev(4, 0.7, 0.5)},
			"hospital-b": {deltas(2), 30, ev(12, 0.6, 0.75)},
			"hospital-c": {deltas(3), 7, nil},
		}, 0.625, 0.6875}, // (4·0.7 + 12·0.6)/16, (4·0.5 + 12·0.75)/16
		{map[string]update{ // hospital-c drops out: the round closes at round_timeout
			"hospital-a": {deltas(4), 11, ev(5, 0.5, 0.8)},
			"hospital-b": {deltas(5), 29, ev(10, 0.4, 0.9)},
		}, 6.5 / 15, 13.0 / 15}, // (5·0.5 + 10·0.4)/15, (5·0.8 + 10·0.9)/15
		{map[string]update{
			"hospital-a": {deltas(6), 1, nil},
			"hospital-b": {deltas(7), 1 << 40, nil},
			"hospital-c": {deltas(8), 3, ev(2, 0.1, 1)},
		}, 0.1, 1},
	}

	// The initial logistic regression is all zeros.
	current := make([]float32, numParams)
	var want []coordinator.RoundRecord
	keys := s.c.PublicKeys()
	var parent string // digest of the last manifest seen, hex
	for i, r := range rounds {
		round := uint64(i + 1)
		if round == 3 {
			// Restart between rounds 2 and 3: the new coordinator resumes
			// after round 2 with the same model.
			before, err := s.c.Rounds()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.stop(t); err != nil {
				t.Fatalf("Serve after cancel = %v, want nil", err)
			}
			s = start(t, f.cfg)
			ps = f.connect(t, s, abc...)
			after, err := s.c.Rounds()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("Rounds() after restart differ (-before +after):\n%s", diff)
			}
			if ps[0].statsNeeded(t) {
				t.Errorf("Join after restart: StatsNeeded = true, want the scaling kept")
			}
		}
		as := assignments(t, ps)
		startSum := sha256.Sum256(model.AppendBytes(nil, current))
		for j, a := range as {
			if a.GetRound() != round || a.GetAttempt() != 0 {
				t.Fatalf("%s: assignment round %d attempt %d, want round %d attempt 0", ps[j].name, a.GetRound(), a.GetAttempt(), round)
			}
			if !slices.Equal(a.GetModelSha256(), startSum[:]) {
				t.Errorf("round %d: %s: assignment model_sha256 %x, want the previous model's %x", round, ps[j].name, a.GetModelSha256(), startSum)
			}
			// The manifest vouches for the starting model and extends the
			// one of the round before; GetManifest serves the same bytes.
			v, err := manifest.Verify(a.GetManifest(), keys, fedName)
			if err != nil {
				t.Fatalf("round %d: %s: manifest: %v", round, ps[j].name, err)
			}
			if v.Round.Round != round-1 || v.Round.ModelSHA256 != hex.EncodeToString(startSum[:]) || (round > 1 && v.Round.Parent != parent) {
				t.Errorf("round %d: manifest of round %d for model %s, parent %s; want round %d, model %x, parent %s",
					round, v.Round.Round, v.Round.ModelSHA256, v.Round.Parent, round-1, startSum, parent)
			}
			if got, err := ps[j].svc.GetManifest(callCtx(t, 5*time.Second), &fedguardv1.GetManifestRequest{Round: round - 1}); err != nil || !bytes.Equal(got.GetManifest(), a.GetManifest()) {
				t.Errorf("round %d: GetManifest(%d) = %v; want the assignment's manifest", round, round-1, err)
			}
			if j == len(as)-1 {
				parent = hex.EncodeToString(v.Digest[:])
			}
			params, _, err := ps[j].getModel(t, round)
			if err != nil {
				t.Fatalf("round %d: %s: GetModel = %v", round, ps[j].name, err)
			}
			if !sameBits(params, current) {
				t.Errorf("round %d: %s: GetModel = %v, want %v", round, ps[j].name, params, current)
			}
		}
		submitAll(t, round, ps, r.updates)
		recs := waitRounds(t, s.c, int(round), 10*time.Second)

		next := ruleRef(t, current, r.updates)
		rec := wantRecord(round, 0, abc, r.updates, next)
		rec.HoldoutLoss, rec.HoldoutAccuracy = r.holdoutLoss, r.holdoutAccuracy
		want = append(want, rec)
		if diff := cmp.Diff(want, recs, recordOpts); diff != "" {
			t.Errorf("after round %d: Rounds() mismatch (-want +got):\n%s", round, diff)
		}
		last := recs[len(recs)-1]
		if last.Opened.IsZero() || last.Closed.Before(last.Opened) {
			t.Errorf("round %d opened %v, closed %v", round, last.Opened, last.Closed)
		}
		obs := s.waitObserved(t, round, 10*time.Second)
		if obs[len(obs)-1].Record.Round != round {
			t.Fatalf("observer saw %d results, want the last for round %d", len(obs), round)
		}
		if got := obs[len(obs)-1].Model; !sameBits(got, next) {
			t.Errorf("round %d: committed model = %v, want start + FedAvg(updates in name order) = %v", round, got, next)
		}
		current = next
	}

	// The training is over: every cohort member is told so, and Serve
	// returns nil on its own.
	for _, p := range ps {
		resp, err := p.waitRound(t)
		if err != nil || !resp.GetFinished() {
			t.Errorf("%s: WaitRound after the last round = %v, %v; want finished", p.name, resp, err)
		}
	}
	if err := s.waitServe(t, 15*time.Second); err != nil {
		t.Errorf("Serve after the last round = %v, want nil", err)
	}
	_, err := ps[0].submit(t, 3, update{delta: deltas(9), samples: 1})
	if err == nil {
		t.Errorf("SubmitUpdate after the training finished succeeded")
	}

	// A restart of a finished federation keeps the final model and records.
	if err := s.stop(t); err != nil {
		t.Errorf("stop = %v", err)
	}
	s = start(t, f.cfg)
	recs, err := s.c.Rounds()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, recs, recordOpts); diff != "" {
		t.Errorf("Rounds() after restarting a finished federation (-want +got):\n%s", diff)
	}
	for _, p := range f.connect(t, s, abc...) {
		if resp, err := p.waitRound(t); err != nil || !resp.GetFinished() {
			t.Errorf("%s: WaitRound on a restarted finished federation = %v, %v; want finished", p.name, resp, err)
		}
	}
	if err := s.waitServe(t, 15*time.Second); err != nil {
		t.Errorf("Serve of a finished federation = %v, want nil", err)
	}
	s.stop(t)

	// The audit log of the three runs verifies with the coordinator's key
	// and holds what happened, once.
	kinds := auditKinds(t, f.cfg, keys)
	for kind, n := range map[string]int{
		audit.KindCoordinatorStarted: 3, audit.KindCoordinatorStopped: 3, audit.KindRoundOpened: 3, audit.KindRoundClosed: 3,
		audit.KindManifestSigned: 4, audit.KindUpdateReceived: 8, audit.KindScalingFixed: 1, audit.KindStatsReceived: 3,
		audit.KindAggregationReport: 3, audit.KindEnrolment: 1, audit.KindModelPublished: 3,
	} {
		if kinds[kind] != n {
			t.Errorf("audit log has %d %s events, want %d (all: %v)", kinds[kind], kind, n, kinds)
		}
	}
}

// auditKinds verifies the audit log of a stopped coordinator through its
// export, as an auditor would, and counts its events by kind.
func auditKinds(t *testing.T, cfg coordinator.Config, keys manifest.PublicKeys) map[string]int {
	t.Helper()
	l, err := audit.Open(filepath.Join(cfg.DataDir, coordinator.AuditFile), audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	v, err := keys.NoteVerifier(coordinator.AuditOrigin(cfg.Federation))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := audit.Verify(&buf, audit.VerifyOptions{Verifiers: note.VerifierList(v)})
	if err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
	if sum.Uncovered != 0 {
		t.Errorf("%d events after the last checkpoint of a stopped coordinator, want 0", sum.Uncovered)
	}
	kinds := map[string]int{}
	if err := l.Events(0, func(e audit.Event) error { kinds[e.Kind]++; return nil }); err != nil {
		t.Fatal(err)
	}
	return kinds
}

// TestRoundRetry: a round without quorum by round_timeout is retried with
// the same number and the next attempt, the first attempt's updates are
// discarded, and an update after the close is refused.
func TestRoundRetry(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.RoundTimeout = coordinator.Duration(800 * time.Millisecond)
	f.cfg.LongPoll = coordinator.Duration(3 * time.Second)
	f.cfg.Training.Rounds = 2
	s, ps := f.startScaled(t, abc...)

	begin := time.Now()
	first := assignments(t, ps)
	if first[0].GetRound() != 1 || first[0].GetAttempt() != 0 {
		t.Fatalf("first assignment round %d attempt %d, want 1, 0", first[0].GetRound(), first[0].GetAttempt())
	}
	// Only one update: below the quorum of 2.
	discarded := update{delta: deltas(100), samples: 1000}
	if _, err := ps[0].submit(t, 1, discarded); err != nil {
		t.Fatalf("SubmitUpdate(attempt 0) = %v", err)
	}
	second := assignmentsWhere(t, ps, func(a *fedguardv1.RoundAssignment) bool { return a.GetAttempt() > 0 })
	if waited := time.Since(begin); waited < time.Duration(f.cfg.RoundTimeout) {
		t.Errorf("second attempt opened %v after the first, before round_timeout %v", waited, time.Duration(f.cfg.RoundTimeout))
	}
	for j, a := range second {
		if a.GetRound() != 1 || a.GetAttempt() != 1 {
			t.Errorf("%s: retried assignment round %d attempt %d, want round 1 attempt 1", ps[j].name, a.GetRound(), a.GetAttempt())
		}
		if !slices.Equal(a.GetModelSha256(), first[j].GetModelSha256()) {
			t.Errorf("%s: retried round starts from model %x, want %x", ps[j].name, a.GetModelSha256(), first[j].GetModelSha256())
		}
		if a.GetSeed() == first[j].GetSeed() {
			t.Errorf("%s: retried round has the first attempt's seed %d", ps[j].name, a.GetSeed())
		}
	}
	if recs, err := s.c.Rounds(); err != nil || len(recs) != 0 {
		t.Fatalf("Rounds() after a failed attempt = %v, %v; want none", recs, err)
	}
	updates := map[string]update{
		"hospital-a": {deltas(11), 5, nil},
		"hospital-b": {deltas(12), 6, nil},
		"hospital-c": {deltas(13), 7, nil},
	}
	submitAll(t, 1, ps, updates)
	recs := waitRounds(t, s.c, 1, 10*time.Second)
	next := ruleRef(t, make([]float32, numParams), updates)
	if diff := cmp.Diff([]coordinator.RoundRecord{wantRecord(1, 1, abc, updates, next)}, recs, recordOpts); diff != "" {
		t.Errorf("Rounds() after the retried round (-want +got):\n%s", diff)
	}

	// Round 1 is closed and round 2 not yet open.
	_, err := ps[0].submit(t, 1, update{delta: deltas(14), samples: 1})
	wantCode(t, "SubmitUpdate(closed round 1)", err, codes.FailedPrecondition)
	_, _, err = ps[0].getModel(t, 1)
	wantCode(t, "GetModel(closed round 1)", err, codes.FailedPrecondition)
	keys := s.c.PublicKeys()
	s.stop(t)
	if kinds := auditKinds(t, f.cfg, keys); kinds[audit.KindRoundFailed] != 1 || kinds[audit.KindRoundOpened] != 2 {
		t.Errorf("audit log has %d round_failed and %d round_opened events, want 1 and 2 (attempts 0 and 1 of round 1)",
			kinds[audit.KindRoundFailed], kinds[audit.KindRoundOpened])
	}
}

// TestUpdateRefusals sends malformed and misplaced updates during an open
// round: each gets its status code and none changes the round.
func TestUpdateRefusals(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.CohortTimeout = coordinator.Duration(200 * time.Millisecond)
	f.cfg.Training.Rounds = 1
	s, ps := f.startScaled(t, abc...)
	a, b, c := ps[0], ps[1], ps[2]
	assignments(t, []*participant{a, b}) // c is not in the cohort

	good := update{delta: deltas(21), samples: 9}
	enc := model.AppendBytes(nil, good.delta)
	sum := sha256.Sum256(enc)
	header := func(mut func(*fedguardv1.UpdateHeader)) *fedguardv1.SubmitUpdateRequest {
		h := &fedguardv1.UpdateHeader{NumParams: numParams, SampleCount: 9, Sha256: sum[:]}
		if mut != nil {
			mut(h)
		}
		return &fedguardv1.SubmitUpdateRequest{Round: 1, FormatVersion: model.FormatVersion, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: h}}
	}
	nan := model.AppendBytes(nil, good.delta)
	copy(nan[8:], []byte{0, 0, 0xc0, 0x7f})
	tests := []struct {
		name string
		from *participant
		msgs []*fedguardv1.SubmitUpdateRequest
		want codes.Code
	}{
		{"not in cohort", c, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(1, 0, enc)}, codes.FailedPrecondition},
		{"round not open", a, []*fedguardv1.SubmitUpdateRequest{
			{Round: 2, FormatVersion: 1, Body: header(nil).Body}, chunkMsg(2, 0, enc)}, codes.FailedPrecondition},
		{"no header", a, []*fedguardv1.SubmitUpdateRequest{chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"format version 2", a, []*fedguardv1.SubmitUpdateRequest{
			{Round: 1, FormatVersion: 2, Body: header(nil).Body}, chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"wrong num_params", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.NumParams = 7 }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"zero samples", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.SampleCount = 0 }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"too many samples", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.SampleCount = coordinator.MaxSamples + 1 }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"short sha256", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.Sha256 = sum[:31] }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"sha256 mismatch", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.Sha256 = make([]byte, 32) }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"data_sha256 of 31 bytes", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.DataSha256 = make([]byte, 31) }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"data_sha256 of 1 KiB", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) { h.DataSha256 = make([]byte, 1024) }), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"holdout accuracy 1.5", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Holdout = &fedguardv1.Evaluation{Count: 1, Loss: 0.1, Accuracy: 1.5}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"holdout NaN loss", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Holdout = &fedguardv1.Evaluation{Count: 1, Loss: math.NaN(), Accuracy: 0.5}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy NaN epsilon", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: math.NaN(), Delta: 1e-5}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy negative epsilon", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: -1, Delta: 1e-5}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy delta 0", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 0}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy delta 1", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy infinite budget", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5, Budget: math.Inf(1)}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"privacy negative budget", a, []*fedguardv1.SubmitUpdateRequest{header(func(h *fedguardv1.UpdateHeader) {
			h.Privacy = &fedguardv1.PrivacyLedger{Epsilon: 1, Delta: 1e-5, Budget: -2}
		}), chunkMsg(1, 0, enc)}, codes.InvalidArgument},
		{"NaN parameter", a, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(1, 0, nan)}, codes.InvalidArgument},
		{"incomplete", a, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(1, 0, enc[:12])}, codes.InvalidArgument},
		{"gap", a, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(1, 0, enc[:8]), chunkMsg(1, 3, enc[12:])}, codes.InvalidArgument},
		{"overflow", a, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(1, 0, append(slices.Clone(enc), 0, 0, 0, 0))}, codes.InvalidArgument},
		{"chunk names another round", a, []*fedguardv1.SubmitUpdateRequest{header(nil), chunkMsg(2, 0, enc)}, codes.InvalidArgument},
		{"second header", a, []*fedguardv1.SubmitUpdateRequest{header(nil), header(nil)}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		_, err := tt.from.send(t, tt.msgs)
		wantCode(t, tt.name+": SubmitUpdate", err, tt.want)
	}

	// None of that changed the round: a's good update is still its first.
	if _, err := a.submit(t, 1, good); err != nil {
		t.Fatalf("SubmitUpdate(good) after the refusals = %v", err)
	}
	_, err := a.submit(t, 1, update{delta: deltas(22), samples: 1})
	wantCode(t, "second SubmitUpdate", err, codes.AlreadyExists)
	bu := update{delta: deltas(23), samples: 4}
	if _, err := b.submit(t, 1, bu); err != nil {
		t.Fatalf("SubmitUpdate(b) = %v", err)
	}
	updates := map[string]update{"hospital-a": good, "hospital-b": bu}
	recs := waitRounds(t, s.c, 1, 10*time.Second)
	next := ruleRef(t, make([]float32, numParams), updates)
	if diff := cmp.Diff([]coordinator.RoundRecord{wantRecord(1, 0, []string{"hospital-a", "hospital-b"}, updates, next)}, recs, recordOpts); diff != "" {
		t.Errorf("Rounds() after the refusals (-want +got):\n%s", diff)
	}
	// Every refusal, and the refused second update, is on the record.
	keys := s.c.PublicKeys()
	s.stop(t)
	kinds := auditKinds(t, f.cfg, keys)
	if kinds[audit.KindUpdateRefused] != len(tests)+1 || kinds[audit.KindUpdateReceived] != 2 {
		t.Errorf("audit log has %d update_refused and %d update_received events, want %d and 2",
			kinds[audit.KindUpdateRefused], kinds[audit.KindUpdateReceived], len(tests)+1)
	}
}

// TestRevocationCutsOpenConnection revokes a participant's certificate
// while its connection is open: once the coordinator's CRL watcher has
// reloaded the list, calls on that same connection are PermissionDenied,
// and other participants are unaffected.
func TestRevocationCutsOpenConnection(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s, ps := f.startConnected(t, abc...)
	victim, other := ps[1], ps[0]
	for _, p := range ps {
		if _, err := p.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{}); err != nil {
			t.Fatalf("%s: Join before revocation = %v", p.name, err)
		}
	}
	f.Revoke(t, victim.name)
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		_, last = victim.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{})
		if last != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantCode(t, "Join on the revoked participant's open connection", last, codes.PermissionDenied)
	if n := victim.dials.Load(); n != 1 {
		t.Errorf("the revoked participant's client dialled %d times, want 1 (the refusal must come on the established connection)", n)
	}
	// Streaming calls are checked too.
	_, err := victim.submit(t, 1, update{delta: deltas(1), samples: 1})
	wantCode(t, "SubmitUpdate by the revoked participant", err, codes.PermissionDenied)
	if _, err := other.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{}); err != nil {
		t.Errorf("%s: Join after another's revocation = %v", other.name, err)
	}
	keys := s.c.PublicKeys()
	s.stop(t)
	if kinds := auditKinds(t, f.cfg, keys); kinds[audit.KindCertificateRevoked] != 1 || kinds[audit.KindCertificateAccepted] != 3 {
		t.Errorf("audit log has %d certificate_revoked and %d certificate_accepted events, want 1 and 3",
			kinds[audit.KindCertificateRevoked], kinds[audit.KindCertificateAccepted])
	}
	// A new connection with the revoked certificate fails its handshake.
	fresh := dial(t, victim.name, s.addr, f.tlsFor(t, victim.name, s.addr))
	_, err = fresh.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{})
	wantCode(t, "Join on a new connection with a revoked certificate", err, codes.Unavailable)
}

// TestHealthAndAdmission checks the health service over mutual TLS and who
// the coordinator lets in.
func TestHealthAndAdmission(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc, "hospital-x") // hospital-x has a certificate but is not enrolled
	s := start(t, f.cfg)
	enrolled := f.connect(t, s, "hospital-a")[0]

	noCert := f.tlsFor(t, "hospital-a", s.addr).Clone()
	noCert.Certificates, noCert.GetClientCertificate = nil, nil
	anonymous := dial(t, "anonymous", s.addr, noCert)
	unenrolled := f.connect(t, s, "hospital-x")[0]

	tests := []struct {
		name     string
		p        *participant
		service  string
		want     codes.Code
		wantResp healthpb.HealthCheckResponse_ServingStatus
	}{
		{"server health", enrolled, "", codes.OK, healthpb.HealthCheckResponse_SERVING},
		{"service health", enrolled, fedguardv1.CoordinatorService_ServiceDesc.ServiceName, codes.OK, healthpb.HealthCheckResponse_SERVING},
		{"unknown service", enrolled, "grpc.nope.v1.Nope", codes.NotFound, 0},
		{"no client certificate", anonymous, "", codes.Unavailable, 0},
		{"unenrolled certificate", unenrolled, "", codes.Unavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.p.health().Check(callCtx(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: tt.service})
			wantCode(t, "Health.Check("+tt.service+")", err, tt.want)
			if err == nil && resp.GetStatus() != tt.wantResp {
				t.Errorf("Health.Check(%q) = %v, want %v", tt.service, resp.GetStatus(), tt.wantResp)
			}
		})
	}
	_, err := unenrolled.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{})
	wantCode(t, "Join by an unenrolled certificate holder", err, codes.Unavailable)
	resp, err := enrolled.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test/1"})
	if err != nil {
		t.Fatalf("Join = %v", err)
	}
	want := &fedguardv1.JoinResponse{Federation: fedName, Participant: "hospital-a", StatsNeeded: true}
	if resp.GetFederation() != want.Federation || resp.GetParticipant() != want.Participant || resp.GetStatsNeeded() != want.StatsNeeded ||
		resp.GetModel().GetNumParams() != numParams || resp.GetModel().GetFormatVersion() != model.FormatVersion {
		t.Errorf("Join = %v, want %v with a %d-parameter model", resp, want, numParams)
	}
}

// TestFedAvgBitExact: the committed model is start + the sample-weighted
// mean of the deltas computed in float64 and rounded once to float32, bit
// for bit. In particular, when every participant sends the same delta the
// mean is exactly that delta.
func TestFedAvgBitExact(t *testing.T) {
	t.Parallel()
	same := deltas(42)
	tests := []struct {
		name    string
		updates map[string]update
	}{
		{"different deltas, weights 10:30:7", map[string]update{
			"hospital-a": {deltas(31), 10, nil}, "hospital-b": {deltas(32), 30, nil}, "hospital-c": {deltas(33), 7, nil},
		}},
		{"identical deltas, weights 10:30:7", map[string]update{
			"hospital-a": {same, 10, nil}, "hospital-b": {same, 30, nil}, "hospital-c": {same, 7, nil},
		}},
	}
	f := newFederation(t, abc)
	f.cfg.Training.Rounds = len(tests)
	s, ps := f.startScaled(t, abc...)
	current := make([]float32, numParams)
	for i, tt := range tests {
		round := uint64(i + 1)
		assignments(t, ps)
		submitAll(t, round, ps, tt.updates)
		waitRounds(t, s.c, int(round), 10*time.Second)
		obs := s.waitObserved(t, round, 10*time.Second)
		got := obs[len(obs)-1].Model
		want := fedAvgRef(current, tt.updates)
		if !sameBits(got, want) {
			t.Errorf("%s: committed model\n got %v\nwant %v (start + float64 weighted mean, rounded once)", tt.name, got, want)
		}
		current = got
	}
}

// TestRequestValidation sends malformed Join and ReportStats requests: each
// is InvalidArgument and none moves the stats phase.
func TestRequestValidation(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.MinParticipants = 1
	f.cfg.StatsTimeout = coordinator.Duration(100 * time.Millisecond)
	s := start(t, f.cfg)
	p := f.connect(t, s, abc[0])[0]
	nan, inf := math.NaN(), math.Inf(1)
	st := func(count uint64, sum, sumSq []float64) *fedguardv1.ReportStatsRequest {
		return &fedguardv1.ReportStatsRequest{Stats: &fedguardv1.FeatureStats{Count: count, Sum: sum, SumSquares: sumSq}}
	}
	tests := []struct {
		name string
		req  *fedguardv1.ReportStatsRequest
	}{
		{"no stats", &fedguardv1.ReportStatsRequest{}},
		{"zero rows", st(0, []float64{1, 2}, []float64{1, 4})},
		{"too many rows", st(coordinator.MaxSamples+1, []float64{1, 2}, []float64{1, 4})},
		{"too few sums", st(3, []float64{1}, []float64{1, 4})},
		{"too many sums of squares", st(3, []float64{1, 2}, []float64{1, 4, 9})},
		{"NaN sum", st(3, []float64{nan, 2}, []float64{1, 4})},
		{"infinite sum", st(3, []float64{1, -inf}, []float64{1, 4})},
		{"infinite sum of squares", st(3, []float64{1, 2}, []float64{inf, 4})},
		{"negative sum of squares", st(3, []float64{1, 2}, []float64{1, -4})},
	}
	for _, tt := range tests {
		_, err := p.svc.ReportStats(callCtx(t, 10*time.Second), tt.req)
		wantCode(t, "ReportStats("+tt.name+")", err, codes.InvalidArgument)
	}
	_, err := p.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{AgentVersion: string(make([]byte, 257))})
	wantCode(t, "Join(257-byte agent_version)", err, codes.InvalidArgument)
	if _, err := p.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{AgentVersion: string(make([]byte, 256))}); err != nil {
		t.Errorf("Join(256-byte agent_version) = %v", err)
	}
	// Refused statistics are not counted: with a quorum of one and a short
	// stats_timeout, one counted report would have fixed the scaling.
	time.Sleep(4 * time.Duration(f.cfg.StatsTimeout))
	if !p.statsNeeded(t) {
		t.Errorf("scaling fixed after only refused statistics")
	}
}

// TestManifestRPCs: GetManifest serves only closed rounds' manifests, and
// ReportRefusal validates its input and puts a valid refusal on the record
// under the caller's name.
func TestManifestRPCs(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s, ps := f.startConnected(t, abc...)
	_, err := ps[0].svc.GetManifest(callCtx(t, 5*time.Second), &fedguardv1.GetManifestRequest{Round: 0})
	wantCode(t, "GetManifest(0) before the scaling is fixed", err, codes.NotFound)
	fixScaling(t, ps)
	got, err := ps[0].svc.GetManifest(callCtx(t, 5*time.Second), &fedguardv1.GetManifestRequest{Round: 0})
	if err != nil {
		t.Fatalf("GetManifest(0) after the scaling is fixed = %v", err)
	}
	if v, err := manifest.Verify(got.GetManifest(), s.c.PublicKeys(), fedName); err != nil || v.Round.Round != 0 || v.Round.Parent != "" {
		t.Errorf("manifest of round 0 = %+v, %v; want a verified genesis manifest", v.Round, err)
	}
	_, err = ps[0].svc.GetManifest(callCtx(t, 5*time.Second), &fedguardv1.GetManifestRequest{Round: 1})
	wantCode(t, "GetManifest(1) before round 1 closed", err, codes.NotFound)

	for _, tt := range []struct {
		name string
		req  *fedguardv1.ReportRefusalRequest
		want codes.Code
	}{
		{"unknown reason", &fedguardv1.ReportRefusalRequest{Reason: "dislike"}, codes.InvalidArgument},
		{"empty reason", &fedguardv1.ReportRefusalRequest{}, codes.InvalidArgument},
		{"detail too long", &fedguardv1.ReportRefusalRequest{Reason: "rollback", Detail: strings.Repeat("x", 1025)}, codes.InvalidArgument},
		{"valid", &fedguardv1.ReportRefusalRequest{ManifestRound: 7, Reason: "fork", Detail: "manifest 7 differs"}, codes.OK},
	} {
		_, err := ps[1].svc.ReportRefusal(callCtx(t, 5*time.Second), tt.req)
		wantCode(t, "ReportRefusal: "+tt.name, err, tt.want)
	}
	keys := s.c.PublicKeys()
	s.stop(t)
	refused := fedtest.AuditEvents(t, f.cfg, audit.KindManifestRefused)
	if len(refused) != 1 || refused[0].Actor != "hospital-b" || !strings.Contains(string(refused[0].Payload), `"reason":"fork"`) {
		t.Errorf("manifest_refused events = %+v, want one by hospital-b with reason fork", refused)
	}
	if kinds := auditKinds(t, f.cfg, keys); kinds[audit.KindManifestSigned] != 1 {
		t.Errorf("audit log has %d manifest_signed events, want 1 (round 0)", kinds[audit.KindManifestSigned])
	}
}

// TestBucketSplitFromManifest: with bucketing, the split is derived from
// the signed manifest the round started from, so anyone holding that
// manifest and the updates recomputes the round bit for bit, and the split
// was fixed before any update existed.
func TestBucketSplitFromManifest(t *testing.T) {
	t.Parallel()
	names := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d", "hospital-e", "hospital-f"}
	f := newFederation(t, names)
	f.cfg.Training.Rounds = 1
	f.cfg.MinParticipants = 6
	f.cfg.Aggregation = aggregation.Config{Rule: aggregation.NameMedian, Bucket: 2}
	s, ps := f.startScaled(t, names...)
	as := assignments(t, ps)
	updates := map[string]update{}
	for i, n := range names {
		updates[n] = update{delta: deltas(uint64(40 + i)), samples: uint64(3 + i)}
	}
	submitAll(t, 1, ps, updates)
	recs := waitRounds(t, s.c, 1, 10*time.Second)
	obs := s.waitObserved(t, 1, 10*time.Second)

	start, err := manifest.Digest(as[0].GetManifest())
	if err != nil {
		t.Fatal(err)
	}
	rule, err := aggregation.New(f.cfg.Aggregation)
	if err != nil {
		t.Fatal(err)
	}
	var ups []aggregation.Update
	for _, n := range names {
		ups = append(ups, aggregation.Update{ID: n, Delta: slices.Clone(updates[n].delta), Samples: updates[n].samples})
	}
	want := make([]float32, numParams)
	report, err := aggregation.WithRand(rule, rand.NewChaCha8(coordinator.RoundSeed(start, 1, 0))).Aggregate(want, ups)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(report, recs[0].Report); diff != "" {
		t.Errorf("recomputed report differs from the recorded one (-recomputed +recorded):\n%s", diff)
	}
	// The initial model is all zeros, so the new model is the aggregate.
	if got := obs[len(obs)-1].Model; !sameBits(got, want) {
		t.Errorf("committed model %v, recomputed from the manifest's seed %v", got, want)
	}
	// Other manifests give other splits: one in 15 pairings of six
	// updates coincides by chance, so try several.
	differs := false
	for i := range 8 {
		other := start
		other[i] ^= 1
		alt, err := aggregation.WithRand(rule, rand.NewChaCha8(coordinator.RoundSeed(other, 1, 0))).Aggregate(make([]float32, numParams), ups)
		if err != nil {
			t.Fatal(err)
		}
		differs = differs || !cmp.Equal(alt, report)
	}
	if !differs {
		t.Errorf("the split does not depend on the starting manifest")
	}
}

// TestGetModelNoOpenRound: GetModel before any round is open says so,
// instead of "round 0 is not open (open round: 0)".
func TestGetModelNoOpenRound(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s := start(t, f.cfg)
	p := f.connect(t, s, "hospital-a")[0]
	for _, round := range []uint64{0, 1} {
		_, _, err := p.getModel(t, round)
		wantCode(t, "GetModel in the statistics phase", err, codes.FailedPrecondition)
		if msg := status.Convert(err).Message(); strings.Contains(msg, "open round") || !strings.Contains(msg, "no round is") {
			t.Errorf("GetModel(%d) in the statistics phase = %q, want it to say no round is open", round, msg)
		}
	}
}
