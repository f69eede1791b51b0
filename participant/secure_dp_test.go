package participant_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/participant"
	"github.com/fedguard/fedguard/privacy"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/validation"
)

// TestSecureDPPolicy checks the hospital's own floor on the coordinator's
// distributed DP (Config.SecureDPRoundEpsilon): a secure round without
// distributed DP, or whose noise costs more than the limit per round, is
// declined before any key is advertised or any model fetched, with a
// reason that names the numbers; a round with enough noise is joined.
func TestSecureDPPolicy(t *testing.T) {
	t.Parallel()
	t.Run("enough noise", func(t *testing.T) {
		fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) {
			f.layout.Dp = &fedguardv1.SecureDP{Mechanism: secagg.DDPMechanism, ClipNorm: 1, Scale: 512, Sigma2: 1 << 24, Beta: secagg.DefaultDDPBeta}
		})
		errs := make(chan error, len(secureNames))
		for _, name := range secureNames {
			a, _ := newPolicyAgent(t, addr, tlsCfgs[name], fake.keys(), name, "", func(c *participant.Config) { c.SecureDPRoundEpsilon = 2 })
			go func() { errs <- run(t, a, 60*time.Second) }()
		}
		for range secureNames {
			if err := <-errs; err != nil {
				t.Errorf("Run = %v", err)
			}
		}
		sums, declines, _ := fake.results()
		if len(declines) != 0 || len(sums) != 1 || sums[0].weight != 3 {
			t.Fatalf("declines %+v, sums %+v; want none and one sum of 3", declines, sums)
		}
	})
	for _, tt := range []struct {
		name string
		dp   *fedguardv1.SecureDP
		want []string
	}{
		{"no distributed DP", nil, []string{"with distributed DP only", "ε = 2 per round"}},
		{"too little noise", &fedguardv1.SecureDP{Mechanism: secagg.DDPMechanism, ClipNorm: 1, Scale: 512, Sigma2: 100, Beta: secagg.DefaultDDPBeta},
			[]string{"costs ε = ", "σ² = 100", "2 survivors at least", "above this hospital's limit of 2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newSecureFake(t, 1, secureNames)
			fake.layout.Dp = tt.dp
			fake.declinesToAdvance = 1
			addr := p.serveSecure(t, fake)
			a, _ := newPolicyAgent(t, addr, p.clientTLS, fake.keys(), hospital, "", func(c *participant.Config) { c.SecureDPRoundEpsilon = 2 })
			if err := run(t, a, 30*time.Second); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			_, declines, advertised := fake.results()
			if len(declines) != 1 {
				t.Fatalf("declines %+v, want one", declines)
			}
			for _, w := range tt.want {
				if !strings.Contains(declines[0].reason, w) {
					t.Errorf("decline reason %q does not name %q", declines[0].reason, w)
				}
			}
			if _, getModels := fake.counts(); len(advertised) != 0 || getModels != 0 {
				t.Errorf("advertisements %v, GetModel calls %d; want none", advertised, getModels)
			}
		})
	}
}

// TestSecureExecTrainerOverBudget: an exec trainer whose reported DP events
// take the hospital past its record-level budget after it trained in a
// secure round has its update dropped (no masked input leaves) and, as in
// a plain round, the agent tells the coordinator it sat the round out for
// its privacy budget (a privacy_budget report), while the others' sum is
// unmasked without it and nothing is recorded in its ledger.
func TestSecureExecTrainerOverBudget(t *testing.T) {
	t.Parallel()
	ev := privacy.Event{Q: 0.05, Sigma: 1.2, Steps: 40}
	budget := epsilonOf(t, 1, ev) / 2
	fake, addr, tlsCfgs := secureFederation(t, 1, nil)
	dir := t.TempDir()
	agents := map[string]*participant.Agent{}
	for _, name := range secureNames {
		var policy func(*participant.Config)
		if name == "hospital-b" {
			policy = func(c *participant.Config) {
				c.Trainer = &participant.ExecTrainer{Command: participant.HelperTrainer("dp", `[{"q": 0.05, "sigma": 1.2, "steps": 40}]`),
					Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
				c.DPEpsilon = budget
			}
		}
		agents[name], _ = newPolicyAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"), policy)
	}
	runAllOK(t, agents, 60*time.Second)
	sums, _, _ := fake.results()
	if len(sums) != 1 {
		t.Fatalf("fake unmasked %d sums, want 1", len(sums))
	}
	checkMean(t, sums[0], []string{"hospital-a", "hospital-c"}, fake.layout)
	fake.mu.Lock()
	reports := fake.validations
	fake.mu.Unlock()
	var refused []uint64
	for _, r := range reports {
		if len(r.GetFindings()) == 1 && r.GetFindings()[0].GetRule() == string(validation.RulePrivacyBudget) && !r.GetTraining() {
			refused = append(refused, r.GetRound())
		}
	}
	if !slices.Equal(refused, []uint64{1}) {
		t.Errorf("rounds reported over budget %v, want [1] (hospital-b's, after training)", refused)
	}
	if spent, _, _, ok := agents["hospital-b"].PrivacySpent(); !ok || spent != 0 {
		t.Errorf("hospital-b's ledger holds ε %v (ok %v), want 0: its update never left", spent, ok)
	}
}

// TestSecureDPLedger checks the hospital's federation-level ledger
// (Config.SecureDPEpsilon): an agent that sends its masked input to a
// secure round with distributed DP records the release, computed from the
// plan, in its privacy ledger file; the ledger survives a new state file
// (another federation) and a restart; and with a budget that one more
// release would exceed, the agent sits the next secure round out before
// advertising a key — declined with a reason naming the numbers and
// reported as privacy_budget, as the record-level budget is — and records
// nothing more.
// TestSecureDPDeltaAlone: a hospital whose trainer has no DP-SGD sets the
// δ of its federation-level budget. It failed before: a δ without a
// record-level budget asked for a record-level ledger, which a trainer
// without DP-SGD cannot keep, so the agent refused to start and such a
// hospital was held to DefaultDPDelta.
func TestSecureDPDeltaAlone(t *testing.T) {
	t.Parallel()
	fake, addr, tlsCfgs := secureFederation(t, 1, nil)
	a, _ := newPolicyAgent(t, addr, tlsCfgs[hospital], fake.keys(), hospital, filepath.Join(t.TempDir(), "state.json"), func(c *participant.Config) {
		c.Trainer = newTrainer() // a LocalTrainer without DP-SGD
		c.SecureDPEpsilon, c.DPDelta = 10, 1e-7
	})
	if eps, budget, delta := a.SecurePrivacySpent(); eps != 0 || budget != 10 || delta != 1e-7 {
		t.Errorf("SecurePrivacySpent = %v, %v, %v; want 0, 10, 1e-07", eps, budget, delta)
	}
}

func TestSecureDPLedger(t *testing.T) {
	t.Parallel()
	dp := &fedguardv1.SecureDP{Mechanism: secagg.DDPMechanism, ClipNorm: 1, Scale: 512, Sigma2: 1 << 24, Beta: secagg.DefaultDDPBeta}
	fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) { f.layout.Dp = dp })
	dir := t.TempDir()
	state := filepath.Join(dir, hospital+".accepted.json")
	agents := map[string]*participant.Agent{}
	for _, name := range secureNames {
		st, policy := filepath.Join(dir, name+".json"), func(c *participant.Config) { c.SecureDPEpsilon = 1000 }
		if name == hospital {
			st = state
		}
		agents[name], _ = newPolicyAgent(t, addr, tlsCfgs[name], fake.keys(), name, st, policy)
	}
	runAllOK(t, agents, 60*time.Second)
	if sums, _, _ := fake.results(); len(sums) != 1 || sums[0].weight != 3 {
		t.Fatalf("sums %+v, want one of 3", sums)
	}
	ledger := participant.PrivacyLedgerPath(state)
	b, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Version     int
		Events      []json.RawMessage
		Distributed []participant.DistributedLedgerEvent
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Version != 1 || len(rec.Events) != 0 || len(rec.Distributed) != 1 {
		t.Fatalf("ledger file %s, want one distributed event and no record-level one", b)
	}
	t.Logf("ledger file: %s", b)
	ev := rec.Distributed[0]
	if ev.Round != 1 || ev.Steps != 1 || ev.Clients < 2 || ev.Clients > 3 || ev.Sigma != 4096 || ev.Dim < 2 {
		t.Errorf("distributed event %+v, want round 1, one release at σ = 4096 of a sum of 2 or 3", ev)
	}
	one, err := privacy.DistributedEpsilon(participant.DefaultDPDelta, ev.DistributedDiscreteGaussian)
	if err != nil {
		t.Fatal(err)
	}
	two, err := privacy.DistributedEpsilon(participant.DefaultDPDelta, ev.DistributedDiscreteGaussian, ev.DistributedDiscreteGaussian)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := one.Epsilon, two.Epsilon
	if eps, budget, delta := agents[hospital].SecurePrivacySpent(); eps != e1 || budget != 1000 || delta != participant.DefaultDPDelta {
		t.Errorf("SecurePrivacySpent = %v, %v, %v; want %v, 1000, %v", eps, budget, delta, e1, participant.DefaultDPDelta)
	}

	// Another federation, a new state file, the same ledger; a budget
	// between one release and two.
	p := newPKI(t)
	fake2 := newSecureFake(t, 1, secureNames)
	fake2.layout.Dp = dp
	fake2.declinesToAdvance = 1
	addr2 := p.serveSecure(t, fake2)
	state2 := filepath.Join(t.TempDir(), hospital+".accepted.json")
	if err := os.WriteFile(participant.PrivacyLedgerPath(state2), b, 0o600); err != nil {
		t.Fatal(err)
	}
	budget := (e1 + e2) / 2
	a, logs := newPolicyAgent(t, addr2, p.clientTLS, fake2.keys(), hospital, state2, func(c *participant.Config) { c.SecureDPEpsilon = budget })
	if eps, _, _ := a.SecurePrivacySpent(); eps != e1 {
		t.Errorf("a new agent on the ledger has spent %v, want %v", eps, e1)
	}
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	_, declines, advertised := fake2.results()
	if len(declines) != 1 {
		t.Fatalf("declines %+v, want one", declines)
	}
	for _, w := range []string{"federation-level privacy budget", fmt.Sprintf("%.4g", e1), fmt.Sprintf("%.4g > %g", e2, budget)} {
		if !strings.Contains(declines[0].reason, w) {
			t.Errorf("decline reason %q does not name %q", declines[0].reason, w)
		}
	}
	if _, getModels := fake2.counts(); len(advertised) != 0 || getModels != 0 {
		t.Errorf("advertisements %v, GetModel calls %d; want none", advertised, getModels)
	}
	fake2.mu.Lock()
	reports := fake2.validations
	fake2.mu.Unlock()
	if len(reports) != 1 || reports[0].GetTraining() || len(reports[0].GetFindings()) != 1 ||
		reports[0].GetFindings()[0].GetRule() != string(validation.RulePrivacyBudget) || reports[0].GetRound() != 1 {
		t.Errorf("reports %v, want one privacy_budget refusal of round 1", reports)
	}
	if !strings.Contains(logs.String(), "round sat out: the privacy budget would be exceeded") {
		t.Errorf("no log of the round sat out:\n%s", logs)
	}
	if after, err := os.ReadFile(participant.PrivacyLedgerPath(state2)); err != nil || string(after) != string(b) {
		t.Errorf("ledger after the refusal %s (%v), want it unchanged", after, err)
	}
	g := a.Gatherer()
	if got := gathered(t, g, "fedguard_participant_dp_secure_epsilon_spent"); got != e1 {
		t.Errorf("metric spent %v, want %v", got, e1)
	}
	if got := gathered(t, g, "fedguard_participant_dp_secure_epsilon_budget"); got != budget {
		t.Errorf("metric budget %v, want %v", got, budget)
	}
	if got := gathered(t, g, "fedguard_participant_rounds_sat_out_total", "reason", participant.SatOutPrivacyBudget); got != 1 {
		t.Errorf("rounds sat out for the privacy budget %v, want 1", got)
	}
	if got := gathered(t, g, "fedguard_participant_rounds_sat_out_total", "reason", participant.SatOutDeclined); got != 0 {
		t.Errorf("rounds counted as declined %v, want 0 (counted once, for the budget)", got)
	}

	// A damaged distributed part stops the agent from starting.
	if err := os.WriteFile(participant.PrivacyLedgerPath(state2), []byte(`{"version":1,"events":[],"distributed":[{"round":1,"attempt":0,"sigma":0.1,"clients":3,"dim":64,"l2":10,"steps":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := participant.New(participant.Config{Coordinator: addr2, TLS: p.clientTLS, Trainer: secureTrainers()[hospital], Federation: federation,
		CoordinatorKeys: fake2.keys(), StateFile: state2}); err == nil || !strings.Contains(err.Error(), "privacy ledger") {
		t.Errorf("New with a damaged ledger = %v, want a privacy ledger error", err)
	}
}
