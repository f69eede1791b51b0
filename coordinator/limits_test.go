package coordinator_test

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// metricValue reads one unlabelled gauge, or one series of a labelled counter
// (label=value), from c's registry.
func metricValue(t *testing.T, c *coordinator.Coordinator, name, label, value string) float64 {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

// waitMetric polls until metric equals want or within passes.
func waitMetric(t *testing.T, c *coordinator.Coordinator, name string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for metricValue(t, c, name, "", "") != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", name, metricValue(t, c, name, "", ""), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// header is the first message of an update of delta for round.
func header(round uint64, delta []float32) *fedguardv1.SubmitUpdateRequest {
	sum := sha256.Sum256(model.AppendBytes(nil, delta))
	return &fedguardv1.SubmitUpdateRequest{
		Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: uint64(len(delta)), SampleCount: 10, Sha256: sum[:],
		}},
	}
}

// slowSender sends round's update of delta one parameter every gap (gap
// 0: only the header and the first parameter, then nothing), without
// closing the stream. It returns when the call ends, with the time it
// ended and the call's error.
func (p *participant) slowSend(t *testing.T, round uint64, delta []float32, gap time.Duration) (time.Time, error) {
	stream, err := p.svc.SubmitUpdate(callCtx(t, 20*time.Second))
	if err != nil {
		return time.Now(), err
	}
	ended := make(chan error, 1)
	go func() { ended <- stream.RecvMsg(new(fedguardv1.SubmitUpdateResponse)) }()
	if err := stream.Send(header(round, delta)); err != nil {
		return time.Now(), <-ended
	}
	for i := range delta {
		data := model.AppendBytes(nil, delta[i:i+1])
		if err := stream.Send(chunkMsg(round, uint64(i), data)); err != nil {
			break
		}
		if gap == 0 {
			break
		}
		select {
		case err := <-ended:
			return time.Now(), err
		case <-time.After(gap):
		}
	}
	err = <-ended
	return time.Now(), err
}

// TestHalfSentUpdateEndsWithRound holds an update stream open across the
// round's deadline, half sent or trickling: the coordinator must end it
// when the round closes and drop its buffer. Before the limits, the
// stream stayed open as long as the client liked (one parameter a second
// kept it 30 s past the deadline) and each round left one buffer behind.
func TestHalfSentUpdateEndsWithRound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"half sent then silent", 0},
		{"one parameter every 300ms", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFederation(t, abc)
			f.cfg.CohortTimeout = coordinator.Duration(100 * time.Millisecond)
			f.cfg.RoundTimeout = coordinator.Duration(1500 * time.Millisecond)
			// Neither the idle nor the rate limit may end the stream first.
			f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Minute), UpdateMinRate: 1}
			s := start(t, f.cfg)
			ps := f.connect(t, s, abc...)
			fixScaling(t, ps)
			asg := assignments(t, ps)
			round := asg[0].GetRound()
			deadline := asg[0].GetDeadline().AsTime()

			var (
				wg      sync.WaitGroup
				slowErr error
				endedAt time.Time
			)
			wg.Go(func() { endedAt, slowErr = ps[0].slowSend(t, round, deltas(1), tc.gap) })
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 4*numParams, 5*time.Second)
			for _, p := range ps[1:] {
				if _, err := p.submit(t, round, update{delta: deltas(2), samples: 5}); err != nil {
					t.Fatalf("%s: SubmitUpdate = %v", p.name, err)
				}
			}
			wg.Wait()
			wantCode(t, "held update stream", slowErr, codes.FailedPrecondition)
			if late := endedAt.Sub(deadline); late > time.Second {
				t.Errorf("held update stream ended %v after the round's deadline, want within 1s", late)
			}
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 0, 2*time.Second)
			if recs := waitRounds(t, s.c, 1, 10*time.Second); len(recs[0].Participants) != 2 {
				t.Errorf("round 1 participants %v, want the two complete updates", recs[0].Participants)
			}
		})
	}
}

// TestUpdateStreamStall: an update stream that goes silent for
// limits.update_idle, or trickles below limits.update_min_rate, is ended
// with ResourceExhausted long before the round's deadline, and its buffer
// is dropped. Before the limits, both were held until the deadline.
func TestUpdateStreamStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"silent after the first parameter", 0},
		{"one parameter every 100ms", 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFederation(t, abc)
			f.cfg.CohortTimeout = coordinator.Duration(100 * time.Millisecond)
			f.cfg.RoundTimeout = coordinator.Duration(time.Minute)
			f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(250 * time.Millisecond), UpdateMinRate: 1000}
			s := start(t, f.cfg)
			ps := f.connect(t, s, abc...)
			fixScaling(t, ps)
			round := assignments(t, ps)[0].GetRound()
			began := time.Now()
			ended, err := ps[0].slowSend(t, round, deltas(1), tc.gap)
			wantCode(t, "stalled update stream", err, codes.ResourceExhausted)
			if took := ended.Sub(began); took > 5*time.Second {
				t.Errorf("stalled stream ended after %v, want about 250ms", took)
			}
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 0, 2*time.Second)
			// The participant may still send its update properly.
			if _, err := ps[0].submit(t, round, update{delta: deltas(1), samples: 5}); err != nil {
				t.Errorf("SubmitUpdate after the stalled stream = %v", err)
			}
		})
	}
}

// TestConnectionsPerParticipant opens connections with one certificate
// until limits.max_connections: the next is refused (and counted), and
// closing one frees its slot. Before the limit, one certificate opened
// 1,000 connections.
func TestConnectionsPerParticipant(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Limits = coordinator.LimitsConfig{MaxConnections: 3}
	s := start(t, f.cfg)
	join := func(p *participant) error {
		_, err := p.svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	}
	var open []*participant
	for i := range 5 {
		p := dial(t, "hospital-a", s.addr, f.tlsFor(t, "hospital-a", s.addr))
		err := join(p)
		if i < 3 {
			if err != nil {
				t.Fatalf("connection %d: Join = %v", i+1, err)
			}
			open = append(open, p)
			continue
		}
		wantCode(t, "Join over a connection beyond the limit", err, codes.Unavailable)
		p.conn.Close()
	}
	// The coordinator closes a refused connection, then counts it: the
	// client can see the refusal first.
	refused := func() float64 {
		return metricValue(t, s.c, "fedguard_connections_refused_total", "reason", coordinator.ReasonTooManyConnections)
	}
	for deadline := time.Now().Add(5 * time.Second); refused() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := refused(); got < 2 {
		t.Errorf("connections refused for too_many_connections = %v, want at least 2", got)
	}
	// Another participant is not affected.
	if err := join(f.connect(t, s, "hospital-b")[0]); err != nil {
		t.Errorf("hospital-b: Join = %v", err)
	}
	open[0].conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := dial(t, "hospital-a", s.addr, f.tlsFor(t, "hospital-a", s.addr))
		err := join(p)
		if err == nil {
			break
		}
		p.conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("Join after closing a connection = %v, want the freed slot", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCallsPerParticipant fills limits.max_calls with long polls over one
// connection: a call over another connection of the same certificate is
// refused with ResourceExhausted until a long poll ends.
func TestCallsPerParticipant(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Limits = coordinator.LimitsConfig{MaxCalls: 2}
	f.cfg.LongPoll = coordinator.Duration(20 * time.Second)
	s := start(t, f.cfg)
	holder := f.connect(t, s, "hospital-a")[0]
	other := f.connect(t, s, "hospital-a")[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		// In the statistics phase a long poll waits for its whole time;
		// one that ends early (a loaded machine) is asked again, so two
		// stay in flight until cancel.
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = holder.svc.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
			}
		})
	}
	join := func() error {
		_, err := other.svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err = join(); status.Code(err) != codes.ResourceExhausted; err = join() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Join with 2 long polls in flight = %v, want ResourceExhausted", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricValue(t, s.c, "fedguard_connections_refused_total", "reason", coordinator.ReasonTooManyCalls); got < 1 {
		t.Errorf("calls refused for too_many_calls = %v, want at least 1", got)
	}
	cancel()
	wg.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for err = join(); err != nil; err = join() {
		if time.Now().After(deadline) {
			t.Fatalf("Join after the long polls ended = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Other participants were never limited.
	if err := f.connect(t, s, "hospital-b")[0].statsNeeded(t); !err {
		t.Errorf("hospital-b: stats not needed in the statistics phase")
	}
}
