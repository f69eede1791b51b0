package coordinator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/coordinator"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestRPCsAnswerWhileRuleRuns holds the rule of round 1 at a gate (the
// real rule runs once the gate opens) and checks, over mutual TLS, that
// the coordinator answers meanwhile: the status page, Join, GetManifest,
// GetModel and the health check, while an update for the closing round is
// refused as for a closed one and the absent member is not offered the
// closing round again. Then the round closes as usual.
func TestRPCsAnswerWhileRuleRuns(t *testing.T) {
	t.Parallel()
	names := []string{"hospital-a", "hospital-b", "hospital-c"}
	f := newFederation(t, names)
	f.cfg.MetricsListen = "127.0.0.1:0"
	f.cfg.RoundTimeout = coordinator.Duration(2 * time.Second)
	var gate *coordinator.RuleGate
	s := start(t, f.cfg, func(c *coordinator.Coordinator) { gate = coordinator.GateRules(c) })
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.Release)
		}
	}
	t.Cleanup(release)
	addr := waitMetricsAddr(t, s.c)
	ps := f.connect(t, s, names...)
	fixScaling(t, ps)
	as := assignments(t, ps)
	// a and b answer; c stays silent, so the round closes at its deadline.
	for i, p := range ps[:2] {
		if _, err := p.submit(t, as[i].GetRound(), update{delta: []float32{1, 2, 3, 4, 5, float32(i)}, samples: 10}); err != nil {
			t.Fatalf("%s: SubmitUpdate: %v", p.name, err)
		}
	}
	select {
	case <-gate.Entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the rule was not called within 30s of the round's deadline")
	}

	// The rule is running (held at the gate). Each call below must answer
	// without it: before aggregation ran outside the lock, each waited
	// until its deadline.
	answered := make(chan string)
	call := func(what string, fn func(ctx context.Context) error) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := fn(ctx); err != nil {
				t.Errorf("%s while the rule runs: %v", what, err)
			}
			answered <- what
		}()
	}
	call("status page", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status.json", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st coordinator.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if st.Phase != "closing" || st.Round != 1 {
			t.Errorf("status while closing: phase %s round %d, want closing round 1", st.Phase, st.Round)
		}
		return nil
	})
	call("Join", func(ctx context.Context) error {
		_, err := ps[0].svc.Join(ctx, &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	})
	call("GetManifest", func(ctx context.Context) error {
		_, err := ps[1].svc.GetManifest(ctx, &fedguardv1.GetManifestRequest{Round: 0})
		return err
	})
	call("GetModel", func(ctx context.Context) error {
		stream, err := ps[0].svc.GetModel(ctx, &fedguardv1.GetModelRequest{Round: 1})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	})
	call("health check", func(ctx context.Context) error {
		_, err := ps[2].health().Check(ctx, &healthpb.HealthCheckRequest{Service: fedguardv1.CoordinatorService_ServiceDesc.ServiceName})
		return err
	})
	call("late update", func(context.Context) error {
		_, err := ps[2].submit(t, 1, update{delta: []float32{1, 1, 1, 1, 1, 1}, samples: 10})
		wantCode(t, "update for the closing round", err, codes.FailedPrecondition)
		return nil
	})
	call("WaitRound", func(ctx context.Context) error {
		// The absent member is not offered the closing round: the
		// long poll ends empty (or with round 2, should it open first).
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := ps[2].svc.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
		if err != nil && status.Code(err) != codes.DeadlineExceeded {
			return err
		}
		if a := resp.GetAssignment(); a != nil && a.GetRound() == 1 {
			t.Errorf("WaitRound while closing offered round 1 again")
		}
		return nil
	})
	var got []string
	for len(got) < 7 {
		select {
		case what := <-answered:
			got = append(got, what)
		case <-time.After(30 * time.Second):
			t.Fatalf("only %v answered within 30s while the rule ran", got)
		}
	}
	release()
	obs := s.waitObserved(t, 1, 30*time.Second)
	rec := obs[0].Record
	if !slices.Equal(participantNames(rec), names[:2]) || !slices.Equal(rec.Dropped, names[2:]) {
		t.Errorf("round 1 after the gate: participants %v dropped %v, want %v and %v (answered: %v)",
			participantNames(rec), rec.Dropped, names[:2], names[2:], got)
	}
}

func participantNames(rec coordinator.RoundRecord) []string {
	var out []string
	for _, p := range rec.Participants {
		out = append(out, p.Name)
	}
	return out
}
