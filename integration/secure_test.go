package integration

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// errKilled is what the hook of the hospital the test kills returns.
var errKilled = errors.New("hospital killed by the test")

// TestSecureKilledInEachPhase runs secure federations (a real coordinator
// process, four hospitals over real mTLS) and kills one hospital just
// before it sends its message of each SecAgg phase: its stream and
// connection go away mid-session. The session goes on with the other
// three (the threshold is 3 of 4), the round closes, and the sum holds
// exactly the inputs it should: the killed hospital's only if its masked
// input arrived, which is so for kills after the masked input.
func TestSecureKilledInEachPhase(t *testing.T) {
	t.Parallel()
	phases := []secagg.Phase{secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseConsistencyCheck, secagg.PhaseUnmasking}
	for _, phase := range phases {
		t.Run(phase.String(), func(t *testing.T) {
			if phase != secagg.PhaseUnmasking {
				fedtest.SkipIfShort(t, "a coordinator process and four hospitals per phase; -short keeps the unmasking phase")
			}
			t.Parallel()
			dir, _, hospitals := demoFederation(t)
			victim := hospitals[len(hospitals)-1]
			cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, 2)
			cfg.Secure = true
			cfg.SecAgg.PhaseTimeout = coordinator.Duration(20 * time.Second)
			cfg.RoundTimeout = coordinator.Duration(30 * time.Second)
			coord := startCoordinator(t, writeConfig(t, dir, cfg))
			keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
			if err != nil {
				t.Fatal(err)
			}
			victimCtx, kill := context.WithCancel(context.Background())
			defer kill()
			var killed atomic.Bool
			agent := func(name string, ctx context.Context, opts ...participant.Option) func() error {
				a := pinnedAgent(t, dir, name, coord.Addr, nil, keys, filepath.Join(dir, name, "accepted.json"), opts...)
				return func() error { return a.Run(ctx) }
			}
			runs := map[string]func() error{}
			for _, h := range hospitals[:len(hospitals)-1] {
				runs[h] = agent(h, context.Background())
			}
			runs[victim] = agent(victim, victimCtx, participant.WithSecureHook(func(p secagg.Phase) error {
				if p == phase && killed.CompareAndSwap(false, true) {
					kill() // the agent's streams and connection end with it
					return errKilled
				}
				return nil
			}))
			errs := make(chan error, len(runs))
			for name, run := range runs {
				go func() {
					err := run()
					if name == victim {
						if !killed.Load() || (!errors.Is(err, errKilled) && !errors.Is(err, context.Canceled)) {
							err = errors.Join(errors.New(victim+" was not killed as planned"), err)
						} else {
							err = nil
						}
					}
					errs <- err
				}()
			}
			for range runs {
				select {
				case err := <-errs:
					if err != nil {
						t.Errorf("agent: %v", err)
					}
				case <-time.After(3 * time.Minute):
					t.Fatal("agents still running after 3 minutes")
				}
			}
			recs := coord.finishedRounds(t, cfg, 2)
			first := recs[0]
			if len(first.Secure) != 1 {
				t.Fatalf("round 1 has %d secure buckets, want 1: %+v", len(first.Secure), first.Secure)
			}
			b := first.Secure[0]
			if b.Error != "" {
				t.Fatalf("round 1's session failed: %s", b.Error)
			}
			want := slices.Clone(hospitals)
			if phase <= secagg.PhaseMaskedInput {
				want = hospitals[:len(hospitals)-1]
			}
			if !slices.Equal(b.Survivors, want) {
				t.Errorf("round 1 survivors %v, want %v", b.Survivors, want)
			}
			if why := b.Dropped[victim]; !strings.HasPrefix(why, phase.String()+":") {
				t.Errorf("round 1 records %s as dropped with %q, want it dropped at %v", victim, why, phase)
			}
			for _, p := range first.Participants {
				if p.Samples != 0 || p.Norm != 0 {
					t.Errorf("round 1 records samples %d and norm %v for %s: a secure round must know neither", p.Samples, p.Norm, p.Name)
				}
			}
			if phase == secagg.PhaseUnmasking {
				checkAuditTrail(t, cfg.DataDir, 2)
			}
		})
	}
}

// TestDemoSecure runs the demo in both secure modes: secure aggregation of
// the whole cohort, and Krum over secure sums of buckets of two. Both reach
// the plain demo's accuracy bar.
func TestDemoSecure(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"secure", []string{"demo", "--json", "--secure"}},
		{"secure krum buckets", []string{"demo", "--json", "--secure", "--rule", "krum", "--bucket", "2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := runFedguard(t, 4*time.Minute, tt.args...)
			if err != nil {
				t.Fatalf("fedguard %v: %v\nstderr:\n%s", tt.args, err, errOut)
			}
			recs := jsonLines(t, out)
			sum, ok := recs[len(recs)-1]["summary"].(map[string]any)
			if !ok {
				t.Fatalf("last line = %v, want the summary", recs[len(recs)-1])
			}
			if acc, _ := sum["final_accuracy"].(float64); acc < 0.93 {
				t.Errorf("final accuracy %v, want >= 0.93 (the plain demo's bar)", acc)
			}
		})
	}
}
