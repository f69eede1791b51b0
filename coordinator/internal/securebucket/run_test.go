package securebucket

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/coordinator/internal/securetest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// TestSessionWithoutGRPC runs a bucket's session through the Member API
// alone, as the coordinator's handler does but without a network: four
// members with secagg clients, one of which leaves before sharing its
// keys. The session completes with the other three, its mean is theirs,
// and its record says who left when.
func TestSessionWithoutGRPC(t *testing.T) {
	members := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
	const dim = 3
	params, err := secagg.DefaultParams(len(members), 1)
	if err != nil {
		t.Fatal(err)
	}
	plan := secureround.Plan{Federation: "test", Round: 1, Cohort: members, ThresholdPercent: 67, Params: params, WeightUnit: 1,
		PhaseTimeout: 10 * time.Second, Dim: dim}
	if err := plan.Check(); err != nil {
		t.Fatal(err)
	}
	buckets, sessions := plan.Layout()
	s := New(0, buckets[0], sessions[0], params)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	observed := map[secagg.Phase]bool{}
	go s.Run(ctx, slog.New(slog.DiscardHandler), Timing{Opened: time.Now(), Deadline: time.Now().Add(time.Minute), PhaseTimeout: 10 * time.Second},
		func(p secagg.Phase, _ time.Duration) { observed[p] = true })

	pubs := map[uint32]crypto.PublicKey{}
	privs := map[uint32]ed25519.PrivateKey{}
	for id := uint32(1); id <= uint32(len(members)); id++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pubs[id], privs[id] = pub, priv
	}
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := pubs[id]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no key for %d", id)
	})
	inputs := map[string][]float32{"hospital-a": {0.1, 0.2, 0.3}, "hospital-b": {-0.1, 0, 0.5}, "hospital-c": {0.3, -0.2, 0}, "hospital-d": {0.9, 0.9, 0.9}}
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, name := range members {
		id := uint32(i + 1)
		wg.Go(func() {
			errs[i] = member(ctx, s, name, id, sessions[0], privs[id], pubs[id], verify, plan, inputs[name], name == "hospital-d")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", members[i], err)
		}
	}

	res := s.Result()
	if res.Err != nil {
		t.Fatalf("session failed: %v", res.Err)
	}
	if fmt.Sprint(res.Survivors) != "[hospital-a hospital-b hospital-c]" || res.Dropped["hospital-d"] != "ShareKeys: stream ended" || len(res.Dropped) != 1 {
		t.Errorf("survivors %v, dropped %v; want a, b, c and d at ShareKeys", res.Survivors, res.Dropped)
	}
	bound := params.ErrorBound(3) + 1e-6
	for j := range dim {
		want := (inputs["hospital-a"][j] + inputs["hospital-b"][j] + inputs["hospital-c"][j]) / 3
		if math.Abs(float64(res.Mean[j]-want)) > bound {
			t.Errorf("mean[%d] = %v, want %v ± %v", j, res.Mean[j], want, bound)
		}
	}
	if res.Weight != 3 {
		t.Errorf("weight %d, want 3", res.Weight)
	}
	ev := s.Record(2)
	if ev.Attempt != 2 || ev.Bucket != 1 || len(ev.Members) != 4 || len(ev.Survivors) != 3 || ev.SumSHA256 == "" || ev.Error != "" {
		t.Errorf("Record(2) = %+v", ev)
	}
	for _, p := range secagg.Phases() {
		if !observed[p] {
			t.Errorf("phase %v not observed", p)
		}
	}
	// After the end, a member hears that the session ended without it,
	// and a malformed message is an ErrMessage.
	late := s.Join("hospital-d", pubs[4], nil)
	if _, err := late.Send(ctx, Message{phase: secagg.PhaseAdvertiseKeys}); !errors.Is(err, ErrDropped) {
		t.Errorf("Send to an ended session = %v, want ErrDropped", err)
	}
	if _, err := late.Decode(&fedguardv1.SecureAggregateRequest{}, nil); !errors.Is(err, ErrMessage) {
		t.Errorf("Decode(empty request) = %v, want ErrMessage", err)
	}
	if s.Join("hospital-z", nil, nil) != nil {
		t.Errorf("Join of a non-member is not nil")
	}
}

// errLeft is what a member's exchange returns when the test makes it leave.
var errLeft = errors.New("left the session on purpose")

// member plays one member with a secagg client; leave makes it leave
// before it shares its keys.
func member(ctx context.Context, s *Session, name string, id uint32, cfg secagg.Config, priv ed25519.PrivateKey, pub crypto.PublicKey,
	verify secagg.Verify, plan secureround.Plan, input []float32, leave bool) error {
	cl, err := secagg.NewClient(cfg, id, priv, verify, rand.Reader)
	if err != nil {
		return err
	}
	m := s.Join(name, pub, []byte("certificate of "+name)) // relayed, not parsed here
	defer m.Leave()
	// exchange hands one phase's message to the member as the coordinator's
	// handler does: the first request decoded, the rest (the masked
	// input's chunks) read by Decode.
	exchange := func(ph secagg.Phase, reqs ...*fedguardv1.SecureAggregateRequest) (*fedguardv1.SecureAggregateResponse, error) {
		if leave && ph == secagg.PhaseShareKeys {
			return nil, errLeft
		}
		more := reqs[1:]
		next := func() (*fedguardv1.SecureAggregateRequest, error) {
			if len(more) == 0 {
				return nil, io.EOF
			}
			r := more[0]
			more = more[1:]
			return r, nil
		}
		msg, err := m.Decode(reqs[0], next)
		if err != nil {
			return nil, err
		}
		return m.Send(ctx, msg)
	}
	enc := make([]uint32, len(input)+1)
	if err := plan.Params.Encode(enc, input, 1, mrand.NewChaCha8([32]byte{byte(id)})); err != nil {
		return err
	}
	resp, err := securetest.Member(cl, cfg.N, enc, exchange, nil)
	if errors.Is(err, errLeft) {
		return nil
	}
	if err != nil {
		return err
	}
	if resp.GetDone().GetSurvivors() != 3 || !m.Finished() {
		return fmt.Errorf("done %v, finished %t; want 3 survivors and finished", resp.GetDone(), m.Finished())
	}
	return nil
}
