package participant

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
	"github.com/fedguard/fedguard/safetensors"
	"github.com/fedguard/fedguard/wire"
)

// saveEvery is how many manifests of missed rounds an agent accepts between
// writes of its state file, so that a long catch-up that is cut off
// resumes where it stopped.
const saveEvery = 1000

// checkManifest verifies the signed manifest of asg's starting model before
// anything is trained on it: both signatures against the pinned keys, the
// federation, that it vouches for exactly the assigned model, specification
// and scaling, and that it extends the last manifest this agent accepted.
// The manifests of rounds the agent missed are fetched and accepted one by
// one, each extending the one before, so memory stays flat however many
// rounds were missed. The newest accepted manifest is saved and returned.
func (a *Agent) checkManifest(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment) (manifest.Verified, error) {
	v, f, err := a.verify(asg.GetManifest())
	// A manifest the pinned keys did not sign may be signed by keys that a
	// rotation in a missed round's manifest introduced (and carry a later
	// rotation, from keys the agent has yet to learn): catch up first,
	// then check it with the keys that leads to.
	var ref *manifest.RefusalError
	deferred := err != nil && (signatureRefusal(err) || errors.As(err, &ref) && ref.Reason == manifest.ReasonBadRotation) && asg.GetRound() > 1 &&
		(a.accepted == nil || a.accepted.Round+1 < asg.GetRound()-1)
	if err != nil && !deferred {
		return manifest.Verified{}, a.refuse(ctx, client, err)
	}
	target := asg.GetRound() - 1
	if !deferred {
		if err := a.matches(v, asg); err != nil {
			return manifest.Verified{}, a.refuse(ctx, client, err)
		}
		target = v.Round.Round
	}
	if err := a.acceptBefore(ctx, client, target); err != nil {
		return manifest.Verified{}, err
	}
	if deferred {
		if v, f, err = a.verify(asg.GetManifest()); err != nil {
			return manifest.Verified{}, a.refuse(ctx, client, err)
		}
		if err := a.matches(v, asg); err != nil {
			return manifest.Verified{}, a.refuse(ctx, client, err)
		}
	}
	if err := a.accept(ctx, client, v, f, true); err != nil {
		return manifest.Verified{}, err
	}
	a.log.InfoContext(ctx, "round manifest verified", slog.Uint64("manifest_round", a.accepted.Round), slog.String("manifest_sha256", a.accepted.Digest))
	return v, nil
}

// acceptFinal accepts the manifest of the final model, which WaitRound
// sends with finished, so that the agent's record (and so its witness,
// `fedguard participant witness`) covers the federation's whole history
// rather than stopping at the last round it trained in. A refused
// manifest is reported and stops the agent, as in any round; a connection
// that fails while fetching the rounds in between does not (the
// coordinator is shutting down): the record then stays where it was.
func (a *Agent) acceptFinal(ctx context.Context, client fedguardv1.CoordinatorServiceClient, envelope []byte) error {
	if len(envelope) == 0 {
		// Every coordinator sends the final manifest with finished (a
		// federation finishes only after its first round closed). A
		// finish without it is a server that cannot sign: one with a
		// coordinator certificate but not the signing key, ending the
		// hospital's training unnoticed.
		round := uint64(0)
		if a.accepted != nil {
			round = a.accepted.Round + 1
		}
		return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonUnsigned, Round: round,
			Detail: "the coordinator said the training is finished without the signed manifest of the final model"})
	}
	v, f, err := a.verify(envelope)
	if err != nil {
		return a.refuse(ctx, client, err)
	}
	if a.accepted != nil && v.Round.Round <= a.accepted.Round {
		// Nothing new, unless it contradicts what was accepted.
		return a.accept(ctx, client, v, f, false)
	}
	err = a.acceptBefore(ctx, client, v.Round.Round)
	if err == nil {
		err = a.accept(ctx, client, v, f, true)
	}
	var ref *manifest.RefusalError
	switch {
	case err == nil:
		a.log.InfoContext(ctx, "final manifest verified", slog.Uint64("manifest_round", a.accepted.Round), slog.String("manifest_sha256", a.accepted.Digest))
	case errors.Is(err, ErrManifestRefused) || errors.As(err, &ref) || errors.As(err, new(permanentError)):
		return err
	default:
		a.log.WarnContext(ctx, "final manifest not recorded: could not fetch the manifests before it", slog.Any("error", err))
	}
	return nil
}

// acceptBefore fetches and accepts, one by one, the manifests of the
// rounds after the last one the agent accepted and before target.
func (a *Agent) acceptBefore(ctx context.Context, client fedguardv1.CoordinatorServiceClient, target uint64) error {
	from := uint64(0)
	if a.accepted != nil {
		from = a.accepted.Round + 1
	}
	for r := from; r < target; r++ {
		resp, err := client.GetManifest(ctx, &fedguardv1.GetManifestRequest{Round: r})
		switch {
		case status.Code(err) == codes.NotFound:
			// A coordinator that cannot show its history cannot be
			// checked: the same as a hole in it.
			return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonGap, Round: r,
				Detail: fmt.Sprintf("the coordinator has no manifest of round %d, which the manifest of round %d builds on", r, target)})
		case err != nil:
			return fmt.Errorf("get manifest of round %d: %w", r, err)
		case resp.GetRound() != r:
			return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonMalformed, Round: resp.GetRound(),
				Detail: fmt.Sprintf("asked for the manifest of round %d, got one labelled round %d", r, resp.GetRound())})
		}
		m, mf, err := a.verify(resp.GetManifest())
		if err != nil {
			return a.refuse(ctx, client, err)
		}
		if err := a.accept(ctx, client, m, mf, (r+1-from)%saveEvery == 0); err != nil {
			return err
		}
	}
	return nil
}

// signatureRefusal reports whether err refuses a manifest for its
// signatures: what a manifest signed by keys the agent has yet to learn of
// looks like.
func signatureRefusal(err error) bool {
	var ref *manifest.RefusalError
	return errors.As(err, &ref) && (ref.Reason == manifest.ReasonBadSignature || ref.Reason == manifest.ReasonUnsigned)
}

// following is a key rotation a manifest carried and the agent verified:
// the keys it leads to and the rotations, to pin and record once the
// manifest is accepted.
type following struct {
	keys      manifest.PublicKeys
	rotations []manifest.VerifiedRotation
}

// accept takes m as the newest accepted manifest if it extends the last
// one, and saves it when save is set. If m is the first manifest of keys
// a rotation introduced (f set), the agent pins them, and records the
// rotation and m in one write of its state file.
func (a *Agent) accept(ctx context.Context, client fedguardv1.CoordinatorServiceClient, m manifest.Verified, f *following, save bool) error {
	if err := manifest.Extends(a.accepted, []manifest.Verified{m}); err != nil {
		return a.refuse(ctx, client, err)
	}
	acc := manifest.Accepted{Round: m.Round.Round, Digest: hex.EncodeToString(m.Digest[:])}
	var cp []byte
	if c := m.Round.Checkpoint; c != nil {
		// The signature vouches for the note; a note the state file cannot
		// hold is not kept (a witness then says so), rather than stopping.
		if err := checkCheckpointNote(c.Note); err != nil {
			a.log.WarnContext(ctx, "not keeping the manifest's audit checkpoint", slog.Uint64("manifest_round", m.Round.Round), slog.Any("error", err))
		} else {
			cp = []byte(c.Note)
		}
	}
	rotations := a.rotations
	if f != nil {
		rotations = slices.Clone(a.rotations)
		for _, r := range f.rotations {
			rotations = append(rotations, rotationRecord{
				OldFingerprint: r.Rotation.OldFingerprint, NewFingerprint: r.Rotation.NewFingerprint,
				At: time.Now().UTC(), SHA256: hex.EncodeToString(r.Digest[:]), Envelope: r.Envelope,
			})
		}
		save = true
	}
	if save && a.cfg.StateFile != "" {
		if err := a.ops.SaveState(a.cfg.StateFile, State{Accepted: &acc, Checkpoint: cp, Revealed: a.revealed, rotations: rotations}); err != nil {
			// Without the record a restart could accept a rollback: stop.
			return permanent(fmt.Errorf("participant: %w", err))
		}
	}
	a.accepted, a.checkpoint = &acc, cp
	if f != nil {
		for _, r := range f.rotations {
			a.log.InfoContext(ctx, "coordinator keys rotated: following the rotation signed by the pinned keys",
				slog.Uint64("rotation", r.Rotation.Seq), slog.String("old_fingerprint", r.Rotation.OldFingerprint),
				slog.String("new_fingerprint", r.Rotation.NewFingerprint), slog.Uint64("manifest_round", m.Round.Round),
				slog.String("rotation_sha256", hex.EncodeToString(r.Digest[:])))
		}
		a.keys, a.rotations = f.keys, rotations
	}
	return nil
}

// verify checks a manifest against the pinned keys. If they did not sign
// it and it carries key rotations, the agent follows those that start
// from its pinned keys and take effect exactly where it stands in the
// chain (after the manifest it accepted last), and checks the manifest
// with the keys they lead to; the rotation is pinned only once the
// manifest is accepted ([Agent.accept]).
func (a *Agent) verify(envelope []byte) (manifest.Verified, *following, error) {
	if len(envelope) == 0 {
		return manifest.Verified{}, nil, &manifest.RefusalError{Reason: manifest.ReasonUnsigned, Detail: "the coordinator sent no manifest"}
	}
	v, err := manifest.Verify(envelope, a.keys, a.cfg.Federation)
	if err == nil || !signatureRefusal(err) {
		return v, nil, err
	}
	carried := manifest.CarriedRotations(envelope)
	if carried == nil {
		return v, nil, err
	}
	// Refusals name the manifest that carried the rotation, by the round
	// its payload claims.
	var claimed uint64
	if ref := (*manifest.RefusalError)(nil); errors.As(err, &ref) {
		claimed = ref.Round
	}
	keys, rots, ferr := manifest.FollowRotations(a.keys, a.cfg.Federation, carried)
	if ref := (*manifest.RefusalError)(nil); errors.As(ferr, &ref) {
		ref.Round = claimed
	}
	if ferr != nil {
		return manifest.Verified{}, nil, ferr
	}
	if len(rots) == 0 {
		return v, nil, err
	}
	for _, r := range rots {
		if a.accepted == nil || r.Rotation.AfterRound != a.accepted.Round || r.Rotation.AfterManifest != a.accepted.Digest {
			at := "no manifest yet"
			if a.accepted != nil {
				at = fmt.Sprintf("round %d's manifest %s", a.accepted.Round, a.accepted.Digest)
			}
			return manifest.Verified{}, nil, &manifest.RefusalError{Reason: manifest.ReasonBadRotation, Round: claimed,
				Detail: fmt.Sprintf("key rotation %d takes effect after round %d's manifest %s, but this hospital accepted %s", r.Rotation.Seq, r.Rotation.AfterRound, r.Rotation.AfterManifest, at)}
		}
	}
	v, err = manifest.Verify(envelope, keys, a.cfg.Federation)
	if err != nil {
		return manifest.Verified{}, nil, err
	}
	return v, &following{keys: keys, rotations: rots}, nil
}

// pinRecorded pins the keys that the rotations recorded in the state file
// lead to from the configured keys, after verifying them again: the
// state file is not trusted to name keys on its own.
func (a *Agent) pinRecorded(recs []rotationRecord) error {
	if len(recs) == 0 {
		return nil
	}
	keys, err := followRecorded(a.cfg.CoordinatorKeys, a.cfg.Federation, recs)
	if err != nil {
		return err
	}
	a.keys, a.rotations = keys, recs
	return nil
}

// followRecorded verifies the rotations recorded in a state file again
// from pinned, the configured keys, and returns the keys they lead to
// (pinned when there are none).
func followRecorded(pinned manifest.PublicKeys, federation string, recs []rotationRecord) (manifest.PublicKeys, error) {
	if len(recs) == 0 {
		return pinned, nil
	}
	envs := make([][]byte, len(recs))
	for i, r := range recs {
		envs[i] = r.Envelope
	}
	keys, rots, err := manifest.FollowRotations(pinned, federation, envs)
	if err != nil {
		return manifest.PublicKeys{}, fmt.Errorf("the key rotations it records do not follow from the configured coordinator keys %s: %w", pinned.Fingerprint(), err)
	}
	applied := recs[len(recs)-len(rots):]
	for i, r := range rots {
		if applied[i].SHA256 != hex.EncodeToString(r.Digest[:]) || applied[i].OldFingerprint != r.Rotation.OldFingerprint || applied[i].NewFingerprint != r.Rotation.NewFingerprint {
			return manifest.PublicKeys{}, fmt.Errorf("rotation %d: the record does not match its manifest", r.Rotation.Seq)
		}
	}
	return keys, nil
}

// matches checks that manifest v vouches for what asg asks to train on.
func (a *Agent) matches(v manifest.Verified, asg *fedguardv1.RoundAssignment) error {
	m := v.Round
	mismatch := func(format string, args ...any) error {
		return &manifest.RefusalError{Reason: manifest.ReasonModelMismatch, Round: m.Round, Detail: fmt.Sprintf(format, args...)}
	}
	if m.Round+1 != asg.GetRound() {
		return mismatch("manifest is for the model of round %d, assignment is for round %d", m.Round, asg.GetRound())
	}
	if got := hex.EncodeToString(asg.GetModelSha256()); got != m.ModelSHA256 {
		return mismatch("assignment names model %s, manifest vouches for %s", got, m.ModelSHA256)
	}
	if m.NumParams != uint64(a.spec.NumParams()) {
		return mismatch("manifest is for %d parameters, the model has %d", m.NumParams, a.spec.NumParams())
	}
	if err := sameSpec(m.ModelSpec, a.prepared); err != nil {
		return mismatch("%v", err)
	}
	sc := asg.GetScaling()
	d := dataset.Scaling{Mean: sc.GetMean(), Std: sc.GetStd()}.Digest()
	if got := hex.EncodeToString(d[:]); got != m.ScalingSHA256 {
		return mismatch("feature scaling digest %s differs from the manifest's %s", got, m.ScalingSHA256)
	}
	return nil
}

// refuse reports a refused manifest to the coordinator (for its audit
// log) and to the hospital's own log, and returns the error that stops
// the agent. Errors that are not refusals (a broken connection while
// fetching) pass through unchanged.
func (a *Agent) refuse(ctx context.Context, client fedguardv1.CoordinatorServiceClient, err error) error {
	var ref *manifest.RefusalError
	if !errors.As(err, &ref) {
		return err
	}
	a.refused.Add(1)
	a.metrics.refusedManifest(ref.Reason)
	msg := "round manifest refused: not training on this model"
	if ref.Reason == manifest.ReasonTrainerMismatch || ref.Reason == manifest.ReasonTrainerNotApproved {
		msg = "trainer refused: not training on this model"
	}
	a.log.ErrorContext(ctx, msg,
		slog.String("reason", string(ref.Reason)), slog.Uint64("manifest_round", ref.Round), slog.String("detail", ref.Detail))
	// The coordinator takes at most 1 KiB of printable UTF-8.
	detail := printable(ref.Detail)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCallTimeout)
	defer cancel()
	if _, rerr := client.ReportRefusal(rctx, &fedguardv1.ReportRefusalRequest{
		ManifestRound: ref.Round, Reason: string(ref.Reason), Detail: detail,
	}); rerr != nil {
		a.log.WarnContext(ctx, "could not report the refusal to the coordinator", slog.Any("error", rerr))
	}
	return permanent(fmt.Errorf("%w: %w", ErrManifestRefused, err))
}

// reportSatOut tells the coordinator that this agent sits asg's attempt
// out and why (ReportSatOut), so that the reason is audited and lands in
// the round's manifest rather than in this log only. Once the coordinator
// has it, the agent does not run the attempt again (the coordinator would
// refuse its update). A failed report is logged, not fatal: the agent then
// may try the attempt again if it is offered again, as before.
func (a *Agent) reportSatOut(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment, reason string, cause error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCallTimeout)
	defer cancel()
	if _, err := client.ReportSatOut(rctx, &fedguardv1.ReportSatOutRequest{
		Round: asg.GetRound(), Attempt: asg.GetAttempt(), Reason: reason, Detail: printable(cause.Error()),
	}); err != nil {
		a.log.WarnContext(ctx, "could not report the sit-out to the coordinator", slog.Any("error", err), slog.Uint64("round", asg.GetRound()))
		return
	}
	a.last.round, a.last.attempt = asg.GetRound(), uint64(asg.GetAttempt())
}

// printable makes s what the coordinator takes as a detail: valid UTF-8
// without control characters but newline and tab, nor format characters
// or line and paragraph separators (Unicode Cf, Zl, Zp: bidirectional
// overrides, zero-width characters), at most 1 KiB.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) > 1024 {
		s = strings.ToValidUTF8(s[:1024], "")
	}
	return s
}

// manifestSpec is the part of a manifest's model_spec (the coordinator's
// model configuration, as JSON) that an agent checks and joins with.
type manifestSpec struct {
	Kind     string   `json:"kind"`
	Features []string `json:"features"`
	Label    string   `json:"label"`
	Classes  []string `json:"classes"`
	Hidden   []uint32 `json:"hidden"`
	// LayoutSHA256, when the federation started from an initial model, is
	// the digest of the tensor layout the agent and its trainer exchange.
	LayoutSHA256 string `json:"layout_sha256"`
	// Tensors is the layout of a "tensors" model, in parameter order.
	Tensors []manifestTensor `json:"tensors"`
}

// manifestTensor is one tensor of a manifest's model_spec.
type manifestTensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// sameTensorList reports whether a manifest's tensor layout is the one Join
// announced: the same names and shapes in the same order.
func sameTensorList(m []manifestTensor, p []*fedguardv1.TensorSpec) bool {
	if len(m) != len(p) {
		return false
	}
	for i, t := range p {
		if m[i].Name != t.GetName() || len(m[i].Shape) != len(t.GetShape()) {
			return false
		}
		for j, d := range t.GetShape() {
			if m[i].Shape[j] < 0 || uint64(m[i].Shape[j]) != d {
				return false
			}
		}
	}
	return true
}

// sameSpec checks that a manifest's model specification (the coordinator's
// configuration, as JSON) is the one this agent prepared its data for: the
// same parameter count is not enough, since reordered or renamed features
// would feed the model the wrong columns.
func sameSpec(raw []byte, spec *fedguardv1.ModelSpec) error {
	var m manifestSpec
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest model_spec: %v", err)
	}
	kind, err := model.ParseKind(m.Kind)
	switch {
	case err != nil:
		return fmt.Errorf("manifest model_spec: %v", err)
	case int32(kind) != int32(spec.GetKind()):
		return fmt.Errorf("manifest is for a %s model, Join announced %s", kind, model.Kind(spec.GetKind()))
	case !slices.Equal(m.Features, spec.GetFeatures()):
		return fmt.Errorf("manifest names features %v, Join announced %v", m.Features, spec.GetFeatures())
	case m.Label != spec.GetLabel() || !slices.Equal(m.Classes, spec.GetClasses()):
		return fmt.Errorf("manifest names label %q with classes %v, Join announced %q with %v", m.Label, m.Classes, spec.GetLabel(), spec.GetClasses())
	case !slices.Equal(m.Hidden, spec.GetHidden()):
		return fmt.Errorf("manifest names hidden layers %v, Join announced %v", m.Hidden, spec.GetHidden())
	case !sameTensorList(m.Tensors, spec.GetTensors()):
		return fmt.Errorf("manifest names %d tensors, Join announced another layout of %d tensors", len(m.Tensors), len(spec.GetTensors()))
	}
	if m.LayoutSHA256 != "" {
		s, err := wire.SpecFromProto(spec)
		if err != nil {
			return err
		}
		l, err := safetensors.SpecLayout(s)
		if err != nil {
			return err
		}
		if d := l.Digest(); hex.EncodeToString(d[:]) != m.LayoutSHA256 {
			return fmt.Errorf("manifest names tensor layout %s, the model's layout is %x", m.LayoutSHA256, d)
		}
	}
	return nil
}
