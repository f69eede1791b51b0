package coordinator_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// stallingClient is a participant's client whose SecureAggregate stream
// stalls before it sends its message of phase at: it sends nothing more
// and waits for the coordinator to end the stream, whose error the Send
// returns.
type stallingClient struct {
	fedguardv1.CoordinatorServiceClient
	at secagg.Phase
}

func (c stallingClient) SecureAggregate(ctx context.Context, opts ...grpc.CallOption) (fedguardv1.CoordinatorService_SecureAggregateClient, error) {
	s, err := c.CoordinatorServiceClient.SecureAggregate(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &stallingStream{CoordinatorService_SecureAggregateClient: s, at: c.at}, nil
}

type stallingStream struct {
	fedguardv1.CoordinatorService_SecureAggregateClient
	at   secagg.Phase
	sent secagg.Phase // the phase of the last message sent
}

func (s *stallingStream) Send(req *fedguardv1.SecureAggregateRequest) error {
	next := s.sent + 1
	if req.GetMasked().GetOffset() > 0 {
		next = s.sent // a later chunk of the masked input
	}
	if next == s.at {
		for {
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
	}
	s.sent = next
	return s.CoordinatorService_SecureAggregateClient.Send(req)
}

// TestSecureStreamStall (issue 12, item 7): a SecureAggregate stream that
// goes silent is under limits.update_idle as an update stream is: it is
// ended with ResourceExhausted, the refusal is in the text log and in the
// audit log once (call_refused, as the stream's other refusals), and the
// others' session goes on without it.
// Before, the stream stayed open as long as the client liked (here until
// its own 15 s deadline: DeadlineExceeded), silent from the start or
// between two phases.
func TestSecureStreamStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		at   secagg.Phase
	}{
		{"silent after opening", secagg.PhaseAdvertiseKeys},
		{"silent before sharing keys", secagg.PhaseShareKeys},
		{"silent before the consistency check", secagg.PhaseConsistencyCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := secureFederation(t)
			f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Second), UpdateMinRate: 1000}
			s, logs := startLogged(t, f.cfg)
			ps := f.connect(t, s, abcd...)
			fixScaling(t, ps)
			asgs := assignments(t, ps)
			ups := secureUpdates()
			staller := *ps[3]
			staller.svc = stallingClient{CoordinatorServiceClient: ps[3].svc, at: tc.at}

			var wg sync.WaitGroup
			errs := make([]error, len(ps))
			for i, p := range ps {
				if i == 3 {
					p = &staller
				}
				wg.Go(func() {
					ctx := callCtx(t, 15*time.Second)
					if i == 3 {
						began := time.Now()
						errs[i] = f.secureClient(ctx, p, asgs[i], ups[p.name].delta, ups[p.name].samples, 0)
						if took := time.Since(began); took > 10*time.Second {
							t.Errorf("stalled stream ended after %v, want about limits.update_idle (1s)", took)
						}
						return
					}
					errs[i] = f.secureClient(ctx, p, asgs[i], ups[p.name].delta, ups[p.name].samples, 0)
				})
			}
			wg.Wait()
			wantCode(t, "stalled SecureAggregate stream", errs[3], codes.ResourceExhausted)
			if msg := status.Convert(errs[3]).Message(); msg == "" {
				t.Errorf("stalled stream's status has no message")
			}
			for i, err := range errs[:3] {
				if err != nil {
					t.Errorf("%s: %v", ps[i].name, err)
				}
			}
			// The masked inputs are in the sum from the consistency check on.
			want := 3
			if tc.at > secagg.PhaseMaskedInput {
				want = 4
			}
			recs := waitRounds(t, s.c, 1, 30*time.Second)
			if got := recs[0].Secure[0].Survivors; len(got) != want {
				t.Errorf("round 1 survivors %v, want %d", got, want)
			}
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			if n := len(readEvents(t, f.cfg, audit.KindUpdateRefused)); n != 0 {
				t.Errorf("%d update_refused events, want none (a secure stream's refusal is a call_refused)", n)
			}
			var refused []audit.CallRefused
			for _, e := range readEvents(t, f.cfg, audit.KindCallRefused) {
				var p audit.CallRefused
				if err := json.Unmarshal(e.Payload, &p); err != nil {
					t.Fatal(err)
				}
				if e.Actor != "hospital-d" {
					t.Errorf("call_refused by %s, want hospital-d", e.Actor)
				}
				refused = append(refused, p)
			}
			if len(refused) != 1 || refused[0].Code != codes.ResourceExhausted.String() || !strings.HasSuffix(refused[0].Method, "/SecureAggregate") {
				t.Errorf("call_refused events %+v, want one ResourceExhausted of SecureAggregate", refused)
			}
			lines := logs.lines(t, "call refused")
			if len(lines) != 1 || lines[0]["participant"] != "hospital-d" || lines[0]["code"] != codes.ResourceExhausted.String() {
				t.Errorf("call refused lines %v, want one for hospital-d", lines)
			}
		})
	}
}
