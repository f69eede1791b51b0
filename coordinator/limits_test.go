package coordinator_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

// metricValue reads one unlabelled gauge, or one series of a labelled counter
// (label=value), from c's registry.
func metricValue(t *testing.T, c *coordinator.Coordinator, name, label, value string) float64 {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

// waitMetric polls until metric equals want or within passes.
func waitMetric(t *testing.T, c *coordinator.Coordinator, name string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for metricValue(t, c, name, "", "") != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", name, metricValue(t, c, name, "", ""), within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// header is the first message of an update of delta for round.
func header(round uint64, delta []float32) *fedguardv1.SubmitUpdateRequest {
	sum := sha256.Sum256(model.AppendBytes(nil, delta))
	return &fedguardv1.SubmitUpdateRequest{
		Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: uint64(len(delta)), SampleCount: 10, Sha256: sum[:],
		}},
	}
}

// slowSender sends round's update of delta one parameter every gap (gap
// 0: only the header and the first parameter, then nothing), without
// closing the stream. It returns when the call ends, with the time it
// ended and the call's error.
func (p *participant) slowSend(t *testing.T, round uint64, delta []float32, gap time.Duration) (time.Time, error) {
	stream, err := p.svc.SubmitUpdate(callCtx(t, 20*time.Second))
	if err != nil {
		return time.Now(), err
	}
	ended := make(chan error, 1)
	go func() { ended <- stream.RecvMsg(new(fedguardv1.SubmitUpdateResponse)) }()
	if err := stream.Send(header(round, delta)); err != nil {
		return time.Now(), <-ended
	}
	for i := range delta {
		data := model.AppendBytes(nil, delta[i:i+1])
		if err := stream.Send(chunkMsg(round, uint64(i), data)); err != nil {
			break
		}
		if gap == 0 {
			break
		}
		select {
		case err := <-ended:
			return time.Now(), err
		case <-time.After(gap):
		}
	}
	err = <-ended
	return time.Now(), err
}

// startLimited starts a federation of abc with the update stream limits
// and the round timeout, the cohort opening after 100ms, and returns its
// first round's assignment (the first participant's).
func startLimited(t *testing.T, roundTimeout time.Duration, limits coordinator.LimitsConfig) (*server, []*participant, *fedguardv1.RoundAssignment) {
	t.Helper()
	f := newFederation(t, abc)
	f.cfg.CohortTimeout = coordinator.Duration(100 * time.Millisecond)
	f.cfg.RoundTimeout = coordinator.Duration(roundTimeout)
	f.cfg.Limits = limits
	s, ps := f.startScaled(t, abc...)
	return s, ps, assignments(t, ps)[0]
}

// TestHalfSentUpdateEndsWithRound holds an update stream open across the
// round's deadline, half sent or trickling: the coordinator must end it
// when the round closes and drop its buffer. Before the limits, the
// stream stayed open as long as the client liked (one parameter a second
// kept it 30 s past the deadline) and each round left one buffer behind.
func TestHalfSentUpdateEndsWithRound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"half sent then silent", 0},
		{"one parameter every 300ms", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Neither the idle nor the rate limit may end the stream first.
			s, ps, asg := startLimited(t, 1500*time.Millisecond, coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Minute), UpdateMinRate: 1})
			round, deadline := asg.GetRound(), asg.GetDeadline().AsTime()

			var (
				wg      sync.WaitGroup
				slowErr error
				endedAt time.Time
			)
			wg.Go(func() { endedAt, slowErr = ps[0].slowSend(t, round, deltas(1), tc.gap) })
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 4*numParams, 5*time.Second)
			for _, p := range ps[1:] {
				if _, err := p.submit(t, round, update{delta: deltas(2), samples: 5}); err != nil {
					t.Fatalf("%s: SubmitUpdate = %v", p.name, err)
				}
			}
			wg.Wait()
			wantCode(t, "held update stream", slowErr, codes.FailedPrecondition)
			if late := endedAt.Sub(deadline); late > time.Second {
				t.Errorf("held update stream ended %v after the round's deadline, want within 1s", late)
			}
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 0, 2*time.Second)
			if recs := waitRounds(t, s.c, 1, 10*time.Second); len(recs[0].Participants) != 2 {
				t.Errorf("round 1 participants %v, want the two complete updates", recs[0].Participants)
			}
		})
	}
}

// TestUpdateStreamStall: an update stream that goes silent for
// limits.update_idle, or trickles below limits.update_min_rate, is ended
// with ResourceExhausted long before the round's deadline, and its buffer
// is dropped. Before the limits, both were held until the deadline.
func TestUpdateStreamStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gap  time.Duration
	}{
		{"silent after the first parameter", 0},
		{"one parameter every 100ms", 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, ps, asg := startLimited(t, time.Minute, coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(250 * time.Millisecond), UpdateMinRate: 1000})
			round := asg.GetRound()
			began := time.Now()
			ended, err := ps[0].slowSend(t, round, deltas(1), tc.gap)
			wantCode(t, "stalled update stream", err, codes.ResourceExhausted)
			if took := ended.Sub(began); took > 5*time.Second {
				t.Errorf("stalled stream ended after %v, want about 250ms", took)
			}
			waitMetric(t, s.c, "fedguard_update_buffer_bytes", 0, 2*time.Second)
			// The participant may still send its update properly.
			if _, err := ps[0].submit(t, round, update{delta: deltas(1), samples: 5}); err != nil {
				t.Errorf("SubmitUpdate after the stalled stream = %v", err)
			}
		})
	}
}

// TestSilentUpdateStream (issue 12): a SubmitUpdate stream that never sends
// its header is ended with ResourceExhausted after limits.update_idle, and
// the refusal is audited. Before, the first Recv waited for as long as the
// client liked, holding one of its call slots (here until the client's own
// 20 s deadline: DeadlineExceeded).
func TestSilentUpdateStream(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(250 * time.Millisecond), UpdateMinRate: 1000}
	s, ps := f.startScaled(t, abc...)
	stream, err := ps[0].svc.SubmitUpdate(callCtx(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = stream.RecvMsg(new(fedguardv1.SubmitUpdateResponse))
	wantCode(t, "silent update stream", err, codes.ResourceExhausted)
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("silent stream ended after %v, want about 250ms", took)
	}
	s.stop(t)
	refused := fedtest.AuditEvents(t, f.cfg, audit.KindUpdateRefused)
	if len(refused) != 1 || refused[0].Actor != ps[0].name || fedtest.Payload[audit.UpdateRefused](t, refused[0]).Code != codes.ResourceExhausted.String() {
		t.Errorf("update_refused events %+v, want one ResourceExhausted of %s", refused, ps[0].name)
	}
}

// TestConnectionsPerParticipant opens connections with one certificate
// until limits.max_connections: the next is refused (and counted), and
// closing one frees its slot. Before the limit, one certificate opened
// 1,000 connections.
func TestConnectionsPerParticipant(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Limits = coordinator.LimitsConfig{MaxConnections: 3}
	s := start(t, f.cfg)
	join := func(p *participant) error {
		_, err := p.svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	}
	var open []*participant
	for i := range 5 {
		p := dial(t, "hospital-a", s.addr, f.tlsFor(t, "hospital-a", s.addr))
		err := join(p)
		if i < 3 {
			if err != nil {
				t.Fatalf("connection %d: Join = %v", i+1, err)
			}
			open = append(open, p)
			continue
		}
		wantCode(t, "Join over a connection beyond the limit", err, codes.Unavailable)
		p.conn.Close()
	}
	// The coordinator closes a refused connection, then counts it: the
	// client can see the refusal first.
	refused := func() float64 {
		return metricValue(t, s.c, "fedguard_connections_refused_total", "reason", coordinator.ReasonTooManyConnections)
	}
	for deadline := time.Now().Add(5 * time.Second); refused() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := refused(); got < 2 {
		t.Errorf("connections refused for too_many_connections = %v, want at least 2", got)
	}
	// Another participant is not affected.
	if err := join(f.connect(t, s, "hospital-b")[0]); err != nil {
		t.Errorf("hospital-b: Join = %v", err)
	}
	open[0].conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := dial(t, "hospital-a", s.addr, f.tlsFor(t, "hospital-a", s.addr))
		err := join(p)
		if err == nil {
			break
		}
		p.conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("Join after closing a connection = %v, want the freed slot", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRequestHeadersBounded (trial): a call's request headers are bounded
// far below gRPC's default of 16 MiB. A participant sending 15 MB of
// metadata with each call over its 8 connections held the coordinator at
// 410 MB (from 150 MB) for as long as it kept calling, since gRPC decodes
// a call's headers before any limit of the coordinator runs. An agent's
// headers are a few hundred bytes; a call with more than the bound is
// refused and the connection stays usable.
func TestRequestHeadersBounded(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	s := start(t, f.cfg)
	p := f.connect(t, s, "hospital-a")[0]
	join := func(meta int) error {
		ctx := callCtx(t, 5*time.Second)
		if meta > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-filler", strings.Repeat("a", meta))
		}
		_, err := p.svc.Join(ctx, &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	}
	if err := join(1 << 10); err != nil {
		t.Fatalf("Join with 1 KiB of metadata: %v", err)
	}
	for _, meta := range []int{64 << 10, 1 << 20} {
		if err := join(meta); err == nil {
			t.Errorf("Join with %d bytes of metadata was served", meta)
		}
	}
	if err := join(0); err != nil {
		t.Fatalf("Join after the refused calls: %v", err)
	}
}

// TestCallsPerParticipant fills limits.max_calls with long polls over one
// connection: a call over another connection of the same certificate is
// refused with ResourceExhausted until a long poll ends.
func TestCallsPerParticipant(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	f.cfg.Limits = coordinator.LimitsConfig{MaxCalls: 2}
	f.cfg.LongPoll = coordinator.Duration(20 * time.Second)
	s := start(t, f.cfg)
	holder := f.connect(t, s, "hospital-a")[0]
	other := f.connect(t, s, "hospital-a")[0]
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		// In the statistics phase a long poll waits for its whole time;
		// one that ends early (a loaded machine) is asked again, so two
		// stay in flight until cancel.
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = holder.svc.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
			}
		})
	}
	join := func() error {
		_, err := other.svc.Join(callCtx(t, 5*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err = join(); status.Code(err) != codes.ResourceExhausted; err = join() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("Join with 2 long polls in flight = %v, want ResourceExhausted", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := metricValue(t, s.c, "fedguard_connections_refused_total", "reason", coordinator.ReasonTooManyCalls); got < 1 {
		t.Errorf("calls refused for too_many_calls = %v, want at least 1", got)
	}
	cancel()
	wg.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for err = join(); err != nil; err = join() {
		if time.Now().After(deadline) {
			t.Fatalf("Join after the long polls ended = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Other participants were never limited.
	if err := f.connect(t, s, "hospital-b")[0].statsNeeded(t); !err {
		t.Errorf("hospital-b: stats not needed in the statistics phase")
	}
}

// stallingClient is a participant's client whose SecureAggregate stream
// stalls before it sends its message of phase at: it sends nothing more
// and waits for the coordinator to end the stream, whose error the Send
// returns.
type stallingClient struct {
	fedguardv1.CoordinatorServiceClient
	at secagg.Phase
}

func (c stallingClient) SecureAggregate(ctx context.Context, opts ...grpc.CallOption) (fedguardv1.CoordinatorService_SecureAggregateClient, error) {
	s, err := c.CoordinatorServiceClient.SecureAggregate(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &stallingStream{CoordinatorService_SecureAggregateClient: s, at: c.at}, nil
}

type stallingStream struct {
	fedguardv1.CoordinatorService_SecureAggregateClient
	at   secagg.Phase
	sent secagg.Phase // the phase of the last message sent
}

func (s *stallingStream) Send(req *fedguardv1.SecureAggregateRequest) error {
	next := s.sent + 1
	if req.GetMasked().GetOffset() > 0 {
		next = s.sent // a later chunk of the masked input
	}
	if next == s.at {
		for {
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
	}
	s.sent = next
	return s.CoordinatorService_SecureAggregateClient.Send(req)
}

// TestSecureStreamStall (issue 12, item 7): a SecureAggregate stream that
// goes silent is under limits.update_idle as an update stream is: it is
// ended with ResourceExhausted, the refusal is in the text log and in the
// audit log once (call_refused, as the stream's other refusals), and the
// others' session goes on without it.
// Before, the stream stayed open as long as the client liked (here until
// its own 15 s deadline: DeadlineExceeded), silent from the start or
// between two phases.
func TestSecureStreamStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		at   secagg.Phase
	}{
		{"silent after opening", secagg.PhaseAdvertiseKeys},
		{"silent before sharing keys", secagg.PhaseShareKeys},
		{"silent before the consistency check", secagg.PhaseConsistencyCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := secureFederation(t)
			f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Second), UpdateMinRate: 1000}
			s, logs := startLogged(t, f.cfg)
			ps := f.connect(t, s, abcd...)
			fixScaling(t, ps)
			asgs := assignments(t, ps)
			ups := secureUpdates()
			staller := *ps[3]
			staller.svc = stallingClient{CoordinatorServiceClient: ps[3].svc, at: tc.at}

			var wg sync.WaitGroup
			errs := make([]error, len(ps))
			for i, p := range ps {
				if i == 3 {
					p = &staller
				}
				wg.Go(func() {
					ctx := callCtx(t, 15*time.Second)
					if i == 3 {
						began := time.Now()
						errs[i] = f.secureClient(ctx, p, asgs[i], ups[p.name].delta, ups[p.name].samples, 0)
						if took := time.Since(began); took > 10*time.Second {
							t.Errorf("stalled stream ended after %v, want about limits.update_idle (1s)", took)
						}
						return
					}
					errs[i] = f.secureClient(ctx, p, asgs[i], ups[p.name].delta, ups[p.name].samples, 0)
				})
			}
			wg.Wait()
			wantCode(t, "stalled SecureAggregate stream", errs[3], codes.ResourceExhausted)
			if msg := status.Convert(errs[3]).Message(); msg == "" {
				t.Errorf("stalled stream's status has no message")
			}
			for i, err := range errs[:3] {
				if err != nil {
					t.Errorf("%s: %v", ps[i].name, err)
				}
			}
			// The masked inputs are in the sum from the consistency check on.
			want := 3
			if tc.at > secagg.PhaseMaskedInput {
				want = 4
			}
			recs := waitRounds(t, s.c, 1, 30*time.Second)
			if got := recs[0].Secure[0].Survivors; len(got) != want {
				t.Errorf("round 1 survivors %v, want %d", got, want)
			}
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			if n := len(fedtest.AuditEvents(t, f.cfg, audit.KindUpdateRefused)); n != 0 {
				t.Errorf("%d update_refused events, want none (a secure stream's refusal is a call_refused)", n)
			}
			var refused []audit.CallRefused
			for _, e := range fedtest.AuditEvents(t, f.cfg, audit.KindCallRefused) {
				p := fedtest.Payload[audit.CallRefused](t, e)
				if e.Actor != "hospital-d" {
					t.Errorf("call_refused by %s, want hospital-d", e.Actor)
				}
				refused = append(refused, p)
			}
			if len(refused) != 1 || refused[0].Code != codes.ResourceExhausted.String() || !strings.HasSuffix(refused[0].Method, "/SecureAggregate") {
				t.Errorf("call_refused events %+v, want one ResourceExhausted of SecureAggregate", refused)
			}
			lines := lines(t, logs, "call refused")
			if len(lines) != 1 || lines[0]["participant"] != "hospital-d" || lines[0]["code"] != codes.ResourceExhausted.String() {
				t.Errorf("call refused lines %v, want one for hospital-d", lines)
			}
		})
	}
}

// TestModelDownloadStall (issue 12, item 7): a participant that calls
// GetModel and does not read is cut once its download has been stalled
// for limits.update_idle, with ResourceExhausted, logged and audited as a
// refused call. The client is a real mTLS client with gRPC's smallest
// flow-control windows (so that a model of about 1 MiB fills them) that
// reads nothing until the coordinator has given up. Before the fix the
// coordinator's Send stayed blocked as long as the client lived: no
// refusal was ever logged, and the client could then read the whole
// model.
// dialWindows connects as name with static flow-control windows of
// window bytes (gRPC's probing for larger windows off).
func dialWindows(t *testing.T, f *federation, name, addr string, window int32) *participant {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(f.tlsFor(t, name, addr))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)),
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &participant{name: name, svc: fedguardv1.NewCoordinatorServiceClient(conn), conn: conn, dials: new(atomic.Int32)}
}

// dialWide connects as name with windows of 16 MiB, larger than any model
// of these tests: the coordinator can send a whole model to it without
// waiting for the client to read.
func dialWide(t *testing.T, f *federation, name, addr string) *participant {
	return dialWindows(t, f, name, addr, 16<<20)
}

// padCertificate issues name a new certificate from the federation's CA,
// the same as its own but padded with a private, non-critical extension
// to about size bytes (DER), and puts it in place of the old one.
func padCertificate(t *testing.T, f *federation, name string, size int) {
	t.Helper()
	files := certs.Local(f.dir)
	ca, err := tls.LoadX509KeyPair(files.CACert(), filepath.Join(f.dir, "ca", "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(files.Cert(name), files.Key(name))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *kp.Leaf
	tmpl.SerialNumber = new(big.Int).Add(kp.Leaf.SerialNumber, big.NewInt(1))
	tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: make([]byte, size-len(kp.Leaf.Raw)-16)}}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Leaf, kp.Leaf.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Cert(name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSecureReplyStall (issue 12, item 7): a SecureAggregate member that
// stops reading the coordinator's replies is cut once a reply has waited
// limits.update_idle to go out, with ResourceExhausted, logged and
// audited once as a refused call, and the others' session goes on
// without it.
//
// A Send blocks only once gRPC's 64 KiB write quota of the stream and the
// client's window (64 KiB, static here) are both used up, so the member
// must leave more than 128 KiB of replies unread. Its key relay does:
// ten members whose certificates (relayed with their keys) are padded to
// 15.5 KiB. The staller sends its advertisement, reads nothing, builds its
// shares from the relays the others received, and sends them; the reply
// to them cannot go out. Without sendBounded (a plain Send) the handler
// stayed blocked in Send until the client went away: no refusal in 20 s.
func TestSecureReplyStall(t *testing.T) {
	t.Parallel()
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("hospital-%02d", i)
	}
	f := newFederation(t, names)
	f.cfg.Secure = true
	// The round closes with the nine others; it opens with all ten, who
	// all wait for it well within the cohort timeout.
	f.cfg.MinParticipants = len(names) - 1
	f.cfg.Training.Rounds = 1
	f.cfg.SecAgg.PhaseTimeout = coordinator.Duration(20 * time.Second)
	f.cfg.RoundTimeout = coordinator.Duration(40 * time.Second)
	f.cfg.CohortTimeout = coordinator.Duration(20 * time.Second)
	f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(2 * time.Second), UpdateMinRate: 1000}
	for _, n := range names {
		padCertificate(t, f, n, 15<<10+512)
	}
	s, logs := startLogged(t, f.cfg)
	ps := f.connect(t, s, names[:9]...)
	staller := dialWindows(t, f, names[9], s.addr, 1<<16)
	all := append(slices.Clone(ps), staller)
	fixScaling(t, all)
	asgs := assignments(t, all)
	relays := make(chan *fedguardv1.SecureKeys, len(ps))
	f.relayed = func(_ string, keys *fedguardv1.SecureKeys) { relays <- keys }

	ups := map[string]secureUpdate{}
	for i, n := range names {
		d := make([]float32, numParams)
		for j := range d {
			d[j] = float32(i+1)*0.01 - float32(j)*0.02
		}
		ups[n] = secureUpdate{delta: d, samples: uint64(5 + i)}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Go(func() {
			errs[i] = f.secureClient(callCtx(t, 60*time.Second), p, asgs[i], ups[p.name].delta, ups[p.name].samples, 0)
		})
	}
	refusals := func() []map[string]any {
		var out []map[string]any
		for _, l := range lines(t, logs, "call refused") {
			if l["participant"] == staller.name {
				out = append(out, l)
			}
		}
		return out
	}
	relay, err := stallReplies(callCtx(t, 60*time.Second), f, staller, asgs[9], relays, refusals)
	wg.Wait()
	wantCode(t, "SecureAggregate of a member that stopped reading", err, codes.ResourceExhausted)
	if relay < 128<<10 {
		t.Errorf("the staller's key relay is %d bytes; the test needs more than 128 KiB (write quota and window)", relay)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", ps[i].name, err)
		}
	}
	if l := refusals(); len(l) != 1 || l[0]["code"] != codes.ResourceExhausted.String() ||
		!strings.Contains(fmt.Sprint(l[0]["error"]), "reply stalled") {
		t.Errorf("call refused lines of %s: %v, want one ResourceExhausted for the stalled reply", staller.name, l)
	}
	recs := waitRounds(t, s.c, 1, 60*time.Second)
	if got := recs[0].Secure[0].Survivors; len(got) != len(ps) || slices.Contains(got, staller.name) {
		t.Errorf("round 1 survivors %v, want the %d others", got, len(ps))
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := countKinds(t, f.cfg)["call_refused/"+staller.name]; n != 1 {
		t.Errorf("%d call_refused events of %s, want 1", n, staller.name)
	}
}

// stallReplies is a member of a secure round that never reads until it is
// refused: it advertises its keys, builds its shares from the relays the
// other members received (relays), sends them, and waits until refused
// reports the refusal. Then it reads what is left: it returns the size of
// its key relay and the stream's final error.
func stallReplies(ctx context.Context, f *federation, p *participant, asg *fedguardv1.RoundAssignment, relays <-chan *fedguardv1.SecureKeys, refused func() []map[string]any) (int, error) {
	start, err := manifest.Digest(asg.GetManifest())
	if err != nil {
		return 0, err
	}
	plan, err := secureround.FromProto(fedName, start, asg.GetRound(), asg.GetAttempt(), numParams, asg.GetSecure())
	if err != nil {
		return 0, err
	}
	b, members, id, ok := plan.Bucket(p.name)
	if !ok {
		return 0, fmt.Errorf("%s not in the plan", p.name)
	}
	files := certs.Local(f.dir)
	kp, err := tls.LoadX509KeyPair(files.Cert(p.name), files.Key(p.name))
	if err != nil {
		return 0, err
	}
	ca, err := certs.LoadCertificate(files.CACert())
	if err != nil {
		return 0, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	var peerKeys map[uint32]any
	cl, err := secagg.NewClient(plan.Session(b), id, kp.PrivateKey.(crypto.Signer), secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := peerKeys[id]; ok {
			return k, nil
		}
		return nil, errors.New("unknown peer")
	}), rand.Reader)
	if err != nil {
		return 0, err
	}
	stream, err := p.svc.SecureAggregate(ctx)
	if err != nil {
		return 0, err
	}
	send := func(req *fedguardv1.SecureAggregateRequest) error {
		req.Round, req.Attempt = asg.GetRound(), asg.GetAttempt()
		return stream.Send(req)
	}
	adv, err := cl.AdvertiseKeys()
	if err != nil {
		return 0, err
	}
	if err := send(&fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Advertise{Advertise: wire.AdvertiseToProto(adv)}}); err != nil {
		return 0, err
	}
	// Every other member's advertisement, from the relays the others got.
	byID := map[uint32]*fedguardv1.SecurePeer{}
	for len(byID) < len(members)-1 {
		select {
		case keys := <-relays:
			for _, pr := range keys.GetPeers() {
				if pr.GetId() != id {
					byID[pr.GetId()] = pr
				}
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	merged := &fedguardv1.SecureKeys{}
	for _, k := range slices.Sorted(maps.Keys(byID)) {
		merged.Peers = append(merged.Peers, byID[k])
	}
	peers, err := wire.KeysFromProto(merged, len(members))
	if err != nil {
		return 0, err
	}
	if peerKeys, err = wire.PeerKeys(peers, fedName, members, roots, time.Now()); err != nil {
		return 0, err
	}
	var advs []*secagg.AdvertiseKeys
	for _, pr := range peers {
		advs = append(advs, pr.Advertise)
	}
	sk, err := cl.ShareKeys(advs)
	if err != nil {
		return 0, err
	}
	if err := send(&fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Shares{Shares: wire.SharesToProto(sk)}}); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(refused()) == 0 {
		if time.Now().After(deadline) {
			return 0, errors.New("no refusal 20 s after the member stopped reading, want one after about limits.update_idle (2s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	relay := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			return relay, err
		}
		if k := resp.GetKeys(); k != nil {
			relay = proto.Size(k)
		}
	}
}

func TestModelDownloadStall(t *testing.T) {
	t.Parallel()
	f := newFederation(t, abc)
	// 2·512 + 512·512 + 512·2 weights and their biases: about 1 MiB of
	// parameters, far more than the 64 KiB windows hold.
	f.cfg.Model.Kind, f.cfg.Model.Hidden = "mlp", []int{512, 512}
	f.cfg.Limits = coordinator.LimitsConfig{UpdateIdle: coordinator.Duration(time.Second), UpdateMinRate: 1000}
	s, logs := startLogged(t, f.cfg)
	ps := f.connect(t, s, abc...)
	fixScaling(t, ps)
	round := assignments(t, ps)[0].GetRound()

	conn, err := grpc.NewClient("passthrough:///"+s.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(f.tlsFor(t, abc[0], s.addr))),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := fedguardv1.NewCoordinatorServiceClient(conn).GetModel(callCtx(t, 30*time.Second), &fedguardv1.GetModelRequest{Round: round})
	if err != nil {
		t.Fatal(err)
	}
	refused := func() []map[string]any {
		var out []map[string]any
		for _, l := range lines(t, logs, "call refused") {
			if m, _ := l["method"].(string); strings.HasSuffix(m, "/GetModel") {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(refused()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no GetModel refusal logged 10 s after a download nobody reads, want one after about limits.update_idle (1s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := refused(); len(l) != 1 || l[0]["participant"] != abc[0] || l[0]["code"] != codes.ResourceExhausted.String() {
		t.Errorf("GetModel refusals logged: %v, want one ResourceExhausted for %s", l, abc[0])
	}
	// The client now reads what had gone out, then the refusal.
	var got, total uint64
	for {
		msg, err := stream.Recv()
		if err != nil {
			wantCode(t, "GetModel after the stall", err, codes.ResourceExhausted)
			break
		}
		got, total = got+uint64(len(msg.GetData())), 4*msg.GetNumParams()
	}
	if total < 1<<20 || got >= total {
		t.Errorf("the stalled download delivered %d of %d bytes, want a model of 1 MiB or more, not all of it", got, total)
	}
	// Another download of the same participant is served. It goes over
	// a connection whose windows hold the whole model, so that the
	// coordinator's sends never wait for this reader: with the harness's
	// connection (64 KiB windows at first) a process starved for a second
	// (race detector, GOMAXPROCS=1, ten test processes on two cores) read
	// too late, and this honest download was cut by the same 1 s
	// update_idle (6 runs in 30, "model download stalled").
	wide := dialWide(t, f, abc[0], s.addr)
	if _, _, err := wide.getModel(t, round); err != nil {
		t.Errorf("GetModel after the stalled one = %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := countKinds(t, f.cfg)["call_refused/"+abc[0]]; n != 1 {
		t.Errorf("%d call_refused events of %s, want 1", n, abc[0])
	}
}
