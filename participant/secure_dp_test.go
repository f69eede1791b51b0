package participant_test

import (
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
	for name, err := range runAll(t, agents, 60*time.Second) {
		if err != nil {
			t.Errorf("%s: Run = %v, want nil", name, err)
		}
	}
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
