package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/excerpt"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

const (
	// stopGrace is how long a graceful stop may take before open streams
	// are cut.
	stopGrace = 5 * time.Second
	// finishGrace is how long a finished coordinator keeps serving so that
	// participants learn that the training is over.
	finishGrace = 5 * time.Second
	// crlPoll is how often the revocation list file is checked.
	crlPoll = 2 * time.Second
)

// Run listens on the configured address and serves until the training is
// finished (it returns nil) or ctx is cancelled (graceful stop, nil).
func (c *Coordinator) Run(ctx context.Context) error {
	lis, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return c.recordStop(ctx, fmt.Errorf("listen on %s: %w", c.cfg.Listen, err))
	}
	return c.Serve(ctx, lis)
}

// Serve is Run on a listener the caller opened.
func (c *Coordinator) Serve(ctx context.Context, lis net.Listener) error {
	log := c.opts.log
	// failed ends a start that never served: lis is closed here, since no
	// srv.Serve will, and the start record is closed with the reason.
	failed := func(err error) error {
		lis.Close()
		return c.recordStop(ctx, err)
	}
	tlsCfg, crl, err := serverTLS(c.cfg, c.authorize)
	if err != nil {
		return failed(err)
	}
	auth := &authenticator{c: c, crl: crl}
	// serverLimits comes second: its receive windows replace the wire's.
	opts := append(wire.ServerOptions(), serverLimits(c.cfg.Limits, len(c.enrolled))...)
	srv := grpc.NewServer(append(opts,
		grpc.ForceServerCodecV2(messageCodec{}),
		grpc.StatsHandler(malformedAuditor{c}),
		grpc.Creds(refusalLogger{TransportCredentials: credentials.NewTLS(tlsCfg), c: c}),
		grpc.ChainUnaryInterceptor(auth.unary),
		grpc.ChainStreamInterceptor(auth.stream),
		grpc.UnknownServiceHandler(unknownMethod),
	)...)
	fedguardv1.RegisterCoordinatorServiceServer(srv, &service{c: c})
	if c.cfg.Reflection {
		reflection.Register(srv)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus(fedguardv1.CoordinatorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	log.InfoContext(ctx, "coordinator listening", "addr", lis.Addr().String(), "federation", c.cfg.Federation,
		"enrolled", len(c.enrolled), "rounds", c.cfg.Training.Rounds, "rule", c.rule.Name())

	if err := c.recordRevocations(ctx, crl); err != nil {
		return failed(err)
	}
	c.checkDisk(ctx)
	ms, err := c.listenMetrics()
	if err != nil {
		return failed(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	if ms != nil {
		g.Go(func() error { return c.serveMetrics(gctx, ms) })
	}
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		crl.Watch(gctx, crlPoll,
			func(err error) {
				log.ErrorContext(gctx, "revocation list reload failed; keeping the previous list", "error", err)
			},
			func() {
				log.InfoContext(gctx, "revocation list reloaded")
				// A failure is logged by record and retried at the next
				// reload or start; the revocation itself is in force.
				_ = c.recordRevocations(gctx, crl)
				c.endRevoked(gctx, crl)
			})
		return nil
	})
	g.Go(func() error {
		// Ended quota windows are written out, and the free space
		// checked, every quotaTick.
		t := time.NewTicker(quotaTick)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				c.checkDisk(gctx)
				// A failure is logged by record; the counts are written
				// at the stop at the latest.
				_ = c.flushSuppressed(gctx, false)
			}
		}
	})
	g.Go(func() error {
		err := c.loop(gctx)
		if err == nil && gctx.Err() == nil {
			c.waitTold(gctx)
			log.InfoContext(gctx, "training finished", "rounds", c.cfg.Training.Rounds)
		}
		cancel()
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(stopGrace):
			srv.Stop()
		}
		return nil
	})
	return c.recordStop(ctx, g.Wait())
}

// recordStop closes what New's start record opened, whether Serve ran or
// failed before it served (a taken port, a bad certificate): the
// coordinator_stopped event with the reason (err's text, when err is not
// nil), and a checkpoint over it. It returns err, or the recording's
// error when err is nil.
func (c *Coordinator) recordStop(ctx context.Context, err error) error {
	reason := "stopped"
	switch {
	case err != nil:
		reason = "error: " + err.Error()
	case c.finished():
		reason = "training finished"
	}
	// The counts of suppressed events go on the record before the stop,
	// so none is lost; a last checkpoint covers them and the stop, so the
	// whole log is signed.
	rerr := c.flushSuppressed(context.WithoutCancel(ctx), true)
	rerr = errors.Join(rerr, c.record(context.WithoutCancel(ctx), event(audit.KindCoordinatorStopped, c.lastRoundNow(), audit.CoordinatorStopped{Reason: reason})))
	if rerr == nil {
		_, rerr = c.audit.Checkpoint()
	}
	if rerr != nil && err == nil {
		err = rerr
	}
	c.opts.log.Info("coordinator stopped", "round", c.lastRoundNow(), "reason", reason)
	return err
}

// serverTLS loads the CA, the revocation list and the server certificate.
func serverTLS(cfg Config, authorize func(certs.Identity) error) (*tls.Config, *certs.RevocationList, error) {
	cas, err := certs.LoadCABundle(cfg.CACert)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA certificate: %w", err)
	}
	caCert := cas[0]
	crl, err := certs.NewRevocationList(cfg.CRL, caCert, cas[1:]...)
	if err != nil {
		return nil, nil, fmt.Errorf("load revocation list: %w", err)
	}
	tlsCfg, err := certs.ServerConfig(certs.ServerOptions{
		CA:          caCert,
		MoreCAs:     cas[1:],
		CertFile:    cfg.Cert,
		KeyFile:     cfg.Key,
		Federation:  cfg.Federation,
		Revocations: crl,
		Authorize:   authorize,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("TLS configuration: %w", err)
	}
	if err := checkServerCertificate(tlsCfg, cas, cfg.Federation); err != nil {
		return nil, nil, fmt.Errorf("server certificate %s: %w", cfg.Cert, err)
	}
	return tlsCfg, crl, nil
}

// checkServerCertificate makes sure the coordinator serves its own
// certificate: issued by the CA for server authentication to
// spiffe://FEDERATION/coordinator. Participants refuse anything else, so a
// participant's certificate in cert would otherwise start a coordinator
// nobody can reach.
func checkServerCertificate(tlsCfg *tls.Config, cas []*x509.Certificate, federation string) error {
	kp, err := tlsCfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		return err
	}
	leaf, err := certs.Leaf(kp)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	_, err = certs.CheckOwn(leaf, roots, certs.RoleCoordinator, federation)
	if wrong := (*certs.WrongIdentityError)(nil); errors.As(err, &wrong) {
		want := certs.Identity{Federation: federation, Role: certs.RoleCoordinator}
		return fmt.Errorf("it is %s, want %s (the coordinator's certificate, from fedguard ca issue)", wrong.Got, want)
	}
	return err
}

// CheckFiles validates cfg and loads the files it names (CA certificate,
// revocation list, server certificate and key) without opening the
// database or listening: what `fedguard coordinator --check-config` runs.
// With cfg.PKCS11 set it also logs in to the token (see checkToken).
func CheckFiles(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, _, err := serverTLS(cfg.withDefaults(), func(certs.Identity) error { return nil }); err != nil {
		return err
	}
	return checkToken(cfg)
}

func (c *Coordinator) lastRoundNow() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRound
}

// finished reports whether the configured rounds are done.
func (c *Coordinator) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phase == phaseFinished
}

// waitTold waits until every member of the last cohort has been told the
// training is finished, or finishGrace passes.
func (c *Coordinator) waitTold(ctx context.Context) {
	deadline := time.After(finishGrace)
	for {
		c.mu.Lock()
		all := true
		for _, n := range c.lastCohort {
			all = all && c.told[n]
		}
		ch := c.changed
		c.mu.Unlock()
		if all {
			return
		}
		select {
		case <-ch:
		case <-c.kick:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// authorize is the TLS-level admission check: only enrolled names.
func (c *Coordinator) authorize(id certs.Identity) error {
	if !c.enrolled[id.Name] {
		return fmt.Errorf("participant %q is not enrolled", id.Name)
	}
	return nil
}

// authenticator reads the caller's identity from its verified certificate on
// every call and re-checks revocation and enrolment, so that a revocation
// also cuts connections opened before it.
type authenticator struct {
	c   *Coordinator
	crl *certs.RevocationList
}

// check admits a call to method: it returns the call's context, carrying
// the caller's identity and cancelled if the caller's certificate is
// revoked while the call runs, and the function to call when it ends. A
// refused call is on the record (text log and audit log, within the
// quota) when check returns.
func (a *authenticator) check(ctx context.Context, method string) (context.Context, func(), error) {
	// refuse records the refusal; reason is its class in the text log
	// (certs' reasons), the status message its detail.
	refuse := func(who, reason, serial string, err error) (context.Context, func(), error) {
		st := status.Convert(err)
		actor := who
		if actor == anonymous {
			actor = audit.ActorCoordinator
		}
		attrs := []any{"participant", who, "method", method, "code", st.Code().String(), "reason", reason, "error", st.Message()}
		if serial != "" {
			attrs = append(attrs, "serial", serial)
		}
		a.c.refusal(ctx, who, audit.Entry{Kind: audit.KindCallRefused, Actor: actor, Round: a.c.lastRoundNow(), Payload: audit.CallRefused{
			Method: method, Code: st.Code().String(), Reason: st.Message(), Serial: serial,
		}}, "call refused", attrs...)
		return nil, nil, err
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return refuse(anonymous, certs.ReasonNoCertificate, "", status.Error(codes.Unauthenticated, "no peer information"))
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return refuse(anonymous, certs.ReasonNoCertificate, "", status.Error(codes.Unauthenticated, "connection is not TLS"))
	}
	id, err := certs.PeerIdentity(info.State)
	if err != nil {
		return refuse(anonymous, certs.ReasonBadIdentity, "", status.Errorf(codes.Unauthenticated, "client certificate: %v", err))
	}
	leaf := info.State.PeerCertificates[0]
	serial := leaf.SerialNumber.Text(16)
	if a.crl.IsRevoked(leaf.SerialNumber) {
		a.c.metrics.refusedConnection(certs.ReasonRevoked)
		return refuse(id.Name, certs.ReasonRevoked, serial, status.Errorf(codes.PermissionDenied, "certificate %s of %s is revoked", serial, id.Name))
	}
	if err := a.c.authorize(id); err != nil {
		a.c.metrics.refusedConnection(certs.ReasonNotEnrolled)
		return refuse(id.Name, certs.ReasonNotEnrolled, "", status.Errorf(codes.PermissionDenied, "%v", err))
	}
	if a.c.disk.paused.Load() {
		return nil, nil, a.c.errDiskPaused(id.Name, method)
	}
	if err := a.c.recordCertificate(ctx, id.Name, leaf); err != nil {
		return nil, nil, status.Error(codes.Unavailable, "the audit log cannot record the connection; try again")
	}
	ctx, end := a.c.live.begin(context.WithValue(ctx, identityKey{}, id), leaf.SerialNumber, id.Name, method)
	return ctx, end, nil
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod == healthpb.Health_Check_FullMethodName || info.FullMethod == healthpb.Health_List_FullMethodName {
		return handler(ctx, req)
	}
	method := callMethod(info.FullMethod)
	ctx, end, err := a.check(ctx, method)
	if err != nil {
		return nil, err
	}
	defer end()
	leave, err := a.c.enterCall(ctx, method)
	if err != nil {
		return nil, err
	}
	defer leave()
	resp, err := handler(ctx, req)
	err = revokedDuringCall(ctx, err)
	a.c.callRefused(ctx, method, err)
	return resp, err
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == healthpb.Health_Watch_FullMethodName {
		return handler(srv, ss)
	}
	method := callMethod(info.FullMethod)
	ctx, end, err := a.check(ss.Context(), method)
	if err != nil {
		return err
	}
	defer end()
	leave, err := a.c.enterCall(ctx, method)
	if err != nil {
		return err
	}
	defer leave()
	err = handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	revoked := revokedDuringCall(ctx, err)
	// SubmitUpdate records its own refusals (update_refused), but not one
	// for a revocation it could not see.
	if info.FullMethod != submitUpdateMethod || revoked != err {
		a.c.callRefused(ctx, method, revoked)
	}
	return revoked
}

// maxMethodBytes bounds the method name a refusal records: the name of a
// method the coordinator does not serve is the caller's text, as long as
// its request headers allow.
const maxMethodBytes = 128

// callMethod is a call's method name as the text log and the audit log
// record it: an excerpt of at most maxMethodBytes.
func callMethod(full string) string { return excerpt.Of(full, maxMethodBytes) }

// unknownMethod answers a call to a method or service the coordinator does
// not serve. It is gRPC's unknown-service handler, so that such a call
// passes the stream interceptor like every other call: the caller is
// authenticated, and the refusal logged and audited within its quota
// (callRefused). gRPC's own answer (Unimplemented) ran no interceptor, so
// a caller could probe for methods unrecorded.
func unknownMethod(_ any, ss grpc.ServerStream) error {
	m, _ := grpc.MethodFromServerStream(ss)
	return status.Errorf(codes.Unimplemented, "unknown method %s", callMethod(m))
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

// refusalLogger logs every failed TLS handshake with its reason (another
// CA, expired, revoked, wrong role, not enrolled, …) and records it in the
// audit log, within the quota of refusals without a verified identity
// (quota.go), and remembers every accepted connection by its certificate
// so that a revocation can close it (revoke.go).
type refusalLogger struct {
	credentials.TransportCredentials
	c *Coordinator
}

func (r refusalLogger) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := r.TransportCredentials.ServerHandshake(conn)
	if err == nil {
		out, err = r.c.admitConnection(out, info)
		if ti, ok := info.(credentials.TLSInfo); err == nil && ok && len(ti.State.PeerCertificates) > 0 {
			out = r.c.live.track(out, ti.State.PeerCertificates[0].SerialNumber)
		}
	}
	if err != nil {
		ref := certs.Classify(err)
		r.c.metrics.refusedConnection(ref.Reason)
		remote := conn.RemoteAddr().String()
		attrs := []any{"remote", remote, "reason", ref.Reason}
		ev := audit.ConnectionRefused{Reason: ref.Reason, Remote: remote, Serial: ref.Serial}
		if !ref.Identity.IsZero() {
			attrs = append(attrs, "identity", ref.Identity.String())
			ev.Subject = ref.Identity.String()
		}
		if ref.Serial != "" {
			attrs = append(attrs, "serial", ref.Serial)
		}
		r.c.refusal(context.Background(), anonymous, event(audit.KindConnectionRefused, r.c.lastRoundNow(), ev),
			"connection refused", append(attrs, "error", err)...)
	}
	return out, info, err
}

func (r refusalLogger) Clone() credentials.TransportCredentials {
	return refusalLogger{TransportCredentials: r.TransportCredentials.Clone(), c: r.c}
}
