package participant_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
	"github.com/fedguard/fedguard/wire"
)

// dpTrainer is the test trainer with DP-SGD on.
func dpTrainer() *participant.LocalTrainer {
	tr := newTrainer()
	tr.DP = &participant.DPSettings{NoiseMultiplier: 1.1, ClipNorm: 1}
	return tr
}

// roundEvent is what one round of the fake coordinator's plan costs.
func roundEvent(t *testing.T) privacy.Event {
	t.Helper()
	tr := dpTrainer()
	if _, err := tr.Prepare(testSpec()); err != nil {
		t.Fatal(err)
	}
	ev, ok, err := tr.DPEvent(&fedguardv1.RoundAssignment{Plan: &fedguardv1.TrainingPlan{LocalEpochs: 5, LearningRate: 0.1, BatchSize: 8, L2: 1e-4}})
	if err != nil || !ok {
		t.Fatalf("DPEvent = %v, %v", ok, err)
	}
	return ev
}

func epsilonOf(t *testing.T, rounds int, ev privacy.Event) float64 {
	t.Helper()
	evs := make([]privacy.Event, rounds)
	for i := range evs {
		evs[i] = ev
	}
	g, err := privacy.Epsilon(participant.DefaultDPDelta, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return g.Epsilon
}

// TestPrivacyBudgetEnforced: with a budget between the ε of two rounds and
// of three, the agent trains two rounds with DP-SGD, records them in its
// ledger beside the state file, and sits out the third, reporting why to
// the coordinator; a restarted agent reads the ledger back and still
// refuses.
func TestPrivacyBudgetEnforced(t *testing.T) {
	t.Parallel()
	ev := roundEvent(t)
	if ev.Q <= 0 || ev.Q >= 1 || ev.Steps < 5 {
		t.Fatalf("round event %+v: want Poisson sampling over several steps", ev)
	}
	e2, e3 := epsilonOf(t, 2, ev), epsilonOf(t, 3, ev)
	budget := (e2 + e3) / 2
	state := filepath.Join(t.TempDir(), "h.accepted.json")

	p := newPKI(t)
	fake := newFake(t, 3)
	fake.advanceOnSitOut("hospital-b")
	fake.reportStats(t)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	a, logs := newAgent(t, addr, p.clientTLS, dpTrainer(), fake.keys(), withState(state), func(c *participant.Config) {
		c.DPEpsilon = budget
	})
	if err := run(t, a, 20*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if _, _, submits, _ := fake.counts(); submits != 2 {
		t.Errorf("SubmitUpdate calls = %d, want 2 (the third round exceeds the budget)", submits)
	}
	fake.mu.Lock()
	reports := fake.validations
	fake.mu.Unlock()
	if len(reports) != 1 || reports[0].GetRound() != 3 || reports[0].GetTraining() ||
		len(reports[0].GetFindings()) != 1 || reports[0].GetFindings()[0].GetRule() != string(validation.RulePrivacyBudget) {
		t.Errorf("reports to the coordinator = %v, want one privacy_budget refusal for round 3", reports)
	}
	if !strings.Contains(logs.String(), "round sat out: the privacy budget would be exceeded") {
		t.Errorf("no log of the round sat out:\n%s", logs)
	}
	spent, b, delta, ok := a.PrivacySpent()
	if !ok || math.Abs(spent-e2) > 1e-12*e2 || b != budget || delta != participant.DefaultDPDelta {
		t.Errorf("PrivacySpent = %v, %v, %v, %v; want %v, %v, %v", spent, b, delta, ok, e2, budget, participant.DefaultDPDelta)
	}
	ledger := participant.PrivacyLedgerPath(state)
	if ledger != filepath.Join(filepath.Dir(state), "h.accepted.privacy.json") {
		t.Errorf("ledger path %s", ledger)
	}
	fi, err := os.Stat(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger mode %v, want 0600", fi.Mode().Perm())
	}

	// A restarted agent picks the ledger up.
	b2, _ := newAgent(t, addr, p.clientTLS, dpTrainer(), fake.keys(), withState(state), func(c *participant.Config) {
		c.DPEpsilon = budget
	})
	if got, _, _, _ := b2.PrivacySpent(); math.Abs(got-e2) > 1e-12*e2 {
		t.Errorf("restarted agent has spent %v, want %v from the ledger", got, e2)
	}
	m := gather(t, b2)
	if m["fedguard_participant_dp_epsilon_spent"] != got2(b2) || m["fedguard_participant_dp_epsilon_budget"] != budget {
		t.Errorf("metrics %v", m)
	}

	// A damaged ledger stops the agent from starting: it would otherwise
	// forget what it spent.
	if err := os.WriteFile(ledger, []byte(`{"version":1,"events":[{"round":1,"attempt":1,"q":2,"sigma":1,"steps":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = participant.New(participant.Config{Coordinator: addr, TLS: p.clientTLS, Trainer: dpTrainer(), Federation: federation,
		CoordinatorKeys: fake.keys(), StateFile: state, DPEpsilon: budget})
	if err == nil || !strings.Contains(err.Error(), "privacy ledger") {
		t.Errorf("New with a damaged ledger = %v, want a privacy ledger error", err)
	}
}

func got2(a *participant.Agent) float64 { e, _, _, _ := a.PrivacySpent(); return e }

// gather returns the agent's gauge values by name.
func gather(t *testing.T, a *participant.Agent) map[string]float64 {
	t.Helper()
	mfs, err := a.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				out[mf.GetName()] = g.GetValue()
			}
		}
	}
	return out
}

func TestNewValidatesDP(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	for _, tt := range []struct {
		name string
		tr   participant.Trainer
		eps  float64
		del  float64
	}{
		{"budget without DP-SGD", newTrainer(), 8, 0},
		{"negative budget", dpTrainer(), -1, 0},
		{"delta 1", dpTrainer(), 8, 1},
		{"NaN budget", dpTrainer(), math.NaN(), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := participant.New(participant.Config{Coordinator: "127.0.0.1:1", TLS: p.clientTLS, Trainer: tt.tr, Federation: federation,
				CoordinatorKeys: fake.keys(), DPEpsilon: tt.eps, DPDelta: tt.del})
			if err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

// TestRefusedModelSpendsNoPrivacy: a starting model the agent refuses is
// never trained on, so it costs no privacy; otherwise a coordinator could
// drain a hospital's budget with tampered models. With the ledger recorded
// before the model was checked (the first version of this code), the
// ledger held three events here instead of two.
func TestRefusedModelSpendsNoPrivacy(t *testing.T) {
	t.Parallel()
	ev := roundEvent(t)
	p := newPKI(t)
	fake := newFake(t, 2)
	fake.tamper = func(call int, msg *fedguardv1.GetModelResponse) {
		if call == 1 {
			msg.Data[0] ^= 1
		}
	}
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	a, _ := newAgent(t, addr, p.clientTLS, dpTrainer(), fake.keys(), func(c *participant.Config) { c.DPEpsilon = 100 })
	if err := run(t, a, 20*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := a.Stats().ModelsRefused; got != 1 {
		t.Fatalf("ModelsRefused = %d, want 1", got)
	}
	if got, want := got2(a), epsilonOf(t, 2, ev); math.Abs(got-want) > 1e-12*want {
		t.Errorf("ε spent %v, want %v (two rounds trained, the refused model not counted)", got, want)
	}
}

// TestExecTrainerDPEvents runs an agent whose external trainer (a real
// process) reports its DP-SGD in its metrics file. The agent's accountant
// keeps the ledger and enforces the budget: with room for one round, the
// first round's update goes out with the ledger (ε, δ, budget) in its
// header, and the later rounds, expected to cost as much, are sat out
// before training and reported; with no room even for one, the trained
// update is dropped, nothing is recorded, and the coordinator is told; a
// trainer that reports no events under a budget sends nothing.
func TestExecTrainerDPEvents(t *testing.T) {
	t.Parallel()
	ev := privacy.Event{Q: 0.05, Sigma: 1.2, Steps: 40}
	e1, e2 := epsilonOf(t, 1, ev), epsilonOf(t, 2, ev)
	events := `[{"q": 0.05, "sigma": 1.2, "steps": 40}]`
	for _, tt := range []struct {
		name    string
		mode    string
		budget  float64
		submits int
		refused []uint64 // rounds reported as over budget
		spent   float64
	}{
		{"room for one round", "dp", (e1 + e2) / 2, 1, []uint64{2, 3}, e1},
		{"no room", "dp", e1 / 2, 0, []uint64{1, 2, 3}, 0},
		{"no events reported", "ok", 100, 0, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t)
			fake := newFake(t, 3)
			fake.advanceOnSitOut("hospital-b")
			fake.reportStats(t)
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			args := []string{}
			if tt.mode == "dp" {
				args = append(args, events)
			}
			tr := &participant.ExecTrainer{Command: participant.HelperTrainer(tt.mode, args...), Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
			state := filepath.Join(t.TempDir(), "h.accepted.json")
			a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys(), withState(state), func(c *participant.Config) { c.DPEpsilon = tt.budget })
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			if tt.mode == "ok" {
				// The trainer keeps failing the contract: let it try a
				// few times, then stop the agent.
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(logs.String(), "reports no dp_events") && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				cancel()
			}
			if err := <-done; err != nil && tt.mode != "ok" {
				t.Fatalf("Run = %v\n%s", err, logs)
			}
			fake.mu.Lock()
			records, reports := fake.records, fake.validations
			fake.mu.Unlock()
			if len(records) != tt.submits {
				t.Fatalf("%d updates sent, want %d\n%s", len(records), tt.submits, logs)
			}
			for _, r := range records {
				l := r.header.GetPrivacy()
				if l == nil || math.Abs(l.GetEpsilon()-e1) > 1e-12*e1 || l.GetBudget() != tt.budget || l.GetDelta() != participant.DefaultDPDelta {
					t.Errorf("round %d: privacy in the header %v, want ε %v, budget %v", r.asg.GetRound(), l, e1, tt.budget)
				}
			}
			var got []uint64
			for _, r := range reports {
				if len(r.GetFindings()) == 1 && r.GetFindings()[0].GetRule() == string(validation.RulePrivacyBudget) {
					got = append(got, r.GetRound())
				}
			}
			if !slices.Equal(got, tt.refused) {
				t.Errorf("rounds reported over budget %v, want %v", got, tt.refused)
			}
			if spent := got2(a); math.Abs(spent-tt.spent) > 1e-12 {
				t.Errorf("ε spent %v, want %v", spent, tt.spent)
			}
			if tt.mode == "ok" && !strings.Contains(logs.String(), "reports no dp_events") {
				t.Errorf("no log of the unaccountable trainer:\n%s", logs)
			}
		})
	}
}

// TestExecTrainerUnboundedEpsilon: an external trainer that reports DP
// events with a noise multiplier too small for the accountant (ε = +Inf)
// while the hospital keeps a ledger without a budget gets its round sat
// out as bad metrics: nothing is recorded, no update leaves with an
// unbounded ε (which the coordinator refuses, so one such record used to
// have every later update refused), and the ledger file stays empty.
func TestExecTrainerUnboundedEpsilon(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 3)
	fake.reportStats(t)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	tr := &participant.ExecTrainer{
		Command: participant.HelperTrainer("dp_no_budget", `[{"q": 1, "sigma": 1e-300, "steps": 1}]`),
		Dir:     filepath.Join(t.TempDir(), "work"), Local: newTrainer(),
	}
	state := filepath.Join(t.TempDir(), "h.accepted.json")
	a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys(), withState(state), func(c *participant.Config) { c.DPDelta = 1e-5 })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fake.mu.Lock()
		n := len(fake.records)
		fake.mu.Unlock()
		if n > 0 || strings.Contains(logs.String(), "no finite ε") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	fake.mu.Lock()
	records := fake.records
	fake.mu.Unlock()
	for _, r := range records {
		if err := wire.CheckPrivacyLedger(r.header.GetPrivacy()); err != nil {
			t.Errorf("round %d: the update left with a ledger the coordinator refuses: %v", r.asg.GetRound(), err)
		}
	}
	if len(records) != 0 {
		t.Errorf("%d updates sent, want none", len(records))
	}
	if spent := got2(a); spent != 0 {
		t.Errorf("ε spent %v, want 0 (nothing recorded)", spent)
	}
	if b, err := os.ReadFile(participant.PrivacyLedgerPath(state)); err == nil && strings.Contains(string(b), `"sigma"`) {
		t.Errorf("the unbounded round was recorded: %s", b)
	}
	if !strings.Contains(logs.String(), "no finite ε") || !strings.Contains(logs.String(), "external trainer (metrics)") {
		t.Errorf("no log of the unaccountable events as bad metrics:\n%s", logs)
	}
}

// TestExecTrainerDriftingDPEvents: an exec trainer reports, every round,
// one DP event of a (q, σ) it never reported before and one it did. The
// agent keeps its ledger's composition in memory (privacy.Composition) and
// accounts only for what is new; the ε it reports with each update, the ε
// it ends with and the ε a restarted agent reads from the file are what
// the accountant gives for all the events from scratch (privacy.Epsilon),
// bit for bit.
func TestExecTrainerDriftingDPEvents(t *testing.T) {
	t.Parallel()
	const rounds = 3
	p := newPKI(t)
	fake := newFake(t, rounds)
	fake.reportStats(t)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	tr := &participant.ExecTrainer{Command: participant.HelperTrainer("dp_drift"), Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
	state := filepath.Join(t.TempDir(), "h.accepted.json")
	budget := func(c *participant.Config) { c.DPEpsilon = 100 }
	a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys(), withState(state), budget)
	if err := run(t, a, 40*time.Second); err != nil {
		t.Fatalf("Run = %v\n%s", err, logs)
	}
	fake.mu.Lock()
	records := fake.records
	fake.mu.Unlock()
	if len(records) != rounds {
		t.Fatalf("%d updates sent, want %d\n%s", len(records), rounds, logs)
	}
	var evs []privacy.Event
	want := map[uint64]float64{}
	for r := uint64(1); r <= rounds; r++ {
		evs = append(evs, privacy.Event{Q: participant.DriftQ(r), Sigma: participant.DriftSigma(r), Steps: 40}, privacy.Event{Q: 0.05, Sigma: 1.2, Steps: 10})
		g, err := privacy.Epsilon(participant.DefaultDPDelta, evs...)
		if err != nil {
			t.Fatal(err)
		}
		want[r] = g.Epsilon
	}
	for _, r := range records {
		if got := r.header.GetPrivacy().GetEpsilon(); got != want[r.asg.GetRound()] {
			t.Errorf("round %d: ε %v in the header, want %v (the accountant's from scratch)", r.asg.GetRound(), got, want[r.asg.GetRound()])
		}
	}
	if got := got2(a); got != want[rounds] {
		t.Errorf("ε spent %v, want %v", got, want[rounds])
	}
	b, _ := newAgent(t, addr, p.clientTLS, tr, fake.keys(), withState(state), budget)
	if got := got2(b); got != want[rounds] {
		t.Errorf("restarted agent: ε spent %v, want %v", got, want[rounds])
	}
}
