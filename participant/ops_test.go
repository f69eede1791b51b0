package participant_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/fedguard/fedguard/internal/fedtest"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// localOps is the production Ops with the transport replaced by an
// in-process gRPC connection without TLS, for tests of the agent's logic
// where TLS is not the point (TLS has its own tests: TestRunTwoRounds,
// TestCertificateRefusalIsPermanent and the secure ones).
type localOps struct {
	participant.Ops
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (o localOps) Dial(target string, opts ...grpc.DialOption) (participant.Conn, error) {
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(o.dial))
	return grpc.NewClient("passthrough:///"+target, opts...)
}

// serveLocal runs fake over an in-process listener until the test ends and
// returns the Ops that reaches it.
func serveLocal(t *testing.T, fake *fakeCoordinator) localOps {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	fedguardv1.RegisterCoordinatorServiceServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return localOps{Ops: participant.DefaultOps, dial: func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }}
}

// newLocalAgent is newAgent over ops, without TLS.
func newLocalAgent(t *testing.T, ops participant.Ops, tr participant.Trainer, keys manifest.PublicKeys, edits ...func(*participant.Config)) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	return newAgentWith(t, "coordinator.invalid:443", nil, tr, keys, []participant.Option{participant.WithOps(ops)}, edits...)
}

// fakeClock is a clock for the retry logic that moves only when the agent
// sleeps, with the jitter drawn from a fixed list: the retries are then
// exactly predictable, and take no time.
type fakeClock struct {
	participant.Ops
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	jitter []float64
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Float64() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jitter[len(c.slept)%len(c.jitter)]
}

// TestRetriesOnFakeClock runs the agent against a coordinator that refuses
// connections (a closed loopback port, over real TCP) on a clock that
// moves only when the agent sleeps: the backoffs must be exactly
// exponential from MinBackoff, capped at MaxBackoff, with equal jitter,
// and the agent must give up once GiveUpAfter has passed on that clock,
// after the retries that fit in it.
func TestRetriesOnFakeClock(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	clock := &fakeClock{
		Ops: localOps{Ops: participant.DefaultOps, dial: func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}},
		now:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		jitter: []float64{0, 0.5, 0.999},
	}
	const (
		minB, maxB = time.Second, 8 * time.Second
		giveUp     = time.Minute
	)
	a, _ := newLocalAgent(t, clock, newTrainer(), newFake(t, 1).keys(), func(c *participant.Config) {
		c.MinBackoff, c.MaxBackoff, c.GiveUpAfter = minB, maxB, giveUp
	})
	// The schedule the agent must follow: retry k waits b/2 + u·b/2 with
	// b = min(MinBackoff·2^(k-1), MaxBackoff) and u the k-th jitter,
	// until the time since Run started reaches GiveUpAfter.
	var want []time.Duration
	var total time.Duration
	for k := 1; total < giveUp; k++ {
		b := float64(min(minB<<(k-1), maxB))
		d := time.Duration(b/2 + clock.jitter[(k-1)%len(clock.jitter)]*b/2)
		want = append(want, d)
		total += d
	}
	err = run(t, a, 30*time.Second)
	if !errors.Is(err, participant.ErrCoordinatorGone) {
		t.Fatalf("Run = %v, want ErrCoordinatorGone", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("(%d attempts;", len(want))) {
		t.Errorf("Run = %v, want it to count %d attempts", err, len(want))
	}
	if !slices.Equal(clock.slept, want) {
		t.Errorf("backoffs = %v, want %v", clock.slept, want)
	}
	if got := a.Stats().Retries; got != uint64(len(want)) {
		t.Errorf("Stats().Retries = %d, want %d", got, len(want))
	}
}

// TestNewTransportNeedsTLSOrOps: only an Ops may bring its own transport;
// the default one requires mutual TLS.
func TestNewTransportNeedsTLSOrOps(t *testing.T) {
	cfg := participant.Config{
		Coordinator: "127.0.0.1:1", Trainer: newTrainer(), Federation: federation, CoordinatorKeys: newFake(t, 1).keys(),
	}
	tests := []struct {
		name string
		opts []participant.Option
		ok   bool
	}{
		{"no TLS, default Ops", nil, false},
		{"no TLS, WithOps(DefaultOps)", []participant.Option{participant.WithOps(participant.DefaultOps)}, false},
		{"no TLS, an Ops with its own transport", []participant.Option{participant.WithOps(localOps{Ops: participant.DefaultOps})}, true},
		{"WithOps(nil)", []participant.Option{participant.WithOps(nil)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := participant.New(cfg, tt.opts...); (err == nil) != tt.ok {
				t.Errorf("New = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
