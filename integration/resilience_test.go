package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// stallTrainer trains normally except in round stallRound, where it
// signals stalled and blocks until its context ends: a hospital that hangs
// mid-round and is then killed.
type stallTrainer struct {
	*participant.LocalTrainer
	stallRound uint64
	once       sync.Once
	stalled    chan struct{}
}

func (s *stallTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	if a.GetRound() == s.stallRound {
		s.once.Do(func() { close(s.stalled) })
		<-ctx.Done()
		return participant.Result{}, ctx.Err()
	}
	return s.LocalTrainer.Train(ctx, a, start)
}

// newAgent is a demo hospital's agent (data from demo.Setup) with trainer
// (nil: the local one), pinning the coordinator's key from the demo's data
// directory.
func newAgent(t *testing.T, dir, name, addr string, trainer participant.Trainer) *participant.Agent {
	t.Helper()
	keys, err := manifest.LoadPublicKeys(filepath.Join(dir, "coordinator", "data", manifest.PublicFile))
	if err != nil {
		t.Fatalf("the hospitals pin the coordinator's key: %v", err)
	}
	return pinnedAgent(t, dir, name, addr, trainer, keys, filepath.Join(dir, name, "accepted.json"))
}

// pinnedAgent is newAgent with the pinned keys, the state file and the
// agent's options given.
func pinnedAgent(t *testing.T, dir, name, addr string, trainer participant.Trainer, keys manifest.PublicKeys, stateFile string, opts ...participant.Option) *participant.Agent {
	t.Helper()
	cfg := hospitalConfig(t, dir, name, addr, keys)
	if trainer != nil {
		cfg.Trainer = trainer
	}
	cfg.StateFile = stateFile
	return mustAgent(t, cfg, opts...)
}

// hospitalConfig is a demo hospital's agent configuration: its certificate
// for addr, the local trainer on its share of the data, no log, backoffs
// of 50 ms to 1 s, its state in dir/name/accepted.json and the pinned
// coordinator keys.
func hospitalConfig(t *testing.T, dir, name, addr string, keys manifest.PublicKeys) participant.Config {
	t.Helper()
	tlsCfg, err := certs.LocalClientConfig(dir, demo.Federation, name, addr)
	if err != nil {
		t.Fatal(err)
	}
	return participant.Config{
		Coordinator: addr, TLS: tlsCfg, Trainer: localTrainer(dir, name), Log: discardLogger(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		Federation: demo.Federation, CoordinatorKeys: keys, StateFile: filepath.Join(dir, name, "accepted.json"),
	}
}

// mustAgent is participant.New, failing the test on an error.
func mustAgent(t *testing.T, cfg participant.Config, opts ...participant.Option) *participant.Agent {
	t.Helper()
	a, err := participant.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func localTrainer(dir, name string) *participant.LocalTrainer {
	return &participant.LocalTrainer{DataFile: filepath.Join(dir, name, "data.csv"), Holdout: 0.2, Seed: 1}
}

// runAgents runs agents until they return; the returned function waits for
// them (with a timeout) and returns their errors by name.
func runAgents(t *testing.T, ctx context.Context, agents map[string]*participant.Agent) func(timeout time.Duration) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); wg.Wait() })
	for name, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := a.Run(ctx)
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		}()
	}
	return func(timeout time.Duration) map[string]error {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(timeout):
			t.Fatalf("agents still running after %v", timeout)
		}
		mu.Lock()
		defer mu.Unlock()
		return errs
	}
}

func names(recs []coordinator.ParticipantRecord) []string {
	var out []string
	for _, p := range recs {
		out = append(out, p.Name)
	}
	return out
}

// wantFinished fails the test for every agent of errs (what runAgents's
// wait returns) whose Run did not return nil: its training finished.
func wantFinished(t *testing.T, errs map[string]error) {
	t.Helper()
	for n, err := range errs {
		if err != nil {
			t.Errorf("%s: Run = %v, want nil (training finished)", n, err)
		}
	}
}

// servedRounds returns the round records of c, which must be rounds 1 to
// n, each once.
func servedRounds(t *testing.T, c *fedtest.Coordinator, n int) []coordinator.RoundRecord {
	t.Helper()
	recs, err := c.Rounds()
	if err != nil {
		t.Fatal(err)
	}
	checkContiguous(t, recs, n)
	return recs
}

// checkContiguous fails unless recs are rounds 1..want, each once.
func checkContiguous(t *testing.T, recs []coordinator.RoundRecord, want int) {
	t.Helper()
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Round)
	}
	var exp []uint64
	for r := 1; r <= want; r++ {
		exp = append(exp, uint64(r))
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("closed rounds in the database = %v, want %v", got, exp)
	}
}

// TestParticipantDropout: a hospital that hangs and is killed mid-round is
// dropped from that round, and the federation trains on without it.
func TestParticipantDropout(t *testing.T) {
	t.Run("in process", func(t *testing.T) {
		dir, _, _ := demoFederation(t)
		hs := []string{"hospital-a", "hospital-b", "hospital-c"}
		cfg := fedConfig(t, dir, demo.Federation, hs, 2, 4)
		cfg.RoundTimeout = coordinator.Duration(3 * time.Second)
		c := fedtest.Serve(t, cfg)
		addr := c.Addr

		stall := &stallTrainer{LocalTrainer: localTrainer(dir, "hospital-c"), stallRound: 2, stalled: make(chan struct{})}
		victimCtx, kill := context.WithCancel(context.Background())
		defer kill()
		waitVictim := runAgents(t, victimCtx, map[string]*participant.Agent{"hospital-c": newAgent(t, dir, "hospital-c", addr, stall)})
		wait := runAgents(t, context.Background(), map[string]*participant.Agent{
			"hospital-a": newAgent(t, dir, "hospital-a", addr, nil),
			"hospital-b": newAgent(t, dir, "hospital-b", addr, nil),
		})
		select {
		case <-stall.stalled:
		case <-time.After(30 * time.Second):
			t.Fatal("hospital-c was never assigned round 2")
		}
		kill()
		if err := waitVictim(10 * time.Second)["hospital-c"]; !errors.Is(err, context.Canceled) {
			t.Errorf("killed agent's Run = %v, want context.Canceled", err)
		}
		wantFinished(t, wait(60*time.Second))
		select {
		case <-c.Done():
			if err := c.Err(); err != nil {
				t.Errorf("Serve = %v, want nil after the last round", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("coordinator still serving 15 s after the agents finished")
		}
		recs := servedRounds(t, c, 4)
		if got := names(recs[0].Participants); !slices.Equal(got, hs) {
			t.Errorf("round 1 participants = %v, want %v", got, hs)
		}
		r2 := recs[1]
		if got := names(r2.Participants); !slices.Equal(got, hs[:2]) {
			t.Errorf("round 2 participants = %v, want %v", got, hs[:2])
		}
		if !slices.Equal(r2.Dropped, []string{"hospital-c"}) {
			t.Errorf("round 2 Dropped = %v, want [hospital-c]", r2.Dropped)
		}
		if !slices.Contains(r2.Cohort, "hospital-c") {
			t.Errorf("round 2 cohort = %v, want it to include hospital-c", r2.Cohort)
		}
		for _, r := range recs[2:] {
			if slices.Contains(r.Cohort, "hospital-c") || len(r.Participants) != 2 {
				t.Errorf("round %d: cohort %v, participants %v; want hospital-a and hospital-b only", r.Round, r.Cohort, names(r.Participants))
			}
		}
	})

	t.Run("killed process", func(t *testing.T) {
		fedtest.SkipIfShort(t, "four hospital processes, one killed mid-round; the in-process subtest covers the dropout")
		dir, _, _ := demoFederation(t)
		// hospital-d is enrolled but never runs, so every round waits the
		// cohort timeout: the kill lands early in round 2.
		cfg := fedConfig(t, dir, demo.Federation, []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}, 2, 4)
		coord := startCoordinator(t, writeConfig(t, dir, cfg))
		procs := map[string]*participantProc{}
		for _, h := range []string{"hospital-a", "hospital-b", "hospital-c"} {
			procs[h] = startParticipant(t, h, "--coordinator", coord.Addr, "--federation", demo.Federation,
				"--ca", filepath.Join(dir, "ca", "ca.crt"),
				"--cert", filepath.Join(dir, h, h+".crt"), "--key", filepath.Join(dir, h, h+".key"),
				"--data", filepath.Join(dir, h, "data.csv"),
				"--coordinator-key", filepath.Join(cfg.DataDir, "signing.pub"))
		}
		coord.waitLog("round opened for round 2", 60*time.Second, msgRound("round opened", 2))
		if err := procs["hospital-c"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		procs["hospital-c"].wait(t, 10*time.Second)
		for _, h := range []string{"hospital-a", "hospital-b"} {
			if err := procs[h].wait(t, 60*time.Second); err != nil {
				t.Errorf("participant %s exited with %v, want 0", h, err)
			}
		}
		recs := coord.finishedRounds(t, cfg, 4)
		r2 := recs[1]
		if !slices.Contains(names(r2.Participants), "hospital-c") && !slices.Contains(r2.Dropped, "hospital-c") {
			t.Errorf("round 2: participants %v dropped %v; hospital-c (in its cohort %v) is in neither", names(r2.Participants), r2.Dropped, r2.Cohort)
		}
		for _, r := range recs[2:] {
			if got := names(r.Participants); !slices.Equal(got, []string{"hospital-a", "hospital-b"}) || slices.Contains(r.Cohort, "hospital-c") {
				t.Errorf("round %d after the kill: cohort %v participants %v, want hospital-a and hospital-b only", r.Round, r.Cohort, got)
			}
		}
	})
}

// TestCoordinatorRestart kills (SIGKILL) and stops (SIGTERM) a real
// coordinator mid-training; each time a new process on the same address and
// data directory resumes from the last closed round, the agents reconnect on
// their own, and the record holds every round exactly once.
func TestCoordinatorRestart(t *testing.T) {
	fedtest.SkipIfShort(t, "kills and restarts a coordinator process twice under four hospital processes")
	dir, _, _ := demoFederation(t)
	const rounds = 8
	// hospital-d never runs: every round waits the 1 s cohort timeout, so
	// the signals land between known rounds.
	cfg := fedConfig(t, dir, demo.Federation, []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}, 2, rounds)
	cfgPath := writeConfig(t, dir, cfg)
	first := startCoordinator(t, cfgPath)
	addr := first.Addr
	agents := map[string]*participant.Agent{}
	for _, h := range []string{"hospital-a", "hospital-b", "hospital-c"} {
		agents[h] = newAgent(t, dir, h, addr, nil)
	}
	wait := runAgents(t, context.Background(), agents)

	first.waitLog("round closed for round 3", 60*time.Second, msgRound("round closed", 3))
	if err := first.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.waitExit(10 * time.Second); err == nil {
		t.Fatalf("SIGKILLed coordinator exited 0")
	}

	second := startCoordinator(t, cfgPath, "--listen", addr)
	if second.Addr != addr {
		t.Fatalf("restarted coordinator listens on %s, want %s", second.Addr, addr)
	}
	res := second.waitLog("resumed from database", 5*time.Second, func(m map[string]any) bool { return m["msg"] == "resumed from database" })
	if r, _ := res["round"].(float64); r < 3 {
		t.Errorf("after SIGKILL following round 3, the coordinator resumed from round %v, want >= 3", res["round"])
	}
	// Then a graceful stop mid-training.
	resumed, _ := res["round"].(float64)
	second.waitLog(fmt.Sprintf("round closed for round %v", resumed+2), 60*time.Second, msgRound("round closed", resumed+2))
	if err := second.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := second.waitExit(10 * time.Second); err != nil {
		t.Errorf("coordinator given SIGTERM exited with %v, want 0", err)
	}
	t.Logf("SIGTERM to exit: %v", time.Since(t0))
	stoppedAt := lastRoundClosed(second.Logs())

	third := startCoordinator(t, cfgPath, "--listen", addr)
	res = third.waitLog("resumed from database", 5*time.Second, func(m map[string]any) bool { return m["msg"] == "resumed from database" })
	if r, _ := res["round"].(float64); r != stoppedAt {
		t.Errorf("after SIGTERM the coordinator resumed from round %v, want %v (the last round it closed)", res["round"], stoppedAt)
	}
	wantFinished(t, wait(90*time.Second))
	third.finishedRounds(t, cfg, rounds)
	// The audit log outlived the SIGKILL: it opens, verifies and tells the
	// whole story.
	checkAuditTrail(t, cfg.DataDir, rounds)
}

// lastRoundClosed is the highest round a coordinator logged as closed.
func lastRoundClosed(logs []map[string]any) float64 {
	var last float64
	for _, r := range logs {
		if v, ok := r["round"].(float64); ok && r["msg"] == "round closed" && v > last {
			last = v
		}
	}
	return last
}

// gateTrainer blocks in round gateRound until release is closed.
type gateTrainer struct {
	*participant.LocalTrainer
	gateRound uint64
	once      sync.Once
	reached   chan struct{}
	release   chan struct{}
}

func (g *gateTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	if a.GetRound() == g.gateRound {
		g.once.Do(func() { close(g.reached) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return participant.Result{}, ctx.Err()
		}
	}
	return g.LocalTrainer.Train(ctx, a, start)
}

// runGated runs hospitals a, b and c against addr, c held in round 1 by
// the gateTrainer it returns, and waits up to timeout for c to reach that
// round; the test closes gate.release to let c go on.
func runGated(t *testing.T, dir, addr string, timeout time.Duration) (gate *gateTrainer, wait func(time.Duration) map[string]error) {
	t.Helper()
	gate = &gateTrainer{LocalTrainer: localTrainer(dir, "hospital-c"), gateRound: 1, reached: make(chan struct{}), release: make(chan struct{})}
	wait = runAgents(t, context.Background(), map[string]*participant.Agent{
		"hospital-a": newAgent(t, dir, "hospital-a", addr, nil),
		"hospital-b": newAgent(t, dir, "hospital-b", addr, nil),
		"hospital-c": newAgent(t, dir, "hospital-c", addr, gate),
	})
	select {
	case <-gate.reached:
	case <-time.After(timeout):
		t.Fatal("hospital-c never reached round 1")
	}
	return gate, wait
}

// TestRestartMidRoundRerunsRound: the coordinator persists only closed
// rounds, so after a restart the open round is offered again with the same
// round and attempt numbers. Hospitals that had already submitted to the
// dead coordinator must take part again, or the re-run round can only close
// after RoundTimeout (and is retried if the quorum is missed).
func TestRestartMidRoundRerunsRound(t *testing.T) {
	dir, _, _ := demoFederation(t)
	hs := []string{"hospital-a", "hospital-b", "hospital-c"}
	cfg := fedConfig(t, dir, demo.Federation, hs, 3, 2)
	const roundTimeout = 6 * time.Second
	cfg.RoundTimeout = coordinator.Duration(roundTimeout)
	c1 := fedtest.Serve(t, cfg)
	addr := c1.Addr
	cfg.Listen = addr

	gate, wait := runGated(t, dir, addr, 30*time.Second)
	time.Sleep(time.Second) // hospital-a and hospital-b submit round 1
	// Stop the first coordinator (its open round is lost) and start a new
	// one on the same address and database.
	_ = c1.Stop()
	t0 := time.Now()
	c2 := fedtest.Serve(t, cfg)
	close(gate.release)
	wantFinished(t, wait(60*time.Second))
	recs := servedRounds(t, c2, 2)
	r1 := recs[0]
	if took := r1.Closed.Sub(t0); r1.Attempt != 0 || took >= roundTimeout {
		t.Errorf("re-run round 1 closed %v after the restart at attempt %d with %v (dropped %v); want attempt 0, well before the %v round timeout: "+
			"agents that submitted round 1 attempt 0 to the old coordinator skip the identical re-offered assignment (participant/agent.go, \"Already submitted\")",
			took.Round(time.Millisecond), r1.Attempt, names(r1.Participants), r1.Dropped, roundTimeout)
	}
}
