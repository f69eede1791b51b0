package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/fedguard/fedguard/coordinator"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// TestModelDownloadStall (issue 12, item 7): a participant that calls
// GetModel and does not read is cut once its download has been stalled
// for limits.update_idle, with ResourceExhausted, logged and audited as a
// refused call. The client is a real mTLS client with gRPC's smallest
// flow-control windows (so that a model of about 1 MiB fills them) that
// reads nothing until the coordinator has given up. Before the fix the
// coordinator's Send stayed blocked as long as the client lived: no
// refusal was ever logged, and the client could then read the whole
// model.
func TestModelDownloadStall(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	// 2·512 + 512·512 + 512·2 weights and their biases: about 1 MiB of
	// parameters, far more than the 64 KiB windows hold.
	f.cfg.Model.Kind, f.cfg.Model.Hidden = "mlp", []int{512, 512}
	f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Second), UpdateMinRate: 1000}
	s, logs := startLogged(t, f.cfg)
	ps := f.connect(t, s, abc...)
	fixScaling(t, ps)
	round := assignments(t, ps)[0].GetRound()

	conn, err := grpc.NewClient("passthrough:///"+s.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(f.tlsFor(t, abc[0], s.addr))),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := fedguardv1.NewCoordinatorServiceClient(conn).GetModel(callCtx(t, 30*time.Second), &fedguardv1.GetModelRequest{Round: round})
	if err != nil {
		t.Fatal(err)
	}
	refused := func() []map[string]any {
		var out []map[string]any
		for _, l := range logs.lines(t, "call refused") {
			if m, _ := l["method"].(string); strings.HasSuffix(m, "/GetModel") {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(refused()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no GetModel refusal logged 10 s after a download nobody reads, want one after about limits.update_idle (1s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := refused(); len(l) != 1 || l[0]["participant"] != abc[0] || l[0]["code"] != codes.ResourceExhausted.String() {
		t.Errorf("GetModel refusals logged: %v, want one ResourceExhausted for %s", l, abc[0])
	}
	// The client now reads what had gone out, then the refusal.
	var got, total uint64
	for {
		msg, err := stream.Recv()
		if err != nil {
			wantCode(t, "GetModel after the stall", err, codes.ResourceExhausted)
			break
		}
		got, total = got+uint64(len(msg.GetData())), 4*msg.GetNumParams()
	}
	if total < 1<<20 || got >= total {
		t.Errorf("the stalled download delivered %d of %d bytes, want a model of 1 MiB or more, not all of it", got, total)
	}
	// Another download of the same participant is served.
	if _, _, err := ps[0].getModel(t, round); err != nil {
		t.Errorf("GetModel after the stalled one = %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := countKinds(t, f.cfg)["call_refused/"+abc[0]]; n != 1 {
		t.Errorf("%d call_refused events of %s, want 1", n, abc[0])
	}
}
