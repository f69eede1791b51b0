package coordinator_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/coordinator/internal/securetest"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

var abcd = []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}

// errStopped is what a secure client returns when the test made it leave.
var errStopped = errors.New("left the session on purpose")

// secureClient runs name's side of a secure round over its real mTLS
// connection with the secagg state machine, leaving the session (closing
// the stream) just before it would send its message of phase stopAt (0:
// never).
func (f *federation) secureClient(ctx context.Context, p *participant, asg *fedguardv1.RoundAssignment, delta []float32, samples uint64, stopAt secagg.Phase) error {
	start, err := manifest.Digest(asg.GetManifest())
	if err != nil {
		return err
	}
	plan, err := secureround.FromProto(fedName, start, asg.GetRound(), asg.GetAttempt(), numParams, asg.GetSecure())
	if err != nil {
		return err
	}
	b, members, id, ok := plan.Bucket(p.name)
	if !ok {
		return fmt.Errorf("%s not in the plan", p.name)
	}
	kp, err := tls.LoadX509KeyPair(filepath.Join(f.dir, p.name, p.name+".crt"), filepath.Join(f.dir, p.name, p.name+".key"))
	if err != nil {
		return err
	}
	ca, err := certs.LoadCertificate(filepath.Join(f.dir, "ca", "ca.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	var peerKeys map[uint32]any
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := peerKeys[id]; ok {
			return k, nil
		}
		return nil, errors.New("unknown peer")
	})
	cl, err := secagg.NewClient(plan.Session(b), id, kp.PrivateKey.(crypto.Signer), verify, rand.Reader)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.svc.SecureAggregate(ctx)
	if err != nil {
		return err
	}
	// exchange sends one phase's message(s) and receives the coordinator's
	// reply.
	exchange := func(ph secagg.Phase, reqs ...*fedguardv1.SecureAggregateRequest) (*fedguardv1.SecureAggregateResponse, error) {
		if ph == stopAt {
			return nil, errStopped // the deferred cancel ends the stream
		}
		for _, req := range reqs {
			req.Round, req.Attempt = asg.GetRound(), asg.GetAttempt()
			if err := stream.Send(req); err != nil {
				return nil, err
			}
		}
		return stream.Recv()
	}
	keys := func(relay *fedguardv1.SecureKeys, peers []wire.Peer) error {
		if f.relayed != nil {
			f.relayed(p.name, relay)
		}
		if peerKeys, err = wire.PeerKeys(peers, fedName, members, roots, time.Now()); err != nil {
			return err
		}
		peerKeys[id] = kp.PrivateKey.(crypto.Signer).Public() // the relay leaves out the client's own
		return nil
	}
	enc := make([]uint32, numParams+1)
	if err := plan.Params.Encode(enc, delta, plan.Weight(samples), mrand.NewChaCha8([32]byte{byte(id)})); err != nil {
		return err
	}
	resp, err := securetest.Member(cl, len(members), enc, exchange, keys)
	if err != nil {
		return err
	}
	if resp.GetDone() == nil {
		return fmt.Errorf("last message %v, want done", resp)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("after done: %v, want the end of the stream", err)
	}
	return nil
}

// secureUpdate is one participant's contribution to a secure round.
type secureUpdate struct {
	delta   []float32
	samples uint64
}

// runSecure runs every cohort member's client concurrently; stop maps a
// member to the phase it leaves before. It returns each member's error.
func (f *federation) runSecure(t *testing.T, ps []*participant, asgs []*fedguardv1.RoundAssignment, ups map[string]secureUpdate, stop map[string]secagg.Phase) map[string]error {
	t.Helper()
	errs := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			err := f.secureClient(callCtx(t, 60*time.Second), p, asgs[i], ups[p.name].delta, ups[p.name].samples, stop[p.name])
			mu.Lock()
			errs[p.name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// weightedMean is the exact FedAvg of the members' deltas.
func weightedMean(ups map[string]secureUpdate, members []string) []float32 {
	out := make([]float32, numParams)
	var w float64
	for _, m := range members {
		w += float64(ups[m].samples)
	}
	for i := range out {
		var s float64
		for _, m := range members {
			s += float64(ups[m].samples) * float64(ups[m].delta[i])
		}
		out[i] = float32(s / w)
	}
	return out
}

func secureUpdates() map[string]secureUpdate {
	ups := map[string]secureUpdate{}
	for i, n := range abcd {
		d := make([]float32, numParams)
		for j := range d {
			d[j] = float32(i+1)*0.1 - float32(j)*0.05
		}
		ups[n] = secureUpdate{delta: d, samples: uint64(10 * (i + 1))}
	}
	return ups
}

func secureFederation(t *testing.T) *federation {
	f := newFederation(t, abcd)
	f.cfg.Secure = true
	f.cfg.MinParticipants = 2
	f.cfg.Training.Rounds = 2
	f.cfg.SecAgg.PhaseTimeout = coordinator.Duration(10 * time.Second)
	f.cfg.RoundTimeout = coordinator.Duration(20 * time.Second)
	// A round opens at once when all four are waiting; the timeout only
	// matters when one is missing. At 100 ms a loaded machine opened
	// rounds with whoever had polled, and the last hospital then waited
	// for an assignment that never came ("no assignment in time").
	f.cfg.CohortTimeout = coordinator.Duration(10 * time.Second)
	return f
}

// TestSecureRoundDropouts runs a secure round with one participant leaving
// before each phase: the round closes with the sum of whoever is in the
// sum, which includes the leaver once its masked input was in.
func TestSecureRoundDropouts(t *testing.T) {
	t.Parallel()
	phases := []secagg.Phase{0, secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseConsistencyCheck, secagg.PhaseUnmasking}
	for _, stopAt := range phases {
		name := "none"
		if stopAt != 0 {
			name = stopAt.String()
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := secureFederation(t)
			s, ps := f.startScaled(t, abcd...)
			asgs := assignments(t, ps)
			if asgs[0].GetSecure() == nil {
				t.Fatalf("assignment of a secure round has no secure layout")
			}
			// A plain update is refused in a secure round.
			_, err := ps[0].submit(t, asgs[0].GetRound(), update{deltas(1), 10, nil})
			wantCode(t, "SubmitUpdate in a secure round", err, codes.FailedPrecondition)

			ups := secureUpdates()
			errs := f.runSecure(t, ps, asgs, ups, map[string]secagg.Phase{"hospital-d": stopAt})
			for n, err := range errs {
				if n == "hospital-d" && stopAt != 0 {
					if !errors.Is(err, errStopped) {
						t.Errorf("%s: %v, want it stopped", n, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
			obs := s.waitObserved(t, 1, 30*time.Second)
			in := []string{"hospital-a", "hospital-b", "hospital-c"}
			if stopAt == 0 || stopAt > secagg.PhaseMaskedInput {
				in = abcd
			}
			want := weightedMean(ups, in)
			got := obs[0].Model
			p, _ := secagg.DefaultParams(4, 1)
			bound := p.ErrorBound(4) + 1e-6
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > bound {
					t.Errorf("model[%d] = %v, want %v ± %v (the mean of %v)", i, got[i], want[i], bound, in)
				}
			}
			rec := obs[0].Record
			if len(rec.Secure) != 1 || len(rec.Secure[0].Survivors) != len(in) {
				t.Errorf("record's secure buckets %+v, want one with survivors %v", rec.Secure, in)
			}
			for _, pr := range rec.Participants {
				if pr.Samples != 0 || pr.Norm != 0 || pr.Bucket != 1 {
					t.Errorf("record of %s = %+v: a secure round must not know samples or norms", pr.Name, pr)
				}
			}
		})
	}
}

// TestSecureRoundBelowThreshold drops two of four at the masked input, so
// the session (threshold 3) fails; the round is retried with a new session
// and closes with the other two.
func TestSecureRoundBelowThreshold(t *testing.T) {
	t.Parallel()
	f := secureFederation(t)
	// The retry's cohort is two of four: it opens when the cohort timeout
	// passes, so keep it short (but far above the moments the four take
	// to poll for the first attempt).
	f.cfg.CohortTimeout = coordinator.Duration(2 * time.Second)
	s, ps := f.startScaled(t, abcd...)
	asgs := assignments(t, ps)
	ups := secureUpdates()
	errs := f.runSecure(t, ps, asgs, ups, map[string]secagg.Phase{"hospital-c": secagg.PhaseMaskedInput, "hospital-d": secagg.PhaseMaskedInput})
	for _, n := range []string{"hospital-a", "hospital-b"} {
		if status.Code(errs[n]) != codes.Aborted {
			t.Errorf("%s: %v, want Aborted (the session failed)", n, errs[n])
		}
	}
	// The retry: only a and b ask for it.
	retry := assignmentsWhere(t, ps[:2], func(a *fedguardv1.RoundAssignment) bool { return a.GetAttempt() == 1 })
	if got := retry[0].GetSecure().GetCohort(); len(got) != 2 {
		t.Errorf("retry cohort %v, want the two that asked", got)
	}
	errs = f.runSecure(t, ps[:2], retry, ups, nil)
	for n, err := range errs {
		if err != nil {
			t.Errorf("retry %s: %v", n, err)
		}
	}
	obs := s.waitObserved(t, 1, 30*time.Second)
	if obs[0].Record.Attempt != 1 {
		t.Errorf("round closed at attempt %d, want 1", obs[0].Record.Attempt)
	}
	keys := s.c.PublicKeys()
	s.stop(t)
	events := auditKinds(t, f.cfg, keys)
	if events[audit.KindSecureSession] != 2 || events[audit.KindRoundFailed] != 1 {
		t.Errorf("audit log has %d secure_session and %d round_failed events, want 2 and 1", events[audit.KindSecureSession], events[audit.KindRoundFailed])
	}
	if events[audit.KindUpdateReceived] != 0 {
		t.Errorf("audit log has %d update_received events in a secure federation, want none", events[audit.KindUpdateReceived])
	}
}

// TestSecureAggregateRefusals checks the edge of SecureAggregate: a stream
// for the wrong attempt, a second stream, malformed messages.
func TestSecureAggregateRefusals(t *testing.T) {
	t.Parallel()
	f := secureFederation(t)
	_, ps := f.startScaled(t, abcd...)
	asgs := assignments(t, ps)
	open := func(p *participant, req *fedguardv1.SecureAggregateRequest) error {
		stream, err := p.svc.SecureAggregate(callCtx(t, 10*time.Second))
		if err != nil {
			return err
		}
		if err := stream.Send(req); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	round := asgs[0].GetRound()
	advertise := func(cPub []byte) *fedguardv1.SecureAggregateRequest {
		return &fedguardv1.SecureAggregateRequest{Round: round, Body: &fedguardv1.SecureAggregateRequest_Advertise{
			Advertise: &fedguardv1.SecureAdvertise{CPub: cPub, SPub: make([]byte, 32), Signature: []byte{1}}}}
	}
	wrong := advertise(make([]byte, 32))
	wrong.Attempt = 5
	wantCode(t, "wrong attempt", open(ps[0], wrong), codes.FailedPrecondition)
	wantCode(t, "short key", open(ps[0], advertise(make([]byte, 7))), codes.InvalidArgument)
	// ps[0] has now taken part (and left); it may not open a second stream.
	wantCode(t, "second stream", open(ps[0], advertise(make([]byte, 32))), codes.AlreadyExists)
	long := &fedguardv1.SecureAggregateRequest{Round: round, Body: &fedguardv1.SecureAggregateRequest_Decline{Decline: &fedguardv1.SecureDecline{Reason: strings.Repeat("x", 2000)}}}
	wantCode(t, "long decline", open(ps[1], long), codes.InvalidArgument)
}

// TestSecureBucketsWithDropout runs secure + robust aggregation: four
// hospitals in two buckets of two, the median over the bucket means. One
// hospital leaves before its masked input, so its bucket's session (which
// needs both) fails; the round closes with the other bucket's mean, and the
// record names the failed bucket.
func TestSecureBucketsWithDropout(t *testing.T) {
	t.Parallel()
	f := secureFederation(t)
	f.cfg.Aggregation = aggregation.Config{Rule: "median", Bucket: 2}
	s, ps := f.startScaled(t, abcd...)
	asgs := assignments(t, ps)
	start, err := manifest.Digest(asgs[0].GetManifest())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := secureround.FromProto(fedName, start, asgs[0].GetRound(), asgs[0].GetAttempt(), numParams, asgs[0].GetSecure())
	if err != nil {
		t.Fatal(err)
	}
	buckets := plan.Buckets()
	if len(buckets) != 2 {
		t.Fatalf("%d buckets, want 2", len(buckets))
	}
	leaver, kept := buckets[0][0], buckets[1]
	ups := secureUpdates()
	errs := f.runSecure(t, ps, asgs, ups, map[string]secagg.Phase{leaver: secagg.PhaseMaskedInput})
	for _, n := range kept {
		if errs[n] != nil {
			t.Errorf("%s (in the complete bucket): %v", n, errs[n])
		}
	}
	if other := buckets[0][1]; status.Code(errs[other]) != codes.Aborted {
		t.Errorf("%s (in the failed bucket): %v, want Aborted", other, errs[other])
	}
	obs := s.waitObserved(t, 1, 30*time.Second)
	rec := obs[0].Record
	want := weightedMean(ups, kept)
	p, _ := secagg.DefaultParams(3, 1)
	for i := range want {
		if d := math.Abs(float64(obs[0].Model[i] - want[i])); d > p.ErrorBound(2)+1e-6 {
			t.Errorf("model[%d] = %v, want the mean of bucket %v, %v", i, obs[0].Model[i], kept, want[i])
		}
	}
	if len(rec.Secure) != 2 || rec.Secure[0].Error == "" || rec.Secure[1].Error != "" {
		t.Fatalf("record's buckets %+v, want the first failed and the second complete", rec.Secure)
	}
	var got []string
	for _, pr := range rec.Participants {
		got = append(got, pr.Name)
	}
	if !slices.Equal(got, kept) {
		t.Errorf("record's participants %v, want %v", got, kept)
	}
}
