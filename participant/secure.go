package participant

import (
	"bytes"
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

	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/secureround"
)

// DeclineAlreadyRevealed is the reason an agent gives, in a SecureDecline,
// for sitting out a secure round that starts from a model for which it
// already revealed its shares in an earlier session.
const DeclineAlreadyRevealed = "already revealed shares for a session starting from this model"

// runSecure takes part in a secure round (asg.Secure set) whose manifest
// checkManifest has accepted: it derives the round's layout itself, then
// runs its bucket's SecAgg session over one SecureAggregate stream. rctx
// bounds the round; ctx is the agent's.
//
// # At most one unmasking per starting model
//
// The agent reveals its shares (answers Unmask) in at most one session
// starting from a given model, and it records that before it answers, in
// [Config.StateFile]. A later assignment starting from the same model —
// another attempt of the round, possibly after a restart of either side —
// is declined with [DeclineAlreadyRevealed]: the agent sends no masked
// input for it. The reason is the one attack SecAgg leaves to its caller
// (see package aggregation/secagg, "Threat model"): a coordinator that
// completes a session, claims that it failed and gets the retry unmasked
// over a different survivor set learns the difference of two sums of
// (nearly) the same inputs — training from the same model on the same
// rows — that is, the update of the one hospital in one sum and not in the
// other.
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
	if a.revealed[modelDigest] {
		return a.decline(ctx, rctx, client, asg, log, DeclineAlreadyRevealed)
	}
	if min := a.cfg.MinSecureBucket; len(members) < min {
		// A sum of few updates tells each contributor much about the
		// others (with two, the other's update), so the hospital sets the
		// smallest sum it contributes to, not the coordinator.
		return a.decline(ctx, rctx, client, asg, log, fmt.Sprintf("a secure sum of %d is below this hospital's minimum of %d", len(members), min))
	}
	signer, err := a.identity()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	roots := a.cfg.TLS.RootCAs
	if roots == nil {
		return fmt.Errorf("%w: Config.TLS has no RootCAs to check the other participants' certificates against", ErrSecureRound)
	}
	cfg := plan.Session(bucket)
	var peerKeys map[uint32]any // set once the advertisements arrive
	verify := secagg.PublicKeyVerifier(func(id uint32) (crypto.PublicKey, error) {
		if k, ok := peerKeys[id]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no certificate relayed for participant %d", id)
	})
	sc, err := secagg.NewClient(cfg, id, signer, verify, crand.Reader)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	log = log.With(slog.Uint64("attempt", uint64(asg.GetAttempt())), slog.Int("bucket", bucket))
	log.DebugContext(ctx, "secure round joined", slog.Int("bucket_size", len(members)), slog.Uint64("session_id", uint64(id)),
		slog.Int("threshold", cfg.Threshold), slog.Int("degree", cfg.Degree))

	sctx, cancel := context.WithCancel(rctx) // abandoning the round ends the stream
	defer cancel()
	stream, err := client.SecureAggregate(sctx)
	if err != nil {
		return fmt.Errorf("secure aggregate: %w", err)
	}
	s := &secureStream{a: a, asg: asg, stream: stream}

	// Round 0: advertise keys; the coordinator relays the neighbours'.
	adv, err := sc.AdvertiseKeys()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if err := s.send(secagg.PhaseAdvertiseKeys, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Advertise{Advertise: secureround.AdvertiseToProto(adv)}}); err != nil {
		return err
	}
	resp, err := s.recv(secagg.PhaseAdvertiseKeys, "keys", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetKeys() != nil })
	if err != nil {
		return err
	}
	neighbours, keys, err := checkKeys(resp.GetKeys(), adv, cfg.N, a.cfg.Federation, members, roots)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	// The relay leaves out this participant's own advertisement, but its
	// own signature is among the consistency signatures it checks.
	keys[id] = signer.Public()
	peerKeys = keys
	log.DebugContext(ctx, "secure keys received", slog.Int("neighbours", len(neighbours)))

	// Round 1: share keys; the coordinator routes the shares addressed to
	// this participant.
	shares, err := sc.ShareKeys(neighbours)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if err := s.send(secagg.PhaseShareKeys, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Shares{Shares: secureround.SharesToProto(shares)}}); err != nil {
		return err
	}
	resp, err = s.recv(secagg.PhaseShareKeys, "shares", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetShares() != nil })
	if err != nil {
		return err
	}
	routed, err := secureround.RoutedFromProto(resp.GetShares(), cfg.N)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	log.DebugContext(ctx, "secure shares received", slog.Int("shares", len(routed)))

	// Round 2: train, encode and mask.
	res, input, err := a.secureInput(rctx, client, asg, plan)
	if err != nil {
		return err
	}
	masked, err := sc.MaskedInput(routed, input)
	clear(input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if err := s.sendMasked(masked.Masked); err != nil {
		return err
	}
	resp, err = s.recv(secagg.PhaseMaskedInput, "survivors", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetSurvivors() != nil })
	if err != nil {
		return err
	}
	survivors, err := secureround.SurvivorsFromProto(resp.GetSurvivors(), cfg.N)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	log.DebugContext(ctx, "secure survivors received", slog.Int("survivors", len(survivors)))

	// Round 3: sign the survivor set.
	sig, err := sc.ConsistencyCheck(survivors)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if err := s.send(secagg.PhaseConsistencyCheck, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Consistency{Consistency: &fedguardv1.SecureSignature{Signature: sig.Sig}}}); err != nil {
		return err
	}
	resp, err = s.recv(secagg.PhaseConsistencyCheck, "unmask request", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetUnmask() != nil })
	if err != nil {
		return err
	}
	req, err := secureround.UnmaskRequestFromProto(id, cfg.N, resp.GetUnmask())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}

	// Round 4: reveal the shares, once per starting model.
	reveal, err := sc.Unmask(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSecureRound, err)
	}
	if err := a.recordReveal(modelDigest); err != nil {
		return err
	}
	if err := s.send(secagg.PhaseUnmasking, &fedguardv1.SecureAggregateRequest{Body: &fedguardv1.SecureAggregateRequest_Unmask{Unmask: secureround.UnmaskResponseToProto(reveal)}}); err != nil {
		return err
	}
	resp, err = s.recv(secagg.PhaseUnmasking, "done", func(r *fedguardv1.SecureAggregateResponse) bool { return r.GetDone() != nil })
	if err != nil {
		return err
	}
	// The coordinator ends the stream after SecureDone; its status no
	// longer matters.
	if err := stream.CloseSend(); err == nil {
		if _, err := stream.Recv(); err != io.EOF {
			log.DebugContext(ctx, "secure stream did not end cleanly after done", slog.Any("error", err))
		}
	}
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
	a.rounds.Add(1)
	log.InfoContext(ctx, "secure round done", slog.Uint64("survivors", uint64(resp.GetDone().GetSurvivors())),
		slog.Int("bucket_size", len(members)), slog.Uint64("samples", res.Samples), slog.Float64("holdout_accuracy", res.Holdout.Accuracy))
	return nil
}

// secureInput downloads and checks the starting model, trains, checks
// the result, clips it to plan.NormClip in L2 norm and encodes it with its
// weight: the input of the session, of Dim+1 words.
func (a *Agent) secureInput(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, plan secureround.Plan) (Result, []uint32, error) {
	start, err := a.fetchModel(ctx, client, asg)
	if err != nil {
		return Result{}, nil, err
	}
	trainStart := time.Now()
	res, err := a.cfg.Trainer.Train(ctx, asg, start)
	if err == nil {
		a.metrics.trained(trainStart)
	}
	if err != nil {
		if errors.Is(err, ErrIncompatible) {
			return Result{}, nil, permanent(err)
		}
		return Result{}, nil, fmt.Errorf("participant: train: %w", err)
	}
	if err := a.checkResult(res); err != nil {
		return Result{}, nil, err
	}
	delta := res.Delta
	if plan.NormClip > 0 {
		if n := model.Norm(delta); n > plan.NormClip {
			delta = make([]float32, len(res.Delta))
			f := plan.NormClip / n
			for i, v := range res.Delta {
				delta[i] = float32(float64(v) * f)
			}
		}
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return Result{}, nil, fmt.Errorf("participant: rounding seed: %w", err)
	}
	input := make([]uint32, len(delta)+1)
	if err := plan.Params.Encode(input, delta, plan.Weight(res.Samples), rand.NewChaCha8(seed)); err != nil {
		return Result{}, nil, fmt.Errorf("%w: encode the update: %w", ErrSecureRound, err)
	}
	return res, input, nil
}

// checkKeys reads the relayed advertisements: it checks each certificate
// against the federation's roots and the bucket member its id stands for,
// checks that this participant's own advertisement, if relayed, is the one
// it sent, and returns the neighbours' advertisements with their identity
// keys by session id.
func checkKeys(p *fedguardv1.SecureKeys, own *secagg.AdvertiseKeys, n int, federation string, members []string, roots *x509.CertPool) ([]*secagg.AdvertiseKeys, map[uint32]any, error) {
	peers, err := secureround.KeysFromProto(p, n)
	if err != nil {
		return nil, nil, err
	}
	keys, err := secureround.PeerKeys(peers, federation, members, roots, time.Now())
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
	a.metrics.declined()
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
		if err := saveState(a.cfg.StateFile, *a.accepted, revealed); err != nil {
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

// send sends phase's message, after the hook, with the round and attempt
// of the assignment.
func (s *secureStream) send(phase secagg.Phase, req *fedguardv1.SecureAggregateRequest) error {
	if err := s.hook(phase); err != nil {
		return err
	}
	req.Round, req.Attempt = s.asg.GetRound(), s.asg.GetAttempt()
	s.sent = time.Now()
	if err := s.stream.Send(req); err != nil {
		return s.sendError(phase, err)
	}
	s.a.log.Debug("secure phase sent", slog.Uint64("round", s.asg.GetRound()), slog.String("phase", phase.String()))
	return nil
}

// sendMasked sends the masked input as chunks, after the hook.
func (s *secureStream) sendMasked(words []uint32) error {
	if err := s.hook(secagg.PhaseMaskedInput); err != nil {
		return err
	}
	var sent uint64
	s.sent = time.Now()
	err := secureround.SendMasked(words, func(c *fedguardv1.SecureMaskedChunk) error {
		err := s.stream.Send(&fedguardv1.SecureAggregateRequest{
			Round: s.asg.GetRound(), Attempt: s.asg.GetAttempt(),
			Body: &fedguardv1.SecureAggregateRequest_Masked{Masked: c},
		})
		if err == nil {
			sent += uint64(len(c.GetData()))
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
	return resp, nil
}
