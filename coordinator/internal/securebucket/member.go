package securebucket

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/fedguard/fedguard/aggregation/secagg"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// Member is one member's side of a session, for the edge that carries the
// member's stream: it decodes each of the member's messages (Decode),
// hands it to the session and waits for the answer (Send), phase after
// phase, and tells the session when the stream ends (Leave).
type Member struct {
	s     *Session
	id    uint32
	key   crypto.PublicKey
	cert  []byte
	phase secagg.Phase
	// finished: the member got the last phase's answer, or was told
	// that the session dropped it.
	finished bool
}

// Join is member name's side of the session, with the public key and the
// DER bytes of the certificate its stream was opened with; nil when name
// is not a member.
func (s *Session) Join(name string, key crypto.PublicKey, cert []byte) *Member {
	i, ok := slices.BinarySearch(s.members, name)
	if !ok {
		return nil
	}
	return &Member{s: s, id: uint32(i + 1), key: key, cert: cert, phase: secagg.PhaseAdvertiseKeys}
}

// Phase is the phase whose message the member sends next.
func (m *Member) Phase() secagg.Phase { return m.phase }

// Finished reports whether the member has nothing more to send: it got
// the last phase's answer, or the session dropped it.
func (m *Member) Finished() bool { return m.finished }

// Message is a member's decoded message of one phase.
type Message struct {
	phase secagg.Phase
	body  any
}

// Decode turns req, the first request of the member's message of its
// current phase, into the message; a message of several requests (the
// masked input's chunks) reads the others with next. An error is an
// *Error of kind ErrMessage, or next's *StreamError as it is.
func (m *Member) Decode(req *fedguardv1.SecureAggregateRequest, next func() (*fedguardv1.SecureAggregateRequest, error)) (Message, error) {
	body, err := phases[m.phase].decodeMsg(&decoding{m: m, id: m.id, req: req, next: next})
	if err != nil {
		if se := (*StreamError)(nil); errors.As(err, &se) {
			return Message{}, se
		}
		return Message{}, errorf(ErrMessage, "%v: %v", m.phase, err)
	}
	return Message{phase: m.phase, body: body}, nil
}

// Send hands msg to the session and waits for the session's answer. The
// member moves on to the next phase with it. An error is an *Error (of
// kind ErrDropped or ErrFailed, after which the member is Finished unless
// the session had ended), or ctx's error.
func (m *Member) Send(ctx context.Context, msg Message) (*fedguardv1.SecureAggregateResponse, error) {
	if msg.phase != m.phase {
		return nil, fmt.Errorf("securebucket: message of %v sent at %v", msg.phase, m.phase)
	}
	rep := make(chan reply, 1) // the session never blocks on it
	select {
	case m.s.inbox <- message{id: m.id, phase: msg.phase, body: msg.body, reply: rep}:
	case <-m.s.done:
		return nil, m.s.EndError()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var r reply
	select {
	case r = <-rep:
	case <-m.s.done:
		// The session answers every message it took before it ends.
		select {
		case r = <-rep:
		default:
			return nil, m.s.EndError()
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		m.finished = true // the session has already dropped this member
		return nil, r.err
	}
	if m.phase == secagg.PhaseUnmasking {
		m.finished = true
	} else {
		m.phase++
	}
	return r.resp, nil
}

// Leave tells the session that the member's stream has ended: a member
// not Finished is dropped at the phase the session is in.
func (m *Member) Leave() {
	if m.finished {
		return
	}
	select {
	case m.s.inbox <- message{id: m.id, reply: make(chan reply, 1)}:
	case <-m.s.done:
	}
}
