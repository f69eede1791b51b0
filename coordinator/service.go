package coordinator

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/excerpt"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/wire"
)

// service implements fedguardv1.CoordinatorServiceServer on a Coordinator.
// It validates every request here, at the edge, and maps domain errors to
// status codes; the Coordinator itself never sees a malformed request.
type service struct {
	fedguardv1.UnimplementedCoordinatorServiceServer
	c *Coordinator
}

var _ fedguardv1.CoordinatorServiceServer = (*service)(nil)

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// Join implements fedguardv1.CoordinatorServiceServer.
func (s *service) Join(ctx context.Context, req *fedguardv1.JoinRequest) (*fedguardv1.JoinResponse, error) {
	if len(req.GetAgentVersion()) > 256 {
		return nil, status.Error(codes.InvalidArgument, "agent_version longer than 256 bytes")
	}
	id := identity(ctx)
	c := s.c
	c.mu.Lock()
	needStats := c.scaling == nil && c.spec.Features > 0
	c.noteStatusLocked(id.Name, ParticipantJoined, "")
	c.unstallLocked() // something changed: a stalled round may try again
	c.mu.Unlock()
	c.opts.log.InfoContext(ctx, "participant joined", "participant", id.Name, "agent_version", req.GetAgentVersion())
	return &fedguardv1.JoinResponse{
		Federation:  c.cfg.Federation,
		Participant: id.Name,
		Model:       c.specProto,
		StatsNeeded: needStats,
	}, nil
}

func validateReportStatsRequest(req *fedguardv1.ReportStatsRequest, features int) (dataset.Stats, error) {
	st := req.GetStats()
	if st == nil {
		return dataset.Stats{}, status.Error(codes.InvalidArgument, "stats missing")
	}
	if st.GetCount() == 0 || st.GetCount() > MaxSamples {
		return dataset.Stats{}, status.Errorf(codes.InvalidArgument, "stats.count %d must be between 1 and %d", st.GetCount(), uint64(MaxSamples))
	}
	if len(st.GetSum()) != features || len(st.GetSumSquares()) != features {
		return dataset.Stats{}, status.Errorf(codes.InvalidArgument, "stats have %d sums and %d sums of squares, the model has %d features",
			len(st.GetSum()), len(st.GetSumSquares()), features)
	}
	for i := range features {
		a, b := st.GetSum()[i], st.GetSumSquares()[i]
		if math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) || b < 0 {
			return dataset.Stats{}, status.Errorf(codes.InvalidArgument, "stats for feature %d are not finite or negative", i)
		}
	}
	out := dataset.Stats{Count: st.GetCount(), Sum: st.GetSum(), SumSquares: st.GetSumSquares()}
	if err := dataset.CheckStats(out); err != nil {
		return dataset.Stats{}, status.Errorf(codes.InvalidArgument, "stats are impossible: %v", err)
	}
	return out, nil
}

// statsReceived is the audit record of statistics: their row count, width,
// the aggregates' names and the digest of the values.
func statsReceived(st dataset.Stats) audit.StatsReceived {
	d := st.Digest()
	return audit.StatsReceived{Rows: st.Count, Features: len(st.Sum), Aggregates: featureStatsAggregates, SHA256: hex.EncodeToString(d[:])}
}

// ReportStats implements fedguardv1.CoordinatorServiceServer. Statistics
// that arrive after the scaling is fixed are acknowledged and ignored, so a
// late or restarted participant needs no special path.
func (s *service) ReportStats(ctx context.Context, req *fedguardv1.ReportStatsRequest) (*fedguardv1.ReportStatsResponse, error) {
	st, err := validateReportStatsRequest(req, s.c.spec.Features)
	if err != nil {
		return nil, err
	}
	id := identity(ctx)
	c := s.c
	c.mu.Lock()
	if c.phase == phaseStats {
		if err := c.admit(id.Name, audit.KindStatsReceived); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		// The log lists what left the hospital before it is used.
		if err := c.record(ctx, audit.Entry{Kind: audit.KindStatsReceived, Actor: id.Name, Payload: statsReceived(st)}); err != nil {
			c.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "the audit log cannot record the statistics; try again")
		}
		if len(c.stats) == 0 {
			c.statsSince = c.opts.now()
		}
		c.stats[id.Name] = st
	}
	c.mu.Unlock()
	c.poke()
	c.opts.log.InfoContext(ctx, "feature statistics received", "participant", id.Name, "rows", st.Count)
	return &fedguardv1.ReportStatsResponse{}, nil
}

// WaitRound implements fedguardv1.CoordinatorServiceServer.
func (s *service) WaitRound(ctx context.Context, _ *fedguardv1.WaitRoundRequest) (*fedguardv1.WaitRoundResponse, error) {
	c := s.c
	name := identity(ctx).Name
	timer := time.NewTimer(time.Duration(c.cfg.LongPoll))
	defer timer.Stop()
	registered := false
	defer func() {
		if registered {
			c.mu.Lock()
			if c.ready[name]--; c.ready[name] <= 0 {
				delete(c.ready, name)
			}
			c.mu.Unlock()
		}
	}()
	for {
		c.mu.Lock()
		switch {
		case c.phase == phaseFinished:
			c.told[name] = true
			final := c.manifest
			c.mu.Unlock()
			c.poke()
			return &fedguardv1.WaitRoundResponse{Finished: true, Manifest: final}, nil
		case c.phase == phaseTraining && c.round.wants(name):
			a := c.assignmentLocked()
			c.mu.Unlock()
			return &fedguardv1.WaitRoundResponse{Assignment: a}, nil
		}
		if !registered && c.phase != phaseStats {
			c.ready[name]++
			registered = true
			c.noteReadyLocked(name)
		}
		ch := c.changed
		c.mu.Unlock()
		c.poke()
		select {
		case <-ch:
		case <-timer.C:
			return &fedguardv1.WaitRoundResponse{}, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// downloadChunkBytes is the size of the chunks GetModel sends (the wire
// allows up to wire.ChunkBytes): each download holds its chunk and gRPC's
// encoding of it and of the one queued behind it, so with a hundred
// downloads at once 1 MiB chunks held about 300 MB. 64 KiB chunks were
// far slower on a loaded machine (each waits for the transport's writer
// goroutine): a hundred downloads at once fell under
// limits.update_min_rate.
const downloadChunkBytes = wire.SendChunkBytes

// GetModel implements fedguardv1.CoordinatorServiceServer.
func (s *service) GetModel(req *fedguardv1.GetModelRequest, stream fedguardv1.CoordinatorService_GetModelServer) error {
	c := s.c
	name := identity(stream.Context()).Name
	c.mu.Lock()
	if c.phase != phaseTraining {
		last, ph := c.lastRound, c.phase
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d is not open: no round is (last closed round: %d, phase: %s)", req.GetRound(), last, ph)
	}
	if c.round.number != req.GetRound() {
		open := c.round.number
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d is not open (open round: %d)", req.GetRound(), open)
	}
	if !c.round.inCohort(name) {
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "%s is not in the cohort of round %d", name, req.GetRound())
	}
	from, round := c.lastRound, c.round.number
	c.mu.Unlock()
	// The model is read from the store a chunk at a time, into one
	// chunk-sized buffer per download: the coordinator holds no copy of
	// the model, however many participants download it at the same time.
	// Chunks are small (downloadChunkBytes), because each download also
	// holds gRPC's encoding of the chunk it sends and of the one queued
	// behind it. A client that does not read is cut (sendBounded).
	total := uint64(c.spec.NumParams())
	return c.sendBounded("model download", func(sent func(int) error) error {
		const per = downloadChunkBytes / 4
		buf := make([]byte, 4*min(per, total))
		for off := uint64(0); off < total || off == 0; off += per {
			data := buf[:4*(min(off+per, total)-off)]
			if err := c.store.readModel(from, 4*int64(off), data); err != nil {
				if errors.Is(err, errModelGone) {
					return status.Errorf(codes.FailedPrecondition, "round %d closed during the download", round)
				}
				c.opts.log.Error("model download: reading the model", "round", round, "error", err)
				return status.Error(codes.Internal, "the model cannot be read")
			}
			if err := stream.Send(&fedguardv1.GetModelResponse{
				Round:         round,
				FormatVersion: model.FormatVersion,
				Offset:        off,
				Data:          data,
				NumParams:     total,
			}); err != nil {
				return err
			}
			if err := sent(len(data)); err != nil {
				return err
			}
			if total == 0 {
				break
			}
		}
		return nil
	})
}

// validateUpdateHeader checks the first message of an update stream.
func (s *service) validateUpdateHeader(req *fedguardv1.SubmitUpdateRequest) (*fedguardv1.UpdateHeader, error) {
	h := req.GetHeader()
	if h == nil {
		return nil, status.Error(codes.InvalidArgument, "first message of an update must be the header")
	}
	if req.GetFormatVersion() != model.FormatVersion {
		return nil, status.Errorf(codes.InvalidArgument, "format_version %d not supported (want %d)", req.GetFormatVersion(), model.FormatVersion)
	}
	if want := uint64(s.c.spec.NumParams()); h.GetNumParams() != want {
		return nil, status.Errorf(codes.InvalidArgument, "update has %d parameters, the model has %d", h.GetNumParams(), want)
	}
	if h.GetSampleCount() == 0 || h.GetSampleCount() > MaxSamples {
		return nil, status.Errorf(codes.InvalidArgument, "sample_count %d must be between 1 and %d", h.GetSampleCount(), uint64(MaxSamples))
	}
	if len(h.GetSha256()) != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "sha256 has %d bytes, want 32", len(h.GetSha256()))
	}
	if n := len(h.GetDataSha256()); n != 0 && n != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "data_sha256 has %d bytes, want 0 or 32", n)
	}
	if err := wire.CheckPrivacyLedger(h.GetPrivacy()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "privacy: %v", err)
	}
	if ev := h.GetHoldout(); ev != nil {
		if math.IsNaN(ev.GetLoss()) || math.IsInf(ev.GetLoss(), 0) || ev.GetLoss() < 0 ||
			!(ev.GetAccuracy() >= 0 && ev.GetAccuracy() <= 1) || ev.GetCount() > MaxSamples {
			return nil, status.Error(codes.InvalidArgument, "holdout evaluation out of range (loss must be finite and non-negative, accuracy in [0,1])")
		}
	}
	return h, nil
}

// SubmitUpdate implements fedguardv1.CoordinatorServiceServer. The update
// is decoded into a private buffer and becomes part of the round only after
// its last chunk checked out, so a refused update changes nothing. Every
// refusal and every acceptance is in the audit log before the participant
// hears of it.
func (s *service) SubmitUpdate(stream fedguardv1.CoordinatorService_SubmitUpdateServer) error {
	ctx := stream.Context()
	name := identity(ctx).Name
	rx := &updateReceiver{stream: stream}
	in := readStream(s.c, "update stream", rx.recv)
	defer in.close()
	first, err := in.recv(in.idle, func(idle time.Duration) error {
		return status.Errorf(codes.ResourceExhausted, "no message within %v of opening the stream (limits.update_idle)", idle)
	})
	if err != nil {
		if status.Code(err) == codes.ResourceExhausted {
			s.c.refuseUpdate(ctx, name, 0, status.Convert(err))
		}
		return err
	}
	round := first.GetRound()
	err = s.submitUpdate(stream, in, rx, name, first)
	if st, ok := status.FromError(err); ok && err != nil && st.Code() != codes.Canceled && st.Code() != codes.DeadlineExceeded && st.Code() != codes.Unavailable {
		s.c.refuseUpdate(ctx, name, round, st)
	}
	return err
}

// refuseUpdate records a refused update, and remembers the reason for the
// round's record when the participant is in the open round's cohort.
func (c *Coordinator) refuseUpdate(ctx context.Context, name string, round uint64, st *status.Status) {
	c.mu.Lock()
	attempt := uint32(0)
	if r := c.round; r != nil && r.number == round && r.inCohort(name) {
		attempt = r.attempt
		if r.updates[name] == nil {
			r.refused[name] = st.Message()
			c.noteStatusLocked(name, ParticipantRefused, st.Message())
		}
	}
	c.mu.Unlock()
	c.metrics.refusedUpdate(st.Code())
	c.refusal(ctx, name, audit.Entry{Kind: audit.KindUpdateRefused, Actor: name, Round: round, Payload: audit.UpdateRefused{
		Attempt: attempt, Code: st.Code().String(), Reason: st.Message(),
	}}, "update refused", "participant", name, "round", round, "attempt", attempt, "code", st.Code().String(), "reason", st.Message())
}

func (s *service) submitUpdate(stream fedguardv1.CoordinatorService_SubmitUpdateServer, in *streamIn[*fedguardv1.SubmitUpdateRequest], rx *updateReceiver, name string, first *fedguardv1.SubmitUpdateRequest) error {
	c := s.c
	ctx := stream.Context()
	h, err := s.validateUpdateHeader(first)
	if err != nil {
		return err
	}
	round := first.GetRound()
	c.mu.Lock()
	if err := c.admitLocked(name, round); err != nil {
		c.mu.Unlock()
		return err
	}
	r := c.round
	r.receiving[name] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(r.receiving, name)
		c.mu.Unlock()
	}()

	// The buffer lives as long as this call, which the reader ends with
	// the round attempt, at its deadline, or when the stream stalls. A
	// round that spills holds none: the update goes to its slot of the
	// spill file as it arrives (spill.go).
	var (
		delta    []float32
		asm      *wire.Assembler
		accepted bool
	)
	if r.spill != nil {
		if asm, err = c.spillAssembler(r, name); err != nil {
			return err
		}
	} else {
		delta = c.vecs.get()
		defer func() {
			if !accepted {
				c.vecs.put(delta)
			}
		}()
		held := 4 * int64(len(delta))
		c.limits.buffered.Add(held)
		defer c.limits.buffered.Add(-held)
		asm = wire.NewAssembler(delta)
	}
	in.stop = func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.round != r || c.phase != phaseTraining || r.closing {
			return status.Errorf(codes.FailedPrecondition, "round %d attempt %d ended while the update was arriving", r.number, r.attempt)
		}
		return nil
	}
	in.until(r.deadline, func() error {
		return status.Errorf(codes.FailedPrecondition, "round %d reached its deadline while the update was arriving", r.number)
	})
	in.meter(c.opts.now(), 0)
	for {
		msg, err := in.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := in.count("update stream", len(msg.GetChunk().GetData())); err != nil {
			return err
		}
		if msg.GetRound() != round || msg.GetFormatVersion() != model.FormatVersion {
			return status.Errorf(codes.InvalidArgument, "chunk names round %d format %d, the update is for round %d format %d",
				msg.GetRound(), msg.GetFormatVersion(), round, model.FormatVersion)
		}
		ch := msg.GetChunk()
		if ch == nil {
			return status.Error(codes.InvalidArgument, "only chunks may follow the header")
		}
		// The chunk's data aliases a received buffer (chunks.go), given
		// back once decoded (into the update, or through the spill file).
		err = asm.Add(ch.GetOffset(), ch.GetData())
		rx.release(msg)
		if err != nil {
			if errors.Is(err, errSpillWrite) {
				return c.spillWriteFailed(ctx, name, round, err)
			}
			return status.Errorf(codes.InvalidArgument, "update refused: %v", err)
		}
	}
	if err := asm.Done(); err != nil {
		return status.Errorf(codes.InvalidArgument, "update refused: %v", err)
	}
	sum := asm.Sum()
	if subtle.ConstantTimeCompare(sum[:], h.GetSha256()) != 1 {
		return status.Error(codes.InvalidArgument, "update refused: sha256 does not match the parameters received")
	}
	norm := asm.Norm()
	if math.IsInf(norm, 0) || math.IsNaN(norm) {
		return status.Error(codes.InvalidArgument, "update refused: L2 norm overflows")
	}

	// Recorded before it joins the round (outside the lock, so that many
	// participants share one fsync): should the round close in between,
	// the refusal below is recorded after it.
	if err := c.record(ctx, audit.Entry{Kind: audit.KindUpdateReceived, Actor: name, Round: round, Payload: audit.UpdateReceived{
		Attempt: r.attempt, SHA256: hex.EncodeToString(sum[:]), Norm: norm, Samples: h.GetSampleCount(),
		HoldoutCount: h.GetHoldout().GetCount(), HoldoutAccuracy: h.GetHoldout().GetAccuracy(),
		DataSHA256: hex.EncodeToString(h.GetDataSha256()),
	}}); err != nil {
		return status.Error(codes.Unavailable, "the audit log cannot record the update; send it again")
	}
	c.mu.Lock()
	if c.round != r || c.phase != phaseTraining || r.closing {
		c.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "round %d closed while the update was arriving", round)
	}
	accepted = true
	r.updates[name] = &received{delta: delta, samples: h.GetSampleCount(), norm: norm, sum: sum, holdout: h.GetHoldout(), data: hex.EncodeToString(h.GetDataSha256()), privacy: hospitalPrivacy(name, h.GetPrivacy())}
	c.noteStatusLocked(name, ParticipantUpdateReceived, "")
	n, total := len(r.updates), len(r.cohort)
	c.mu.Unlock()
	c.metrics.updatesAccepted.Inc()
	c.metrics.updateNorm.Observe(norm)
	c.poke()
	c.opts.log.InfoContext(ctx, "update received", "participant", name, "round", round,
		"samples", h.GetSampleCount(), "norm", norm, "received", n, "cohort", total)
	return stream.SendAndClose(&fedguardv1.SubmitUpdateResponse{Round: round, Norm: norm})
}

// GetManifest implements fedguardv1.CoordinatorServiceServer.
func (s *service) GetManifest(ctx context.Context, req *fedguardv1.GetManifestRequest) (*fedguardv1.GetManifestResponse, error) {
	c := s.c
	c.mu.Lock()
	last, fixed := c.lastRound, c.manifest != nil
	c.mu.Unlock()
	if !fixed || req.GetRound() > last {
		return nil, status.Errorf(codes.NotFound, "round %d has no manifest (last closed round: %d)", req.GetRound(), last)
	}
	env, err := c.store.manifest(req.GetRound())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read manifest of round %d: %v", req.GetRound(), err)
	}
	if env == nil {
		return nil, status.Errorf(codes.NotFound, "round %d has no manifest", req.GetRound())
	}
	return &fedguardv1.GetManifestResponse{Round: req.GetRound(), Manifest: env}, nil
}

// refusalReasons are the reasons a participant may give in ReportRefusal.
var refusalReasons = manifest.Reasons()

// maxRefusalDetail bounds the free text of a ReportRefusal.
const maxRefusalDetail = 1024

// validateReportRefusalRequest checks a ReportRefusal request: a known
// reason, and a detail of at most maxRefusalDetail bytes of UTF-8 without
// control characters other than tab and newline, since it goes into the
// text log and the audit log as it came.
func validateReportRefusalRequest(req *fedguardv1.ReportRefusalRequest) (manifest.Reason, error) {
	reason := manifest.Reason(req.GetReason())
	if !slices.Contains(refusalReasons, reason) {
		return "", status.Errorf(codes.InvalidArgument, "reason %q is not one of %v", truncate(req.GetReason()), refusalReasons)
	}
	d := req.GetDetail()
	if len(d) > maxRefusalDetail {
		return "", status.Errorf(codes.InvalidArgument, "detail is %d bytes, more than %d", len(d), maxRefusalDetail)
	}
	if !printableDetail(d) {
		return "", status.Error(codes.InvalidArgument, "detail is not printable UTF-8")
	}
	return reason, nil
}

// ReportRefusal implements fedguardv1.CoordinatorServiceServer.
func (s *service) ReportRefusal(ctx context.Context, req *fedguardv1.ReportRefusalRequest) (*fedguardv1.ReportRefusalResponse, error) {
	reason, err := validateReportRefusalRequest(req)
	if err != nil {
		return nil, err
	}
	name := identity(ctx).Name
	c := s.c
	if err := c.admit(name, audit.KindManifestRefused); err != nil {
		return nil, err
	}
	c.opts.log.WarnContext(ctx, "participant refused a manifest", "participant", name,
		"manifest_round", req.GetManifestRound(), "reason", reason, "detail", req.GetDetail())
	if err := c.record(ctx, audit.Entry{Kind: audit.KindManifestRefused, Actor: name, Round: c.lastRoundNow(), Payload: audit.ManifestRefused{
		ManifestRound: req.GetManifestRound(), Reason: string(reason), Detail: req.GetDetail(),
	}}); err != nil {
		return nil, status.Error(codes.Unavailable, "the audit log cannot record the refusal; try again")
	}
	c.noteStatus(name, ParticipantRefused, fmt.Sprintf("refused the manifest of round %d: %s", req.GetManifestRound(), reason))
	return &fedguardv1.ReportRefusalResponse{}, nil
}

// satOutReason is the form of a ReportSatOut reason: a short stable token.
var satOutReason = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// validateReportSatOutRequest checks a sit-out's reason and detail.
func validateReportSatOutRequest(req *fedguardv1.ReportSatOutRequest) error {
	if !satOutReason.MatchString(req.GetReason()) {
		return status.Errorf(codes.InvalidArgument, "reason %q is not 1 to 64 bytes of [a-z0-9_]", truncate(req.GetReason()))
	}
	d := req.GetDetail()
	if len(d) > maxRefusalDetail {
		return status.Errorf(codes.InvalidArgument, "detail is %d bytes, more than %d", len(d), maxRefusalDetail)
	}
	if !printableDetail(d) {
		return status.Error(codes.InvalidArgument, "detail is not printable UTF-8")
	}
	return nil
}

// ReportSatOut implements fedguardv1.CoordinatorServiceServer. Only a
// member of the open attempt's cohort that has sent no update may sit it
// out; the sit-out is audited (round_sat_out), shown on the status page,
// and its reason goes into the round manifest's exclusions. The round then
// waits for the others only. A member of the attempt that failed last may
// still report why it left it (late, below): that is recorded only.
func (s *service) ReportSatOut(ctx context.Context, req *fedguardv1.ReportSatOutRequest) (*fedguardv1.ReportSatOutResponse, error) {
	if err := validateReportSatOutRequest(req); err != nil {
		return nil, err
	}
	name := identity(ctx).Name
	c := s.c
	round, attempt := req.GetRound(), req.GetAttempt()
	check := func() error {
		if c.phase != phaseTraining {
			return status.Errorf(codes.FailedPrecondition, "round %d is not open (last closed round: %d, phase: %s)", round, c.lastRound, c.phase)
		}
		r := c.round
		switch {
		case round != r.number || attempt != r.attempt:
			return status.Errorf(codes.FailedPrecondition, "round %d attempt %d is not open (open: round %d attempt %d)", round, attempt, r.number, r.attempt)
		case r.closing:
			return status.Errorf(codes.FailedPrecondition, "round %d is closing", round)
		case !r.inCohort(name):
			return status.Errorf(codes.FailedPrecondition, "%s is not in the cohort of round %d", name, round)
		case r.updates[name] != nil || r.receiving[name]:
			return status.Errorf(codes.AlreadyExists, "%s sent an update for round %d", name, round)
		case r.satOut[name] != "":
			return status.Errorf(codes.FailedPrecondition, "%s already sits round %d out", name, round)
		}
		// In a secure round the member may have joined its session: it
		// is then a dropout of it, which the protocol survives.
		return nil
	}
	// late: the attempt named is the one that failed last, and the caller
	// was in its cohort. A member of a secure session that found a bad
	// share reports it once it has checked its shares, after training,
	// and the session may have failed by then for the others' leaving:
	// the report is recorded (audit log, text log, status page) and
	// changes no round.
	late := func() bool {
		return c.retry.failures > 0 && round == c.lastRound+1 && attempt+1 == c.attempt && slices.Contains(c.retry.cohort, name)
	}
	c.mu.Lock()
	err := check()
	recordOnly := err != nil && late()
	c.mu.Unlock()
	if err != nil && !recordOnly {
		return nil, err
	}
	if err := c.admit(name, audit.KindRoundSatOut); err != nil {
		return nil, err
	}
	c.opts.log.WarnContext(ctx, "participant sits the round out", "participant", name,
		"round", round, "attempt", attempt, "reason", req.GetReason(), "detail", req.GetDetail())
	if err := c.record(ctx, audit.Entry{Kind: audit.KindRoundSatOut, Actor: name, Round: round, Payload: audit.RoundSatOut{
		Attempt: attempt, Reason: req.GetReason(), Detail: req.GetDetail(),
	}}); err != nil {
		return nil, status.Error(codes.Unavailable, "the audit log cannot record the sit-out; try again")
	}
	why := req.GetReason()
	if d := req.GetDetail(); d != "" {
		why += ": " + d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !recordOnly {
		if err := check(); err != nil {
			if !late() {
				return nil, err // the attempt ended meanwhile; the record stands
			}
			recordOnly = true // it failed meanwhile: as above
		}
	}
	if recordOnly {
		if c.round == nil { // no later attempt's status to overwrite
			c.noteStatusLocked(name, ParticipantSatOut, fmt.Sprintf("attempt %d: %s", attempt, why))
		}
		return &fedguardv1.ReportSatOutResponse{}, nil
	}
	c.round.satOut[name] = why
	c.noteStatusLocked(name, ParticipantSatOut, why)
	c.poke()
	return &fedguardv1.ReportSatOutResponse{}, nil
}

// truncate shortens untrusted input before it goes into an error message:
// to 64 bytes, cut on a rune boundary.
func truncate(s string) string { return excerpt.Of(s, 64) }

// admitLocked decides whether name may submit an update for round now.
func (c *Coordinator) admitLocked(name string, round uint64) error {
	if c.phase != phaseTraining {
		return status.Errorf(codes.FailedPrecondition, "round %d is not open (last closed round: %d, phase: %s)", round, c.lastRound, c.phase)
	}
	r := c.round
	switch {
	case r.secure != nil:
		return status.Errorf(codes.FailedPrecondition, "round %d is secure: take part through SecureAggregate, plain updates are refused", r.number)
	case round != r.number:
		return status.Errorf(codes.FailedPrecondition, "round %d is not open (open round: %d)", round, r.number)
	case r.closing:
		return status.Errorf(codes.FailedPrecondition, "round %d is closing: it takes no more updates", round)
	case !r.inCohort(name):
		return status.Errorf(codes.FailedPrecondition, "%s is not in the cohort of round %d", name, round)
	case r.updates[name] != nil:
		return status.Errorf(codes.AlreadyExists, "%s already submitted an update for round %d", name, round)
	case r.receiving[name]:
		return status.Errorf(codes.AlreadyExists, "%s is already sending an update for round %d", name, round)
	case r.satOut[name] != "":
		return status.Errorf(codes.FailedPrecondition, "%s sits round %d out (it said so: %s)", name, round, truncate(r.satOut[name]))
	}
	return nil
}
