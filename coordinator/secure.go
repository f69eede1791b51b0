package coordinator

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator/internal/securebucket"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// A secure round runs one SecAgg session per bucket: a
// securebucket.Session, which owns everything the coordinator knows of
// the protocol's phases (one table: decode, server call, reply,
// deadline) and runs in its own goroutine. The SecureAggregate handler
// below is the RPC edge of each member's stream: it checks that the
// stream may join the open attempt, hands the member's requests to its
// securebucket.Member and the answers back, and maps the session's errors
// to status codes (secureStatus), the only place they are made. The
// round closes when every bucket's session has ended.
//
// Sessions live in memory only. What survives a crash is the attempt and
// its cohort (saveSecureAttemptLocked, before anyone hears of the
// attempt): a restarted coordinator lays out the very same sessions again
// and runs them from the start, and each member that kept its side
// re-sends its messages and checks that the answers are the same as
// before (package participant). Since a session is deterministic in the
// messages it gets, members that re-send the same messages get the same
// answers, so a resumed session completes with the same sum. Nothing here
// lets a member reveal anything twice: that is the members' rule, and
// they keep it (see retry.go for the coordinator's side of a round that
// cannot go on).

// secureRound is the secure part of an open round.
type secureRound struct {
	plan    secureround.Plan
	buckets []*securebucket.Session
	member  map[string]*securebucket.Session
	// joined marks members that opened their stream (or declined) in this
	// attempt: WaitRound does not give them the attempt again.
	joined map[string]bool
}

// finished reports whether every bucket's session has ended.
func (s *secureRound) finished() bool {
	for _, b := range s.buckets {
		select {
		case <-b.Done():
		default:
			return false
		}
	}
	return true
}

// startSecureLocked lays out the secure round r and starts its buckets.
func (c *Coordinator) startSecureLocked(ctx context.Context, r *openRound, start [32]byte) error {
	plan := c.cfg.securePlan(r.cohort)
	plan.Round, plan.Attempt, plan.Start, plan.Dim = r.number, r.attempt, start, c.spec.NumParams()
	if c.dp != nil {
		dp := c.dp.ddp
		plan.DP = &dp
	}
	if err := plan.Check(); err != nil {
		return err
	}
	s := &secureRound{plan: plan, member: map[string]*securebucket.Session{}, joined: map[string]bool{}}
	buckets, sessions := plan.Layout()
	for i, members := range buckets {
		var dec securebucket.Decoder = plan.Params
		if dp := plan.DDP(); dp != nil {
			dec = dp
		}
		b := securebucket.New(i, members, sessions[i], dec)
		s.buckets = append(s.buckets, b)
		for _, m := range members {
			s.member[m] = b
		}
	}
	r.secure = s
	timing := securebucket.Timing{Opened: r.opened, Deadline: r.deadline, PhaseTimeout: plan.PhaseTimeout}
	for i, b := range s.buckets {
		go func() {
			b.Run(ctx, c.opts.log.With("round", r.number, "attempt", r.attempt, "bucket", i+1), timing, c.metrics.securePhaseDone)
			c.poke()
		}()
	}
	return nil
}

// secureStatus is the status a member's stream ends with for an error of
// its session: the one place the secure round's errors become codes.
func secureStatus(err error) error {
	var se *securebucket.StreamError
	switch {
	case errors.As(err, &se):
		return se.Err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, securebucket.ErrMessage):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, securebucket.ErrDropped):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, securebucket.ErrFailed):
		return status.Error(codes.Aborted, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// maxDeclineReason bounds the free text of a SecureDecline.
const maxDeclineReason = 1024

// SecureAggregate implements fedguardv1.CoordinatorServiceServer. The
// stream is read under the limits of update streams (see limits.go and
// streamIn): a wait for the member's next message ends after
// limits.update_idle (but for the masked input, which the member sends
// after local training: at the phase's deadline), the masked input's
// chunks must arrive at limits.update_min_rate on average once
// update_idle has passed, and the stream ends when the member's session
// does or the round attempt moves on. Its refusals, those of the limits among them, are logged and
// audited once, as call_refused, by the stream interceptor (server.go).
func (s *service) SecureAggregate(stream fedguardv1.CoordinatorService_SecureAggregateServer) error {
	c := s.c
	ctx := stream.Context()
	name := identity(ctx).Name
	in := readStream(c, "secure aggregation stream", stream.Recv)
	defer in.close()
	first, err := in.next()
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
	// The stream ends with the attempt, whether its session ended (with
	// or without the member) or the round moved on.
	in.stop = func() error {
		select {
		case <-b.Done():
			return secureStatus(b.EndError())
		default:
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.round != r || c.phase != phaseTraining {
			return status.Errorf(codes.FailedPrecondition, "round %d attempt %d ended while the secure session was running", round, attempt)
		}
		return nil
	}
	in.ended = b.Done()

	// A member that leaves before the last phase's answer (declines,
	// breaks its stream, sends garbage) is dropped from its session.
	var key crypto.PublicKey
	var raw []byte
	cert, certErr := peerCertificate(ctx)
	if certErr == nil {
		key, raw = cert.PublicKey, cert.Raw
	}
	m := b.Join(name, key, raw)
	defer m.Leave()
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
	if certErr != nil {
		return status.Errorf(codes.Unauthenticated, "%v", certErr)
	}
	// next reads the following request of a message of several (the
	// masked input's chunks).
	next := func() (*fedguardv1.SecureAggregateRequest, error) {
		msg, err := in.next()
		if err == nil {
			err = in.count("masked input", len(msg.GetMasked().GetData()))
		}
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, &securebucket.StreamError{Err: err}
			}
			return nil, err
		}
		if msg.GetRound() != round || msg.GetAttempt() != attempt {
			return nil, &securebucket.StreamError{Err: status.Errorf(codes.InvalidArgument, "chunk names round %d attempt %d, the stream is for round %d attempt %d", msg.GetRound(), msg.GetAttempt(), round, attempt)}
		}
		return msg, nil
	}
	msg := first
	for {
		if msg.GetRound() != round || msg.GetAttempt() != attempt {
			return status.Errorf(codes.InvalidArgument, "message names round %d attempt %d, the stream is for round %d attempt %d", msg.GetRound(), msg.GetAttempt(), round, attempt)
		}
		decoded, err := m.Decode(msg, next)
		if err != nil {
			return secureStatus(err)
		}
		resp, err := m.Send(ctx, decoded)
		if err != nil {
			return secureStatus(err)
		}
		// A member that stops reading blocks Send once the flow-control
		// windows are full: the reply is bounded as GetModel's chunks are.
		if err := c.sendBounded("secure aggregation reply", func(sent func(int) error) error {
			if err := stream.Send(resp); err != nil {
				return err
			}
			return sent(proto.Size(resp))
		}); err != nil {
			return err
		}
		if m.Finished() {
			return nil
		}
		if m.Phase() != secagg.PhaseMaskedInput {
			msg, err = in.next()
		} else {
			// The member trains before it sends its masked input: the
			// session waits for it until the phase's deadline (at the
			// latest this), and drops it then.
			wait := max(time.Until(r.deadline), time.Duration(c.cfg.SecAgg.PhaseTimeout))
			msg, err = in.recv(wait, func(time.Duration) error {
				return status.Errorf(codes.FailedPrecondition, "dropped from the secure session at %v: no message before the phase deadline", secagg.PhaseMaskedInput)
			})
			in.meter(c.opts.now(), len(msg.GetMasked().GetData()))
		}
		if err != nil {
			return err
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
		res, ev := b.Result(), b.Record(r.attempt)
		if res.Err != nil {
			c.metrics.secureFailed.Inc()
			errs = append(errs, fmt.Sprintf("bucket %d: %v", i+1, res.Err))
			for _, m := range ev.Members {
				rec.Refused = append(rec.Refused, RefusedUpdate{Name: m, Reason: fmt.Sprintf("secure session of bucket %d failed: %v", i+1, res.Err)})
			}
		} else {
			updates = append(updates, aggregation.Update{ID: bucketID(i), Delta: res.Mean, Samples: res.Weight})
			for _, m := range res.Survivors {
				rec.Participants = append(rec.Participants, ParticipantRecord{Name: m, SHA256: ev.SumSHA256, Bucket: i + 1, DataSHA256: ev.DataSHA256[m], Privacy: memberLedger(ev.Privacy, m),
					DistributedPrivacy: memberLedger(ev.DistributedPrivacy, m)})
				names = append(names, m)
			}
			for _, m := range ev.Members {
				if !slices.Contains(res.Survivors, m) {
					rec.Dropped = append(rec.Dropped, m)
					if why := r.satOut[m]; why != "" {
						rec.SatOut = append(rec.SatOut, RefusedUpdate{Name: m, Reason: why})
					}
				}
			}
		}
		rec.Secure = append(rec.Secure, ev)
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
