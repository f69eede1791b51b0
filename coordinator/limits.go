package coordinator

// Per-participant bounds on what a client can make the coordinator hold.
//
// A participant is one certificate identity (its spiffe name); its mTLS
// handshake proves it, so the counts below cannot be spread over made-up
// names. They bound:
//
//   - connections: a verified handshake beyond LimitsConfig.MaxConnections
//     open connections of the same participant is closed at once and
//     refused with reason too_many_connections. A connection's slot is
//     freed when gRPC closes it (the peer went away, the keepalive
//     enforcement found it dead, or it stayed idle too long).
//   - calls: a call beyond LimitsConfig.MaxCalls calls in flight of the same
//     participant, over all its connections, is refused with
//     ResourceExhausted before its handler runs. HTTP/2 also caps the
//     streams of one connection at the same number.
//   - update streams: a SubmitUpdate stream whose header does not come
//     within LimitsConfig.UpdateIdle of opening ends with ResourceExhausted
//     (streamIn, the one reader of update and secure streams), so a silent
//     stream cannot hold a call slot. An update
//     is decoded into a buffer of the model's size, so a SubmitUpdate
//     stream ends, and its buffer is dropped, when
//     the round or the attempt it is for ends (at the round's deadline at
//     the latest), when no message arrived for LimitsConfig.UpdateIdle, or
//     when, UpdateIdle after its header, it has delivered less than
//     UpdateMinRate bytes a second on average. A participant can thus hold
//     at most one update buffer, for the open round, and only while it
//     makes progress. fedguard_update_buffer_bytes shows what is held.
//   - downloads: a client that calls GetModel and reads slowly, or not at
//     all, blocks the coordinator's Send (HTTP/2 flow control). The
//     download ends with ResourceExhausted when a message waits
//     UpdateIdle to be taken, or when, UpdateIdle after it began, it has
//     gone out at less than UpdateMinRate bytes a second on average
//     (sendBounded).
//   - what a cut download leaves queued: the part of the chunk gRPC had
//     taken before the client stopped reading, at most one chunk
//     (downloadChunkBytes) and 64 KiB of gRPC's per-stream write quota,
//     stays queued behind the client's flow-control window. It cannot be
//     released from here: when the handler returns, grpc-go queues the
//     status behind that data and removes the stream from its writer only
//     once both are written (http2Server.finishStream), or when the client
//     resets the stream or the connection closes; no server API drops one
//     stream's queued data. It is bounded all the same: the stream still
//     counts against the connection's HTTP/2 stream limit (MaxCalls)
//     until then, so one participant can leave at most MaxConnections ×
//     MaxCalls such remainders, and a client that reads again gets them
//     and the refusal.
//   - secure streams: a SecureAggregate stream is under the same two
//     limits wherever the coordinator waits for the member (streamIn):
//     its first message and each phase's message must come
//     within UpdateIdle (the masked input, which follows local training,
//     within the phase's deadline), the masked input's chunks at
//     UpdateMinRate, and the stream ends with the member's session or
//     the round attempt. Its refusals are audited as call_refused.
//
// Handshakes that do not complete are bounded by gRPC's connection timeout
// (handshakeTimeout), and idle connections by keepalive's
// MaxConnectionIdle.

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/wire"
)

// Defaults of LimitsConfig.
const (
	// DefaultMaxConnections is how many connections one participant may
	// keep open. An agent needs one; the rest is room for restarts whose
	// old connection the keepalive has not yet found dead.
	DefaultMaxConnections = 8
	// DefaultMaxCalls is how many calls one participant may have in
	// flight. An agent has at most three (a long poll, a download or
	// upload, a report).
	DefaultMaxCalls = 16
	// DefaultUpdateIdle is the longest an update stream may go without a
	// message, and the grace before its average rate is checked.
	DefaultUpdateIdle = 30 * time.Second
	// DefaultUpdateMinRate is the lowest average rate, in bytes a second,
	// of an update stream after its grace: 64 KiB/s, a hundredth of a
	// slow hospital uplink (a 1 M-parameter update still gets 64 s).
	DefaultUpdateMinRate = 64 << 10
)

const (
	// handshakeTimeout bounds a connection's TLS handshake.
	handshakeTimeout = 20 * time.Second
	// maxConnectionIdle closes a connection without a call for this long;
	// an agent always has a long poll open, so only abandoned connections
	// are closed.
	maxConnectionIdle = 5 * time.Minute
	// maxHeaderListBytes bounds a call's request headers (HTTP/2
	// SETTINGS_MAX_HEADER_LIST_SIZE). gRPC decodes them before any limit
	// here runs and by default takes up to 16 MiB a call: a participant
	// sending that with every call held hundreds of megabytes. An agent's
	// headers are a few hundred bytes. A call over the bound is reset by
	// the transport (an HTTP/2 refusal, like a malformed frame, that no
	// interceptor sees); a Go client refuses to send it.
	maxHeaderListBytes = 16 << 10
)

// Reasons of refusals by the limits: values of the reason label of
// fedguard_connections_refused_total and of audit.ConnectionRefused.Reason.
const (
	ReasonTooManyConnections = "too_many_connections"
	ReasonTooManyCalls       = "too_many_calls"
)

// LimitsConfig bounds what one participant can make the coordinator hold
// (see the package's limits.go for the rules). Zero values take the
// defaults.
type LimitsConfig struct {
	// MaxConnections is how many connections one participant may keep
	// open (default DefaultMaxConnections).
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxCalls is how many calls one participant may have in flight
	// (default DefaultMaxCalls).
	MaxCalls int `json:"max_calls,omitempty"`
	// UpdateIdle is the longest an update stream may wait for its next
	// message (default DefaultUpdateIdle).
	UpdateIdle Duration `json:"update_idle,omitempty"`
	// UpdateMinRate is the lowest average rate of an update stream, in
	// bytes a second, from UpdateIdle after its header on (default
	// DefaultUpdateMinRate).
	UpdateMinRate int64 `json:"update_min_rate,omitempty"`
}

func (l LimitsConfig) withDefaults() LimitsConfig {
	l.MaxConnections = cmp.Or(l.MaxConnections, DefaultMaxConnections)
	l.MaxCalls = cmp.Or(l.MaxCalls, DefaultMaxCalls)
	if l.UpdateIdle == 0 {
		l.UpdateIdle = Duration(DefaultUpdateIdle)
	}
	l.UpdateMinRate = cmp.Or(l.UpdateMinRate, DefaultUpdateMinRate)
	return l
}

func (l LimitsConfig) validate(add func(string, ...any)) {
	if l.MaxConnections < 0 || l.MaxCalls < 0 || l.UpdateIdle < 0 || l.UpdateMinRate < 0 {
		add("limits must not be negative")
	}
	if l.MaxCalls > 1<<16 || l.MaxConnections > 1<<16 {
		add("limits.max_calls %d and limits.max_connections %d must be at most 65536", l.MaxCalls, l.MaxConnections)
	}
}

// Receive windows. What a client has sent and the coordinator has not yet
// read waits in the coordinator's memory, up to the client's flow-control
// window: with wire.StreamWindow (2 MiB) for every upload, 100 uploads at
// once held about 96 MB there (24 model sizes at 1 M parameters, heap
// profiles of session 3). The windows are therefore shared out: all the
// enrolled participants' uploads together may have windowBudget in
// flight, each at least minStreamWindow (two 256 KiB chunks, so that an
// upload never waits for a window update in the middle of a message) and
// at most wire.StreamWindow, which is what a federation of up to 24 keeps.
const (
	windowBudget    = 48 << 20
	minStreamWindow = 512 << 10
)

// receiveWindows are the coordinator's per-stream and per-connection
// receive windows for a federation of enrolled participants. A connection
// carries one upload and a few small calls, so its window is twice the
// stream's: an upload never waits for the connection's window.
//
// gRPC sets windows once per server (grpc.InitialWindowSize disables its
// bandwidth probing, which on loopback kept windows at 64 KiB and uploads
// slow); it cannot shrink them as streams open. Smaller windows for every
// federation were tried in session 3 and made uploads fall below
// limits.update_min_rate under load; at 100 participants 512 KiB windows
// did not, and took the peak from 133.9 and 135.4 model sizes to 120.6
// and 123.4 with no change in round time beyond the noise (fedguard bench
// round --participants 100 --params 1000000 --rounds 3, alternated, load
// 27-41; docs/capacity.md).
func receiveWindows(enrolled int) (stream, conn int32) {
	w := int64(windowBudget) / int64(max(enrolled, 1))
	w = min(max(w, minStreamWindow), wire.StreamWindow)
	w &^= 64<<10 - 1 // whole 64 KiB
	return int32(w), int32(2 * w)
}

// serverLimits are the gRPC server options that carry the limits, for a
// federation of enrolled participants.
func serverLimits(l LimitsConfig, enrolled int) []grpc.ServerOption {
	stream, conn := receiveWindows(enrolled)
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.MaxConcurrentStreams(uint32(l.MaxCalls)),
		grpc.InitialWindowSize(stream),
		grpc.InitialConnWindowSize(conn),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxConnectionIdle,
			Time:              30 * time.Second,
			Timeout:           10 * time.Second,
		}),
	}
}

// perIdentity counts what each participant holds.
type perIdentity struct {
	mu    sync.Mutex
	conns map[string]int
	calls map[string]int

	// buffered is the bytes of update buffers held by streams in flight.
	buffered atomic.Int64
}

func newPerIdentity() *perIdentity {
	return &perIdentity{conns: map[string]int{}, calls: map[string]int{}}
}

// take counts one more in m[name] unless it is at limit.
func (p *perIdentity) take(m map[string]int, name string, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m[name] >= limit {
		return false
	}
	m[name]++
	return true
}

func (p *perIdentity) give(m map[string]int, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m[name]--; m[name] <= 0 {
		delete(m, name)
	}
}

// limitMetrics are the limits' collectors, registered with the
// coordinator's.
func (p *perIdentity) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fedguard_update_buffer_bytes", Help: "Bytes of update buffers held by plain update streams in flight.",
		}, func() float64 { return float64(p.buffered.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fedguard_participant_connections", Help: "Participant connections open.",
		}, func() float64 { return float64(p.total(p.conns)) }),
	}
}

func (p *perIdentity) total(m map[string]int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// admitConnection counts a verified connection against its participant's
// limit. It returns the connection to hand to gRPC, whose Close frees the
// slot, or a *certs.Refusal after closing conn.
func (c *Coordinator) admitConnection(conn net.Conn, info credentials.AuthInfo) (net.Conn, error) {
	ti, ok := info.(credentials.TLSInfo)
	if !ok {
		return conn, nil
	}
	id, err := certs.PeerIdentity(ti.State)
	if err != nil {
		return conn, nil // the call check refuses it with its reason
	}
	if !c.limits.take(c.limits.conns, id.Name, c.cfg.Limits.MaxConnections) {
		conn.Close()
		leaf := ti.State.PeerCertificates[0]
		return nil, &certs.Refusal{
			Reason: ReasonTooManyConnections, Identity: id, Serial: leaf.SerialNumber.Text(16),
			Err: fmt.Errorf("%s already has %d connections open (limits.max_connections)", id.Name, c.cfg.Limits.MaxConnections),
		}
	}
	return &countedConn{Conn: conn, release: sync.OnceFunc(func() { c.limits.give(c.limits.conns, id.Name) })}, nil
}

// countedConn frees its participant's connection slot on Close.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// ConnectionState lets callers that look for the TLS state still find it.
func (c *countedConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// peerName is the participant name of a call's verified certificate, or
// "" (the call check then refuses the call).
func peerName(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	id, err := certs.PeerIdentity(info.State)
	if err != nil {
		return ""
	}
	return id.Name
}

// enterCall counts a call against its participant's limit; the returned
// function ends it.
func (c *Coordinator) enterCall(ctx context.Context, method string) (func(), error) {
	name := peerName(ctx)
	if name == "" {
		return func() {}, nil
	}
	if !c.limits.take(c.limits.calls, name, c.cfg.Limits.MaxCalls) {
		c.metrics.refusedConnection(ReasonTooManyCalls)
		err := status.Errorf(codes.ResourceExhausted, "%s already has %d calls in flight (limits.max_calls)", name, c.cfg.Limits.MaxCalls)
		remote := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			remote = p.Addr.String()
		}
		c.refusal(ctx, name, audit.Entry{Kind: audit.KindCallRefused, Actor: name, Round: c.lastRoundNow(), Payload: audit.CallRefused{
			Method: method, Code: codes.ResourceExhausted.String(), Reason: status.Convert(err).Message(),
		}}, "call refused", "participant", name, "reason", ReasonTooManyCalls, "method", method, "remote", remote)
		return nil, err
	}
	return sync.OnceFunc(func() { c.limits.give(c.limits.calls, name) }), nil
}

// recvResult is one Recv of a client stream.
type recvResult[T any] struct {
	msg T
	err error
}

// streamIn is the one reader of a client stream (SubmitUpdate's and
// SecureAggregate's) under the limits above. It receives in a goroutine of
// its own, started when the handler begins, so that every wait for a
// message, the first included, is bounded:
//   - a wait ends after a given time (recv's wait, limits.update_idle for
//     most) with the caller's error;
//   - once a deadline is set (until), a wait ends there at the latest;
//   - once stop is set, the stream ends with stop's error as soon as it
//     returns one: stop is checked before each wait, whenever the
//     coordinator's state changes, and when ended is closed;
//   - once metering has begun (meter), messages must keep the average
//     rate of limits.update_min_rate after update_idle (count).
//
// The goroutine's Recv blocks without a context; when the handler returns,
// gRPC cancels the stream, that Recv returns, and close lets the goroutine
// go.
//
// The goroutine receives a message only when the handler asks for one
// (want), so a stream holds at most one decoded message: the one the
// handler works on, or the one being received while it waits. Receiving
// ahead held two per stream (the handler's and the one waiting to be
// handed over), 256 KiB each, up to six model sizes at 100 uploads of
// 1 M parameters at once. Measured with the receive windows below, the
// coordinator's peak went from 120.6 and 123.4 model sizes to 119.3 and
// 118.5 (alternated, load 27-41); alone, with 2 MiB windows, the saved
// messages waited in the transport instead. HTTP/2 flow control keeps
// the transport receiving meanwhile, so the upload does not stall.
type streamIn[T any] struct {
	c *Coordinator
	// what names the stream in its refusals ("update stream").
	what    string
	idle    time.Duration
	results chan recvResult[T]
	done    chan struct{}
	// want asks the goroutine for the next message; asked says that one
	// was asked for and not yet taken (a wait that gave up leaves it
	// asked).
	want  chan struct{}
	asked bool

	stop     func() error
	ended    <-chan struct{}
	deadline time.Time
	late     func() error // the error at deadline

	// bytes counted since since, for the rate (meter, count).
	since time.Time
	bytes int64
}

// readStream starts reading a client stream; what names it in refusals.
// The caller must close it.
func readStream[T any](c *Coordinator, what string, recv func() (T, error)) *streamIn[T] {
	in := &streamIn[T]{
		c: c, what: what, idle: time.Duration(c.cfg.Limits.UpdateIdle),
		results: make(chan recvResult[T]), done: make(chan struct{}),
		want: make(chan struct{}, 1), asked: true,
	}
	in.want <- struct{}{} // the first message is read at once
	go func() {
		for {
			select {
			case <-in.want:
			case <-in.done:
				return
			}
			m, err := recv()
			select {
			case in.results <- recvResult[T]{m, err}:
			case <-in.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return in
}

// close lets the reading goroutine go once the handler is done.
func (in *streamIn[T]) close() { close(in.done) }

// until ends every later wait at t at the latest, with late's error.
func (in *streamIn[T]) until(t time.Time, late func() error) { in.deadline, in.late = t, late }

// recv waits at most wait for the next message (or the stream's end or
// error, which it returns as Recv gave them); then it gives up with
// timeout(wait).
func (in *streamIn[T]) recv(wait time.Duration, timeout func(time.Duration) error) (T, error) {
	var zero T
	if !in.asked {
		in.want <- struct{}{} // room for one: nothing else asks
		in.asked = true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var late <-chan time.Time
	if !in.deadline.IsZero() {
		d := time.NewTimer(in.deadline.Sub(in.c.opts.now()))
		defer d.Stop()
		late = d.C
	}
	for {
		in.c.mu.Lock()
		changed := in.c.changed
		in.c.mu.Unlock()
		if in.stop != nil {
			if err := in.stop(); err != nil {
				return zero, err
			}
		}
		select {
		case res := <-in.results:
			in.asked = false
			return res.msg, res.err
		case <-timer.C:
			return zero, timeout(wait)
		case <-late:
			return zero, in.late()
		case <-in.ended:
			in.ended = nil // stop says what ended
		case <-changed:
		}
	}
}

// next waits for the next message at most limits.update_idle.
func (in *streamIn[T]) next() (T, error) { return in.recv(in.idle, in.idleError) }

// idleError ends a stream that sent nothing for wait.
func (in *streamIn[T]) idleError(wait time.Duration) error {
	return status.Errorf(codes.ResourceExhausted, "%s idle for %v (limits.update_idle)", in.what, wait)
}

// meter starts the rate's clock at since, with n bytes counted.
func (in *streamIn[T]) meter(since time.Time, n int) { in.since, in.bytes = since, int64(n) }

// count adds n payload bytes of what (the payload's name in the refusal)
// and ends the stream when, update_idle after meter, fewer than
// limits.update_min_rate bytes a second have come on average.
func (in *streamIn[T]) count(what string, n int) error {
	in.bytes += int64(n)
	lim := in.c.cfg.Limits
	if elapsed := in.c.opts.now().Sub(in.since); elapsed > in.idle && float64(in.bytes) < float64(lim.UpdateMinRate)*elapsed.Seconds() {
		return status.Errorf(codes.ResourceExhausted, "%s too slow: %d bytes in %v, the minimum is %d bytes a second (limits.update_min_rate)",
			what, in.bytes, elapsed.Round(time.Millisecond), lim.UpdateMinRate)
	}
	return nil
}

// errSendStopped ends a sendBounded send whose caller gave up.
var errSendStopped = errors.New("download abandoned")

// sendBounded runs send, which streams a download to the caller and calls
// sent(n) after each message of n payload bytes went out, and ends the
// call with ResourceExhausted when a message waits UpdateIdle to go out,
// or when, UpdateIdle after the start, fewer than UpdateMinRate bytes a
// second went out on average. gRPC's Send takes no context and blocks
// while the client does not read, so send runs in a goroutine of its
// own, as grpc-go's maintainers advise (grpc/grpc-go#1229): the handler's
// return ends the stream, which releases a Send blocked in it, and sent
// then tells send to stop.
func (c *Coordinator) sendBounded(what string, send func(sent func(n int) error) error) error {
	lim := c.cfg.Limits
	idle := time.Duration(lim.UpdateIdle)
	var stopped atomic.Bool
	var bytes atomic.Int64
	progress := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- send(func(n int) error {
			if stopped.Load() {
				return errSendStopped
			}
			bytes.Add(int64(n))
			select {
			case progress <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	defer stopped.Store(true)
	start := c.opts.now()
	idleT := time.NewTimer(idle)
	defer idleT.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-progress:
			if elapsed := c.opts.now().Sub(start); elapsed > idle && float64(bytes.Load()) < float64(lim.UpdateMinRate)*elapsed.Seconds() {
				return status.Errorf(codes.ResourceExhausted, "%s too slow: %d bytes taken in %v, the minimum is %d bytes a second (limits.update_min_rate)",
					what, bytes.Load(), elapsed.Round(time.Millisecond), lim.UpdateMinRate)
			}
			idleT.Reset(idle)
		case <-idleT.C:
			return status.Errorf(codes.ResourceExhausted, "%s stalled: the client took nothing for %v (limits.update_idle)", what, idle)
		}
	}
}
