package coordinator_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// The test federation: a logistic regression on two features, so a model
// is 2·(2+1) = 6 parameters.
const (
	fedName   = "demo"
	numParams = 6
)

// federation is a directory of certificates laid out by fedtest and a
// coordinator configuration pointing at it.
type federation struct {
	*fedtest.Federation
	dir string
	cfg coordinator.Config
	// relayed, when set, is told each key relay a secureClient received.
	relayed func(name string, keys *fedguardv1.SecureKeys)
}

// newFederation enrols names (plus any extra certificate holders that are
// not enrolled in the configuration) in a fresh directory.
func newFederation(t *testing.T, enrolled []string, extra ...string) *federation {
	t.Helper()
	fed := fedtest.New(t, fedName, append(slices.Clone(enrolled), extra...)...)
	cfg := fed.Config(enrolled)
	cfg.MinParticipants = 2
	cfg.Model = coordinator.ModelConfig{
		Kind: "logreg", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"},
	}
	cfg.Training = coordinator.TrainingConfig{Rounds: 3, LocalEpochs: 1, LearningRate: 0.1, BatchSize: 8}
	cfg.CohortTimeout = coordinator.Duration(30 * time.Second)
	cfg.RoundTimeout = coordinator.Duration(30 * time.Second)
	cfg.StatsTimeout = coordinator.Duration(30 * time.Second)
	cfg.LongPoll = coordinator.Duration(5 * time.Second)
	cfg.KeepModels = 2
	cfg.Seed = 7
	return &federation{Federation: fed, dir: fed.Dir, cfg: cfg}
}

// server is a running coordinator.
type server struct {
	*fedtest.Coordinator
	c    *coordinator.Coordinator
	addr string

	mu      sync.Mutex
	results []coordinator.RoundResult
}

// start runs a coordinator for cfg on a loopback port, calling each of
// before on it before it serves. It is stopped and closed when the test
// ends unless stop was called.
func start(t *testing.T, cfg coordinator.Config, before ...func(*coordinator.Coordinator)) *server {
	t.Helper()
	return startHooked(t, cfg, before)
}

// startWith is start with more options (a logger, say).
func startWith(t *testing.T, cfg coordinator.Config, opts ...coordinator.Option) *server {
	t.Helper()
	return startHooked(t, cfg, nil, opts...)
}

func startHooked(t *testing.T, cfg coordinator.Config, before []func(*coordinator.Coordinator), opts ...coordinator.Option) *server {
	t.Helper()
	s := &server{}
	observe := coordinator.WithObserver(func(r coordinator.RoundResult) {
		s.mu.Lock()
		s.results = append(s.results, r)
		s.mu.Unlock()
	})
	s.Coordinator = fedtest.ServeHooked(t, cfg, before, append([]coordinator.Option{observe}, opts...)...)
	s.c, s.addr = s.Coordinator.Coordinator, s.Addr
	return s
}

// stop cancels Serve, waits for it and closes the coordinator; it returns
// Serve's result. Calling it again returns the same.
func (s *server) stop(*testing.T) error { return s.Stop() }

// waitServe waits for Serve to return on its own (training finished).
func (s *server) waitServe(t *testing.T, within time.Duration) error {
	t.Helper()
	return s.WaitServe(t, within)
}

// observed returns the round results the observer saw.
func (s *server) observed() []coordinator.RoundResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.results)
}

// waitObserved waits until this server's observer has seen round. The
// observer runs just after a round's commit, so a round can be in Rounds()
// a moment before the observer has it.
func (s *server) waitObserved(t *testing.T, round uint64, within time.Duration) []coordinator.RoundResult {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if obs := s.observed(); len(obs) > 0 && obs[len(obs)-1].Record.Round >= round {
			return obs
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer saw %d rounds after %v, want round %d among them", len(s.observed()), within, round)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// participant is a raw generated client holding participant name's
// certificate over its own connection.
type participant struct {
	name  string
	svc   fedguardv1.CoordinatorServiceClient
	conn  *grpc.ClientConn
	dials *atomic.Int32
}

func (f *federation) tlsFor(t *testing.T, name, addr string) *tls.Config {
	t.Helper()
	return f.ClientTLS(t, name, addr)
}

// dial connects as name with the given TLS configuration.
func dial(t *testing.T, name, addr string, tlsCfg *tls.Config) *participant {
	t.Helper()
	dials := new(atomic.Int32)
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", a)
		}),
	)
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &participant{name: name, svc: fedguardv1.NewCoordinatorServiceClient(conn), conn: conn, dials: dials}
}

// connect dials s as each of names.
func (f *federation) connect(t *testing.T, s *server, names ...string) []*participant {
	t.Helper()
	ps := make([]*participant, len(names))
	for i, n := range names {
		ps[i] = dial(t, n, s.addr, f.tlsFor(t, n, s.addr))
	}
	return ps
}

func (p *participant) health() healthpb.HealthClient { return healthpb.NewHealthClient(p.conn) }

// ctx is a context for one call, bounded so that a hung coordinator fails
// the test instead of hanging it.
func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// stats are one participant's feature statistics.
type stats struct {
	count      uint64
	sum, sumSq []float64
}

// statsOf computes the statistics of rows of two features.
func statsOf(rows ...[2]float64) stats {
	s := stats{count: uint64(len(rows)), sum: make([]float64, 2), sumSq: make([]float64, 2)}
	for _, r := range rows {
		for j, v := range r {
			s.sum[j] += v
			s.sumSq[j] += v * v
		}
	}
	return s
}

func (p *participant) reportStats(t *testing.T, s stats) {
	t.Helper()
	_, err := p.svc.ReportStats(callCtx(t, 10*time.Second), &fedguardv1.ReportStatsRequest{
		Stats: &fedguardv1.FeatureStats{Count: s.count, Sum: s.sum, SumSquares: s.sumSq},
	})
	if err != nil {
		t.Fatalf("%s: ReportStats = %v", p.name, err)
	}
}

// statsNeeded asks Join whether the feature scaling is still open.
func (p *participant) statsNeeded(t *testing.T) bool {
	t.Helper()
	resp, err := p.svc.Join(callCtx(t, 10*time.Second), &fedguardv1.JoinRequest{AgentVersion: "test"})
	if err != nil {
		t.Fatalf("%s: Join = %v", p.name, err)
	}
	return resp.GetStatsNeeded()
}

// waitScalingFixed polls Join until the scaling is fixed and returns when
// it first saw it fixed.
func waitScalingFixed(t *testing.T, p *participant, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if !p.statsNeeded(t) {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("feature scaling not fixed within %v", within)
	return time.Time{}
}

// startConnected starts a coordinator on f.cfg and connects names to it.
func (f *federation) startConnected(t *testing.T, names ...string) (*server, []*participant) {
	t.Helper()
	s := start(t, f.cfg)
	return s, f.connect(t, s, names...)
}

// startScaled is startConnected that also fixes the feature scaling, so
// that the first round can open.
func (f *federation) startScaled(t *testing.T, names ...string) (*server, []*participant) {
	t.Helper()
	s, ps := f.startConnected(t, names...)
	fixScaling(t, ps)
	return s, ps
}

// fixScaling has every participant report the same simple statistics and
// waits until the scaling is fixed.
func fixScaling(t *testing.T, ps []*participant) {
	t.Helper()
	for _, p := range ps {
		p.reportStats(t, statsOf([2]float64{0, 1}, [2]float64{2, 3}))
	}
	waitScalingFixed(t, ps[0], 10*time.Second)
}

// waitRound is one WaitRound call.
func (p *participant) waitRound(t *testing.T) (*fedguardv1.WaitRoundResponse, error) {
	return p.svc.WaitRound(callCtx(t, 30*time.Second), &fedguardv1.WaitRoundRequest{})
}

// assignment calls WaitRound until it gets an assignment that ok accepts
// (nil accepts any).
func (p *participant) assignment(t *testing.T, within time.Duration, ok func(*fedguardv1.RoundAssignment) bool) (*fedguardv1.RoundAssignment, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := p.waitRound(t)
		if err != nil {
			return nil, err
		}
		if resp.GetFinished() {
			return nil, errors.New("training finished")
		}
		if a := resp.GetAssignment(); a != nil {
			if ok == nil || ok(a) {
				return a, nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil, errors.New("no assignment in time")
}

// assignments gets an assignment for every participant concurrently (they
// must all be waiting for a cohort of all of them to open).
func assignments(t *testing.T, ps []*participant) []*fedguardv1.RoundAssignment {
	t.Helper()
	return assignmentsWhere(t, ps, nil)
}

// assignmentsWhere is assignments for assignments ok accepts.
func assignmentsWhere(t *testing.T, ps []*participant, ok func(*fedguardv1.RoundAssignment) bool) []*fedguardv1.RoundAssignment {
	t.Helper()
	out := make([]*fedguardv1.RoundAssignment, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { out[i], errs[i] = p.assignment(t, 20*time.Second, ok) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: WaitRound: %v", ps[i].name, err)
		}
	}
	return out
}

// getModel downloads round's global model.
func (p *participant) getModel(t *testing.T, round uint64) ([]float32, [32]byte, error) {
	stream, err := p.svc.GetModel(callCtx(t, 20*time.Second), &fedguardv1.GetModelRequest{Round: round})
	if err != nil {
		return nil, [32]byte{}, err
	}
	var (
		dst []float32
		asm *wire.Assembler
	)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, [32]byte{}, err
		}
		if asm == nil {
			dst = make([]float32, msg.GetNumParams())
			asm = wire.NewAssembler(dst)
		}
		if msg.GetRound() != round || msg.GetFormatVersion() != model.FormatVersion {
			t.Errorf("GetModel chunk for round %d format %d, want round %d format %d", msg.GetRound(), msg.GetFormatVersion(), round, model.FormatVersion)
		}
		if err := asm.Add(msg.GetOffset(), msg.GetData()); err != nil {
			t.Fatalf("GetModel chunk: %v", err)
		}
	}
	if asm == nil {
		t.Fatalf("GetModel(%d) sent no chunk", round)
	}
	if err := asm.Done(); err != nil {
		t.Fatalf("GetModel(%d): %v", round, err)
	}
	return dst, asm.Sum(), nil
}

// update is one participant's contribution to a round.
type update struct {
	delta   []float32
	samples uint64
	holdout *fedguardv1.Evaluation
}

// submit streams u as round's update: the header, then the chunks.
func (p *participant) submit(t *testing.T, round uint64, u update) (*fedguardv1.SubmitUpdateResponse, error) {
	enc := model.AppendBytes(nil, u.delta)
	sum := sha256.Sum256(enc)
	msgs := []*fedguardv1.SubmitUpdateRequest{{
		Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: uint64(len(u.delta)), SampleCount: u.samples, Sha256: sum[:], Holdout: u.holdout,
		}},
	}}
	if err := wire.Chunks(u.delta, func(off uint64, data []byte) error {
		msgs = append(msgs, chunkMsg(round, off, data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return p.send(t, msgs)
}

func chunkMsg(round, off uint64, data []byte) *fedguardv1.SubmitUpdateRequest {
	return &fedguardv1.SubmitUpdateRequest{
		Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: off, Data: slices.Clone(data)}},
	}
}

// send streams msgs as one SubmitUpdate call and returns its outcome.
func (p *participant) send(t *testing.T, msgs []*fedguardv1.SubmitUpdateRequest) (*fedguardv1.SubmitUpdateResponse, error) {
	stream, err := p.svc.SubmitUpdate(callCtx(t, 20*time.Second))
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the call; CloseAndRecv has its status
		}
	}
	return stream.CloseAndRecv()
}

// wantCode fails the test unless err has code want.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s = %v (code %v), want code %v", what, err, got, want)
	}
}

// fedAvgRef is the reference next model: start + Σ nᵢΔᵢ / Σ nᵢ, the
// weighted mean accumulated in float64 over the participants in name order,
// rounded to float32 and added to the float32 start.
func fedAvgRef(start []float32, updates map[string]update) []float32 {
	names := sortedNames(updates)
	var total float64
	for _, n := range names {
		total += float64(updates[n].samples)
	}
	out := make([]float32, len(start))
	for i := range start {
		var acc float64
		for _, n := range names {
			u := updates[n]
			acc += float64(u.samples) / total * float64(u.delta[i])
		}
		out[i] = float32(acc) + start[i]
	}
	return out
}

// ruleRef is the next model the coordinator must commit with the fedavg
// rule: start plus aggregation.FedAvg of the updates given in name order.
func ruleRef(t *testing.T, start []float32, updates map[string]update) []float32 {
	t.Helper()
	var ups []aggregation.Update
	for _, n := range sortedNames(updates) {
		u := updates[n]
		ups = append(ups, aggregation.Update{ID: n, Delta: slices.Clone(u.delta), Samples: u.samples})
	}
	out := make([]float32, len(start))
	if _, err := (aggregation.FedAvg{}).Aggregate(out, ups); err != nil {
		t.Fatalf("FedAvg.Aggregate: %v", err)
	}
	for i, v := range start {
		out[i] += v
	}
	// Whatever the rule's rounding, it must be the sample-weighted mean.
	ref := fedAvgRef(start, updates)
	for i := range out {
		if d := math.Abs(float64(out[i]) - float64(ref[i])); d > 1e-6*max(1, math.Abs(float64(ref[i]))) {
			t.Fatalf("FedAvg parameter %d = %v, the float64 weighted mean is %v", i, out[i], ref[i])
		}
	}
	return out
}

func sortedNames(updates map[string]update) []string {
	return slices.Sorted(maps.Keys(updates))
}

// refNorm is the L2 norm computed naively in float64.
func refNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// sameBits reports whether a and b are bit-for-bit equal.
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}
