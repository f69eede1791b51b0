package participant_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
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
