package participant_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

// The secure tests run real agents over real mTLS against secureFake, a
// fake coordinator that runs a real secagg.Server for one bucket holding
// the whole cohort. The end-to-end test with the real coordinator is in
// integration/.

// secureNames is the cohort of the secure tests.
var secureNames = []string{"hospital-a", "hospital-b", "hospital-c"}

// hospitals issues a certificate for each name by the pki's CA and returns
// each one's client TLS configuration (the pki's own hospital keeps its
// certificate).
func (p *pki) hospitals(t *testing.T, names ...string) map[string]*tls.Config {
	t.Helper()
	p.Add(t, slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == hospital })...)
	out := make(map[string]*tls.Config, len(names))
	for _, name := range names {
		out[name] = p.client(t, p.ca, p.Federation, name)
	}
	return out
}

// secureFederation serves, over mTLS, a secure fake of rounds rounds for
// secureNames, configured by setup (if not nil) before it serves, and
// returns it, its address and the hospitals' TLS configurations.
func secureFederation(t *testing.T, rounds uint64, setup func(*secureFake)) (*secureFake, string, map[string]*tls.Config) {
	t.Helper()
	p := newPKI(t)
	tlsCfgs := p.hospitals(t, secureNames...)
	fake := newSecureFake(t, rounds, secureNames)
	if setup != nil {
		setup(fake)
	}
	return fake, p.serveSecure(t, fake), tlsCfgs
}

// serveSecure runs s on a loopback port until the test ends.
func (p *pki) serveSecure(t *testing.T, s *secureFake) string {
	t.Helper()
	_, addr := p.serve(t, s, "127.0.0.1:0")
	return addr
}

// fixedTrainer prepares on the test data but returns a fixed update, so
// that every hospital's input, and with them the expected weighted mean,
// are known.
type fixedTrainer struct {
	*participant.LocalTrainer
	k       float32
	samples uint64
}

func (tr fixedTrainer) delta(n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = 0.01 * tr.k * float32(i%7-3)
	}
	return d
}

func (tr fixedTrainer) Train(_ context.Context, _ *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	return participant.Result{Delta: tr.delta(len(start)), Samples: tr.samples}, nil
}

// secureTrainers are the hospitals' trainers: norms of about 0.16, 0.31
// and 0.47 (the last one above secureLayout's norm clip) and weights 2, 3
// and 4.
func secureTrainers() map[string]fixedTrainer {
	return map[string]fixedTrainer{
		"hospital-a": {newTrainer(), 1, 15},
		"hospital-b": {newTrainer(), 2, 25},
		"hospital-c": {newTrainer(), 3, 35},
	}
}

// secureLayout is the fake's SecureRound, cohort aside.
func secureLayout() *fedguardv1.SecureRound {
	return &fedguardv1.SecureRound{
		ThresholdPercent:   50, // 2 of 3
		Clip:               1,
		QuantBits:          16,
		WeightBits:         8,
		WeightUnit:         10,
		NormClip:           0.4,
		PhaseTimeoutMillis: 2000,
	}
}

// expectedMean is the weighted mean of the named hospitals' updates,
// clipped to norm as the plan says, computed here independently of the
// agent.
func expectedMean(names []string, n int, layout *fedguardv1.SecureRound) []float64 {
	trainers := secureTrainers()
	sum := make([]float64, n)
	var total float64
	for _, name := range names {
		tr := trainers[name]
		d := tr.delta(n)
		var sq float64
		for _, v := range d {
			sq += float64(v) * float64(v)
		}
		scale := 1.0
		if norm := math.Sqrt(sq); norm > layout.GetNormClip() {
			scale = layout.GetNormClip() / norm
		}
		w := math.Ceil(float64(tr.samples) / float64(layout.GetWeightUnit()))
		for i, v := range d {
			sum[i] += w * float64(v) * scale
		}
		total += w
	}
	for i := range sum {
		sum[i] /= total
	}
	return sum
}

// secureSum is a bucket sum the fake unmasked.
type secureSum struct {
	round     uint64
	attempt   uint32
	survivors []string
	mean      []float32
	weight    uint64
}

// decline is a SecureDecline the fake received.
type decline struct {
	name    string
	round   uint64
	attempt uint32
	reason  string
}

// secureFake is a fakeCoordinator whose rounds are secure: every
// assignment carries the layout, and SecureAggregate runs the cohort's
// single bucket through a real secagg.Server.
type secureFake struct {
	*fakeCoordinator
	cohort []string
	layout *fedguardv1.SecureRound
	// lie: the first session that is unmasked is claimed to have failed
	// (Aborted) and retried, the attack the agents must not fall for.
	lie bool
	// declinesToAdvance: once that many declines of the open attempt
	// arrived, the fake closes the round without them.
	declinesToAdvance int

	// crashAt: the first time every member has sent its message of that
	// phase, the fake "crashes": it forgets the session and answers every
	// stream Unavailable, as a coordinator that died would; the next
	// stream of the same round attempt starts the session anew, as a
	// restarted coordinator does. onCrash runs then.
	crashAt secagg.Phase
	onCrash func()

	sm         sync.Mutex
	runs       map[[2]uint64]*bucketRun
	crashed    bool
	adverts    map[string][]*fedguardv1.SecureAdvertise // every advertisement received, by member
	masked     map[string][][32]byte                    // digest of every masked input received, by member
	sums       []secureSum
	declines   []decline
	advertised map[uint32][]string // by attempt
	streams    int
	lied       bool
}

func newSecureFake(t *testing.T, rounds uint64, cohort []string) *secureFake {
	f := newFake(t, rounds)
	f.reportStats(t)
	s := &secureFake{fakeCoordinator: f, cohort: cohort, layout: secureLayout(),
		runs: map[[2]uint64]*bucketRun{}, advertised: map[uint32][]string{},
		adverts: map[string][]*fedguardv1.SecureAdvertise{}, masked: map[string][][32]byte{}}
	f.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
		asg.Secure = s.secureRound()
		return asg
	}
	return s
}

func (s *secureFake) secureRound() *fedguardv1.SecureRound {
	out := proto.Clone(s.layout).(*fedguardv1.SecureRound)
	out.Cohort = slices.Clone(s.cohort)
	return out
}

// peerOf returns the caller's participant name and certificate (DER).
func peerOf(ctx context.Context) (string, []byte, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "", nil, status.Error(codes.Unauthenticated, "no client certificate")
	}
	id, err := certs.PeerIdentity(ti.State)
	if err != nil {
		return "", nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return id.Name, ti.State.PeerCertificates[0].Raw, nil
}

func (s *secureFake) Join(ctx context.Context, _ *fedguardv1.JoinRequest) (*fedguardv1.JoinResponse, error) {
	name, _, err := peerOf(ctx)
	if err != nil {
		return nil, err
	}
	f := s.fakeCoordinator
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins++
	return &fedguardv1.JoinResponse{Federation: federation, Participant: name, Model: f.spec, StatsNeeded: f.scaling == nil}, nil
}

func (s *secureFake) SubmitUpdate(grpc.ClientStreamingServer[fedguardv1.SubmitUpdateRequest, fedguardv1.SubmitUpdateResponse]) error {
	s.t.Errorf("SubmitUpdate called in a secure round")
	return status.Error(codes.FailedPrecondition, "the round is secure")
}

// counts returns the SecureAggregate streams opened and the GetModel calls.
func (s *secureFake) counts() (streams, getModels int) {
	s.sm.Lock()
	streams = s.streams
	s.sm.Unlock()
	_, getModels, _, _ = s.fakeCoordinator.counts()
	return streams, getModels
}

func (s *secureFake) results() ([]secureSum, []decline, map[uint32][]string) {
	s.sm.Lock()
	defer s.sm.Unlock()
	adv := make(map[uint32][]string, len(s.advertised))
	for k, v := range s.advertised {
		adv[k] = slices.Sorted(slices.Values(v))
	}
	return slices.Clone(s.sums), slices.Clone(s.declines), adv
}

// run returns the bucket run of the open round attempt, after checking
// that the caller's round and attempt are the open ones.
func (s *secureFake) run(round uint64, attempt uint32) (*bucketRun, error) {
	f := s.fakeCoordinator
	f.mu.Lock()
	open, openAttempt := f.round, f.attempt
	var start [32]byte
	var dim int
	if open <= f.rounds && int(open) <= len(f.chain) {
		start, dim = f.chain[open-1].digest, len(f.global)
	}
	f.mu.Unlock()
	if round != open || attempt != openAttempt || dim == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "round %d attempt %d is not open", round, attempt)
	}
	s.sm.Lock()
	defer s.sm.Unlock()
	key := [2]uint64{round, uint64(attempt)}
	if r := s.runs[key]; r != nil {
		return r, nil
	}
	plan, err := secureround.FromProto(federation, start, round, attempt, dim, s.secureRound())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	r, err := newBucketRun(s, plan)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.runs[key] = r
	return r, nil
}

func (s *secureFake) SecureAggregate(stream grpc.BidiStreamingServer[fedguardv1.SecureAggregateRequest, fedguardv1.SecureAggregateResponse]) error {
	name, der, err := peerOf(stream.Context())
	if err != nil {
		return err
	}
	s.sm.Lock()
	s.streams++
	s.sm.Unlock()
	first, err := stream.Recv()
	if err != nil {
		s.left(name)
		return err
	}
	if d := first.GetDecline(); d != nil {
		s.declined(decline{name: name, round: first.GetRound(), attempt: first.GetAttempt(), reason: d.GetReason()})
		return nil
	}
	r, err := s.run(first.GetRound(), first.GetAttempt())
	if err != nil {
		return err
	}
	if first.GetAdvertise() != nil {
		s.sm.Lock()
		s.advertised[first.GetAttempt()] = append(s.advertised[first.GetAttempt()], name)
		s.adverts[name] = append(s.adverts[name], proto.Clone(first.GetAdvertise()).(*fedguardv1.SecureAdvertise))
		s.sm.Unlock()
	}
	return r.serve(name, der, first, stream)
}

// left records that name opened a stream in the open round attempt and
// left it before its first message: it is out of the session.
func (s *secureFake) left(name string) {
	f := s.fakeCoordinator
	f.mu.Lock()
	round, attempt := f.round, f.attempt
	f.mu.Unlock()
	r, err := s.run(round, attempt)
	if err != nil {
		return
	}
	i, found := slices.BinarySearch(r.members, name)
	if !found {
		return
	}
	r.mu.Lock()
	r.seen[uint32(i+1)] = true
	r.mu.Unlock()
	r.drop(uint32(i + 1))
}

// declined records d and closes the round once enough hospitals declined
// the open attempt.
func (s *secureFake) declined(d decline) {
	s.sm.Lock()
	s.declines = append(s.declines, d)
	n := 0
	for _, o := range s.declines {
		if o.round == d.round && o.attempt == d.attempt {
			n++
		}
	}
	s.sm.Unlock()
	f := s.fakeCoordinator
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.declinesToAdvance > 0 && n == s.declinesToAdvance && d.round == f.round && d.attempt == f.attempt {
		f.advanceLocked("hospital-z")
	}
}

// bucketRun is one session of the fake: the streams of the bucket's
// members meet at each phase, the last to arrive (or the departure of a
// member) runs the secagg.Server's method, and each stream then sends its
// member's share of the result.
type bucketRun struct {
	s       *secureFake
	plan    secureround.Plan
	members []string
	cfg     secagg.Config
	srv     *secagg.Server

	mu       sync.Mutex
	cond     *sync.Cond
	certs    map[uint32][]byte
	own      map[uint32]*secagg.AdvertiseKeys
	seen     map[uint32]bool
	phase    secagg.Phase
	expected map[uint32]bool
	got      map[uint32]any
	out      map[secagg.Phase]map[uint32]any
	failed   error
	survived []uint32
}

func newBucketRun(s *secureFake, plan secureround.Plan) (*bucketRun, error) {
	members := plan.Buckets()[0]
	cfg := plan.Session(0)
	r := &bucketRun{s: s, plan: plan, members: members, cfg: cfg,
		certs: map[uint32][]byte{}, own: map[uint32]*secagg.AdvertiseKeys{}, seen: map[uint32]bool{},
		phase: secagg.PhaseAdvertiseKeys, expected: map[uint32]bool{}, got: map[uint32]any{}, out: map[secagg.Phase]map[uint32]any{}}
	r.cond = sync.NewCond(&r.mu)
	for i := range members {
		r.expected[uint32(i+1)] = true
	}
	srv, err := secagg.NewServer(cfg, secagg.PublicKeyVerifier(r.key))
	if err != nil {
		return nil, err
	}
	r.srv = srv
	r.startPhase(secagg.PhaseAdvertiseKeys)
	return r, nil
}

// key is the identity key of member id, from its connection's
// certificate. The server calls it from resolveLocked, r.mu held.
func (r *bucketRun) key(id uint32) (crypto.PublicKey, error) {
	c, err := x509.ParseCertificate(r.certs[id])
	if err != nil {
		return nil, err
	}
	return c.PublicKey, nil
}

// startPhase arms the phase's timeout (a safety net: phases normally end
// when every member still in has answered or left). r.mu is held or r is
// not shared yet.
func (r *bucketRun) startPhase(p secagg.Phase) {
	time.AfterFunc(10*time.Second, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.phase == p && r.out[p] == nil && r.failed == nil {
			r.resolveLocked()
		}
	})
}

// drop records that member id left.
func (r *bucketRun) drop(id uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.expected[id] {
		return
	}
	delete(r.expected, id)
	r.maybeResolveLocked()
}

func (r *bucketRun) maybeResolveLocked() {
	if r.failed != nil || r.out[r.phase] != nil {
		return
	}
	for id := range r.expected {
		if _, ok := r.got[id]; !ok {
			return
		}
	}
	s := r.s
	s.sm.Lock()
	crash := s.crashAt == r.phase && !s.crashed
	if crash {
		s.crashed = true
		delete(s.runs, [2]uint64{r.plan.Round, uint64(r.plan.Attempt)})
	}
	s.sm.Unlock()
	if crash {
		r.failed = errCrashed
		r.cond.Broadcast()
		if s.onCrash != nil {
			s.onCrash()
		}
		return
	}
	r.resolveLocked()
}

// errCrashed is the failure of a session the fake forgot in a "crash".
var errCrashed = errors.New("the coordinator crashed")

// failedStatus is what a member hears from a failed session.
func failedStatus(err error) error {
	if err == errCrashed {
		return status.Error(codes.Unavailable, "the coordinator crashed")
	}
	return status.Errorf(codes.Aborted, "session failed: %v", err)
}

// received is the messages of type M that ids sent, in the order of ids.
func received[M any](got map[uint32]any, ids []uint32) []M {
	var msgs []M
	for _, id := range ids {
		msgs = append(msgs, got[id].(M))
	}
	return msgs
}

// addReplies sets each member's reply in out from the server's answer.
func addReplies[V any](out map[uint32]any, replies map[uint32]V) {
	for id, v := range replies {
		out[id] = v
	}
}

// resolveLocked ends the current phase with the messages received.
func (r *bucketRun) resolveLocked() {
	defer r.cond.Broadcast()
	ids := slices.Sorted(func(yield func(uint32) bool) {
		for id := range r.got {
			if !yield(id) {
				return
			}
		}
	})
	out := map[uint32]any{}
	var err error
	switch r.phase {
	case secagg.PhaseAdvertiseKeys:
		var relay map[uint32][]*secagg.AdvertiseKeys
		if relay, _, err = r.srv.CollectKeys(received[*secagg.AdvertiseKeys](r.got, ids)); err == nil {
			addReplies(out, relay)
		}
	case secagg.PhaseShareKeys:
		var route map[uint32][]*secagg.EncryptedShare
		if route, _, err = r.srv.CollectShares(received[*secagg.ShareKeys](r.got, ids)); err == nil {
			addReplies(out, route)
		}
	case secagg.PhaseMaskedInput:
		msgs := received[*secagg.MaskedInput](r.got, ids)
		var survivors []uint32
		if survivors, _, err = r.srv.CollectMasked(msgs); err == nil {
			r.survived = survivors
			for _, id := range survivors {
				out[id] = survivors
			}
		}
	case secagg.PhaseConsistencyCheck:
		var reqs map[uint32]*secagg.UnmaskRequest
		if reqs, _, err = r.srv.CollectConsistency(received[*secagg.ConsistencySig](r.got, ids)); err == nil {
			addReplies(out, reqs)
		}
	case secagg.PhaseUnmasking:
		msgs := received[*secagg.UnmaskResponse](r.got, ids)
		var sum []uint32
		var rejected []secagg.Rejection
		if sum, rejected, err = r.srv.Unmask(msgs); err == nil {
			for _, id := range ids {
				if !slices.ContainsFunc(rejected, func(x secagg.Rejection) bool { return x.ID == id }) {
					out[id] = uint32(len(r.survived))
				}
			}
			err = r.finishLocked(sum)
		}
	}
	if err != nil {
		r.failed = err
		r.s.t.Logf("fake: session round %d attempt %d failed at %v: %v", r.plan.Round, r.plan.Attempt, r.phase, err)
		f := r.s.fakeCoordinator
		f.mu.Lock()
		f.attempt++
		f.mu.Unlock()
		return
	}
	r.out[r.phase] = out
	r.got = map[uint32]any{}
	r.expected = map[uint32]bool{}
	for id := range out {
		r.expected[id] = true
	}
	if r.phase < secagg.PhaseUnmasking {
		r.phase++
		r.startPhase(r.phase)
	}
}

// finishLocked decodes the unmasked sum and closes the round (or, when
// the fake lies, claims the session failed and retries it).
func (r *bucketRun) finishLocked(sum []uint32) error {
	mean := make([]float32, r.plan.Dim)
	var total uint64
	var err error
	if dp := r.plan.DDP(); dp != nil {
		total, err = dp.Decode(mean, sum)
	} else {
		total, err = r.plan.Params.Decode(mean, sum)
	}
	if err != nil {
		return err
	}
	var names []string
	for _, id := range r.survived {
		names = append(names, r.members[id-1])
	}
	s := r.s
	s.sm.Lock()
	s.sums = append(s.sums, secureSum{round: r.plan.Round, attempt: r.plan.Attempt, survivors: names, mean: mean, weight: total})
	lie := s.lie && !s.lied
	s.lied = s.lied || lie
	s.sm.Unlock()
	if lie {
		return errors.New("claimed to have failed (a lie)") // retried as any failure
	}
	f := s.fakeCoordinator
	f.mu.Lock()
	defer f.mu.Unlock()
	next := slices.Clone(f.global)
	for i := range next {
		next[i] += mean[i]
	}
	d := sha256.Sum256([]byte(fmt.Sprint(sum)))
	f.closeLocked(next, []manifest.Contributor{{Name: names[0], UpdateSHA256: hex.EncodeToString(d[:]), Bucket: 1}})
	f.round++
	f.attempt = 1
	return nil
}

// submit hands in member id's message of phase p and returns its share of
// the phase's result.
func (r *bucketRun) submit(p secagg.Phase, id uint32, msg any) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed != nil {
		return nil, failedStatus(r.failed)
	}
	if r.phase != p || !r.expected[id] || r.out[p] != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "participant %d is not in the session at %v", id, p)
	}
	r.got[id] = msg
	r.maybeResolveLocked()
	for r.failed == nil && r.out[p] == nil {
		r.cond.Wait()
	}
	if r.failed != nil {
		return nil, failedStatus(r.failed)
	}
	v, ok := r.out[p][id]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "participant %d dropped at %v", id, p)
	}
	return v, nil
}

// serve runs member name's stream, first being its first message.
func (r *bucketRun) serve(name string, der []byte, first *fedguardv1.SecureAggregateRequest, stream grpc.BidiStreamingServer[fedguardv1.SecureAggregateRequest, fedguardv1.SecureAggregateResponse]) (err error) {
	i, found := slices.BinarySearch(r.members, name)
	if !found {
		return status.Errorf(codes.FailedPrecondition, "%s is not in the cohort", name)
	}
	id := uint32(i + 1)
	r.mu.Lock()
	again := r.seen[id]
	r.seen[id] = true
	r.certs[id] = der
	r.mu.Unlock()
	if again {
		return status.Errorf(codes.FailedPrecondition, "%s already took part in this attempt", name)
	}
	defer func() {
		if err != nil {
			r.drop(id)
		}
	}()
	n := r.cfg.N
	msg := first
	next := func() (*fedguardv1.SecureAggregateRequest, error) {
		m, err := stream.Recv()
		if err == nil && (m.GetRound() != r.plan.Round || m.GetAttempt() != r.plan.Attempt) {
			return nil, status.Error(codes.InvalidArgument, "round or attempt changed")
		}
		return m, err
	}

	adv, err := wire.AdvertiseFromProto(id, msg.GetAdvertise())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	r.mu.Lock()
	r.own[id] = adv
	r.mu.Unlock()
	v, err := r.submit(secagg.PhaseAdvertiseKeys, id, adv)
	if err != nil {
		return err
	}
	relay := append(slices.Clone(v.([]*secagg.AdvertiseKeys)), adv) // its own included
	keys := wire.KeysToProto(relay, func(id uint32) []byte {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.certs[id]
	})
	if err := stream.Send(&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Keys{Keys: keys}}); err != nil {
		return err
	}

	if msg, err = next(); err != nil {
		return err
	}
	shares, err := wire.SharesFromProto(id, n, msg.GetShares())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if v, err = r.submit(secagg.PhaseShareKeys, id, shares); err != nil {
		return err
	}
	routed := wire.RoutedToProto(v.([]*secagg.EncryptedShare))
	if err := stream.Send(&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Shares{Shares: routed}}); err != nil {
		return err
	}

	asm := wire.NewMaskedAssembler(r.cfg.Dim)
	for !asm.Done() {
		if msg, err = next(); err != nil {
			return err
		}
		if err := asm.Add(msg.GetMasked()); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	r.s.sm.Lock()
	r.s.masked[name] = append(r.s.masked[name], sha256.Sum256([]byte(fmt.Sprint(asm.Words()))))
	r.s.sm.Unlock()
	if v, err = r.submit(secagg.PhaseMaskedInput, id, &secagg.MaskedInput{ID: id, Masked: asm.Words()}); err != nil {
		return err
	}
	survivors := &fedguardv1.SecureSurvivors{Ids: v.([]uint32)}
	if err := stream.Send(&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Survivors{Survivors: survivors}}); err != nil {
		return err
	}

	if msg, err = next(); err != nil {
		return err
	}
	if msg.GetConsistency() == nil {
		return status.Error(codes.InvalidArgument, "want the consistency signature")
	}
	if v, err = r.submit(secagg.PhaseConsistencyCheck, id, &secagg.ConsistencySig{ID: id, Sig: msg.GetConsistency().GetSignature()}); err != nil {
		return err
	}
	req := wire.UnmaskRequestToProto(v.(*secagg.UnmaskRequest))
	if err := stream.Send(&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Unmask{Unmask: req}}); err != nil {
		return err
	}

	if msg, err = next(); err != nil {
		return err
	}
	resp, err := wire.UnmaskResponseFromProto(id, n, msg.GetUnmask())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if v, err = r.submit(secagg.PhaseUnmasking, id, resp); err != nil {
		return err
	}
	return stream.Send(&fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Done{Done: &fedguardv1.SecureDone{Survivors: v.(uint32)}}})
}

// newSecureAgent returns hospital name's agent, with its state in the
// file state.
func newSecureAgent(t *testing.T, addr string, tlsCfg *tls.Config, keys manifest.PublicKeys, name, state string, opts ...participant.Option) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	return newPolicyAgent(t, addr, tlsCfg, keys, name, state, nil, opts...)
}

// newPolicyAgent is newSecureAgent with the hospital's policy settings
// changed by policy (when not nil): newAgent with the hospital's secure
// trainer, its state file and its name on every log line.
func newPolicyAgent(t *testing.T, addr string, tlsCfg *tls.Config, keys manifest.PublicKeys, name, state string, policy func(*participant.Config), opts ...participant.Option) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	edits := []func(*participant.Config){withState(state), func(c *participant.Config) { c.Log = c.Log.With("hospital", name) }}
	if policy != nil {
		edits = append(edits, policy)
	}
	return newAgentWith(t, addr, tlsCfg, secureTrainers()[name], keys, opts, edits...)
}

// runAll runs the agents concurrently and returns what each Run returned.
func runAll(t *testing.T, agents map[string]*participant.Agent, timeout time.Duration) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := map[string]error{}
	for name, a := range agents {
		wg.Go(func() {
			err := a.Run(ctx)
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// runAllOK runs the agents as runAll does and stops the test, after
// naming each agent whose Run did not return nil, unless all did.
func runAllOK(t *testing.T, agents map[string]*participant.Agent, timeout time.Duration) {
	t.Helper()
	failed := false
	for name, err := range runAll(t, agents, timeout) {
		if err != nil {
			t.Errorf("%s: Run = %v, want nil", name, err)
			failed = true
		}
	}
	if failed {
		t.FailNow()
	}
}

// stateRevealed reads the "revealed" list of a state file.
func stateRevealed(t *testing.T, path string) []string {
	t.Helper()
	return readStateFile(t, path).Revealed
}

// stateFile is what the tests read of an agent's state file, as JSON.
type stateFile struct {
	Round     uint64           `json:"round"`
	Digest    string           `json:"digest"`
	Revealed  []string         `json:"revealed"`
	Rotations []map[string]any `json:"rotations"`
}

// readStateFile reads the agent's state file at path.
func readStateFile(t *testing.T, path string) stateFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("state file %s: %v", path, err)
	}
	return st
}

// checkMean compares a decoded bucket mean with the weighted mean of the
// named hospitals' clipped updates.
func checkMean(t *testing.T, got secureSum, names []string, layout *fedguardv1.SecureRound) {
	t.Helper()
	if !slices.Equal(got.survivors, names) {
		t.Errorf("round %d attempt %d: survivors %v, want %v", got.round, got.attempt, got.survivors, names)
	}
	want := expectedMean(names, len(got.mean), layout)
	params := secagg.Params{Clip: layout.GetClip(), QuantBits: uint(layout.GetQuantBits()), WeightBits: uint(layout.GetWeightBits())}
	tol := params.ErrorBound(len(names)) + 1e-6
	for i := range want {
		if d := math.Abs(float64(got.mean[i]) - want[i]); d > tol {
			t.Fatalf("round %d: mean[%d] = %v, want %v ± %v", got.round, i, got.mean[i], want[i], tol)
		}
	}
}

func TestSecureRounds(t *testing.T) {
	t.Parallel()
	fake, addr, tlsCfgs := secureFederation(t, 2, nil)
	dir := t.TempDir()
	var phasesMu sync.Mutex
	var phases []secagg.Phase
	hook := participant.WithSecureHook(func(ph secagg.Phase) error {
		phasesMu.Lock()
		defer phasesMu.Unlock()
		phases = append(phases, ph)
		return nil
	})
	agents := map[string]*participant.Agent{}
	for _, name := range secureNames {
		var opts []participant.Option
		if name == "hospital-b" {
			opts = append(opts, hook)
		}
		agents[name], _ = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"), opts...)
	}
	runAllOK(t, agents, 60*time.Second)
	sums, declines, _ := fake.results()
	if len(sums) != 2 || len(declines) != 0 {
		t.Fatalf("fake unmasked %d sums and got declines %v, want 2 sums and no decline", len(sums), declines)
	}
	for _, s := range sums {
		checkMean(t, s, secureNames, fake.layout)
	}
	n := uint64(len(fake.global))
	for name, a := range agents {
		got := a.Stats()
		want := participant.AgentStats{Rounds: 2, BytesReceived: 2 * 4 * n, BytesSent: 2 * 4 * (n + 1),
			SecureBytesSent: got.SecureBytesSent, SecureBytesReceived: got.SecureBytesReceived}
		// The secure counters take every SecureAggregate message whole:
		// more than the masked words, and some answers in every phase.
		if got.SecureBytesSent <= got.BytesSent || got.SecureBytesReceived == 0 {
			t.Errorf("%s: secure bytes sent %d, received %d; want more than the masked input's %d sent, and some received",
				name, got.SecureBytesSent, got.SecureBytesReceived, got.BytesSent)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: Stats() mismatch (-want +got):\n%s", name, diff)
		}
		// Each agent recorded the two starting models it revealed shares
		// for, and the file is still one an agent can start from.
		var want2 []string
		for r := range uint64(2) {
			want2 = append(want2, hex.EncodeToString(wireDigest(t, fake.closed(r).global)))
		}
		slices.Sort(want2)
		path := filepath.Join(dir, name+".json")
		if diff := cmp.Diff(want2, stateRevealed(t, path)); diff != "" {
			t.Errorf("%s: revealed models in the state file (-want +got):\n%s", name, diff)
		}
		if _, err := participant.New(participant.Config{Coordinator: addr, TLS: tlsCfgs[name], Trainer: newTrainer(),
			Federation: federation, CoordinatorKeys: fake.keys(), StateFile: path}); err != nil {
			t.Errorf("%s: New with the state file = %v", name, err)
		}
	}
	all := []secagg.Phase{secagg.PhaseAdvertiseKeys, secagg.PhaseShareKeys, secagg.PhaseMaskedInput, secagg.PhaseConsistencyCheck, secagg.PhaseUnmasking}
	if want := slices.Concat(all, all); !slices.Equal(phases, want) {
		t.Errorf("hook saw phases %v, want %v", phases, want)
	}
}

// TestSecureRetryAfterUnmask has the fake complete a session, claim that
// it failed and offer a retry from the same model: the agents must
// decline it rather than send a second masked input, and still decline
// after a restart, from their state files.
func TestSecureRetryAfterUnmask(t *testing.T) {
	t.Parallel()
	fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) {
		f.lie = true
		f.declinesToAdvance = len(secureNames)
	})
	// With finished the fake sends the manifest the agents already hold
	// (round 0's), not round 1's: the restored coordinator below then
	// offers the round again from a model their state files still allow,
	// and only their record of revealed shares makes them decline it.
	fake.final = func([]byte) []byte { return fake.chain[0].env }
	dir := t.TempDir()
	start := hex.EncodeToString(wireDigest(t, fake.closed(0).global))

	for _, attempt := range []uint32{2, 3} {
		if attempt == 3 {
			// A coordinator restored from a backup offers the round
			// again; the agents restart too.
			fake.mu.Lock()
			fake.restoreLocked(1)
			fake.attempt = 3
			fake.mu.Unlock()
		}
		agents := map[string]*participant.Agent{}
		logs := map[string]*fedtest.LogBuffer{}
		for _, name := range secureNames {
			agents[name], logs[name] = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"))
		}
		for name, err := range runAll(t, agents, 60*time.Second) {
			if err != nil {
				t.Errorf("attempt %d: %s: Run = %v, want nil", attempt, name, err)
			}
		}
		for name, a := range agents {
			if st := a.Stats(); st.Rounds != 0 {
				t.Errorf("attempt %d: %s: Stats().Rounds = %d, want 0 (no session completed for it)", attempt, name, st.Rounds)
			}
			if !strings.Contains(logs[name].String(), participant.DeclineAlreadyRevealed) {
				t.Errorf("attempt %d: %s: the log does not warn about the decline", attempt, name)
			}
			if got := stateRevealed(t, filepath.Join(dir, name+".json")); !slices.Equal(got, []string{start}) {
				t.Errorf("%s: revealed models %v, want [%s]", name, got, start)
			}
		}
	}
	sums, declines, advertised := fake.results()
	if len(sums) != 1 || sums[0].attempt != 1 {
		t.Fatalf("sums unmasked: %+v, want one, of attempt 1", sums)
	}
	checkMean(t, sums[0], secureNames, fake.layout)
	if diff := cmp.Diff(map[uint32][]string{1: secureNames}, advertised); diff != "" {
		t.Errorf("advertisements by attempt (-want +got):\n%s", diff)
	}
	var want []decline
	for _, attempt := range []uint32{2, 3} {
		for _, name := range secureNames {
			want = append(want, decline{name: name, round: 1, attempt: attempt, reason: participant.DeclineAlreadyRevealed})
		}
	}
	slices.SortFunc(declines, func(a, b decline) int {
		return strings.Compare(fmt.Sprint(a.attempt, a.name), fmt.Sprint(b.attempt, b.name))
	})
	if diff := cmp.Diff(want, declines, cmp.AllowUnexported(decline{})); diff != "" {
		t.Errorf("declines (-want +got):\n%s", diff)
	}
}

// TestSecureHookAbort drops one hospital at each phase in turn through the
// fault-injection hook: the round ends for it with the hook's error and
// no round counted, the others complete the session without it (or with
// its input, when it drops after sending it), and it reveals nothing, and
// so records nothing, before the unmasking.
func TestSecureHookAbort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		phase     secagg.Phase
		survivors []string // whose inputs are in the sum
		revealed  bool     // whether the dropped agent recorded a reveal
	}{
		{secagg.PhaseAdvertiseKeys, []string{"hospital-a", "hospital-c"}, false},
		{secagg.PhaseShareKeys, []string{"hospital-a", "hospital-c"}, false},
		{secagg.PhaseMaskedInput, []string{"hospital-a", "hospital-c"}, false},
		{secagg.PhaseConsistencyCheck, secureNames, false},
		// It records the reveal before it sends it, so it may have
		// recorded one it never sent: the safe side.
		{secagg.PhaseUnmasking, secureNames, true},
	}
	for _, tt := range tests {
		t.Run(tt.phase.String(), func(t *testing.T) {
			fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) {
				f.declinesToAdvance = 1 // hospital-b after an abort at PhaseUnmasking
			})
			dir := t.TempDir()
			errHook := fmt.Errorf("injected failure at %v", tt.phase)
			var mu sync.Mutex
			var calls []secagg.Phase
			hook := participant.WithSecureHook(func(ph secagg.Phase) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, ph)
				if ph == tt.phase {
					return errHook // every time: it never gets past this phase
				}
				return nil
			})
			agents := map[string]*participant.Agent{}
			logs := map[string]*fedtest.LogBuffer{}
			for _, name := range secureNames {
				var opts []participant.Option
				if name == "hospital-b" {
					opts = append(opts, hook)
				}
				agents[name], logs[name] = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"), opts...)
			}
			runAllOK(t, agents, 60*time.Second)
			sums, _, _ := fake.results()
			if len(sums) != 1 {
				t.Fatalf("fake unmasked %d sums, want 1", len(sums))
			}
			checkMean(t, sums[0], tt.survivors, fake.layout)
			for name, a := range agents {
				want := uint64(1)
				if name == "hospital-b" {
					want = 0
				}
				if got := a.Stats().Rounds; got != want {
					t.Errorf("%s: Stats().Rounds = %d, want %d", name, got, want)
				}
			}
			if log := logs["hospital-b"].String(); !strings.Contains(log, errHook.Error()) {
				t.Errorf("the dropped agent's log does not show the hook's error %q", errHook)
			}
			mu.Lock()
			first := slices.Index(calls, tt.phase)
			mu.Unlock()
			if first < 0 || first != int(tt.phase)-1 {
				t.Errorf("hook calls %v: the phases before %v were not all seen first", calls, tt.phase)
			}
			path := filepath.Join(dir, "hospital-b.json")
			if got := len(stateRevealed(t, path)) > 0; got != tt.revealed {
				t.Errorf("dropped agent recorded a reveal: %v, want %v", got, tt.revealed)
			}
		})
	}
}

// TestSecurePlanRefused: an agent that cannot derive the round's layout,
// or is not in its cohort, takes no part: no stream, no download.
func TestSecurePlanRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cohort []string
		edit   func(*fedguardv1.SecureRound)
		want   string
	}{
		{"not in cohort", []string{"hospital-b", "hospital-c"}, func(*fedguardv1.SecureRound) {}, "not in the round's cohort"},
		{"unsorted cohort", []string{"hospital-b", "hospital-a"}, func(*fedguardv1.SecureRound) {}, "not sorted"},
		{"bucket of one", secureNames, func(l *fedguardv1.SecureRound) { l.BucketSize = 1 }, "bucket size 1"},
		{"bit budget", secureNames, func(l *fedguardv1.SecureRound) { l.QuantBits = 30 }, "bit budget"},
		{"no phase timeout", secureNames, func(l *fedguardv1.SecureRound) { l.PhaseTimeoutMillis = 0 }, "phase timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newSecureFake(t, 1, tt.cohort)
			tt.edit(fake.layout)
			offers := 0
			offer := fake.offer
			fake.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				if offers++; offers == 3 {
					fake.round = fake.rounds + 1 // the next WaitRound says finished
				}
				return offer(asg)
			}
			addr := p.serveSecure(t, fake)
			a, logs := newSecureAgent(t, addr, p.clientTLS, fake.keys(), hospital, "")
			if err := run(t, a, 30*time.Second); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if streams, getModels := fake.counts(); streams != 0 || getModels != 0 {
				t.Errorf("SecureAggregate streams %d, GetModel calls %d; want none", streams, getModels)
			}
			log := logs.String()
			if !strings.Contains(log, "secure round abandoned") || !strings.Contains(log, tt.want) {
				t.Errorf("log does not say the secure round was abandoned because %q", tt.want)
			}
			if st := a.Stats(); st.Rounds != 0 {
				t.Errorf("Stats().Rounds = %d, want 0", st.Rounds)
			}
		})
	}
}

// TestSecureDeclineFromStateFile starts an agent whose state file (the
// documented format) says it revealed shares for the round's starting
// model: it declines without advertising or downloading anything.
func TestSecureDeclineFromStateFile(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newSecureFake(t, 1, secureNames)
	fake.declinesToAdvance = 1
	addr := p.serveSecure(t, fake)
	genesis := fake.closed(0)
	start := hex.EncodeToString(wireDigest(t, genesis.global))
	state := filepath.Join(t.TempDir(), "state.json")
	rec := fmt.Sprintf(`{"round":0,"digest":%q,"revealed":[%q,%q]}`+"\n", hex.EncodeToString(genesis.digest[:]), otherDigest("an older model"), start)
	if err := os.WriteFile(state, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newSecureAgent(t, addr, p.clientTLS, fake.keys(), hospital, state)
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	_, declines, advertised := fake.results()
	want := []decline{{name: hospital, round: 1, attempt: 1, reason: participant.DeclineAlreadyRevealed}}
	if diff := cmp.Diff(want, declines, cmp.AllowUnexported(decline{})); diff != "" {
		t.Errorf("declines (-want +got):\n%s", diff)
	}
	if _, getModels := fake.counts(); len(advertised) != 0 || getModels != 0 {
		t.Errorf("advertisements %v, GetModel calls %d; want none", advertised, getModels)
	}
	if st := a.Stats(); st.Rounds != 0 {
		t.Errorf("Stats().Rounds = %d, want 0", st.Rounds)
	}
	// The record survives the agent's own writes.
	if got, want := stateRevealed(t, state), []string{otherDigest("an older model"), start}; !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("revealed models after the run %v, want %v", got, want)
	}
}

// TestStateFileRevealed checks the state file's revealed list when the
// agent starts: malformed entries and unknown fields are refused.
func TestStateFileRevealed(t *testing.T) {
	t.Parallel()
	d := otherDigest("a manifest")
	tests := []struct {
		name, content string
		ok            bool
	}{
		{"old format", `{"round":3,"digest":"` + d + `"}`, true},
		{"revealed", `{"round":3,"digest":"` + d + `","revealed":["` + d + `"]}`, true},
		{"revealed empty", `{"round":3,"digest":"` + d + `","revealed":[]}`, true},
		{"revealed not hex", `{"round":3,"digest":"` + d + `","revealed":["` + strings.ToUpper(d) + `"]}`, false},
		{"revealed short", `{"round":3,"digest":"` + d + `","revealed":["abcd"]}`, false},
		{"revealed not a list", `{"round":3,"digest":"` + d + `","revealed":"` + d + `"}`, false},
		{"unknown field", `{"round":3,"digest":"` + d + `","revealed":[],"declined":[]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "accepted.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := newWithStateFile(t, path)
			if (err == nil) != tt.ok {
				t.Errorf("New with state %s = %v, want ok = %v", tt.content, err, tt.ok)
			}
		})
	}
}

// runBelowMinBucket runs hospital, whose minimum secure bucket is 4,
// against a fake that offers it one secure round in a sum of 3 (then
// finishes): the agent must decline it and end without error.
func runBelowMinBucket(t *testing.T) (*secureFake, *participant.Agent) {
	t.Helper()
	p := newPKI(t)
	fake := newSecureFake(t, 1, secureNames)
	fake.declinesToAdvance = 1
	addr := p.serveSecure(t, fake)
	a, _ := newPolicyAgent(t, addr, p.clientTLS, fake.keys(), hospital, "", func(c *participant.Config) { c.MinSecureBucket = 4 })
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	return fake, a
}

// TestSecurePolicy checks the hospital's own limits on what it takes part
// in: a secure sum smaller than its minimum is declined before any key is
// advertised, and a plain round is refused outright when it requires
// secure aggregation.
func TestSecurePolicy(t *testing.T) {
	t.Parallel()
	t.Run("min bucket", func(t *testing.T) {
		fake, _ := runBelowMinBucket(t)
		_, declines, advertised := fake.results()
		if len(declines) != 1 || !strings.Contains(declines[0].reason, "a secure sum of 3 is below this hospital's minimum of 4") {
			t.Errorf("declines %+v, want one naming the sum of 3 and the minimum of 4", declines)
		}
		if _, getModels := fake.counts(); len(advertised) != 0 || getModels != 0 {
			t.Errorf("advertisements %v, GetModel calls %d; want none", advertised, getModels)
		}
	})
	t.Run("require secure", func(t *testing.T) {
		p := newPKI(t)
		fake := newSecureFake(t, 1, secureNames)
		fake.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment { return asg } // a plain round
		addr := p.serveSecure(t, fake)
		a, _ := newPolicyAgent(t, addr, p.clientTLS, fake.keys(), hospital, "", func(c *participant.Config) { c.RequireSecure = true })
		err := run(t, a, 30*time.Second)
		if !errors.Is(err, participant.ErrPlainRound) {
			t.Fatalf("Run = %v, want ErrPlainRound", err)
		}
		if _, getModels := fake.counts(); getModels != 0 {
			t.Errorf("GetModel calls %d, want none: the agent must not even train for a plain round", getModels)
		}
	})
}

// TestSecureResumeAfterCoordinatorCrash: the fake coordinator dies once
// every hospital has revealed its shares and before it answers (the crash
// of issue 12), then offers the same round attempt again. The agents
// resume the session: each re-sends the very advertisement and masked
// input it had sent (no second masked input, no second key pair), none
// computes a second Unmask answer, none declines, and the round closes
// with all of them.
func TestSecureResumeAfterCoordinatorCrash(t *testing.T) {
	t.Parallel()
	fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) { f.crashAt = secagg.PhaseUnmasking })
	dir := t.TempDir()
	var mu sync.Mutex
	computed := map[string]map[secagg.Phase]int{}
	agents := map[string]*participant.Agent{}
	logs := map[string]*fedtest.LogBuffer{}
	for _, name := range secureNames {
		computed[name] = map[secagg.Phase]int{}
		hook := participant.WithSecureHook(func(ph secagg.Phase) error {
			mu.Lock()
			defer mu.Unlock()
			computed[name][ph]++
			return nil
		})
		agents[name], logs[name] = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, filepath.Join(dir, name+".json"), hook)
	}
	runAllOK(t, agents, 60*time.Second)
	fake.sm.Lock()
	defer fake.sm.Unlock()
	if !fake.crashed {
		t.Fatal("the fake never crashed")
	}
	sums, declines := slices.Clone(fake.sums), slices.Clone(fake.declines)
	if len(sums) != 1 || sums[0].attempt != 1 || len(declines) != 0 {
		t.Fatalf("sums %+v, declines %v; want one sum, of attempt 1, and no decline", sums, declines)
	}
	checkMean(t, sums[0], secureNames, fake.layout)
	for _, name := range secureNames {
		if n := computed[name][secagg.PhaseUnmasking]; n != 1 {
			t.Errorf("%s computed %d Unmask answers, want 1", name, n)
		}
		if n := computed[name][secagg.PhaseMaskedInput]; n != 1 {
			t.Errorf("%s computed %d masked inputs, want 1", name, n)
		}
		adv, masked := fake.adverts[name], fake.masked[name]
		if len(adv) != 2 || !proto.Equal(adv[0], adv[1]) {
			t.Errorf("%s advertised %d times, want twice the same advertisement (the original and its replay)", name, len(adv))
		}
		if len(masked) != 2 || masked[0] != masked[1] {
			t.Errorf("%s sent %d masked inputs, want twice the same one", name, len(masked))
		}
		if st := agents[name].Stats(); st.Rounds != 1 {
			t.Errorf("%s: Stats().Rounds = %d, want 1", name, st.Rounds)
		}
		if !strings.Contains(logs[name].String(), "resuming a secure session") {
			t.Errorf("%s: the log does not say it resumed the session", name)
		}
	}
}

// TestSecureResumeDiverges: the fake coordinator dies after the masked
// inputs arrived, and hospital-c restarts meanwhile, losing its side of
// the session; it joins the offered session afresh, with new keys. The
// other two, resuming, see an advertisement relay that differs from the
// one they had: they give up the session for good (it is never unmasked)
// and take part in the next attempt, a new session, which closes the
// round.
func TestSecureResumeDiverges(t *testing.T) {
	t.Parallel()
	fake, addr, tlsCfgs := secureFederation(t, 1, func(f *secureFake) { f.crashAt = secagg.PhaseMaskedInput })
	dir := t.TempDir()
	restart := "hospital-c"
	state := func(name string) string { return filepath.Join(dir, name+".json") }
	cctx, killC := context.WithCancel(context.Background())
	defer killC()
	fake.onCrash = killC
	first, _ := newSecureAgent(t, addr, tlsCfgs[restart], fake.keys(), restart, state(restart))
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(cctx) }()

	agents := map[string]*participant.Agent{}
	logs := map[string]*fedtest.LogBuffer{}
	for _, name := range secureNames[:2] {
		agents[name], logs[name] = newSecureAgent(t, addr, tlsCfgs[name], fake.keys(), name, state(name))
	}
	done := make(chan map[string]error, 1)
	go func() { done <- runAll(t, agents, 90*time.Second) }()
	select {
	case err := <-firstDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the first %s: Run = %v, want it cancelled at the crash", restart, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no crash in 60 s")
	}
	second, _ := newSecureAgent(t, addr, tlsCfgs[restart], fake.keys(), restart, state(restart))
	if err := run(t, second, 90*time.Second); err != nil {
		t.Errorf("the restarted %s: Run = %v, want nil", restart, err)
	}
	for name, err := range <-done {
		if err != nil {
			t.Errorf("%s: Run = %v, want nil", name, err)
		}
	}
	sums, declines, _ := fake.results()
	if len(sums) != 1 || sums[0].attempt != 2 || len(declines) != 0 {
		t.Fatalf("sums %+v, declines %v; want one sum, of attempt 2, and no decline", sums, declines)
	}
	checkMean(t, sums[0], secureNames, fake.layout)
	for name, log := range logs {
		if !strings.Contains(log.String(), "differently than before") {
			t.Errorf("%s: the log does not say the resumed session diverged", name)
		}
	}
}
