package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// stats are valid feature statistics for n features.
func validStats(n int) *fedguardv1.FeatureStats {
	st := &fedguardv1.FeatureStats{Count: 10}
	for i := range n {
		st.Sum = append(st.Sum, float64(i))
		st.SumSquares = append(st.SumSquares, float64(i*i)+10)
	}
	return st
}

// updateMsg builds the messages of an update stream.
func header(round uint64, n uint64, sum []byte) *fedguardv1.SubmitUpdateRequest {
	return &fedguardv1.SubmitUpdateRequest{Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{NumParams: n, SampleCount: 10, Sha256: sum}}}
}

func chunk(round uint64, off uint64, data []byte) *fedguardv1.SubmitUpdateRequest {
	return &fedguardv1.SubmitUpdateRequest{Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Chunk{Chunk: &fedguardv1.UpdateChunk{Offset: off, Data: data}}}
}

// submit sends msgs on one SubmitUpdate stream and returns the outcome.
func submit(ctx context.Context, c fedguardv1.CoordinatorServiceClient, msgs []*fedguardv1.SubmitUpdateRequest) (*fedguardv1.SubmitUpdateResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := c.SubmitUpdate(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream; its status follows
			}
			return nil, err
		}
	}
	return s.CloseAndRecv()
}

func f32bytes(v ...float32) []byte { return model.AppendBytes(nil, v) }

// TestBadUpdates drives a coordinator with a raw client and sends every kind
// of malformed request; each must be refused with its documented status code
// and change nothing: the committed model is exactly start + the one good
// update.
func TestBadUpdates(t *testing.T) {
	const fed = "bad-updates"
	dir := t.TempDir()
	names := []string{"alice", "bob"}
	fedtest.In(t, dir, fed, names...)
	cfg := fedConfig(t, dir, fed, names, 1, 1)
	cfg.RoundTimeout = coordinator.Duration(2 * time.Minute)
	cfg.CohortTimeout = coordinator.Duration(30 * time.Second) // the round opens when both are ready
	results := make(chan coordinator.RoundResult, 1)
	addr := fedtest.Serve(t, cfg, coordinator.WithObserver(func(r coordinator.RoundResult) { results <- r })).Addr
	ctx := context.Background()

	clients := map[string]fedguardv1.CoordinatorServiceClient{}
	for _, n := range names {
		tlsCfg, err := certs.LocalClientConfig(dir, fed, n, addr)
		if err != nil {
			t.Fatal(err)
		}
		// Allow the client to send what the server must refuse.
		clients[n], _ = rawClient(t, addr, tlsCfg, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
	}
	alice, bob := clients["alice"], clients["bob"]
	jr, err := alice.Join(ctx, &fedguardv1.JoinRequest{})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if !jr.GetStatsNeeded() {
		t.Fatalf("Join on a new federation says stats_needed = false")
	}
	nf := len(jr.GetModel().GetFeatures())
	n := jr.GetModel().GetNumParams()

	// Malformed statistics.
	wide := validStats(nf + 1)
	nan := validStats(nf)
	nan.Sum[3] = math.NaN()
	for name, st := range map[string]*fedguardv1.FeatureStats{"wrong width": wide, "NaN sum": nan} {
		_, err := alice.ReportStats(ctx, &fedguardv1.ReportStatsRequest{Stats: st})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("ReportStats(%s) = %v, want InvalidArgument", name, err)
		}
	}
	for _, c := range []fedguardv1.CoordinatorServiceClient{alice, bob} {
		if _, err := c.ReportStats(ctx, &fedguardv1.ReportStatsRequest{Stats: validStats(nf)}); err != nil {
			t.Fatalf("ReportStats(valid) = %v", err)
		}
	}

	// Both wait; the round opens with cohort [alice bob].
	asgs := make(chan *fedguardv1.RoundAssignment, 2)
	var wg sync.WaitGroup
	for name, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			for wctx.Err() == nil {
				wr, err := c.WaitRound(wctx, &fedguardv1.WaitRoundRequest{})
				if err != nil {
					t.Errorf("WaitRound(%s): %v", name, err)
					return
				}
				if wr.GetAssignment() != nil {
					asgs <- wr.GetAssignment()
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(asgs) != 2 {
		t.Fatalf("%d of 2 participants got an assignment", len(asgs))
	}
	asg := <-asgs
	round := asg.GetRound()
	if round != 1 {
		t.Fatalf("first assignment is for round %d, want 1", round)
	}

	// The starting model, verified against the assignment's digest.
	gm, err := alice.GetModel(ctx, &fedguardv1.GetModelRequest{Round: round})
	if err != nil {
		t.Fatal(err)
	}
	start := make([]float32, n)
	asm := wire.NewAssembler(start)
	for {
		m, err := gm.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("GetModel: %v", err)
		}
		if err := asm.Add(m.GetOffset(), m.GetData()); err != nil {
			t.Fatalf("GetModel chunk: %v", err)
		}
	}
	if err := asm.Done(); err != nil {
		t.Fatal(err)
	}
	if sum := asm.Sum(); string(sum[:]) != string(asg.GetModelSha256()) {
		t.Fatalf("GetModel digest %x, assignment says %x", sum, asg.GetModelSha256())
	}
	// GetModel for a round that is not open.
	if err := getModelErr(ctx, alice, round+1); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("GetModel(round %d, not open) = %v, want FailedPrecondition", round+1, err)
	}

	delta := make([]float32, n)
	for i := range delta {
		delta[i] = float32(i%7-3) * 0.015625 // exact in binary
	}
	good := f32bytes(delta...)
	goodSum := sha256.Sum256(good)
	half := int(n/2) * 4
	withNaN := f32bytes(delta...)
	copy(withNaN[8:], f32bytes(float32(math.NaN())))
	withInf := f32bytes(delta...)
	copy(withInf[12:], f32bytes(float32(math.Inf(1))))
	nanSum, infSum := sha256.Sum256(withNaN), sha256.Sum256(withInf)
	longer := append(f32bytes(delta...), f32bytes(1)...)
	longerSum := sha256.Sum256(longer)
	wrongSum := goodSum
	wrongSum[0] ^= 1
	badVersion := header(round, n, goodSum[:])
	badVersion.FormatVersion = 2
	huge := make([]byte, 2<<20)

	for _, tc := range []struct {
		name string
		msgs []*fedguardv1.SubmitUpdateRequest
		want codes.Code
	}{
		{"chunk with NaN", []*fedguardv1.SubmitUpdateRequest{header(round, n, nanSum[:]), chunk(round, 0, withNaN)}, codes.InvalidArgument},
		{"chunk with +Inf", []*fedguardv1.SubmitUpdateRequest{header(round, n, infSum[:]), chunk(round, 0, withInf)}, codes.InvalidArgument},
		{"header num_params wrong", []*fedguardv1.SubmitUpdateRequest{header(round, n-1, goodSum[:]), chunk(round, 0, good[:4*(n-1)])}, codes.InvalidArgument},
		{"more bytes than num_params", []*fedguardv1.SubmitUpdateRequest{header(round, n, longerSum[:]), chunk(round, 0, longer)}, codes.InvalidArgument},
		{"fewer bytes than num_params", []*fedguardv1.SubmitUpdateRequest{header(round, n, goodSum[:]), chunk(round, 0, good[:half])}, codes.InvalidArgument},
		{"chunk offset gap", []*fedguardv1.SubmitUpdateRequest{header(round, n, goodSum[:]), chunk(round, 0, good[:half]), chunk(round, uint64(half/4)+1, good[half+4:])}, codes.InvalidArgument},
		{"sha256 mismatch", []*fedguardv1.SubmitUpdateRequest{header(round, n, wrongSum[:]), chunk(round, 0, good)}, codes.InvalidArgument},
		{"header for round+1", []*fedguardv1.SubmitUpdateRequest{header(round+1, n, goodSum[:]), chunk(round+1, 0, good)}, codes.FailedPrecondition},
		{"format_version 2", []*fedguardv1.SubmitUpdateRequest{badVersion, chunk(round, 0, good)}, codes.InvalidArgument},
		{"2 MiB chunk", []*fedguardv1.SubmitUpdateRequest{header(round, n, goodSum[:]), chunk(round, 0, huge)}, codes.ResourceExhausted},
		{"first message not a header", []*fedguardv1.SubmitUpdateRequest{chunk(round, 0, good)}, codes.InvalidArgument},
		{"chunk for another round", []*fedguardv1.SubmitUpdateRequest{header(round, n, goodSum[:]), chunk(round+1, 0, good)}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := submit(ctx, alice, tc.msgs)
			if got := status.Code(err); got != tc.want {
				t.Errorf("SubmitUpdate(%s) = %v, %v; want %v", tc.name, resp, err, tc.want)
			}
		})
	}
	select {
	case r := <-results:
		t.Fatalf("round %d closed after refused updates only", r.Record.Round)
	default:
	}

	// The good update is accepted; a second one for the open round is
	// AlreadyExists (documented: "a second update from the same participant
	// is AlreadyExists").
	msgs := []*fedguardv1.SubmitUpdateRequest{header(round, n, goodSum[:]), chunk(round, 0, good[:half]), chunk(round, uint64(half/4), good[half:])}
	resp, err := submit(ctx, alice, msgs)
	if err != nil {
		t.Fatalf("SubmitUpdate(good, after refusals) = %v", err)
	}
	if want := model.Norm(delta); math.Abs(resp.GetNorm()-want) > 1e-9*want {
		t.Errorf("accepted update norm = %v, want %v", resp.GetNorm(), want)
	}
	if _, err := submit(ctx, alice, msgs); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second SubmitUpdate from alice in the open round = %v, want AlreadyExists", err)
	}
	// bob sends the same delta with the same weight, so FedAvg is exactly delta.
	if _, err := submit(ctx, bob, msgs); err != nil {
		t.Fatalf("SubmitUpdate(bob) = %v", err)
	}
	var res coordinator.RoundResult
	select {
	case res = <-results:
	case <-time.After(30 * time.Second):
		t.Fatal("round 1 did not close after both updates")
	}
	if res.Record.Round != round || len(res.Record.Participants) != 2 {
		t.Fatalf("closed round %d with %d participants, want round %d with 2", res.Record.Round, len(res.Record.Participants), round)
	}
	if len(res.Model) != len(start) {
		t.Fatalf("committed model has %d parameters, want %d", len(res.Model), len(start))
	}
	bad := 0
	for i := range start {
		if want := start[i] + delta[i]; res.Model[i] != want {
			if bad++; bad <= 5 {
				t.Errorf("committed model[%d] = %v, want start %v + delta %v = %v", i, res.Model[i], start[i], delta[i], want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d committed parameters differ from start + the accepted delta", bad, len(start))
	}
	// After the close: FailedPrecondition (documented: "Updates that arrive
	// after the close are refused with FailedPrecondition").
	if _, err := submit(ctx, alice, msgs); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("SubmitUpdate after round %d closed = %v, want FailedPrecondition", round, err)
	}
	if err := getModelErr(ctx, alice, round); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("GetModel(round %d) after close = %v, want FailedPrecondition", round, err)
	}
}

// getModelErr reads a GetModel stream to its end and returns its error
// (stream errors surface on Recv).
func getModelErr(ctx context.Context, c fedguardv1.CoordinatorServiceClient, round uint64) error {
	gm, err := c.GetModel(ctx, &fedguardv1.GetModelRequest{Round: round})
	if err != nil {
		return err
	}
	for {
		if _, err := gm.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
