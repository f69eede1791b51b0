package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// TestLargeModel moves a 10^8-parameter model (400 MB) through GetModel and
// SubmitUpdate in chunks, with the client's receive limit at
// wire.MaxMessageBytes, against a real coordinator process. The client never
// holds the model: it hashes the chunks as they stream and sends zeros.
func TestLargeModel(t *testing.T) {
	fedtest.SkipIfShort(t, "moves 800 MB over loopback")
	began := time.Now()
	const fed = "large"
	dir := t.TempDir()
	fedtest.In(t, dir, fed, "alice")
	const features, hidden = 100, 970_874 // 970874·101 + 2·970875 = 100,000,024
	cfg := fedConfig(t, dir, fed, []string{"alice"}, 1, 1)
	cfg.Model.Kind = "mlp"
	cfg.Model.Features = nil
	for i := range features {
		cfg.Model.Features = append(cfg.Model.Features, fmt.Sprintf("f%d", i))
	}
	cfg.Model.Label, cfg.Model.Classes, cfg.Model.Hidden = "y", []string{"a", "b"}, []int{hidden}
	cfg.KeepModels = 1
	cfg.RoundTimeout = coordinator.Duration(10 * time.Minute)
	coord := startCoordinator(t, writeConfig(t, dir, cfg))
	t.Logf("coordinator up after %v", time.Since(began))

	tlsCfg, err := certs.LocalClientConfig(dir, fed, "alice", coord.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := rawClient(t, coord.Addr, tlsCfg) // receive limit wire.MaxMessageBytes
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	jr, err := c.Join(ctx, &fedguardv1.JoinRequest{})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	n := jr.GetModel().GetNumParams()
	if n < 100_000_000 {
		t.Fatalf("model has %d parameters, want >= 1e8", n)
	}
	if _, err := c.ReportStats(ctx, &fedguardv1.ReportStatsRequest{Stats: validStats(features)}); err != nil {
		t.Fatalf("ReportStats: %v", err)
	}
	var asg *fedguardv1.RoundAssignment
	for asg == nil {
		wr, err := c.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
		if err != nil {
			t.Fatalf("WaitRound: %v", err)
		}
		asg = wr.GetAssignment()
	}

	t0 := time.Now()
	gm, err := c.GetModel(ctx, &fedguardv1.GetModelRequest{Round: asg.GetRound()})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var next uint64
	chunks := 0
	for {
		m, err := gm.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("GetModel after %d chunks: %v", chunks, err)
		}
		if m.GetOffset() != next || len(m.GetData()) > wire.ChunkBytes || len(m.GetData())%4 != 0 || m.GetNumParams() != n {
			t.Fatalf("chunk %d: offset %d (want %d), %d bytes, num_params %d (want %d)", chunks, m.GetOffset(), next, len(m.GetData()), m.GetNumParams(), n)
		}
		h.Write(m.GetData())
		next += uint64(len(m.GetData()) / 4)
		chunks++
	}
	if next != n {
		t.Fatalf("GetModel streamed %d parameters, want %d", next, n)
	}
	if sum := h.Sum(nil); string(sum) != string(asg.GetModelSha256()) {
		t.Fatalf("downloaded model SHA-256 %x, assignment says %x", sum, asg.GetModelSha256())
	}
	t.Logf("downloaded %d parameters in %d chunks in %v", n, chunks, time.Since(t0))

	// A zero update, streamed from one reused chunk buffer.
	t0 = time.Now()
	zero := make([]byte, wire.ChunkBytes)
	h.Reset()
	for left := 4 * n; left > 0; {
		k := min(left, uint64(len(zero)))
		h.Write(zero[:k])
		left -= k
	}
	sum := h.Sum(nil)
	s, err := c.SubmitUpdate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sendErr := s.Send(header(asg.GetRound(), n, sum))
	for off := uint64(0); sendErr == nil && off < n; {
		k := min(n-off, uint64(len(zero)/4))
		sendErr = s.Send(chunk(asg.GetRound(), off, zero[:4*k]))
		off += k
	}
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		t.Fatalf("SubmitUpdate send: %v", sendErr)
	}
	resp, err := s.CloseAndRecv()
	if err != nil {
		t.Fatalf("SubmitUpdate(zero update of %d parameters) = %v, want accepted", n, err)
	}
	if resp.GetNorm() != 0 {
		t.Errorf("zero update's norm = %v, want 0", resp.GetNorm())
	}
	t.Logf("uploaded in %v", time.Since(t0))

	rec := coord.waitLog("round closed for round 1", 5*time.Minute, msgRound("round closed", 1))
	// A zero update leaves the model as it was.
	if got := rec["model_sha256"]; got != fmt.Sprintf("%x", asg.GetModelSha256()) {
		t.Errorf("model after a zero update has SHA-256 %v, want the starting model's %x", got, asg.GetModelSha256())
	}
	for {
		wr, err := c.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
		if err != nil {
			t.Fatalf("WaitRound after the last round: %v", err)
		}
		if wr.GetFinished() {
			break
		}
	}
	if err := coord.waitExit(time.Minute); err != nil {
		t.Errorf("coordinator exited with %v, want 0", err)
	}
	t.Logf("TestLargeModel took %v", time.Since(began))
}
