package participant

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
	"github.com/fedguard/fedguard/wire"
)

// DeclineAlreadyRevealed is the reason an agent gives, in a SecureDecline,
// for sitting out a secure round that starts from a model for which it
// already revealed its shares in an earlier session.
const DeclineAlreadyRevealed = secureround.DeclineAlreadyRevealed

// runSecure takes part in a secure round (asg.Secure set) whose manifest
// checkManifest has accepted: it derives the round's layout itself, then
// runs its bucket's SecAgg session over one SecureAggregate stream. rctx
// bounds the round; ctx is the agent's.
//
// # At most one unmasking per starting model
//
// The agent reveals its shares (answers Unmask) in at most one session
// starting from a given model, and it records that before it answers, in
// [Config.StateFile]. A later assignment of another session starting from
// the same model — another attempt of the round, possibly after a restart
// of either side — is declined with [DeclineAlreadyRevealed]: the agent
// sends no masked input for it. The reason is the one attack SecAgg leaves
// to its caller (see package aggregation/secagg, "Threat model"): a
// coordinator that completes a session, claims that it failed and gets the
// retry unmasked over a different survivor set learns the difference of
// two sums of (nearly) the same inputs — training from the same model on
// the same rows — that is, the update of the one hospital in one sum and
// not in the other.
//
// # Resuming a session after a coordinator crash
//
// A coordinator keeps a session in memory only; when it dies mid-session
// the agent keeps its side (see [secureSession]): the SecAgg client, every
// message it computed and every answer it received, in the order of the
// protocol. A restarted coordinator offers the very same session again
// (same federation, round, attempt, start manifest, cohort and parameters,
// hence the same session id and bucket); the agent then re-sends, byte for
// byte, the messages it had computed, and requires every answer it had
// received to come back identical. Past the point it had reached, the same
// client goes on, each of its rounds still called at most once. Seen from
// the agent this is one session whose transport lost and repeated some
// messages: it still advertises one key pair, masks one input (computed
// once, so one set of masks never hides two inputs), signs one survivor
// set and reveals one set of shares, so it reveals nothing that one
// uninterrupted session would not have. An answer that differs from the
// recorded one (a coordinator that lost a member, or one that lies) ends
// the session for good: the agent forgets it and never answers in it
// again. The agent keeps one such session, in memory, until it takes part
// in another one; an agent that restarts itself loses it and, if it had
// revealed, declines the resumed session like any other.
func (a *Agent) runSecure(ctx, rctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger) error {
	start, err := manifest.Digest(asg.GetManifest())
	if err != nil {
		return fmt.Errorf("%w: start manifest: %w", ErrSecureRound, err)
	}
	plan, err := secureround.FromProto(a.cfg.Federation, start, asg.GetRound(), asg.GetAttempt(), a.spec.NumParams(), asg.GetSecure())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	bucket, members, id, ok := plan.Bucket(a.name)
	if !ok {
		return fmt.Errorf("%w: this agent (%q) is not in the round's cohort of %d", ErrSecureRound, a.name, len(plan.Cohort))
	}
	modelDigest := hex.EncodeToString(asg.GetModelSha256())
	log = log.With(slog.Uint64("attempt", uint64(asg.GetAttempt())), slog.Int("bucket", bucket))
	s := a.pending
	if s != nil && !s.is(plan, bucket, id, modelDigest) {
		s = nil
	}
	if s == nil {
		if a.revealed[modelDigest] {
			return a.decline(ctx, rctx, client, asg, log, DeclineAlreadyRevealed)
		}
		if min := a.cfg.MinSecureBucket; len(members) < min {
			// A sum of few updates tells each contributor much about the
			// others (with two, the other's update), so the hospital sets the
			// smallest sum it contributes to, not the coordinator.
			return a.decline(ctx, rctx, client, asg, log, fmt.Sprintf("a secure sum of %d is below this hospital's minimum of %d", len(members), min))
		}
		if reason := a.secureDPShortfall(plan); reason != "" {
			return a.decline(ctx, rctx, client, asg, log, reason)
		}
		reason, err := a.secureBudgetShortfall(plan)
		if err != nil {
			return err
		}
		if reason != "" {
			return a.sitOutSecureBudget(ctx, rctx, client, asg, log, reason)
		}
		if s, err = a.newSecureSession(plan, bucket, id, members, modelDigest); err != nil {
			return err
		}
		// Whatever session the agent kept before, it never answers in it
		// again.
		a.pending = s
		log.DebugContext(ctx, "secure round joined", slog.Int("bucket_size", len(members)), slog.Uint64("session_id", uint64(id)),
			slog.Int("threshold", s.cfg.Threshold), slog.Int("degree", s.cfg.Degree))
	} else {
		log.InfoContext(ctx, "resuming a secure session", slog.Int("messages_sent", len(s.sent)), slog.Int("answers_received", len(s.got)))
	}

	sctx, cancel := context.WithCancel(rctx) // abandoning the round ends the stream
	defer cancel()
	stream, err := client.SecureAggregate(sctx)
	if err != nil {
		return fmt.Errorf("secure aggregate: %w", err)
	}
	st := &secureStream{a: a, asg: asg, stream: stream}
	var resp *fedguardv1.SecureAggregateResponse
	for p := secagg.PhaseAdvertiseKeys; p <= secagg.PhaseUnmasking; p++ {
		i := int(p - secagg.PhaseAdvertiseKeys) // index in s.sent and s.got
		replay := i < len(s.sent)
		if !replay {
			if err := a.secureMessage(rctx, client, asg, s, p); err != nil {
				if s.client.Failed() {
					a.forget(s)
				}
				return err
			}
		}
		if err := st.sendPhase(p, s.sent[i], replay); err != nil {
			return err
		}
		if resp, err = st.recv(p, secureAnswers[p].want, secureAnswers[p].ok); err != nil {
			return err
		}
		if i < len(s.got) {
			if !proto.Equal(resp, s.got[i]) {
				a.forget(s)
				return fmt.Errorf("%w: the coordinator answered %v of the resumed session differently than before", ErrSecureRound, p)
			}
			continue
		}
		if err := s.accept(p, resp, a.cfg.Federation, members, a.cfg.TLS.RootCAs); err != nil {
			a.forget(s)
			return fmt.Errorf("%w: %w", ErrSecureRound, err)
		}
		log.DebugContext(ctx, "secure answer received", slog.String("phase", p.String()))
	}
	// The coordinator ends the stream after SecureDone; its status no
	// longer matters.
	if err := stream.CloseSend(); err == nil {
		if _, err := stream.Recv(); err != io.EOF {
			log.DebugContext(ctx, "secure stream did not end cleanly after done", slog.Any("error", err))
		}
	}
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
	if !s.done {
		s.done = true
		a.rounds.Add(1)
	}
	// s stays pending: the coordinator may yet die before it commits the
	// round, and then offers this session again.
	log.InfoContext(ctx, "secure round done", slog.Uint64("survivors", uint64(resp.GetDone().GetSurvivors())),
		slog.Int("bucket_size", len(members)), slog.Uint64("samples", s.res.Samples), slog.Float64("holdout_accuracy", s.res.Holdout.Accuracy))
	return nil
}

// secureAnswers is, by phase, what the coordinator answers a phase's
// message with.
var secureAnswers = [...]struct {
	want string
	ok   func(*fedguardv1.SecureAggregateResponse) bool
}{
	secagg.PhaseAdvertiseKeys:    {"keys", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetKeys() != nil }},
	secagg.PhaseShareKeys:        {"shares", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetShares() != nil }},
	secagg.PhaseMaskedInput:      {"survivors", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetSurvivors() != nil }},
	secagg.PhaseConsistencyCheck: {"unmask request", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetUnmask() != nil }},
	secagg.PhaseUnmasking:        {"done", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetDone() != nil }},
}

// secureSession is the agent's side of one SecAgg session, kept (in
// Agent.pending) so that the session can be resumed with a restarted
// coordinator: see runSecure. sent[i] is the message of the i-th phase
// (from secagg.PhaseAdvertiseKeys on), recorded before it is first sent;
// got[i] the coordinator's answer to it, recorded once checked. len(got) ≤ len(sent) ≤ len(got)+1.
type secureSession struct {
	plan   secureround.Plan
	bucket int
	id     uint32
	model  string // hex digest of the starting model
	cfg    secagg.Config
	client *secagg.Client
	sent   []secureOut
	got    []*fedguardv1.SecureAggregateResponse

	// What the answers said, for the client's next rounds.
	own        *secagg.AdvertiseKeys
	peerKeys   map[uint32]any // identity keys of the members, once relayed
	neighbours []*secagg.AdvertiseKeys
	routed     []*secagg.EncryptedShare
	survivors  []uint32
	unmask     *secagg.UnmaskRequest
	res        Result // of the training, for the log (without its Delta)
	done       bool   // the coordinator answered the unmasking
}

// secureOut is one phase's message: a request, or the masked input's words
// (sent as chunks).
type secureOut struct {
	req    *fedguardv1.SecureAggregateRequest
	masked []uint32
	// distributed is the federation-level ledger sent with masked: as it
	// stood once this session's release was recorded, so that a resumed
	// session reports what the first sending did.
	distributed *fedguardv1.DistributedPrivacyLedger
}

// is reports whether the assignment's session (plan, bucket, id, starting
// model) is s's: the same round attempt with the same public parameters,
// so the same SecAgg configuration.
func (s *secureSession) is(plan secureround.Plan, bucket int, id uint32, model string) bool {
	p := s.plan
	return p.Federation == plan.Federation && p.Round == plan.Round && p.Attempt == plan.Attempt && p.Start == plan.Start &&
		p.Dim == plan.Dim && proto.Equal(p.Proto(), plan.Proto()) && s.bucket == bucket && s.id == id && s.model == model
}

// newSecureSession makes the agent's client for bucket's session of plan.
func (a *Agent) newSecureSession(plan secureround.Plan, bucket int, id uint32, members []string, model string) (*secureSession, error) {
	signer, err := a.identity()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if a.cfg.TLS.RootCAs == nil {
		return nil, fmt.Errorf("%w: Config.TLS has no RootCAs to check the other participants' certificates against", ErrSecureRound)
	}
	s := &secureSession{plan: plan, bucket: bucket, id: id, model: model, cfg: plan.Session(bucket)}
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := s.peerKeys[id]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no certificate relayed for participant %d", id)
	})
	if s.client, err = secagg.NewClient(s.cfg, id, signer, verify, crand.Reader); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	s.peerKeys = map[uint32]any{id: signer.Public()}
	return s, nil
}

// badShareError is a secure session broken by a member's share: a
// secagg.ShareError (the share from that member failed its check), with
// the member's name. Either the member sent a bad share or the
// coordinator changed it on the way; the agent cannot tell which, and
// reports it (satOutBadShare) so that the accusation is on the record.
type badShareError struct {
	sender string
	err    error
}

func (e *badShareError) Error() string {
	return fmt.Sprintf("the share of %s, as the coordinator relayed it: %v", e.sender, e.err)
}

func (e *badShareError) Unwrap() error { return e.err }

// satOutBadShare is the reason an agent gives the coordinator
// (ReportSatOut) when a member's share broke its session.
const satOutBadShare = "secure_bad_share"

// namedShareError returns err as a *badShareError when it is a
// secagg.ShareError of a member of s's bucket, and err otherwise.
func (s *secureSession) namedShareError(err error) error {
	var se *secagg.ShareError
	if !errors.As(err, &se) {
		return err
	}
	members := s.plan.Buckets()[s.bucket]
	if se.From < 1 || int(se.From) > len(members) {
		return err
	}
	return &badShareError{sender: members[se.From-1], err: err}
}

// forget drops s if it is the pending session: the agent never answers in
// it again.
func (a *Agent) forget(s *secureSession) {
	if a.pending == s {
		a.pending = nil
	}
}

// secureMessage computes phase p's message of s with its client and
// records it in s.sent before anything is sent.
func (a *Agent) secureMessage(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, s *secureSession, p secagg.Phase) error {
	sc := s.client
	var out secureOut
	switch p {
	case secagg.PhaseAdvertiseKeys:
		adv, err := sc.AdvertiseKeys()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSecureRound, err)
		}
		s.own = adv
		out.req = &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Advertise{Advertise: wire.AdvertiseToProto(adv)}}
	case secagg.PhaseShareKeys:
		shares, err := sc.ShareKeys(s.neighbours)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSecureRound, err)
		}
		out.req = &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Shares{Shares: wire.SharesToProto(shares)}}
	case secagg.PhaseMaskedInput:
		// Train, encode and mask: once per session, so that one set of
		// masks never hides two inputs.
		res, input, err := a.secureInput(ctx, client, asg, s.plan)
		if err != nil {
			return err
		}
		if err := a.recordSecureRelease(ctx, s.plan); err != nil {
			clear(input)
			return err
		}
		masked, err := sc.MaskedInput(s.routed, input)
		clear(input)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSecureRound, s.namedShareError(err))
		}
		res.Delta = nil // the update itself is not kept with the session
		s.res, out.masked, out.distributed = res, masked.Masked, a.distributedLedger(s.plan)
	case secagg.PhaseConsistencyCheck:
		sig, err := sc.ConsistencyCheck(s.survivors)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSecureRound, err)
		}
		out.req = &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Consistency{Consistency: &fedguardv1.SecureSignature{Signature: sig.Sig}}}
	case secagg.PhaseUnmasking:
		// Reveal the shares, once per starting model.
		reveal, err := sc.Unmask(s.unmask)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSecureRound, err)
		}
		if err := a.recordReveal(s.model); err != nil {
			return err
		}
		out.req = &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Unmask{Unmask: wire.UnmaskResponseToProto(reveal)}}
	}
	s.sent = append(s.sent, out)
	return nil
}

// accept checks the coordinator's answer to phase p's message and records
// it, with what the client's next round needs.
func (s *secureSession) accept(p secagg.Phase, resp *fedguardv1.SecureAggregateResponse, federation string, members []string, roots *x509.CertPool) error {
	n := s.cfg.N
	switch p {
	case secagg.PhaseAdvertiseKeys:
		neighbours, keys, err := checkKeys(resp.GetKeys(), s.own, n, federation, members, roots)
		if err != nil {
			return err
		}
		// The relay leaves out this participant's own advertisement, but
		// its own signature is among the consistency signatures it checks.
		keys[s.id] = s.peerKeys[s.id]
		s.neighbours, s.peerKeys = neighbours, keys
	case secagg.PhaseShareKeys:
		routed, err := wire.RoutedFromProto(resp.GetShares(), n)
		if err != nil {
			return err
		}
		s.routed = routed
	case secagg.PhaseMaskedInput:
		survivors, err := wire.SurvivorsFromProto(resp.GetSurvivors(), n)
		if err != nil {
			return err
		}
		s.survivors = survivors
	case secagg.PhaseConsistencyCheck:
		req, err := wire.UnmaskRequestFromProto(s.id, n, resp.GetUnmask())
		if err != nil {
			return err
		}
		s.unmask = req
	}
	s.got = append(s.got, resp)
	return nil
}

// secureInput downloads and checks the starting model, trains, checks
// the result, clips it to plan.NormClip in L2 norm and encodes it with its
// weight: the input of the session, of Dim+1 words. Under distributed DP
// (plan.DP) the update is encoded by secagg.DDP instead, noise included.
func (a *Agent) secureInput(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, plan secureround.Plan) (Result, []uint32, error) {
	start, err := a.fetchModel(ctx, client, asg)
	if err != nil {
		return Result{}, nil, err
	}
	// Under distributed DP the noise is drawn while the hospital trains.
	prepared := plan.Prepare()
	// On a privacy budget found exhausted by training, no masked input
	// leaves, and the coordinator is told why, as after a plain round.
	res, err := a.train(ctx, client, asg, start, a.log.With(slog.Uint64("round", asg.GetRound())))
	if err != nil {
		return Result{}, nil, err
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return Result{}, nil, fmt.Errorf("participant: rounding seed: %w", err)
	}
	input, err := prepared.Input(res.Delta, res.Samples, rand.NewChaCha8(seed))
	if err != nil {
		return Result{}, nil, fmt.Errorf("%w: encode the update: %w", ErrSecureRound, err)
	}
	return res, input, nil
}

// secureDPShortfall returns why the hospital declines plan under its
// Config.SecureDPRoundEpsilon, or "" if it does not: the plan has no
// distributed DP, or one release of its sum, with the fewest survivors
// the plan allows, costs more than that ε.
func (a *Agent) secureDPShortfall(plan secureround.Plan) string {
	limit := a.cfg.SecureDPRoundEpsilon
	if limit <= 0 {
		return ""
	}
	dp := plan.DDP()
	if dp == nil {
		return fmt.Sprintf("this hospital takes part in secure rounds with distributed DP only (at most ε = %g per round)", limit)
	}
	delta := cmp.Or(a.cfg.DPDelta, DefaultDPDelta)
	g, err := dp.Mechanism(plan.MinSurvivors()).Epsilon(delta)
	if err != nil {
		return fmt.Sprintf("the round's distributed DP cannot be accounted: %v", err)
	}
	if g.Epsilon > limit {
		return fmt.Sprintf("the round's distributed DP costs ε = %.4g per round at δ = %g (σ² = %d, %d survivors at least), above this hospital's limit of %g",
			g.Epsilon, delta, dp.Sigma2, plan.MinSurvivors(), limit)
	}
	return ""
}

// checkKeys reads the relayed advertisements: it checks each certificate
// against the federation's roots and the bucket member its id stands for,
// checks that this participant's own advertisement, if relayed, is the one
// it sent, and returns the neighbours' advertisements with their identity
// keys by session id.
func checkKeys(p *fedguardv1.SecureKeys, own *secagg.AdvertiseKeys, n int, federation string, members []string, roots *x509.CertPool) ([]*secagg.AdvertiseKeys, map[uint32]any, error) {
	peers, err := wire.KeysFromProto(p, n)
	if err != nil {
		return nil, nil, err
	}
	keys, err := wire.PeerKeys(peers, federation, members, roots, time.Now())
	if err != nil {
		return nil, nil, err
	}
	var neighbours []*secagg.AdvertiseKeys
	for _, peer := range peers {
		adv := peer.Advertise
		if adv.ID != own.ID {
			neighbours = append(neighbours, adv)
			continue
		}
		if adv.CPub != own.CPub || adv.SPub != own.SPub || !bytes.Equal(adv.Sig, own.Sig) {
			return nil, nil, fmt.Errorf("the coordinator relayed another advertisement for this participant (%d) than the one it sent", own.ID)
		}
	}
	return neighbours, keys, nil
}

// decline tells the coordinator that the agent sits out asg's round, since
// it already revealed its shares in a session starting from the same model
// (see runSecure), and counts the round as done: the agent will not take
// part in this attempt, so it does not ask for it again.
func (a *Agent) decline(ctx, rctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger, reason string) error {
	if err := a.sendDecline(ctx, rctx, client, asg, log, reason); err != nil {
		return err
	}
	a.metrics.declined()
	return nil
}

// sendDecline is decline without counting the round as declined in the
// metrics (a round sat out for another reason is counted under that one).
func (a *Agent) sendDecline(ctx, rctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, log *slog.Logger, reason string) error {
	log.WarnContext(ctx, "declining a secure round: "+reason,
		slog.Uint64("attempt", uint64(asg.GetAttempt())), slog.String("model_sha256", hex.EncodeToString(asg.GetModelSha256())))
	sctx, cancel := context.WithCancel(rctx)
	defer cancel()
	stream, err := client.SecureAggregate(sctx)
	if err != nil {
		return fmt.Errorf("secure aggregate: %w", err)
	}
	err = stream.Send(&fedguardv1.SecureAggregateRequest{
		Round: asg.GetRound(), Attempt: asg.GetAttempt(),
		Body: &fedguardv1.SecureAggregateRequest_Decline{Decline: &fedguardv1.SecureDecline{Reason: reason}},
	})
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("secure aggregate: decline: %w", err)
	}
	if err == nil {
		err = stream.CloseSend()
	}
	// Wait for the coordinator to end the stream, so that the decline was
	// read before the agent asks for the next round.
	if err == nil {
		for err == nil {
			_, err = stream.Recv()
		}
		if err != io.EOF {
			log.DebugContext(ctx, "secure decline answered with an error", slog.Any("error", err))
		}
	}
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
	return nil
}

// recordReveal records, before the agent reveals its shares, that it did
// so for a session starting from model (hex digest): in memory and in the
// state file. Failing to write it stops the agent, like failing to record
// an accepted manifest: a restart would forget it.
func (a *Agent) recordReveal(model string) error {
	revealed := maps.Clone(a.revealed)
	revealed[model] = true
	if a.cfg.StateFile != "" {
		if a.accepted == nil {
			return fmt.Errorf("%w: no accepted manifest to record the revealed session with", ErrSecureRound)
		}
		if err := a.ops.SaveState(a.cfg.StateFile, State{Accepted: a.accepted, Checkpoint: a.checkpoint, Revealed: revealed, rotations: a.rotations}); err != nil {
			return permanent(fmt.Errorf("participant: %w", err))
		}
	}
	a.revealed = revealed
	return nil
}

// identity returns the key of the client certificate the coordinator sees
// on this connection: it signs the session's advertisement and survivor
// set, and the coordinator relays that certificate to the neighbours.
func (a *Agent) identity() (crypto.Signer, error) {
	cert := a.presented.Load()
	if cert == nil && len(a.cfg.TLS.Certificates) > 0 {
		cert = &a.cfg.TLS.Certificates[0]
	}
	if cert == nil && a.cfg.TLS.GetClientCertificate != nil {
		c, err := a.cfg.TLS.GetClientCertificate(&tls.CertificateRequestInfo{Version: tls.VersionTLS13})
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cert = c
	}
	if cert == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("no client certificate key to sign with")
	}
	// The neighbours check the relayed certificate against the name the
	// layout gives this agent, the one Join returned: a mismatch would only
	// get it dropped later.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if id, err := certs.ParseIdentity(leaf); err != nil || id.Name != a.name || id.Federation != a.cfg.Federation {
		return nil, fmt.Errorf("the client certificate (%v, %v) is not that of %s in federation %s, the name Join returned", id, err, a.name, a.cfg.Federation)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("client certificate key %T cannot sign", cert.PrivateKey)
	}
	return signer, nil
}

// watchClientCertificate returns c, or a copy of it that records in
// a.presented each client certificate a handshake presents: certificates
// served by GetClientCertificate may be rotated while the connection keeps
// the one it was opened with.
func (a *Agent) watchClientCertificate(c *tls.Config) *tls.Config {
	if c.GetClientCertificate == nil {
		return c
	}
	c = c.Clone()
	get := c.GetClientCertificate
	c.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := get(info)
		if err == nil && cert != nil && len(cert.Certificate) > 0 {
			a.presented.Store(cert)
		}
		return cert, err
	}
	return c
}

// secureStream is one SecureAggregate stream of a round attempt.
type secureStream struct {
	a      *Agent
	asg    *fedguardv1.RoundAssignment
	stream grpc.BidiStreamingClient[fedguardv1.SecureAggregateRequest, fedguardv1.SecureAggregateResponse]
	sent   time.Time // when the current phase's message was sent, for the metrics
}

// hook runs the fault-injection hook before phase's message.
func (s *secureStream) hook(phase secagg.Phase) error {
	if s.a.secureHook == nil {
		return nil
	}
	return s.a.secureHook(phase)
}

// sendPhase sends phase's message out: after the hook unless it is a
// replay (a message computed and sent before, sent again to a resumed
// session), with the round and attempt of the assignment.
func (s *secureStream) sendPhase(phase secagg.Phase, out secureOut, replay bool) error {
	if !replay {
		if err := s.hook(phase); err != nil {
			return err
		}
	}
	if phase == secagg.PhaseMaskedInput {
		return s.sendMasked(out.masked, out.distributed)
	}
	req := proto.Clone(out.req).(*fedguardv1.SecureAggregateRequest)
	req.Round, req.Attempt = s.asg.GetRound(), s.asg.GetAttempt()
	s.sent = time.Now()
	if err := s.stream.Send(req); err != nil {
		return s.sendError(phase, err)
	}
	s.a.secureOut.Add(uint64(proto.Size(req)))
	s.a.log.Debug("secure phase sent", slog.Uint64("round", s.asg.GetRound()), slog.String("phase", phase.String()), slog.Bool("replay", replay))
	return nil
}

// sendMasked sends the masked input as chunks, the first with the
// agent's ledgers.
func (s *secureStream) sendMasked(words []uint32, distributed *fedguardv1.DistributedPrivacyLedger) error {
	var sent uint64
	s.sent = time.Now()
	err := wire.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
		if c.GetOffset() == 0 {
			// The data version rides on the first chunk, as it does on
			// a plain update's header.
			c.DataSha256 = s.a.data
			c.Privacy = s.a.privacyLedger()
			c.DistributedPrivacy = distributed
		}
		req := &fedguardv1.SecureAggregateRequest{
			Round: s.asg.GetRound(), Attempt: s.asg.GetAttempt(),
			Body: &fedguardv1.SecureAggregateRequest_Masked{Masked: c},
		}
		err := s.stream.Send(req)
		if err == nil {
			sent += uint64(len(c.GetData()))
			s.a.secureOut.Add(uint64(proto.Size(req)))
		}
		return err
	})
	s.a.bytesOut.Add(sent)
	if err != nil {
		return s.sendError(secagg.PhaseMaskedInput, err)
	}
	s.a.log.Debug("secure phase sent", slog.Uint64("round", s.asg.GetRound()), slog.String("phase", secagg.PhaseMaskedInput.String()))
	return nil
}

// sendError turns an error of Send into the round's error: io.EOF means
// the coordinator ended the stream, and its status comes from Recv.
func (s *secureStream) sendError(phase secagg.Phase, err error) error {
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("secure aggregate (%v): %w", phase, err)
	}
	if _, err := s.stream.Recv(); err != nil && err != io.EOF {
		return fmt.Errorf("secure aggregate (%v): %w", phase, err)
	}
	return fmt.Errorf("%w: the coordinator ended the stream at %v", ErrSecureRound, phase)
}

// recv reads the coordinator's answer to phase's message, which must be
// what ok accepts.
func (s *secureStream) recv(phase secagg.Phase, want string, ok func(*fedguardv1.SecureAggregateResponse) bool) (*fedguardv1.SecureAggregateResponse, error) {
	resp, err := s.stream.Recv()
	switch {
	case err == io.EOF:
		return nil, fmt.Errorf("%w: the coordinator ended the stream before sending the %s", ErrSecureRound, want)
	case err != nil:
		return nil, fmt.Errorf("secure aggregate (%v): %w", phase, err)
	case !ok(resp):
		return nil, fmt.Errorf("%w: the coordinator answered %v with %T, want the %s", ErrSecureRound, phase, resp.GetBody(), want)
	}
	s.a.metrics.securePhaseDone(phase, s.sent)
	s.a.secureIn.Add(uint64(proto.Size(resp)))
	return resp, nil
}
