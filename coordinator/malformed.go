package coordinator

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
)

// malformedMessage starts the error of a request message that does not
// decode (messageCodec.Unmarshal), so that a call it ended can be told
// from one the coordinator failed itself.
const malformedMessage = "malformed message"

// malformedAuditor records the calls refused because a request message did
// not decode: invalid UTF-8 in a string field (which a non-Go client can
// send), a truncated field, a wrong wire type. gRPC decodes a unary request
// before any interceptor runs (the generated handler calls the decoder
// first) and answers a decoding error with Internal itself, so neither the
// authenticator nor callRefused sees such a call; a stats handler sees the
// end of every call, with the caller's connection in its context. The
// caller is named by its verified certificate, as the authenticator names
// it; the event is the authenticator's call_refused, within the same
// per-identity quota. A stream's decoding error reaches its handler as the
// same Internal status, and the handlers record no Internal end themselves
// (refusalCode), so no call is recorded twice.
type malformedAuditor struct{ c *Coordinator }

// methodKey carries a call's full method name from TagRPC to HandleRPC.
type methodKey struct{}

func (malformedAuditor) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (a malformedAuditor) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.Error == nil || end.IsClient() {
		return
	}
	st := status.Convert(end.Error)
	if st.Code() != codes.Internal || !strings.Contains(st.Message(), malformedMessage) {
		return
	}
	method, _ := ctx.Value(methodKey{}).(string)
	who := anonymous
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if id, err := certs.PeerIdentity(info.State); err == nil {
				who = id.Name
			}
		}
	}
	actor := who
	if actor == anonymous {
		actor = audit.ActorCoordinator
	}
	a.c.refusal(ctx, who, audit.Entry{Kind: audit.KindCallRefused, Actor: actor, Round: a.c.lastRoundNow(), Payload: audit.CallRefused{
		Method: method, Code: st.Code().String(), Reason: st.Message(),
	}}, "call refused", "participant", who, "method", method, "code", st.Code().String(), "error", st.Message())
}

func (malformedAuditor) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (malformedAuditor) HandleConn(context.Context, stats.ConnStats) {}
