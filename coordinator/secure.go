package coordinator

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// A secure round runs one SecAgg session per bucket. Each bucket is a
// goroutine that owns its secagg.Server and walks the five phases; the
// SecureAggregate handler of each member turns the member's stream into
// messages to the bucket and the bucket's answers back into the stream. A
// phase closes when every member still in has sent its message, or at the
// phase's deadline; members that have not sent by then, or whose stream
// broke, are dropped from the session, which goes on as long as secagg
// allows it (the threshold) and fails otherwise. The round closes when
// every bucket's session has ended.
//
// Sessions live in memory only. What survives a crash is the attempt and
// its cohort (saveSecureAttemptLocked, before anyone hears of the
// attempt): a restarted coordinator lays out the very same sessions again
// and runs them from the start, and each member that kept its side
// re-sends its messages and checks that the answers are the same as
// before (package participant). Since the bucket's secagg.Server is
// deterministic in the messages it gets (relays, routes and survivor sets
// come out sorted), members that re-send the same messages get the same
// answers, so a resumed session completes with the same sum. Nothing here
// lets a member reveal anything twice: that is the members' rule, and
// they keep it (see retry.go for the coordinator's side of a round that
// cannot go on).

// secureRound is the secure part of an open round.
type secureRound struct {
	plan    secureround.Plan
	buckets []*bucket
	member  map[string]*bucket
	// joined marks members that opened their stream (or declined) in this
	// attempt: WaitRound does not give them the attempt again.
	joined map[string]bool
}

// finished reports whether every bucket's session has ended.
func (s *secureRound) finished() bool {
	for _, b := range s.buckets {
		select {
		case <-b.done:
		default:
			return false
		}
	}
	return true
}

// bucket is one SecAgg session.
type bucket struct {
	index   int // 0-based; reported 1-based
	members []string
	cfg     secagg.Config
	params  secagg.Params
	inbox   chan secureMsg
	done    chan struct{} // closed when the session has ended
	result  bucketResult  // written before done is closed
}

// bucketResult is how a session ended.
type bucketResult struct {
	mean      []float32
	weight    uint64
	sum       [32]byte
	survivors []string
	dropped   map[string]string // member → phase it left in
	err       error
}

// secureMsg is a member's message to its bucket. A zero phase says the
// member's stream has ended.
type secureMsg struct {
	id    uint32
	phase secagg.Phase
	body  any
	key   crypto.PublicKey // with the advertisement: the certificate's key
	cert  []byte
	reply chan secureReply // capacity 1: the bucket never blocks on it
}

type secureReply struct {
	resp *fedguardv1.SecureAggregateResponse
	err  error
}

// startSecureLocked lays out the secure round r and starts its buckets.
func (c *Coordinator) startSecureLocked(ctx context.Context, r *openRound, start [32]byte) error {
	plan := c.cfg.securePlan(r.cohort)
	plan.Round, plan.Attempt, plan.Start, plan.Dim = r.number, r.attempt, start, c.spec.NumParams()
	if err := plan.Check(); err != nil {
		return err
	}
	s := &secureRound{plan: plan, member: map[string]*bucket{}, joined: map[string]bool{}}
	buckets, sessions := plan.Layout()
	for i, members := range buckets {
		b := &bucket{
			index: i, members: members, cfg: sessions[i], params: plan.Params,
			inbox: make(chan secureMsg, 2*len(members)), done: make(chan struct{}),
		}
		s.buckets = append(s.buckets, b)
		for _, m := range members {
			s.member[m] = b
		}
	}
	r.secure = s
	opened := r.opened
	for _, b := range s.buckets {
		go func() {
			b.run(ctx, c.opts.log.With("round", r.number, "attempt", r.attempt, "bucket", b.index+1), c.metrics.securePhaseDone, func(p secagg.Phase, now time.Time) time.Time {
				switch p {
				case secagg.PhaseAdvertiseKeys:
					return opened.Add(plan.PhaseTimeout)
				case secagg.PhaseMaskedInput:
					return later(r.deadline, now.Add(plan.PhaseTimeout))
				}
				return now.Add(plan.PhaseTimeout)
			})
			c.poke()
		}()
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// run walks the session's phases; see the comment at the top of the file.
// observe is told how long each phase that closed took.
func (b *bucket) run(ctx context.Context, log *slog.Logger, observe func(secagg.Phase, time.Duration), deadline func(secagg.Phase, time.Time) time.Time) {
	defer close(b.done)
	n := len(b.members)
	keys := make(map[uint32]crypto.PublicKey, n)
	certs := make(map[uint32][]byte, n)
	server, err := secagg.NewServer(b.cfg, secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := keys[id]; ok {
			return k, nil
		}
		return nil, errors.New("no certificate")
	}))
	res := &b.result
	res.dropped = map[string]string{}
	if err != nil {
		res.err = err
		return
	}
	alive := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		alive[i] = true
	}
	drop := func(id uint32, p secagg.Phase, why string) {
		if alive[id] {
			alive[id] = false
			res.dropped[b.members[id-1]] = p.String() + ": " + why
		}
	}
	var pending map[uint32]secureMsg
	fail := func(p secagg.Phase, err error) {
		res.err = fmt.Errorf("%v: %w", p, err)
		st := status.Errorf(codes.Aborted, "secure session of bucket %d failed at %v: %v", b.index+1, p, err)
		for _, m := range pending {
			m.reply <- secureReply{err: st}
		}
		log.Warn("secure session failed", "phase", p.String(), "error", err)
	}
	answer := func(p secagg.Phase, rejected []secagg.Rejection, resp func(id uint32) *fedguardv1.SecureAggregateResponse) {
		for _, rj := range rejected {
			if m, ok := pending[rj.ID]; ok {
				m.reply <- secureReply{err: status.Errorf(codes.FailedPrecondition, "dropped from the secure session at %v: %v", p, rj.Err)}
				delete(pending, rj.ID)
			}
			drop(rj.ID, p, rj.Err.Error())
		}
		for id, m := range pending {
			if r := resp(id); r != nil {
				m.reply <- secureReply{resp: r}
				continue
			}
			m.reply <- secureReply{err: status.Errorf(codes.FailedPrecondition, "dropped from the secure session at %v: too few of its neighbours are left", p)}
			drop(id, p, "too few neighbours left")
		}
	}
	for p := secagg.PhaseAdvertiseKeys; p <= secagg.PhaseUnmasking; p++ {
		pending = map[uint32]secureMsg{}
		began := time.Now()
		timer := time.NewTimer(time.Until(deadline(p, began)))
	collect:
		for {
			waiting := false
			for id := uint32(1); id <= uint32(n); id++ {
				if _, ok := pending[id]; alive[id] && !ok {
					waiting = true
					break
				}
			}
			if !waiting {
				break
			}
			select {
			case m := <-b.inbox:
				switch {
				case m.phase == 0:
					drop(m.id, p, "stream ended")
				case !alive[m.id]:
					m.reply <- secureReply{err: status.Errorf(codes.FailedPrecondition, "dropped from the secure session before %v", p)}
				case m.phase != p:
					m.reply <- secureReply{err: status.Errorf(codes.FailedPrecondition, "message for %v while the session is at %v", m.phase, p)}
					drop(m.id, p, "message out of order")
				default:
					pending[m.id] = m
				}
			case <-timer.C:
				break collect
			case <-ctx.Done():
				timer.Stop()
				fail(p, errors.New("the coordinator is stopping"))
				return
			}
		}
		timer.Stop()
		for id := uint32(1); id <= uint32(n); id++ {
			if _, ok := pending[id]; alive[id] && !ok {
				drop(id, p, "no message before the phase deadline")
			}
		}
		var rejected []secagg.Rejection
		switch p {
		case secagg.PhaseAdvertiseKeys:
			var msgs []*secagg.AdvertiseKeys
			for id, m := range pending {
				keys[id], certs[id] = m.key, m.cert
				msgs = append(msgs, m.body.(*secagg.AdvertiseKeys))
			}
			var relay map[uint32][]*secagg.AdvertiseKeys
			if relay, rejected, err = server.CollectKeys(msgs); err != nil {
				fail(p, err)
				return
			}
			answer(p, rejected, func(id uint32) *fedguardv1.SecureAggregateResponse {
				list, ok := relay[id]
				if !ok {
					return nil
				}
				return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Keys{
					Keys: secureround.KeysToProto(list, func(id uint32) []byte { return certs[id] }),
				}}
			})
		case secagg.PhaseShareKeys:
			var msgs []*secagg.ShareKeys
			for _, m := range pending {
				msgs = append(msgs, m.body.(*secagg.ShareKeys))
			}
			var route map[uint32][]*secagg.EncryptedShare
			if route, rejected, err = server.CollectShares(msgs); err != nil {
				fail(p, err)
				return
			}
			answer(p, rejected, func(id uint32) *fedguardv1.SecureAggregateResponse {
				list, ok := route[id]
				if !ok {
					return nil
				}
				return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Shares{Shares: secureround.RoutedToProto(list)}}
			})
		case secagg.PhaseMaskedInput:
			var msgs []*secagg.MaskedInput
			for _, m := range pending {
				msgs = append(msgs, m.body.(*secagg.MaskedInput))
			}
			var survivors []uint32
			survivors, rejected, err = server.CollectMasked(msgs)
			msgs = nil // the server keeps only the running sum
			if err != nil {
				fail(p, err)
				return
			}
			in := map[uint32]bool{}
			for _, id := range survivors {
				in[id] = true
			}
			answer(p, rejected, func(id uint32) *fedguardv1.SecureAggregateResponse {
				if !in[id] {
					return nil
				}
				return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Survivors{Survivors: &fedguardv1.SecureSurvivors{Ids: survivors}}}
			})
			for _, id := range survivors {
				res.survivors = append(res.survivors, b.members[id-1])
			}
		case secagg.PhaseConsistencyCheck:
			var msgs []*secagg.ConsistencySig
			for _, m := range pending {
				msgs = append(msgs, m.body.(*secagg.ConsistencySig))
			}
			var requests map[uint32]*secagg.UnmaskRequest
			if requests, rejected, err = server.CollectConsistency(msgs); err != nil {
				fail(p, err)
				return
			}
			answer(p, rejected, func(id uint32) *fedguardv1.SecureAggregateResponse {
				r, ok := requests[id]
				if !ok {
					return nil
				}
				return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Unmask{Unmask: secureround.UnmaskRequestToProto(r)}}
			})
		case secagg.PhaseUnmasking:
			var msgs []*secagg.UnmaskResponse
			for _, m := range pending {
				msgs = append(msgs, m.body.(*secagg.UnmaskResponse))
			}
			var sum []uint32
			if sum, rejected, err = server.Unmask(msgs); err != nil {
				fail(p, err)
				return
			}
			mean := make([]float32, len(sum)-1)
			weight, err := b.params.Decode(mean, sum)
			if err != nil {
				fail(p, err)
				return
			}
			res.mean, res.weight, res.sum = mean, weight, sumDigest(sum)
			answer(p, rejected, func(uint32) *fedguardv1.SecureAggregateResponse {
				return &fedguardv1.SecureAggregateResponse{Body: &fedguardv1.SecureAggregateResponse_Done{Done: &fedguardv1.SecureDone{Survivors: uint32(len(res.survivors))}}}
			})
		}
		observe(p, time.Since(began))
		log.Debug("secure phase closed", "phase", p.String(), "answered", len(pending), "rejected", len(rejected))
	}
	log.Info("secure session completed", "survivors", len(res.survivors), "dropped", len(res.dropped))
}

// sumDigest is SHA-256 of the words, little endian: what the audit log and
// the manifest record of a bucket's sum.
func sumDigest(words []uint32) [32]byte {
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	for i, w := range words {
		buf = binary.LittleEndian.AppendUint32(buf, w)
		if len(buf) == cap(buf) || i == len(words)-1 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// endStatus is what a member hears when it talks to a bucket whose session
// has ended without it.
func (b *bucket) endStatus() error {
	if b.result.err != nil {
		return status.Errorf(codes.Aborted, "secure session of bucket %d failed: %v", b.index+1, b.result.err)
	}
	return status.Errorf(codes.FailedPrecondition, "secure session of bucket %d has ended without this participant", b.index+1)
}

// maxDeclineReason bounds the free text of a SecureDecline.
const maxDeclineReason = 1024

// SecureAggregate implements fedguardv1.CoordinatorServiceServer.
func (s *service) SecureAggregate(stream fedguardv1.CoordinatorService_SecureAggregateServer) error {
	c := s.c
	ctx := stream.Context()
	name := identity(ctx).Name
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	c.mu.Lock()
	r := c.round
	switch {
	case c.phase != phaseTraining:
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d is not open (last closed round: %d, phase: %s)", first.GetRound(), c.lastRound, c.phase)
	case r.secure == nil:
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d is not a secure round: submit the update with SubmitUpdate", r.number)
	case first.GetRound() != r.number || first.GetAttempt() != r.attempt:
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d attempt %d is not open (open: round %d attempt %d)", first.GetRound(), first.GetAttempt(), r.number, r.attempt)
	case r.closing:
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d attempt %d is closing: its sessions are over", r.number, r.attempt)
	case !r.inCohort(name):
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "%s is not in the cohort of round %d", name, r.number)
	case r.secure.joined[name]:
		c.mu.Unlock()
		return status.Errorf(codes.AlreadyExists, "%s already took part in round %d attempt %d", name, r.number, r.attempt)
	}
	r.secure.joined[name] = true
	b := r.secure.member[name]
	round, attempt := r.number, r.attempt
	c.mu.Unlock()

	var id uint32
	for i, m := range b.members {
		if m == name {
			id = uint32(i + 1)
		}
	}
	phase := secagg.PhaseAdvertiseKeys
	finished := false
	defer func() {
		if !finished {
			select {
			case b.inbox <- secureMsg{id: id, reply: make(chan secureReply, 1)}:
			case <-b.done:
			}
		}
	}()
	if d := first.GetDecline(); d != nil {
		reason := d.GetReason()
		if len(reason) > maxDeclineReason {
			return status.Errorf(codes.InvalidArgument, "decline reason of %d bytes, at most %d", len(reason), maxDeclineReason)
		}
		c.opts.log.WarnContext(ctx, "participant declined the secure round", "participant", name, "round", round, "reason", reason)
		if err := c.record(ctx, audit.Entry{Kind: audit.KindSecureDeclined, Actor: name, Round: round, Payload: audit.SecureDeclined{Attempt: attempt, Reason: reason}}); err != nil {
			return status.Error(codes.Unavailable, "the audit log cannot record the decline")
		}
		c.mu.Lock()
		c.noteStatusLocked(name, ParticipantRefused, "declined the secure round: "+reason)
		if reason == secureround.DeclineAlreadyRevealed {
			// It declines every other session from this model: later
			// attempts of the round leave it out (retry.go).
			c.sitOutLocked(name, round)
		}
		c.mu.Unlock()
		return nil
	}
	cert, err := peerCertificate(ctx)
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "%v", err)
	}
	n := len(b.members)
	msg := first
	for {
		if msg.GetRound() != round || msg.GetAttempt() != attempt {
			return status.Errorf(codes.InvalidArgument, "message names round %d attempt %d, the stream is for round %d attempt %d", msg.GetRound(), msg.GetAttempt(), round, attempt)
		}
		m := secureMsg{id: id, phase: phase, reply: make(chan secureReply, 1)}
		switch phase {
		case secagg.PhaseAdvertiseKeys:
			m.body, err = secureround.AdvertiseFromProto(id, msg.GetAdvertise())
			m.key, m.cert = cert.PublicKey, cert.Raw
		case secagg.PhaseShareKeys:
			if msg.GetShares() == nil {
				err = fmt.Errorf("%w: expected shares", secureround.ErrMessage)
				break
			}
			m.body, err = secureround.SharesFromProto(id, n, msg.GetShares())
		case secagg.PhaseMaskedInput:
			m.body, err = receiveMasked(stream, msg, b.cfg.Dim, id, round, attempt)
		case secagg.PhaseConsistencyCheck:
			sig := msg.GetConsistency().GetSignature()
			if len(sig) == 0 || len(sig) > secagg.MaxSignatureSize {
				err = fmt.Errorf("%w: expected a consistency signature of 1 to %d bytes", secureround.ErrMessage, secagg.MaxSignatureSize)
				break
			}
			m.body = &secagg.ConsistencySig{ID: id, Sig: sig}
		case secagg.PhaseUnmasking:
			if msg.GetUnmask() == nil {
				err = fmt.Errorf("%w: expected an unmask response", secureround.ErrMessage)
				break
			}
			m.body, err = secureround.UnmaskResponseFromProto(id, n, msg.GetUnmask())
		}
		if err != nil {
			if st, ok := status.FromError(err); ok {
				return st.Err()
			}
			return status.Errorf(codes.InvalidArgument, "%v: %v", phase, err)
		}
		select {
		case b.inbox <- m:
		case <-b.done:
			return b.endStatus()
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		var rep secureReply
		select {
		case rep = <-m.reply:
		case <-b.done:
			// The bucket answers every message it took before it ends.
			select {
			case rep = <-m.reply:
			default:
				return b.endStatus()
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		if rep.err != nil {
			finished = true // the bucket has already dropped this member
			return rep.err
		}
		if err := stream.Send(rep.resp); err != nil {
			return err
		}
		if phase == secagg.PhaseUnmasking {
			finished = true
			return nil
		}
		phase++
		if msg, err = stream.Recv(); err != nil {
			return err
		}
	}
}

// receiveMasked reads the chunks of a masked input, starting with first.
func receiveMasked(stream fedguardv1.CoordinatorService_SecureAggregateServer, first *fedguardv1.SecureAggregateRequest, dim int, id uint32, round uint64, attempt uint32) (*secagg.MaskedInput, error) {
	asm := secureround.NewMaskedAssembler(dim)
	msg := first
	for {
		ch := msg.GetMasked()
		if ch == nil {
			return nil, fmt.Errorf("%w: expected a masked input chunk", secureround.ErrMessage)
		}
		if err := asm.Add(ch); err != nil {
			return nil, err
		}
		if asm.Done() {
			return &secagg.MaskedInput{ID: id, Masked: asm.Words()}, nil
		}
		var err error
		if msg, err = stream.Recv(); err != nil {
			return nil, err
		}
		if msg.GetRound() != round || msg.GetAttempt() != attempt {
			return nil, status.Errorf(codes.InvalidArgument, "chunk names round %d attempt %d, the stream is for round %d attempt %d", msg.GetRound(), msg.GetAttempt(), round, attempt)
		}
	}
}

// peerCertificate is the verified client certificate of the caller.
func peerCertificate(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, errors.New("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, errors.New("no client certificate")
	}
	return info.State.PeerCertificates[0], nil
}

// bucketID names bucket i (0-based) among the rule's inputs and in reports.
func bucketID(i int) string { return fmt.Sprintf("bucket-%d", i+1) }

// secureOutcomeLocked records how every bucket's session ended and gathers
// the bucket means as the rule's inputs. failed is non-empty when the
// round cannot close: no session completed, or fewer than min_participants
// inputs are in the completed ones.
func (c *Coordinator) secureOutcomeLocked(ctx context.Context) (rec RoundRecord, updates []aggregation.Update, names []string, failed failure) {
	r := c.round
	rec = RoundRecord{Round: r.number, Attempt: r.attempt, Opened: r.opened, Cohort: r.cohort}
	var entries []audit.Entry
	var errs []string
	for i, b := range r.secure.buckets {
		res := &b.result
		br := SecureBucketRecord{Bucket: i + 1, Members: b.members, Dropped: res.dropped}
		ev := audit.SecureSession{Attempt: r.attempt, Bucket: i + 1, Members: b.members, Dropped: res.dropped}
		if res.err != nil {
			br.Error, ev.Error = res.err.Error(), res.err.Error()
			c.metrics.secureFailed.Inc()
			errs = append(errs, fmt.Sprintf("bucket %d: %v", i+1, res.err))
			for _, m := range b.members {
				rec.Refused = append(rec.Refused, RefusedUpdate{Name: m, Reason: fmt.Sprintf("secure session of bucket %d failed: %v", i+1, res.err)})
			}
		} else {
			sum := hex.EncodeToString(res.sum[:])
			br.Survivors, br.Weight, br.SumSHA256 = res.survivors, res.weight, sum
			ev.Survivors, ev.Weight, ev.SumSHA256 = res.survivors, res.weight, sum
			updates = append(updates, aggregation.Update{ID: bucketID(i), Delta: res.mean, Samples: res.weight})
			for _, m := range res.survivors {
				rec.Participants = append(rec.Participants, ParticipantRecord{Name: m, SHA256: sum, Bucket: i + 1})
				names = append(names, m)
			}
			for _, m := range b.members {
				if !slices.Contains(res.survivors, m) {
					rec.Dropped = append(rec.Dropped, m)
				}
			}
		}
		rec.Secure = append(rec.Secure, br)
		entries = append(entries, event(audit.KindSecureSession, r.number, ev))
	}
	slices.Sort(names)
	if err := c.record(ctx, entries...); err != nil {
		return rec, nil, names, failure{failAudit, "the audit log cannot record the secure sessions"}
	}
	c.noteSessionsLocked(rec)
	switch {
	case len(updates) == 0:
		return rec, nil, names, failure{failSecure, "every secure session failed: " + strings.Join(errs, "; ")}
	case len(names) < c.cfg.MinParticipants:
		return rec, nil, names, failure{failQuorum, fmt.Sprintf("completed secure sessions hold the inputs of %d participants, %d needed", len(names), c.cfg.MinParticipants)}
	}
	return rec, updates, names, failure{}
}
