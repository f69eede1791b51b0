package coordinator

import (
	"context"
	"errors"
	"math/big"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/certs"
)

// Revocation of live calls. The per-call check in the authenticator
// refuses every call made after a revocation list that names the caller's
// certificate is loaded; calls already running when it is loaded (a
// WaitRound long poll, an update or model stream, a secure session) are
// ended too, within revokeGrace of the reload (crlPoll after the file
// changed): their contexts are cancelled, which ends long polls and
// anything else that waits on the context, with PermissionDenied; a call
// still running revokeGrace later (a stream blocked in a read or write
// the context does not interrupt) has its connection closed. Each ended
// call is refused with PermissionDenied and recorded like any refused
// call (call_refused, or update_refused for an update), within its
// identity's quota.
const revokeGrace = time.Second

// errRevoked is the cause of a call's context cancelled by a revocation.
var errRevoked = errors.New("certificate revoked during the call")

// liveCall is one running call.
type liveCall struct {
	serial *big.Int
	name   string
	method string
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// trackedConn is an accepted connection, remembered by its client
// certificate's serial until it closes.
type trackedConn struct {
	net.Conn
	serial *big.Int
	l      *liveCalls
	once   sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.l.mu.Lock()
		delete(t.l.conns, t)
		t.l.mu.Unlock()
	})
	return t.Conn.Close()
}

// liveCalls tracks running calls and open connections.
type liveCalls struct {
	mu    sync.Mutex
	calls map[*liveCall]struct{}
	conns map[*trackedConn]struct{}
}

// track remembers conn, made with a client certificate of serial.
func (l *liveCalls) track(conn net.Conn, serial *big.Int) net.Conn {
	t := &trackedConn{Conn: conn, serial: serial, l: l}
	l.mu.Lock()
	if l.conns == nil {
		l.conns = map[*trackedConn]struct{}{}
	}
	l.conns[t] = struct{}{}
	l.mu.Unlock()
	return t
}

// begin registers a call and returns its context, cancelled by a
// revocation of serial, and the function that ends the registration.
func (l *liveCalls) begin(ctx context.Context, serial *big.Int, name, method string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	call := &liveCall{serial: serial, name: name, method: method, cancel: cancel, done: make(chan struct{})}
	l.mu.Lock()
	if l.calls == nil {
		l.calls = map[*liveCall]struct{}{}
	}
	l.calls[call] = struct{}{}
	l.mu.Unlock()
	return ctx, func() {
		l.mu.Lock()
		delete(l.calls, call)
		l.mu.Unlock()
		close(call.done)
		cancel(nil)
	}
}

// revoked returns the running calls and open connections whose
// certificates crl revokes.
func (l *liveCalls) revoked(crl *certs.RevocationList) ([]*liveCall, []*trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var calls []*liveCall
	var conns []*trackedConn
	for c := range l.calls {
		if crl.IsRevoked(c.serial) {
			calls = append(calls, c)
		}
	}
	for c := range l.conns {
		if crl.IsRevoked(c.serial) {
			conns = append(conns, c)
		}
	}
	return calls, conns
}

// endRevoked ends the calls of certificates crl revokes (after a reload):
// their contexts now, their connections after revokeGrace if a call is
// still running then.
func (c *Coordinator) endRevoked(ctx context.Context, crl *certs.RevocationList) {
	calls, conns := c.live.revoked(crl)
	if len(calls) == 0 {
		return
	}
	for _, call := range calls {
		call.cancel(errRevoked)
	}
	t := time.NewTimer(revokeGrace)
	defer t.Stop()
	stuck := map[string]*liveCall{}
	for _, call := range calls {
		select {
		case <-call.done:
			continue
		case <-t.C:
		case <-ctx.Done():
			return
		}
		select {
		case <-call.done:
		default:
			stuck[call.serial.Text(16)] = call
		}
	}
	for _, conn := range conns {
		call := stuck[conn.serial.Text(16)]
		if call == nil {
			continue
		}
		// The call's own refusal (PermissionDenied) is recorded when it
		// returns; this is the action, for the text log.
		_ = conn.Close()
		c.opts.log.InfoContext(ctx, "connection closed: its certificate was revoked during a call",
			"participant", call.name, "method", call.method, "serial", conn.serial.Text(16), "remote", conn.RemoteAddr().String())
	}
}

// revokedDuringCall turns the error of a call whose context a revocation
// cancelled into PermissionDenied.
func revokedDuringCall(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errRevoked) {
		return status.Errorf(codes.PermissionDenied, "certificate of %s revoked during the call", identity(ctx).Name)
	}
	return err
}
