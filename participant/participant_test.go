package participant_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

const (
	federation = "testfed"
	hospital   = "hospital-a"
	dataFile   = "testdata/wdbc60.csv"
)

// features are the columns of testdata/wdbc60.csv except id and diagnosis.
var features = []string{
	"mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
	"mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry", "mean_fractal_dimension",
	"se_radius", "se_texture", "se_perimeter", "se_area", "se_smoothness",
	"se_compactness", "se_concavity", "se_concave_points", "se_symmetry", "se_fractal_dimension",
	"worst_radius", "worst_texture", "worst_perimeter", "worst_area", "worst_smoothness",
	"worst_compactness", "worst_concavity", "worst_concave_points", "worst_symmetry", "worst_fractal_dimension",
}

func testSpec() *fedguardv1.ModelSpec {
	return &fedguardv1.ModelSpec{
		FormatVersion: model.FormatVersion,
		Kind:          fedguardv1.ModelKind_MODEL_KIND_LOGREG,
		Features:      slices.Clone(features),
		Label:         "diagnosis",
		Classes:       []string{"B", "M"},
		NumParams:     uint64((len(features) + 1) * 2),
	}
}

func newTrainer() *participant.LocalTrainer {
	return &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Seed: 7}
}

// wireDigest is the SHA-256 of params in format version 1, computed here
// independently of the code under test.
func wireDigest(t *testing.T, params []float32) []byte {
	t.Helper()
	h := sha256.New()
	if err := wire.Chunks(params, func(_ uint64, data []byte) error { h.Write(data); return nil }); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// pki is a throwaway federation (fedtest) with one coordinator and one
// hospital.
type pki struct {
	*fedtest.Federation
	ca                   *x509.Certificate
	serverTLS, clientTLS *tls.Config
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	f := fedtest.New(t, federation, hospital)
	ca, err := certs.LoadCertificate(f.Files().CACert())
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{Federation: f, ca: ca, serverTLS: f.ServerTLS(t)}
	p.clientTLS = p.client(t, ca, f, hospital)
	return p
}

// client returns a participant TLS config that trusts ca and presents
// participant name's certificate from holder.
func (p *pki) client(t *testing.T, ca *x509.Certificate, holder *fedtest.Federation, name string) *tls.Config {
	t.Helper()
	cfg, err := certs.ClientConfig(certs.ClientOptions{
		CA: ca, CertFile: holder.Files().Cert(name), KeyFile: holder.Files().Key(name),
		Federation: federation, ServerName: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve runs fake (a fakeCoordinator or one built on it) on addr
// ("127.0.0.1:0" for any port) until the test ends or the returned server
// is stopped.
func (p *pki) serve(t *testing.T, fake fedguardv1.CoordinatorServiceServer, addr string) (*grpc.Server, string) {
	t.Helper()
	lis, err := fedtest.Listen(addr) // the old listener's port may take a moment to free up
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.serverTLS)))
	fedguardv1.RegisterCoordinatorServiceServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return srv, lis.Addr().String()
}

// agentFor serves fake on a loopback port until the test ends and returns
// an agent of the pki's hospital on it, with the test trainer, trusting
// fake's keys and configured by edits.
func (p *pki) agentFor(t *testing.T, fake *fakeCoordinator, edits ...func(*participant.Config)) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	return newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), edits...)
}

// record is one update the fake coordinator accepted.
type record struct {
	asg    *fedguardv1.RoundAssignment
	start  []float32
	header *fedguardv1.UpdateHeader
	delta  []float32
}

// link is a round the fake closed: the global model after it and the
// signed manifest that vouches for that model.
type link struct {
	global []float32
	round  manifest.Round
	env    []byte
	digest [32]byte
}

// accepted is what an honest agent persists once it accepted l's manifest.
func (l link) accepted() *manifest.Accepted {
	return &manifest.Accepted{Round: l.round.Round, Digest: hex.EncodeToString(l.digest[:])}
}

// fakeCoordinator runs a federation of one hospital: every update is
// accepted and added to the global model, and each accepted update closes
// the round (with a signed manifest) and opens the next one.
type fakeCoordinator struct {
	fedguardv1.UnimplementedCoordinatorServiceServer
	t      *testing.T
	spec   *fedguardv1.ModelSpec
	rounds uint64
	signer *manifest.Signer

	// Fault injection; nil means none.
	joinErr   error
	tamper    func(call int, msg *fedguardv1.GetModelResponse)
	onWait    func(ctx context.Context, round uint64) error
	submitErr func(call int) error
	// offer sees every assignment WaitRound is about to send, with f.mu
	// held, and returns the one to send (a malicious coordinator).
	offer func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment
	// serveManifest sees every envelope GetManifest is about to send, with
	// f.mu held, and returns the one to send.
	serveManifest func(round uint64, env []byte) []byte
	// answerManifest, when set, answers GetManifest instead (f.mu held).
	answerManifest func(round uint64) (*fedguardv1.GetManifestResponse, error)
	// rotate, when set, runs before the manifest of round n is signed
	// (f.mu held): it may replace f.signer, and returns the key rotations
	// that manifest carries.
	rotate func(n uint64) []json.RawMessage
	// WaitRound sends the last closed round's manifest with finished, as
	// the coordinator does; final, when set, replaces it with the
	// envelope it returns for it (nil: none) (f.mu held).
	final func(env []byte) []byte

	mu                        sync.Mutex
	round                     uint64
	attempt                   uint32
	global                    []float32
	scaling                   *fedguardv1.FeatureScaling
	stats                     []*fedguardv1.FeatureStats
	joins, getModels, submits int
	records                   []record
	// chain[r] is round r's model and manifest; chain[0], the initial
	// model, is signed once the scaling is known. The open round starts
	// from chain[round-1].
	chain         []link
	manifestCalls []uint64
	refusals      []*fedguardv1.ReportRefusalRequest
	validations   []*fedguardv1.ReportValidationRequest
	// onValidation sees every ReportValidation request, with f.mu held.
	onValidation func(req *fedguardv1.ReportValidationRequest)
}

func newFake(t *testing.T, rounds uint64) *fakeCoordinator {
	t.Helper()
	spec := testSpec()
	rng := rand.New(rand.NewPCG(1, 2))
	global := make([]float32, spec.GetNumParams())
	for i := range global {
		global[i] = float32(rng.NormFloat64() * 0.01)
	}
	signer, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCoordinator{t: t, spec: spec, rounds: rounds, signer: signer, round: 1, attempt: 1, global: global}
}

// keys returns the public keys an agent of this fake's federation pins.
func (f *fakeCoordinator) keys() manifest.PublicKeys { return f.signer.Public() }

// manifestRound returns the manifest predicate of global as the model of
// round n, its parent being chain[n-1], as the coordinator would write it.
// f.mu must be held.
func (f *fakeCoordinator) manifestRound(n uint64, global []float32, included []manifest.Contributor) manifest.Round {
	// The coordinator writes its configuration's model object.
	spec, err := json.Marshal(map[string]any{
		"kind": model.Kind(f.spec.GetKind()).String(), "features": f.spec.GetFeatures(), "label": f.spec.GetLabel(),
		"classes": f.spec.GetClasses(), "hidden": f.spec.GetHidden(),
	})
	if err != nil {
		f.t.Errorf("marshal model spec: %v", err)
	}
	scaling := dataset.Scaling{Mean: f.scaling.GetMean(), Std: f.scaling.GetStd()}.Digest()
	r := manifest.Round{
		Federation:    federation,
		Round:         n,
		ModelSHA256:   hex.EncodeToString(wireDigest(f.t, global)),
		NumParams:     uint64(len(global)),
		ModelSpec:     spec,
		ScalingSHA256: hex.EncodeToString(scaling[:]),
		Parameters:    []byte(`{}`),
		Included:      included,
		Excluded:      []manifest.Exclusion{},
		Closed:        time.Now(),
	}
	if n > 0 {
		r.Attempt = f.attempt
		r.Parent = hex.EncodeToString(f.chain[n-1].digest[:])
		r.Rule = "fedavg"
	}
	return r
}

// sign signs r with s. It runs on server goroutines too, so it reports
// failures with Errorf.
func sign(t *testing.T, s *manifest.Signer, r manifest.Round) ([]byte, [32]byte) {
	env, digest, err := manifest.Sign(s, r)
	if err != nil {
		t.Errorf("manifest.Sign(round %d) = %v", r.Round, err)
	}
	return env, digest
}

// closeLocked makes global the model of round len(f.chain) and signs its
// manifest. f.mu must be held.
func (f *fakeCoordinator) closeLocked(global []float32, included []manifest.Contributor) {
	r := f.manifestRound(uint64(len(f.chain)), global, included)
	if f.rotate != nil {
		r.KeyRotations = f.rotate(r.Round)
	}
	env, digest := sign(f.t, f.signer, r)
	f.chain = append(f.chain, link{global: slices.Clone(global), round: r, env: env, digest: digest})
	f.global = slices.Clone(global)
}

// advanceOnSitOut makes the fake close the open round with name's update
// (advanceLocked) when the agent reports that it sits the round out (a
// validation report of the round without training): a hospital that sits
// out does not hold the federation up.
func (f *fakeCoordinator) advanceOnSitOut(name string) {
	f.onValidation = func(req *fedguardv1.ReportValidationRequest) {
		if !req.GetTraining() && req.GetRound() == f.round {
			f.advanceLocked(name)
		}
	}
}

// advanceLocked closes the open round with an update from another
// hospital, name, as if this one had not been in its cohort, and opens the
// next. f.mu must be held.
func (f *fakeCoordinator) advanceLocked(name string) {
	next := slices.Clone(f.global)
	for i := range next {
		next[i] += 0.001 * float32(i%7+1)
	}
	d := sha256.Sum256([]byte(name))
	f.closeLocked(next, []manifest.Contributor{{Name: name, Samples: 100, UpdateSHA256: hex.EncodeToString(d[:]), Norm: 1}})
	f.round++
	f.attempt = 1
}

// restoreLocked puts the fake back in the state it had while round was
// open, as a coordinator restored from an old backup would be: the rounds
// from round on are forgotten. f.mu must be held.
func (f *fakeCoordinator) restoreLocked(round uint64) {
	f.chain = f.chain[:round]
	f.global = slices.Clone(f.chain[round-1].global)
	f.round, f.attempt = round, 1
}

// reportStats reports the reference trainer's statistics, as the first
// hospital of the federation would have done, so that the fake can sign its
// initial model (and advance) before any agent joins.
func (f *fakeCoordinator) reportStats(t *testing.T) {
	t.Helper()
	st, err := newTrainer().Prepare(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReportStats(context.Background(), &fedguardv1.ReportStatsRequest{Stats: &fedguardv1.FeatureStats{
		Count: st.Count, Sum: st.Sum, SumSquares: st.SumSquares,
	}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeCoordinator) Join(ctx context.Context, _ *fedguardv1.JoinRequest) (*fedguardv1.JoinResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins++
	if f.joinErr != nil {
		return nil, f.joinErr
	}
	return &fedguardv1.JoinResponse{Federation: federation, Participant: hospital, Model: f.spec, StatsNeeded: f.scaling == nil}, nil
}

func (f *fakeCoordinator) ReportStats(_ context.Context, req *fedguardv1.ReportStatsRequest) (*fedguardv1.ReportStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := req.GetStats()
	n := len(f.spec.GetFeatures())
	if st.GetCount() == 0 || len(st.GetSum()) != n || len(st.GetSumSquares()) != n {
		return nil, status.Error(codes.InvalidArgument, "bad stats")
	}
	f.stats = append(f.stats, st)
	sc := &fedguardv1.FeatureScaling{}
	c := float64(st.GetCount())
	for i := range n {
		m := st.GetSum()[i] / c
		sc.Mean = append(sc.Mean, m)
		sc.Std = append(sc.Std, math.Sqrt(max(st.GetSumSquares()[i]/c-m*m, 1e-12)))
	}
	f.scaling = sc
	if len(f.chain) == 0 {
		f.closeLocked(f.global, []manifest.Contributor{})
	}
	return &fedguardv1.ReportStatsResponse{}, nil
}

func (f *fakeCoordinator) assignment() *fedguardv1.RoundAssignment {
	return &fedguardv1.RoundAssignment{
		Round:       f.round,
		Attempt:     f.attempt,
		Model:       f.spec,
		Plan:        &fedguardv1.TrainingPlan{LocalEpochs: 5, LearningRate: 0.1, BatchSize: 8, L2: 1e-4},
		Scaling:     f.scaling,
		Deadline:    timestamppb.New(time.Now().Add(time.Minute)),
		ModelSha256: wireDigest(f.t, f.global),
		Seed:        1000 + f.round,
		Manifest:    f.chain[f.round-1].env,
	}
}

func (f *fakeCoordinator) WaitRound(ctx context.Context, _ *fedguardv1.WaitRoundRequest) (*fedguardv1.WaitRoundResponse, error) {
	f.mu.Lock()
	round, hook := f.round, f.onWait
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, round); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.scaling == nil {
		return nil, status.Error(codes.FailedPrecondition, "report stats first")
	}
	if f.round > f.rounds {
		env := f.chain[len(f.chain)-1].env
		if f.final != nil {
			env = f.final(env)
		}
		return &fedguardv1.WaitRoundResponse{Finished: true, Manifest: env}, nil
	}
	asg := f.assignment()
	if f.offer != nil {
		asg = f.offer(asg)
	}
	return &fedguardv1.WaitRoundResponse{Assignment: asg}, nil
}

func (f *fakeCoordinator) GetManifest(_ context.Context, req *fedguardv1.GetManifestRequest) (*fedguardv1.GetManifestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := req.GetRound()
	f.manifestCalls = append(f.manifestCalls, r)
	if f.answerManifest != nil {
		return f.answerManifest(r)
	}
	if r >= uint64(len(f.chain)) {
		return nil, status.Errorf(codes.NotFound, "round %d has not closed", r)
	}
	env := f.chain[r].env
	if f.serveManifest != nil {
		env = f.serveManifest(r, env)
	}
	return &fedguardv1.GetManifestResponse{Round: r, Manifest: env}, nil
}

func (f *fakeCoordinator) ReportRefusal(_ context.Context, req *fedguardv1.ReportRefusalRequest) (*fedguardv1.ReportRefusalResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusals = append(f.refusals, req)
	return &fedguardv1.ReportRefusalResponse{}, nil
}

func (f *fakeCoordinator) ReportValidation(_ context.Context, req *fedguardv1.ReportValidationRequest) (*fedguardv1.ReportValidationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.validations = append(f.validations, req)
	if f.onValidation != nil {
		f.onValidation(req)
	}
	return &fedguardv1.ReportValidationResponse{}, nil
}

func (f *fakeCoordinator) GetModel(req *fedguardv1.GetModelRequest, stream grpc.ServerStreamingServer[fedguardv1.GetModelResponse]) error {
	f.mu.Lock()
	f.getModels++
	call, round, global, tamper := f.getModels, f.round, slices.Clone(f.global), f.tamper
	f.mu.Unlock()
	if req.GetRound() != round {
		return status.Errorf(codes.FailedPrecondition, "round %d is not open", req.GetRound())
	}
	return wire.Chunks(global, func(offset uint64, data []byte) error {
		msg := &fedguardv1.GetModelResponse{
			Round: round, FormatVersion: model.FormatVersion, Offset: offset,
			Data: slices.Clone(data), NumParams: uint64(len(global)),
		}
		if tamper != nil {
			tamper(call, msg)
		}
		return stream.Send(msg)
	})
}

func (f *fakeCoordinator) SubmitUpdate(stream grpc.ClientStreamingServer[fedguardv1.SubmitUpdateRequest, fedguardv1.SubmitUpdateResponse]) error {
	f.mu.Lock()
	f.submits++
	call, hook := f.submits, f.submitErr
	f.mu.Unlock()
	if hook != nil {
		if err := hook(call); err != nil {
			return err
		}
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	f.mu.Lock()
	round, asg, start := f.round, f.assignment(), slices.Clone(f.global)
	f.mu.Unlock()
	switch {
	case hdr == nil:
		return status.Error(codes.InvalidArgument, "first message is not a header")
	case first.GetRound() != round || first.GetFormatVersion() != model.FormatVersion:
		return status.Errorf(codes.FailedPrecondition, "round %d format %d", first.GetRound(), first.GetFormatVersion())
	case hdr.GetNumParams() != uint64(len(start)):
		return status.Errorf(codes.InvalidArgument, "num_params %d", hdr.GetNumParams())
	}
	delta := make([]float32, len(start))
	asm := wire.NewAssembler(delta)
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if msg.GetRound() != round || msg.GetFormatVersion() != model.FormatVersion || msg.GetChunk() == nil {
			return status.Error(codes.InvalidArgument, "bad chunk")
		}
		if err := asm.Add(msg.GetChunk().GetOffset(), msg.GetChunk().GetData()); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if err := asm.Done(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if sum := asm.Sum(); !bytes.Equal(sum[:], hdr.GetSha256()) {
		return status.Error(codes.InvalidArgument, "digest mismatch")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, record{asg: asg, start: start, header: hdr, delta: delta})
	next := slices.Clone(f.global)
	for i := range next {
		next[i] += delta[i]
	}
	f.closeLocked(next, []manifest.Contributor{{
		Name: hospital, Samples: hdr.GetSampleCount(), UpdateSHA256: hex.EncodeToString(hdr.GetSha256()), Norm: asm.Norm(),
	}})
	f.round++
	f.attempt = 1
	return stream.SendAndClose(&fedguardv1.SubmitUpdateResponse{Round: round, Norm: asm.Norm()})
}

// counts returns joins, GetModel calls, SubmitUpdate calls and accepted updates.
func (f *fakeCoordinator) counts() (joins, getModels, submits, accepted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins, f.getModels, f.submits, len(f.records)
}

// manifestLog returns what f received from GetManifest and ReportRefusal.
func (f *fakeCoordinator) manifestLog() (fetched []uint64, refusals []*fedguardv1.ReportRefusalRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.manifestCalls), slices.Clone(f.refusals)
}

// closed returns chain[r] of f: round r's model and manifest.
func (f *fakeCoordinator) closed(r uint64) link {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chain[r]
}

// newAgent returns an agent of federation that pins keys, with the test's
// backoff and a captured log. edits change its Config (a StateFile, say).
func newAgent(t *testing.T, addr string, tlsCfg *tls.Config, tr participant.Trainer, keys manifest.PublicKeys, edits ...func(*participant.Config)) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	return newAgentWith(t, addr, tlsCfg, tr, keys, nil, edits...)
}

// newAgentWith is newAgent with options.
func newAgentWith(t *testing.T, addr string, tlsCfg *tls.Config, tr participant.Trainer, keys manifest.PublicKeys, opts []participant.Option, edits ...func(*participant.Config)) (*participant.Agent, *fedtest.LogBuffer) {
	t.Helper()
	var logs fedtest.LogBuffer
	cfg := participant.Config{
		Coordinator:     addr,
		TLS:             tlsCfg,
		Trainer:         tr,
		Log:             slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff:      10 * time.Millisecond,
		MaxBackoff:      100 * time.Millisecond,
		AgentVersion:    "test",
		Federation:      federation,
		CoordinatorKeys: keys,
	}
	for _, e := range edits {
		e(&cfg)
	}
	a, err := participant.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return a, &logs
}

// withState sets the agent's StateFile.
func withState(path string) func(*participant.Config) {
	return func(c *participant.Config) { c.StateFile = path }
}

// run runs a until it returns or the test's time is up.
func run(t *testing.T, a *participant.Agent, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return a.Run(ctx)
}

// checkUpdates verifies that every accepted update is exactly what a
// LocalTrainer on the same data produces from the same assignment and
// starting model, and that its header is consistent with it.
func checkUpdates(t *testing.T, f *fakeCoordinator, wantRounds int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.records) != wantRounds {
		t.Fatalf("coordinator accepted %d updates, want %d", len(f.records), wantRounds)
	}
	ref := newTrainer()
	st, err := ref.Prepare(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.stats) == 0 || f.stats[0].GetCount() != st.Count || !slices.Equal(f.stats[0].GetSum(), st.Sum) {
		t.Errorf("reported stats %v, want count %d and the reference sums", f.stats, st.Count)
	}
	for i, r := range f.records {
		if r.asg.GetRound() != uint64(i+1) {
			t.Errorf("update %d is for round %d, want %d", i, r.asg.GetRound(), i+1)
		}
		start := slices.Clone(r.start)
		want, err := ref.Train(context.Background(), r.asg, start)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(start, r.start) {
			t.Errorf("round %d: LocalTrainer.Train modified its starting model", r.asg.GetRound())
		}
		if diff := cmp.Diff(want.Delta, r.delta); diff != "" {
			t.Errorf("round %d: delta differs from a LocalTrainer's (-want +got):\n%s", r.asg.GetRound(), diff)
		}
		if model.Norm(r.delta) == 0 {
			t.Errorf("round %d: empty update", r.asg.GetRound())
		}
		h := r.header
		if !bytes.Equal(h.GetSha256(), wireDigest(t, r.delta)) {
			t.Errorf("round %d: header sha256 %x does not match the chunks", r.asg.GetRound(), h.GetSha256())
		}
		if h.GetSampleCount() != want.Samples || h.GetSampleCount() != 48 {
			t.Errorf("round %d: sample_count = %d, want %d (48 of 60 rows)", r.asg.GetRound(), h.GetSampleCount(), want.Samples)
		}
		ev := h.GetHoldout()
		if ev.GetCount() != 12 || ev.GetCount() != uint64(want.Holdout.Count) || ev.GetLoss() != want.Holdout.Loss || ev.GetAccuracy() != want.Holdout.Accuracy {
			t.Errorf("round %d: holdout %v, want %+v with 12 rows", r.asg.GetRound(), ev, want.Holdout)
		}
		if !(ev.GetLoss() > 0) || math.IsInf(ev.GetLoss(), 0) || ev.GetAccuracy() < 0 || ev.GetAccuracy() > 1 {
			t.Errorf("round %d: holdout metrics out of range: %v", r.asg.GetRound(), ev)
		}
	}
	// The second round starts from a trained model: on standardized WDBC it
	// must classify the holdout well and better than the random start.
	if len(f.records) >= 2 {
		first, second := f.records[0].header.GetHoldout(), f.records[1].header.GetHoldout()
		if second.GetAccuracy() < 0.8 || second.GetLoss() >= first.GetLoss() {
			t.Errorf("holdout after one round %v, before %v: training did not help", second, first)
		}
	}
}

func TestRunTwoRounds(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 2)
	a, _ := p.agentFor(t, fake)
	if err := run(t, a, 15*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	checkUpdates(t, fake, 2)
	n := uint64(len(fake.global) * 4)
	want := participant.AgentStats{Rounds: 2, BytesReceived: 2 * n, BytesSent: 2 * n}
	if diff := cmp.Diff(want, a.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
	if joins, _, _, _ := fake.counts(); joins != 1 {
		t.Errorf("agent joined %d times over one healthy connection, want 1", joins)
	}
	// Each assignment carries the manifest of the round before, which
	// extends the last one accepted: there is nothing to fetch or refuse.
	if fetched, refusals := fake.manifestLog(); len(fetched) != 0 || len(refusals) != 0 {
		t.Errorf("GetManifest calls %v, ReportRefusal calls %v; want none", fetched, refusals)
	}
}

func TestRefusesBadModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(msg *fedguardv1.GetModelResponse)
		want   string
	}{
		{"digest mismatch", func(m *fedguardv1.GetModelResponse) { m.Data[0] ^= 1 }, "digest"},
		{"wrong round", func(m *fedguardv1.GetModelResponse) { m.Round++ }, "round"},
		{"wrong format version", func(m *fedguardv1.GetModelResponse) { m.FormatVersion = 2 }, "format version"},
		{"wrong size", func(m *fedguardv1.GetModelResponse) { m.NumParams++ }, "parameters"},
		{"truncated", func(m *fedguardv1.GetModelResponse) { m.Data = m.Data[:len(m.Data)-4] }, "incomplete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newFake(t, 2)
			// Only the first copy of the round-1 model is bad.
			fake.tamper = func(call int, msg *fedguardv1.GetModelResponse) {
				if call == 1 {
					tt.tamper(msg)
				}
			}
			a, logs := p.agentFor(t, fake)
			if err := run(t, a, 15*time.Second); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			_, getModels, submits, accepted := fake.counts()
			if got := a.Stats().ModelsRefused; got != 1 {
				t.Errorf("ModelsRefused = %d, want 1", got)
			}
			// The refused model must not have been trained on or submitted:
			// one extra download, but exactly one submission per round.
			if getModels != 3 || submits != 2 || accepted != 2 {
				t.Errorf("GetModel calls %d, SubmitUpdate calls %d, accepted %d; want 3, 2, 2", getModels, submits, accepted)
			}
			if s := logs.String(); !strings.Contains(s, "starting model refused") || !strings.Contains(s, tt.want) {
				t.Errorf("log does not report the refusal with %q:\n%s", tt.want, s)
			}
			checkUpdates(t, fake, 2)
		})
	}
}

func TestRefusedModelNeverSubmitted(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	fake.tamper = func(_ int, msg *fedguardv1.GetModelResponse) { msg.Data[len(msg.Data)-1] ^= 0x01 }
	a, _ := p.agentFor(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().ModelsRefused < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v, want context.Canceled", err)
	}
	if got := a.Stats().ModelsRefused; got < 3 {
		t.Errorf("ModelsRefused = %d, want at least 3 (one per offer)", got)
	}
	if _, _, submits, _ := fake.counts(); submits != 0 {
		t.Errorf("agent submitted %d updates from a tampered model, want 0", submits)
	}
}

func TestReconnectsAfterCoordinatorRestart(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 2)
	reached := make(chan struct{})
	var once sync.Once
	fake.onWait = func(ctx context.Context, round uint64) error {
		if round != 2 {
			return nil
		}
		blocked := false
		once.Do(func() { close(reached); blocked = true })
		if blocked {
			<-ctx.Done() // hold the long poll until the server goes away
			return status.FromContextError(ctx.Err()).Err()
		}
		return nil
	}
	srv, addr := p.serve(t, fake, "127.0.0.1:0")
	a, logs := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys())
	done := make(chan error, 1)
	go func() { done <- run(t, a, 15*time.Second) }()

	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("Run returned %v before round 2", err)
	}
	srv.Stop()
	time.Sleep(150 * time.Millisecond) // the agent finds nobody there
	p.serve(t, fake, addr)

	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	checkUpdates(t, fake, 2)
	if joins, _, _, _ := fake.counts(); joins < 2 {
		t.Errorf("agent joined %d times, want a new Join after the restart", joins)
	}
	if a.Stats().Retries == 0 {
		t.Error("Stats().Retries = 0, want the outage counted")
	}
	if s := logs.String(); !strings.Contains(s, "backoff=") || !strings.Contains(s, "attempt=") {
		t.Errorf("retries are not logged with attempt and backoff:\n%s", s)
	}
}

func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		joinErr error
		code    codes.Code
	}{
		{"permission denied", status.Error(codes.PermissionDenied, "not enrolled"), codes.PermissionDenied},
		{"unauthenticated", status.Error(codes.Unauthenticated, "who are you"), codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newFake(t, 2)
			fake.joinErr = tt.joinErr
			a, _ := p.agentFor(t, fake)
			start := time.Now()
			err := run(t, a, 10*time.Second)
			if status.Code(err) != tt.code {
				t.Fatalf("Run = %v, want code %v", err, tt.code)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Run took %v to give up, want prompt", d)
			}
			if joins, getModels, _, _ := fake.counts(); joins != 1 || getModels != 0 {
				t.Errorf("joins %d, GetModel calls %d; want 1 and 0 (no retry)", joins, getModels)
			}
			if a.Stats().Retries != 0 {
				t.Errorf("Retries = %d, want 0", a.Stats().Retries)
			}
		})
	}
}

func TestCertificateRefusalIsPermanent(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	other := newPKI(t) // another CA for the same federation name
	tests := []struct {
		name   string
		client *tls.Config
	}{
		// The agent does not trust the coordinator's certificate.
		{"server not trusted", other.client(t, other.ca, other.Federation, hospital)},
		// The coordinator does not trust the hospital's certificate.
		{"client not trusted", p.client(t, p.ca, other.Federation, hospital)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t, 1)
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			a, _ := newAgent(t, addr, tt.client, newTrainer(), fake.keys())
			start := time.Now()
			err := run(t, a, 10*time.Second)
			if !errors.Is(err, participant.ErrCertificate) {
				t.Fatalf("Run = %v, want ErrCertificate", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Run took %v to give up, want prompt", d)
			}
			if joins, _, _, _ := fake.counts(); joins != 0 {
				t.Errorf("coordinator saw %d joins over a refused connection", joins)
			}
		})
	}
}

// TestCertificateRefusalSaysWhy: when the coordinator refuses the hospital's
// certificate, TLS tells the agent only "bad certificate"; the agent's error
// must say what it can tell itself (its certificate expired, and when) and
// otherwise what the hospital can do (ask the operator, whose log names the
// reason), not leave a bare TLS alert.
func TestCertificateRefusalSaysWhy(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	other := newPKI(t) // another CA for the same federation name

	// A certificate of the federation's CA that has expired by the time
	// the agent presents it: signed for 1 ns (NotAfter is kept to the
	// second), then waited out.
	ca, err := certs.Open(filepath.Join(p.Dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := certs.NewParticipantRequest(federation, hospital)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := ca.Sign(csr, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "expired.crt"), filepath.Join(dir, "expired.key")
	if err := certs.WriteFileAtomic(certFile, crt, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := certs.WritePrivateKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	leaf, err := certs.LoadCertificate(certFile)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(leaf.NotAfter) + 1100*time.Millisecond)
	expired, err := certs.ClientConfig(certs.ClientOptions{
		CA: p.ca, CertFile: certFile, KeyFile: keyFile, Federation: federation, ServerName: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}

	// The coordinator's certificate names localhost and 127.0.0.1; a
	// hospital that dials it by another name is told which names it has
	// and how to use one (x509 says "not valid for any names" when the
	// certificate has only IP addresses).
	byName := p.client(t, p.ca, p.Federation, hospital)
	byName.ServerName = "coordinator.example.org"

	tests := []struct {
		name   string
		client *tls.Config
		want   string
	}{
		{"expired", expired, "this hospital's certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)},
		{"from another CA", p.client(t, p.ca, other.Federation, hospital), "the coordinator refused this hospital's certificate"},
		{"coordinator dialled by another name", byName, "the coordinator's certificate is for localhost, 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t, 1)
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			a, _ := newAgent(t, addr, tt.client, newTrainer(), fake.keys())
			err := run(t, a, 10*time.Second)
			if !errors.Is(err, participant.ErrCertificate) {
				t.Fatalf("Run = %v, want ErrCertificate", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "federation operator") {
				t.Errorf("Run = %v\nwant it to say %q and whom to ask (the federation operator)", err, tt.want)
			}
		})
	}
}

func TestRoundClosedGoesBackToWait(t *testing.T) {
	t.Parallel()
	fake := newFake(t, 2)
	fake.submitErr = func(call int) error {
		if call != 1 {
			return nil
		}
		fake.mu.Lock()
		fake.attempt++ // the coordinator retries the round
		fake.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "round closed")
	}
	a, logs := newLocalAgent(t, serveLocal(t, fake), newTrainer(), fake.keys())
	if err := run(t, a, 15*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if joins, _, submits, accepted := fake.counts(); joins != 1 || submits != 3 || accepted != 2 {
		t.Errorf("joins %d, submits %d, accepted %d; want 1, 3, 2", joins, submits, accepted)
	}
	if got := a.Stats().Rounds; got != 2 {
		t.Errorf("Stats().Rounds = %d, want 2", got)
	}
	if !strings.Contains(logs.String(), "round closed") {
		t.Errorf("FailedPrecondition not logged:\n%s", logs.String())
	}
	checkUpdates(t, fake, 2)
}

func TestIncompatibleSpecIsPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*fedguardv1.ModelSpec)
	}{
		{"unknown label", func(s *fedguardv1.ModelSpec) { s.Classes = []string{"B", "X"} }},
		{"missing feature", func(s *fedguardv1.ModelSpec) { s.Features[3] = "shoe_size" }},
		{"missing label column", func(s *fedguardv1.ModelSpec) { s.Label = "outcome" }},
		{"format version", func(s *fedguardv1.ModelSpec) { s.FormatVersion = 99 }},
		{"num_params", func(s *fedguardv1.ModelSpec) { s.NumParams++ }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t, 1)
			tt.mutate(fake.spec)
			a, _ := newLocalAgent(t, serveLocal(t, fake), newTrainer(), fake.keys())
			err := run(t, a, 10*time.Second)
			if !errors.Is(err, participant.ErrIncompatible) {
				t.Fatalf("Run = %v, want ErrIncompatible", err)
			}
			// The hospital is told where in its file (README: "with the
			// line and column named").
			var re *dataset.RowError
			if tt.name == "unknown label" && (!errors.As(err, &re) || re.Column != fake.spec.Label || re.Line < 2) {
				t.Errorf("Run = %v, want a *dataset.RowError naming the line and the label column %q", err, fake.spec.Label)
			}
			if joins, _, _, _ := fake.counts(); joins != 1 {
				t.Errorf("joins = %d, want 1", joins)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	fake := newFake(t, 1)
	waiting := make(chan struct{}, 1)
	fake.onWait = func(ctx context.Context, _ uint64) error {
		select {
		case waiting <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	a, _ := newLocalAgent(t, serveLocal(t, fake), newTrainer(), fake.keys())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// faultyTrainer fails its first Train call.
type faultyTrainer struct {
	participant.Trainer
	mu    sync.Mutex
	calls int
}

func (f *faultyTrainer) Train(ctx context.Context, a *fedguardv1.RoundAssignment, start []float32) (participant.Result, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if n == 1 {
		return participant.Result{}, errors.New("disk on fire")
	}
	if n == 2 {
		// A broken update must never reach the coordinator.
		res, err := f.Trainer.Train(ctx, a, start)
		res.Delta[0] = float32(math.NaN())
		return res, err
	}
	return f.Trainer.Train(ctx, a, start)
}

// TestExecTrainerSitsOut runs an agent whose external trainer (a real
// process) crashes once: the agent sits that attempt out, logs why, and
// then takes part in both rounds with the trainer's weights.
func TestExecTrainerSitsOut(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 2)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	tr := &participant.ExecTrainer{
		Command: participant.HelperTrainer("crash_once", filepath.Join(t.TempDir(), "crashed")),
		Dir:     filepath.Join(t.TempDir(), "work"),
		Local:   newTrainer(),
	}
	// No Log: New gives the trainer the agent's, where its output must land.
	a, logs := newAgent(t, addr, p.clientTLS, tr, fake.keys())
	if err := run(t, a, 30*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.records) != 2 {
		t.Fatalf("coordinator accepted %d updates, want 2", len(fake.records))
	}
	for _, r := range fake.records {
		for i, d := range r.delta {
			trained := r.start[i] + 0.5 // the helper's training, in float32
			if want := trained - r.start[i]; d != want {
				t.Fatalf("round %d: delta[%d] = %v, want trained − start = %v", r.asg.GetRound(), i, d, want)
			}
		}
		if h := r.header; h.GetSampleCount() != 42 || h.GetHoldout().GetAccuracy() != 0.8 {
			t.Errorf("round %d: header %v, want the trainer's metrics", r.asg.GetRound(), h)
		}
	}
	for _, want := range []string{"round sat out: the external trainer failed", "reason=crash", `msg="trainer output" round=1 stream=stderr line="Segmentation fault"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("agent log lacks %q", want)
		}
	}
}

func TestTrainerFailureSkipsRound(t *testing.T) {
	t.Parallel()
	fake := newFake(t, 1)
	tr := &faultyTrainer{Trainer: newTrainer()}
	a, logs := newLocalAgent(t, serveLocal(t, fake), tr, fake.keys())
	if err := run(t, a, 15*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if _, _, submits, accepted := fake.counts(); submits != 1 || accepted != 1 {
		t.Errorf("submits %d, accepted %d; want 1, 1 (no failed or non-finite update sent)", submits, accepted)
	}
	if s := logs.String(); !strings.Contains(s, "disk on fire") || !strings.Contains(s, "non-finite") {
		t.Errorf("trainer failures not logged:\n%s", s)
	}
}

func TestNewValidates(t *testing.T) {
	signer, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := signer.Public()
	good := func() participant.Config {
		return participant.Config{
			Coordinator:     "127.0.0.1:1",
			TLS:             &tls.Config{Certificates: []tls.Certificate{{}}},
			Trainer:         newTrainer(),
			Federation:      federation,
			CoordinatorKeys: keys,
		}
	}
	tests := []struct {
		name   string
		mutate func(*participant.Config)
		ok     bool
	}{
		{"valid", func(*participant.Config) {}, true},
		{"no coordinator", func(c *participant.Config) { c.Coordinator = "" }, false},
		{"no TLS", func(c *participant.Config) { c.TLS = nil }, false},
		{"no client certificate", func(c *participant.Config) { c.TLS = &tls.Config{} }, false},
		{"no trainer", func(c *participant.Config) { c.Trainer = nil }, false},
		{"no federation", func(c *participant.Config) { c.Federation = "" }, false},
		{"no coordinator keys", func(c *participant.Config) { c.CoordinatorKeys = manifest.PublicKeys{} }, false},
		{"no Ed25519 key", func(c *participant.Config) { c.CoordinatorKeys.Ed25519 = nil }, false},
		{"no ML-DSA-65 key", func(c *participant.Config) { c.CoordinatorKeys.MLDSA65 = nil }, false},
		// manifest.Verify would refuse to run with it on every round.
		{"truncated Ed25519 key", func(c *participant.Config) { c.CoordinatorKeys.Ed25519 = c.CoordinatorKeys.Ed25519[:31] }, false},
		{"state file absent", func(c *participant.Config) { c.StateFile = filepath.Join(t.TempDir(), "accepted.json") }, true},
		{"negative backoff", func(c *participant.Config) { c.MinBackoff = -1 }, false},
		{"max below min", func(c *participant.Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mutate(&cfg)
			_, err := participant.New(cfg)
			if (err == nil) != tt.ok {
				t.Errorf("New(%s) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestLocalTrainerHoldoutIsStratified(t *testing.T) {
	tests := []struct {
		holdout   float64
		wantTrain uint64
	}{
		{0, 48},   // default 0.2: 5 of 27 B and 7 of 33 M held out
		{0.5, 29}, // 14 of 27 B and 17 of 33 M held out
		{participant.NoHoldout, 60},
	}
	for _, tt := range tests {
		tr := newTrainer()
		tr.Holdout = tt.holdout
		st, err := tr.Prepare(testSpec())
		if err != nil {
			t.Fatal(err)
		}
		if st.Count != tt.wantTrain {
			t.Errorf("Holdout %v: Prepare counted %d training rows, want %d", tt.holdout, st.Count, tt.wantTrain)
		}
	}
	for _, h := range []float64{1, 1.5, -0.5} {
		tr := newTrainer()
		tr.Holdout = h
		if _, err := tr.Prepare(testSpec()); err == nil {
			t.Errorf("Holdout %v: Prepare succeeded, want an error", h)
		}
	}
}

// TestGivesUpOnGoneCoordinator: with nobody listening (the federation
// finished and its coordinator exited), Run stops after GiveUpAfter with
// ErrCoordinatorGone and a message that says why. Before, it retried
// forever.
func TestGivesUpOnGoneCoordinator(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), newFake(t, 1).keys(), func(c *participant.Config) { c.GiveUpAfter = 500 * time.Millisecond })
	began := time.Now()
	err = run(t, a, 20*time.Second)
	if !errors.Is(err, participant.ErrCoordinatorGone) || !strings.Contains(err.Error(), "federation has finished") {
		t.Fatalf("Run = %v, want ErrCoordinatorGone saying the federation may have finished", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("Run gave up after %v, want about 500ms", took)
	}
}
