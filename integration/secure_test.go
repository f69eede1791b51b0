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

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// errKilled is what the hook of the hospital the test kills returns.
var errKilled = errors.New("hospital killed by the test")

// startSecureDemo lays out the demo federation (demoFederation) and starts
// a coordinator process for it in secure mode, with min participants,
// rounds, and the phase and round timeouts given. It returns the
// directory, the hospitals, the configuration, the process and the
// coordinator's public keys, which the hospitals pin.
func startSecureDemo(t *testing.T, min, rounds int, phase, round time.Duration) (string, []string, coordinator.Config, *coordProc, manifest.PublicKeys) {
	t.Helper()
	dir, _, hospitals := demoFederation(t)
	cfg := fedConfig(t, dir, demo.Federation, hospitals, min, rounds)
	cfg.Secure = true
	cfg.SecAgg.PhaseTimeout = coordinator.Duration(phase)
	cfg.RoundTimeout = coordinator.Duration(round)
	coord := startCoordinator(t, writeConfig(t, dir, cfg))
	keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	return dir, hospitals, cfg, coord, keys
}

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
			dir, hospitals, cfg, coord, keys := startSecureDemo(t, 2, 2, 20*time.Second, 30*time.Second)
			victim := hospitals[len(hospitals)-1]
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

// cheatShares is a stream interceptor that makes its hospital send, in its
// first secure session, shares whose ciphertexts are flipped: a malicious
// member sending garbage to every other member of its bucket.
func cheatShares(done *atomic.Bool) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || method != fedguardv1.CoordinatorService_SecureAggregate_FullMethodName {
			return s, err
		}
		return &cheatStream{ClientStream: s, done: done}, nil
	}
}

type cheatStream struct {
	grpc.ClientStream
	done *atomic.Bool
}

func (s *cheatStream) SendMsg(m any) error {
	if req, ok := m.(*fedguardv1.SecureAggregateRequest); ok && req.GetShares() != nil && s.done.CompareAndSwap(false, true) {
		req = proto.Clone(req).(*fedguardv1.SecureAggregateRequest)
		for _, sh := range req.GetShares().GetShares() {
			sh.Ciphertext[0] ^= 1
		}
		m = req
	}
	return s.ClientStream.SendMsg(m)
}

// TestSecureBadShareNamed (trial): one hospital sends every other member
// of its secure session a share that fails authentication. Each honest
// member finds it (secagg.ShareError names the sender) and must abort, so
// the session fails; until now each said so in its own log only, and the
// coordinator's record showed four members dropped at the masked input
// alike, the cheat among them, so that it could fail every secure round
// unnamed. Each honest member now sits the attempt out with reason
// secure_bad_share, naming the sender, which puts the accusation in the
// audit log, on the status page and in the manifest; the round goes on in
// a later attempt.
func TestSecureBadShareNamed(t *testing.T) {
	fedtest.SkipIfShort(t, "a coordinator process and four hospitals through a failed secure attempt")
	t.Parallel()
	dir, hospitals, cfg, coord, keys := startSecureDemo(t, 3, 1, 5*time.Second, 20*time.Second)
	cheat := hospitals[len(hospitals)-1]
	var cheated atomic.Bool
	agents := map[string]*participant.Agent{}
	for _, h := range hospitals {
		var opts []participant.Option
		if h == cheat {
			opts = append(opts, participant.WithDialOptions(grpc.WithStreamInterceptor(cheatShares(&cheated))))
		}
		agents[h] = pinnedAgent(t, dir, h, coord.Addr, nil, keys, filepath.Join(dir, h, "accepted.json"), opts...)
	}
	for name, err := range runAgents(t, context.Background(), agents)(3 * time.Minute) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	coord.finishedRounds(t, cfg, 1)
	if !cheated.Load() {
		t.Fatal("the cheat sent no shares")
	}
	accused := map[string]string{}
	for _, e := range fedtest.AuditEvents(t, cfg, audit.KindRoundSatOut) {
		p := fedtest.Payload[audit.RoundSatOut](t, e)
		if p.Reason == "secure_bad_share" && p.Attempt == 0 {
			accused[e.Actor] = p.Detail
		}
	}
	for _, h := range hospitals[:len(hospitals)-1] {
		if d, ok := accused[h]; !ok || !strings.Contains(d, cheat) {
			t.Errorf("%s: round_sat_out secure_bad_share of attempt 0 with detail %q, want one naming %s (all: %v)", h, d, cheat, accused)
		}
	}
	if d, ok := accused[cheat]; ok {
		t.Errorf("the cheat accused someone: %q", d)
	}
	// Each report was taken, even one that came after the session had
	// failed: none was also refused.
	for _, e := range fedtest.AuditEvents(t, cfg, audit.KindCallRefused) {
		if c := fedtest.Payload[audit.CallRefused](t, e); strings.HasSuffix(c.Method, "/ReportSatOut") {
			t.Errorf("seq %d: %s's ReportSatOut refused: %s", e.Seq, e.Actor, c.Reason)
		}
	}
}
