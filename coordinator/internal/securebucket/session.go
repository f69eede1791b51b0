// Package securebucket is the coordinator's side of one bucket of a
// secure round: one SecAgg+ session (package aggregation/secagg) among the
// bucket's members, walked phase by phase.
//
// # One table
//
// Everything the coordinator knows of a phase is one entry of the table in
// phases.go: how a member's request decodes into the phase's message
// (decode), which secagg.Server method takes the messages collected
// (call), what each member still in is answered (reply), and when the
// phase closes without those who have not sent (deadline). The phases run
// in the order of secagg.Phases, the one list that the metrics and the
// audit report read as well.
//
// # No gRPC
//
// The package speaks the wire's messages (proto/fedguard/v1) but not gRPC.
// A member's stream belongs to the coordinator's SecureAggregate handler,
// the RPC edge: it reads the requests, hands them to the member's Member,
// sends the answers back, and maps the errors returned here, once, to
// status codes: ErrMessage (InvalidArgument), ErrDropped
// (FailedPrecondition), ErrFailed (Aborted), a *StreamError (the stream's
// own error, as it is) and the context's errors.
//
// # How a session runs
//
// Run owns the session's secagg.Server. A phase closes when every member
// still in has sent its message, or at the phase's deadline; members that
// have not sent by then, or whose stream broke (Member.Leave), are dropped
// from the session, which goes on as long as secagg allows it (the
// threshold) and fails otherwise. The server is deterministic in the
// messages it gets (relays, routes and survivor sets come out sorted, and
// the messages go to it sorted by member), so members that re-send the
// same messages to a session laid out again after a coordinator restart
// get the same answers (see the coordinator's secure.go).
package securebucket

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// Errors a Member returns. Each is wrapped by an *Error whose text is what
// the member is told.
var (
	// ErrMessage: the member's message does not decode, or is not what
	// its phase expects.
	ErrMessage = errors.New("securebucket: malformed message")
	// ErrDropped: the member is not (or no longer) in the session: it was
	// dropped, or the session went on or ended without it.
	ErrDropped = errors.New("securebucket: dropped from the session")
	// ErrFailed: the session failed; nobody's input is summed.
	ErrFailed = errors.New("securebucket: session failed")
)

// Error is what one member is told, with the sentinel (Kind) that says
// what it means.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, e.Kind) hold.
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, a ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// StreamError is an error of the member's stream itself, which a decode
// that reads more requests passes through untouched for the edge to
// return as it is (the stream broke, or a chunk named another round).
type StreamError struct{ Err error }

func (e *StreamError) Error() string { return e.Err.Error() }

func (e *StreamError) Unwrap() error { return e.Err }

// Timing is what the phases' deadlines are computed from.
type Timing struct {
	// Opened is when the round attempt opened.
	Opened time.Time
	// Deadline is the round attempt's deadline.
	Deadline time.Time
	// PhaseTimeout bounds each phase (see the table for which from when).
	PhaseTimeout time.Duration
}

// Session is one bucket's secure aggregation session.
type Session struct {
	index   int // 0-based; reported 1-based
	members []string
	cfg     secagg.Config
	params  Decoder
	inbox   chan message
	done    chan struct{} // closed when the session has ended
	result  Result        // written before done is closed
}

// Result is how a session ended.
type Result struct {
	// Mean is the survivors' weighted mean update, Weight their total
	// weight and Sum the digest of the unmasked sum (SumDigest).
	Mean   []float32
	Weight uint64
	Sum    [32]byte
	// Survivors are the members whose masked input is in the sum.
	Survivors []string
	// Dropped maps each member that left to "Phase: why".
	Dropped map[string]string
	// Data maps each survivor that reported a data version with its
	// masked input to it, in hex.
	Data map[string]string
	// Privacy maps each survivor that reported a record-level privacy
	// ledger with its masked input to it.
	Privacy map[string]manifest.HospitalPrivacy
	// Distributed maps each survivor that reported a federation-level
	// (distributed DP) privacy ledger with its masked input to it.
	Distributed map[string]manifest.HospitalDistributedPrivacy
	// Err is why the session failed; nil when it completed.
	Err error
}

// message is a member's message to its session. A zero phase says the
// member's stream has ended.
type message struct {
	id    uint32
	phase secagg.Phase
	body  any // what the phase's decode made
	reply chan reply
}

type reply struct {
	resp *fedguardv1.SecureAggregateResponse
	err  error
}

// New is the session of bucket index (0-based) among members (sorted, as
// the plan lays them out), with the session's configuration and the
// encoding's parameters.
//
// params is secagg.Params for the fixed-point encoding, or *secagg.DDP
// under distributed DP.
func New(index int, members []string, cfg secagg.Config, params Decoder) *Session {
	return &Session{
		index: index, members: members, cfg: cfg, params: params,
		inbox: make(chan message, 2*len(members)), done: make(chan struct{}),
	}
}

// Decoder turns a bucket's unmasked sum into the mean of its members'
// updates and their total weight: secagg.Params or *secagg.DDP.
type Decoder interface {
	Decode(dst []float32, sum []uint32) (uint64, error)
}

// meanLen is the length of the mean decoded from a sum of words words.
func meanLen(d Decoder, words int) int {
	if dp, ok := d.(*secagg.DDP); ok {
		return dp.Dim
	}
	return words - 1
}

// Members are the bucket's members; member i has session id i+1.
func (s *Session) Members() []string { return s.members }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Result is how the session ended; valid once Done is closed.
func (s *Session) Result() *Result {
	<-s.done
	return &s.result
}

// Record is the audit log's account of the ended session in round
// attempt attempt: also the round record's, and the status page's.
func (s *Session) Record(attempt uint32) audit.SecureSession {
	res := s.Result()
	ev := audit.SecureSession{Attempt: attempt, Bucket: s.index + 1, Members: s.members, Dropped: res.Dropped}
	if res.Err != nil {
		ev.Error = res.Err.Error()
		return ev
	}
	ev.Survivors, ev.Weight, ev.SumSHA256 = res.Survivors, res.Weight, hex.EncodeToString(res.Sum[:])
	if len(res.Data) > 0 {
		ev.DataSHA256 = res.Data
	}
	if len(res.Privacy) > 0 {
		ev.Privacy = res.Privacy
	}
	if len(res.Distributed) > 0 {
		ev.DistributedPrivacy = res.Distributed
	}
	return ev
}

// EndError is what a member hears when it talks to a session that has
// ended without it.
func (s *Session) EndError() error {
	if s.result.Err != nil {
		return errorf(ErrFailed, "secure session of bucket %d failed: %v", s.index+1, s.result.Err)
	}
	return errorf(ErrDropped, "secure session of bucket %d has ended without this participant", s.index+1)
}

// Run walks the session's phases until it completes, fails, or ctx ends;
// see the package doc. observe is told how long each phase that closed
// took.
func (s *Session) Run(ctx context.Context, log *slog.Logger, t Timing, observe func(secagg.Phase, time.Duration)) {
	defer close(s.done)
	r := &run{s: s, log: log, res: &s.result, keys: map[uint32]crypto.PublicKey{}, certs: map[uint32][]byte{}}
	r.res.Dropped, r.res.Data, r.res.Privacy = map[string]string{}, map[string]string{}, map[string]manifest.HospitalPrivacy{}
	r.res.Distributed = map[string]manifest.HospitalDistributedPrivacy{}
	var err error
	r.server, err = secagg.NewServer(s.cfg, secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := r.keys[id]; ok {
			return k, nil
		}
		return nil, errors.New("no certificate")
	}))
	if err != nil {
		r.res.Err = err
		return
	}
	n := len(s.members)
	r.alive = make([]bool, n+1)
	for i := 1; i <= n; i++ {
		r.alive[i] = true
	}
	for _, p := range secagg.Phases() {
		spec := phases[p]
		pending := map[uint32]message{}
		began := time.Now()
		if !r.collect(ctx, p, pending, spec.closeAt(t, began)) {
			r.fail(p, pending, errors.New("the coordinator is stopping"))
			return
		}
		ids := slices.Sorted(maps.Keys(pending))
		bodies := make([]any, len(ids))
		for i, id := range ids {
			bodies[i] = pending[id].body
		}
		answer, rejected, err := spec.step(r, ids, bodies)
		clear(bodies) // the server keeps what it needs (of masked inputs, only the running sum)
		if err != nil {
			r.fail(p, pending, err)
			return
		}
		r.answer(p, pending, rejected, answer)
		observe(p, time.Since(began))
		log.Debug("secure phase closed", "phase", p.String(), "answered", len(pending), "rejected", len(rejected))
	}
	log.Info("secure session completed", "survivors", len(r.res.Survivors), "dropped", len(r.res.Dropped))
}

// run is the state of a running session.
type run struct {
	s      *Session
	log    *slog.Logger
	res    *Result
	server *secagg.Server
	alive  []bool // by id
	keys   map[uint32]crypto.PublicKey
	certs  map[uint32][]byte
}

// drop takes member id out of the session at phase p.
func (r *run) drop(id uint32, p secagg.Phase, why string) {
	if r.alive[id] {
		r.alive[id] = false
		r.res.Dropped[r.s.members[id-1]] = p.String() + ": " + why
	}
}

// collect gathers phase p's messages into pending until every member
// still in has sent one or the deadline passes, dropping those that have
// not; false when ctx ended first.
func (r *run) collect(ctx context.Context, p secagg.Phase, pending map[uint32]message, deadline time.Time) bool {
	n := uint32(len(r.s.members))
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
collect:
	for {
		waiting := false
		for id := uint32(1); id <= n; id++ {
			if _, ok := pending[id]; r.alive[id] && !ok {
				waiting = true
				break
			}
		}
		if !waiting {
			break
		}
		select {
		case m := <-r.s.inbox:
			switch {
			case m.phase == 0:
				r.drop(m.id, p, "stream ended")
			case !r.alive[m.id]:
				m.reply <- reply{err: errorf(ErrDropped, "dropped from the secure session before %v", p)}
			case m.phase != p:
				m.reply <- reply{err: errorf(ErrDropped, "message for %v while the session is at %v", m.phase, p)}
				r.drop(m.id, p, "message out of order")
			default:
				pending[m.id] = m
			}
		case <-timer.C:
			break collect
		case <-ctx.Done():
			return false
		}
	}
	for id := uint32(1); id <= n; id++ {
		if _, ok := pending[id]; r.alive[id] && !ok {
			r.drop(id, p, "no message before the phase deadline")
		}
	}
	return true
}

// fail ends the session at phase p, telling the members waiting.
func (r *run) fail(p secagg.Phase, pending map[uint32]message, err error) {
	r.res.Err = fmt.Errorf("%v: %w", p, err)
	e := errorf(ErrFailed, "secure session of bucket %d failed at %v: %v", r.s.index+1, p, err)
	for _, m := range pending {
		m.reply <- reply{err: e}
	}
	r.log.Warn("secure session failed", "phase", p.String(), "error", err)
}

// answer tells each member waiting at phase p its answer, or that it was
// dropped: its message was rejected, or answer has nothing for it.
func (r *run) answer(p secagg.Phase, pending map[uint32]message, rejected []secagg.Rejection, answer func(uint32) *fedguardv1.SecureAggregateResponse) {
	for _, rj := range rejected {
		if m, ok := pending[rj.ID]; ok {
			m.reply <- reply{err: errorf(ErrDropped, "dropped from the secure session at %v: %v", p, rj.Err)}
			delete(pending, rj.ID)
		}
		r.drop(rj.ID, p, rj.Err.Error())
	}
	for id, m := range pending {
		if resp := answer(id); resp != nil {
			m.reply <- reply{resp: resp}
			continue
		}
		m.reply <- reply{err: errorf(ErrDropped, "dropped from the secure session at %v: too few of its neighbours are left", p)}
		r.drop(id, p, "too few neighbours left")
	}
}
