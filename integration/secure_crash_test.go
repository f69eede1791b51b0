package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// TestSecureCoordinatorKilledInEachPhase runs secure federations (a real
// coordinator process, four in-process hospitals over real mTLS) and
// SIGKILLs the coordinator once in round 1, when three of the four
// hospitals have sent their message of a SecAgg phase and the fourth is
// about to: at the advertisement, the shares, the masked inputs, the
// consistency signatures and the unmasking (three hospitals have revealed
// their shares). In the last case ("unmasked") the round has two buckets
// of two: one bucket's session has completed (both its hospitals revealed
// and the coordinator holds its sum) and the round is not committed, the
// crash of issue 12.
//
// A new coordinator process on the same address and data directory must
// finish the federation with every hospital in round 1's sum, no hospital
// declining, and no hospital revealing shares twice for round 1's model:
// each computes its Unmask answer once (the hook before a phase's message
// runs only for messages computed, not for the identical ones a hospital
// re-sends to the resumed session).
func TestSecureCoordinatorKilledInEachPhase(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		phase   secagg.Phase
		buckets int // aggregation.bucket (0: one bucket of the cohort)
	}{
		{"advertise", secagg.PhaseAdvertiseKeys, 0},
		{"share_keys", secagg.PhaseShareKeys, 0},
		{"masked_input", secagg.PhaseMaskedInput, 0},
		{"consistency", secagg.PhaseConsistencyCheck, 0},
		{"unmasking", secagg.PhaseUnmasking, 0},
		{"unmasked", secagg.PhaseUnmasking, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "unmasked" {
				fedtest.SkipIfShort(t, "a coordinator process killed and restarted per phase; -short keeps the unmasked case")
			}
			t.Parallel()
			dir, _, hospitals := demoFederation(t)
			cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, 2)
			cfg.Secure = true
			cfg.Aggregation.Bucket = tc.buckets
			cfg.SecAgg.PhaseTimeout = coordinator.Duration(20 * time.Second)
			cfg.RoundTimeout = coordinator.Duration(30 * time.Second)
			cfg.CohortTimeout = coordinator.Duration(10 * time.Second)
			cfgPath := writeConfig(t, dir, cfg)
			coord := startCoordinator(t, cfgPath)
			addr := coord.Addr
			keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
			if err != nil {
				t.Fatal(err)
			}

			// hooks counts, per hospital, the messages each hospital
			// computed for round 1, by phase; the fourth hospital to reach
			// tc.phase asks the test to kill the coordinator and waits.
			var mu sync.Mutex
			computed := map[string]map[secagg.Phase]int{}
			reached := map[secagg.Phase]int{}
			killReq, killed := make(chan struct{}), make(chan struct{})
			round := map[string]func() uint64{}
			hook := func(name string) func(secagg.Phase) error {
				return func(p secagg.Phase) error {
					if round[name]() != 1 {
						return nil
					}
					mu.Lock()
					computed[name][p]++
					reached[p]++
					last := p == tc.phase && reached[p] == len(hospitals)
					mu.Unlock()
					if last {
						killReq <- struct{}{}
						<-killed
					}
					return nil
				}
			}
			agents := map[string]*participant.Agent{}
			for _, h := range hospitals {
				computed[h] = map[secagg.Phase]int{}
				var a *participant.Agent
				round[h] = func() uint64 { return a.Stats().Rounds + 1 } // the round in progress
				a = mustAgent(t, hospitalConfig(t, dir, h, addr, keys), participant.WithSecureHook(hook(h)))
				agents[h] = a
			}
			wait := runAgents(t, context.Background(), agents)

			select {
			case <-killReq:
			case <-time.After(2 * time.Minute):
				t.Fatalf("no hospital reached %v of round 1 in 2 minutes", tc.phase)
			}
			if tc.buckets > 0 {
				// The other bucket's hospitals have both revealed: wait
				// until the coordinator has unmasked their sum.
				coord.waitLog("a completed session", 30*time.Second, func(m map[string]any) bool { return m["msg"] == "secure session completed" })
			} else {
				time.Sleep(500 * time.Millisecond) // the three messages arrive
			}
			if err := coord.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := coord.waitExit(10 * time.Second); err == nil {
				t.Fatal("SIGKILLed coordinator exited 0")
			}
			if logs := coord.Logs(); slices.ContainsFunc(logs, func(m map[string]any) bool { return m["msg"] == "round closed" }) {
				t.Fatal("the coordinator closed round 1 before it was killed: the kill came too late to test anything")
			}
			close(killed)
			second := startCoordinator(t, cfgPath, "--listen", addr)
			second.waitLog("the attempt to resume", 10*time.Second, func(m map[string]any) bool {
				return m["msg"] == "secure attempt to resume" && m["round"] == 1.0 && m["attempt"] == 0.0
			})

			wantFinished(t, wait(3*time.Minute))
			recs := second.finishedRounds(t, cfg, 2)
			first := recs[0]
			if first.Attempt != 0 {
				t.Errorf("round 1 closed at attempt %d, want 0: the restarted coordinator resumes the attempt it had opened", first.Attempt)
			}
			for _, b := range first.Secure {
				if b.Error != "" {
					t.Errorf("round 1 bucket %d failed: %s", b.Bucket, b.Error)
				}
			}
			if got := slices.Sorted(slices.Values(names(first.Participants))); !slices.Equal(got, hospitals) {
				t.Errorf("round 1 closed with %v (dropped %v), want all of %v: the hospitals resume the session", got, first.Dropped, hospitals)
			}
			mu.Lock()
			for h, by := range computed {
				if n := by[secagg.PhaseUnmasking]; n != 1 {
					t.Errorf("%s computed %d Unmask answers for round 1, want exactly 1", h, n)
				}
			}
			mu.Unlock()
			_, _, lines := exportAudit(t, cfg.DataDir)
			for _, l := range lines {
				if l.Kind == "secure_declined" {
					t.Errorf("audit log has a secure_declined event (seq %d): no hospital should have to decline", l.Seq)
				}
			}
			checkAuditTrail(t, cfg.DataDir, 2)
		})
	}
}

// TestSecureWedgeReported: the coordinator is killed once round 1's
// hospitals have all revealed their shares (one bucket's sum unmasked, the
// other's last hospital about to answer), and the hospitals restart too,
// losing their side of the session; then no hospital can take part in
// round 1 again (each declines as already revealed), which is the
// one case a crash still stops a round. The restarted coordinator must
// report it, in its log, /status.json and /metrics, and neither retry nor
// grow its audit log, however often the hospitals ask.
func TestSecureWedgeReported(t *testing.T) {
	fedtest.SkipIfShort(t, "restarts a coordinator process and three hospitals mid-session")
	t.Parallel()
	dir, _, hospitals := demoFederation(t)
	cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, 2)
	cfg.Secure = true
	cfg.Aggregation.Bucket = 2
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.SecAgg.PhaseTimeout = coordinator.Duration(20 * time.Second)
	cfg.RoundTimeout = coordinator.Duration(30 * time.Second)
	cfgPath := writeConfig(t, dir, cfg)
	coord := startCoordinator(t, cfgPath)
	addr := coord.Addr

	var mu sync.Mutex
	reached := 0
	killReq, killed := make(chan struct{}), make(chan struct{})
	hook := participant.WithSecureHook(func(p secagg.Phase) error {
		if p != secagg.PhaseUnmasking {
			return nil
		}
		mu.Lock()
		reached++
		last := reached == len(hospitals)
		mu.Unlock()
		if last {
			killReq <- struct{}{}
			<-killed
		}
		return nil
	})
	agents := func(opts ...participant.Option) map[string]*participant.Agent {
		out := map[string]*participant.Agent{}
		for _, h := range hospitals {
			keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
			if err != nil {
				t.Fatal(err)
			}
			out[h] = pinnedAgent(t, dir, h, addr, nil, keys, filepath.Join(dir, h, "accepted.json"), opts...)
		}
		return out
	}
	firstCtx, stopFirst := context.WithCancel(context.Background())
	waitFirst := runAgents(t, firstCtx, agents(hook))
	select {
	case <-killReq:
	case <-time.After(2 * time.Minute):
		t.Fatal("round 1 never reached its unmasking")
	}
	coord.waitLog("a completed session", 30*time.Second, func(m map[string]any) bool { return m["msg"] == "secure session completed" })
	if err := coord.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = coord.waitExit(10 * time.Second)
	stopFirst() // the hospitals restart too: they lose the session
	close(killed)
	waitFirst(30 * time.Second)

	second := startCoordinator(t, cfgPath, "--listen", addr)
	rec := second.waitLog("metrics listening", 30*time.Second, func(r map[string]any) bool { return r["msg"] == "metrics listening" })
	base := "http://" + rec["addr"].(string)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runAgents(t, ctx, agents())
	second.waitLog("round wedged", 60*time.Second, func(m map[string]any) bool { return m["msg"] == "round wedged: no attempt will open" })

	status := func() coordinator.Status {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/status.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st coordinator.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := status()
	if st.Wedged == "" || !slices.Equal(st.SittingOut, hospitals) {
		t.Errorf("/status.json: wedged %q, sitting out %v; want wedged, with %v sitting out", st.Wedged, st.SittingOut, hospitals)
	}
	if got := scrapeSample(t, base+"/metrics", "fedguard_round_wedged"); got != 1 {
		t.Errorf("fedguard_round_wedged = %v, want 1", got)
	}
	time.Sleep(5 * time.Second) // the hospitals keep asking for rounds
	if got := status().Audit.Size; got != st.Audit.Size {
		t.Errorf("the audit log grew from %d to %d events while the round was wedged", st.Audit.Size, got)
	}
	opened := 0
	for _, m := range second.Logs() {
		if m["msg"] == "round opened" {
			opened++
		}
	}
	if opened != 1 {
		t.Errorf("the restarted coordinator opened %d attempts, want 1 (the one it resumed, which every hospital declined)", opened)
	}
}
