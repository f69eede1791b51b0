package coordinator_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/fedtest/hammer"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// BenchmarkRPCWaitDuringClose measures how long an RPC that needs the
// coordinator's state (GetManifest, over mutual TLS) waits while a round
// closes with Krum over a cohort of 40 updates of an MLP of 150k
// parameters. Each iteration is one round; it reports the longest
// GetManifest seen while the round closed (wait-ms; one probe every 2 ms),
// the median one (p50-ms) and how long the close took, from the last
// update accepted to the observer's call (close-ms). wait-ms/close-ms near
// 1 means the RPC waited for the whole close.
func BenchmarkRPCWaitDuringClose(b *testing.B) {
	const n = 40
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("hospital-%02d", i)
	}
	fed := fedtest.New(b, fedName, names...)
	cfg := fed.Config(names)
	cfg.MinParticipants = n
	cfg.Model, cfg.Aggregation, cfg.Training = coordinator.ModelConfig{
		Kind: "mlp", Features: []string{"f1", "f2"}, Label: "y", Classes: []string{"B", "M"}, Hidden: []int{384, 384},
	}, aggregation.Config{Rule: aggregation.NameKrum, F: 8}, coordinator.TrainingConfig{Rounds: 1 << 20, LocalEpochs: 1, LearningRate: 0.1, BatchSize: 8}
	cfg.CohortTimeout, cfg.RoundTimeout, cfg.StatsTimeout, cfg.LongPoll = coordinator.Duration(time.Minute), coordinator.Duration(5*time.Minute),
		coordinator.Duration(time.Minute), coordinator.Duration(30*time.Second)
	cfg.KeepModels, cfg.Seed = 2, 7
	closed := make(chan time.Time, 1)
	addr := fedtest.Serve(b, cfg, coordinator.WithObserver(func(coordinator.RoundResult) { closed <- time.Now() })).Addr
	ctx := context.Background()
	clients := make([]fedguardv1.CoordinatorServiceClient, n)
	for i, name := range names {
		tlsCfg := fed.ClientTLS(b, name, addr)
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxMessageBytes)))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients[i] = fedguardv1.NewCoordinatorServiceClient(conn)
	}
	for _, cl := range clients {
		st := &fedguardv1.FeatureStats{Count: 2, Sum: []float64{2, 4}, SumSquares: []float64{4, 10}}
		if _, err := cl.ReportStats(ctx, &fedguardv1.ReportStatsRequest{Stats: st}); err != nil {
			b.Fatal(err)
		}
	}
	// One fixed update per participant, reused every round.
	params := (2*384 + 384) + (384*384 + 384) + (384*2 + 2)
	rng := rand.New(rand.NewPCG(1, 2))
	deltas := make([][]float32, n)
	for i := range deltas {
		deltas[i] = make([]float32, params)
		for j := range deltas[i] {
			deltas[i][j] = float32(rng.NormFloat64() * 1e-3)
		}
	}
	var waits, closes []float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		var round uint64
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, cl := range clients {
			wg.Go(func() {
				for {
					resp, err := cl.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
					if err != nil {
						b.Error(err)
						return
					}
					if a := resp.GetAssignment(); a != nil {
						mu.Lock()
						round = a.GetRound()
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		// Every update but the last, then the prober, then the last
		// update, which makes the round close.
		submit := func(i int) {
			if err := benchSubmit(ctx, clients[i], round, deltas[i]); err != nil {
				b.Error(err)
			}
		}
		for i := range n - 1 {
			wg.Go(func() { submit(i) })
		}
		wg.Wait()
		b.StartTimer()
		var lat []float64
		stop := hammer.Start(1, func(int) bool {
			t0 := time.Now()
			if _, err := clients[0].GetManifest(ctx, &fedguardv1.GetManifestRequest{Round: 0}); err != nil {
				b.Error(err)
				return false
			}
			lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
			// A pause between probes, so that the prober does not
			// take a core from the close it measures.
			time.Sleep(2 * time.Millisecond)
			return true
		})
		submit(n - 1)
		last := time.Now()
		at := <-closed
		stop()
		closes = append(closes, float64(at.Sub(last).Microseconds())/1000)
		waits = append(waits, lat...)
		b.StopTimer()
	}
	slices.Sort(waits)
	b.ReportMetric(waits[len(waits)-1], "wait-ms")
	b.ReportMetric(waits[len(waits)/2], "p50-ms")
	b.ReportMetric(slices.Max(closes), "close-ms")
}

// benchSubmit sends delta as round's update.
func benchSubmit(ctx context.Context, cl fedguardv1.CoordinatorServiceClient, round uint64, delta []float32) error {
	stream, err := cl.SubmitUpdate(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(model.AppendBytes(nil, delta))
	if err := stream.Send(&fedguardv1.SubmitUpdateRequest{Round: round, FormatVersion: model.FormatVersion,
		Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{NumParams: uint64(len(delta)), SampleCount: 10, Sha256: sum[:]}}}); err != nil {
		return err
	}
	if err := wire.Chunks(delta, func(off uint64, data []byte) error {
		return stream.Send(chunkMsg(round, off, data))
	}); err != nil {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}
