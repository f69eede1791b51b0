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
// rounds were missed. The newest accepted manifest is saved.
func (a *Agent) checkManifest(ctx context.Context, client fedguardv1.CoordinatorServiceClient, asg *fedguardv1.RoundAssignment) error {
	v, err := a.verify(asg.GetManifest())
	if err != nil {
		return a.refuse(ctx, client, err)
	}
	if err := a.matches(v, asg); err != nil {
		return a.refuse(ctx, client, err)
	}
	from := uint64(0)
	if a.accepted != nil {
		from = a.accepted.Round + 1
	}
	for r := from; r < v.Round.Round; r++ {
		resp, err := client.GetManifest(ctx, &fedguardv1.GetManifestRequest{Round: r})
		switch {
		case status.Code(err) == codes.NotFound:
			// A coordinator that cannot show its history cannot be
			// checked: the same as a hole in it.
			return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonGap, Round: r,
				Detail: fmt.Sprintf("the coordinator has no manifest of round %d, which the manifest of round %d builds on", r, v.Round.Round)})
		case err != nil:
			return fmt.Errorf("get manifest of round %d: %w", r, err)
		case resp.GetRound() != r:
			return a.refuse(ctx, client, &manifest.RefusalError{Reason: manifest.ReasonMalformed, Round: resp.GetRound(),
				Detail: fmt.Sprintf("asked for the manifest of round %d, got one labelled round %d", r, resp.GetRound())})
		}
		m, err := a.verify(resp.GetManifest())
		if err != nil {
			return a.refuse(ctx, client, err)
		}
		if err := a.accept(ctx, client, m, (r+1-from)%saveEvery == 0); err != nil {
			return err
		}
	}
	if err := a.accept(ctx, client, v, true); err != nil {
		return err
	}
	a.log.InfoContext(ctx, "round manifest verified", slog.Uint64("manifest_round", a.accepted.Round), slog.String("manifest_sha256", a.accepted.Digest))
	return nil
}

// accept takes m as the newest accepted manifest if it extends the last
// one, and saves it when save is set.
func (a *Agent) accept(ctx context.Context, client fedguardv1.CoordinatorServiceClient, m manifest.Verified, save bool) error {
	if err := manifest.Extends(a.accepted, []manifest.Verified{m}); err != nil {
		return a.refuse(ctx, client, err)
	}
	acc := manifest.Accepted{Round: m.Round.Round, Digest: hex.EncodeToString(m.Digest[:])}
	if save && a.cfg.StateFile != "" {
		if err := saveState(a.cfg.StateFile, acc, a.revealed); err != nil {
			// Without the record a restart could accept a rollback: stop.
			return permanent(fmt.Errorf("participant: %w", err))
		}
	}
	a.accepted = &acc
	return nil
}

func (a *Agent) verify(envelope []byte) (manifest.Verified, error) {
	if len(envelope) == 0 {
		return manifest.Verified{}, &manifest.RefusalError{Reason: manifest.ReasonUnsigned, Detail: "the coordinator sent no manifest"}
	}
	return manifest.Verify(envelope, a.cfg.CoordinatorKeys, a.cfg.Federation)
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
	a.log.ErrorContext(ctx, "round manifest refused: not training on this model",
		slog.String("reason", string(ref.Reason)), slog.Uint64("manifest_round", ref.Round), slog.String("detail", ref.Detail))
	// The coordinator takes at most 1 KiB of printable UTF-8.
	detail := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(ref.Detail, ""))
	if len(detail) > 1024 {
		detail = strings.ToValidUTF8(detail[:1024], "")
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCallTimeout)
	defer cancel()
	if _, rerr := client.ReportRefusal(rctx, &fedguardv1.ReportRefusalRequest{
		ManifestRound: ref.Round, Reason: string(ref.Reason), Detail: detail,
	}); rerr != nil {
		a.log.WarnContext(ctx, "could not report the refusal to the coordinator", slog.Any("error", rerr))
	}
	return permanent(fmt.Errorf("%w: %w", ErrManifestRefused, err))
}

// sameSpec checks that a manifest's model specification (the coordinator's
// configuration, as JSON) is the one this agent prepared its data for: the
// same parameter count is not enough, since reordered or renamed features
// would feed the model the wrong columns.
func sameSpec(raw []byte, spec *fedguardv1.ModelSpec) error {
	var m struct {
		Kind     string   `json:"kind"`
		Features []string `json:"features"`
		Label    string   `json:"label"`
		Classes  []string `json:"classes"`
		Hidden   []uint32 `json:"hidden"`
		// LayoutSHA256, when the federation started from an initial
		// model, is the digest of the tensor layout the agent and its
		// trainer exchange.
		LayoutSHA256 string `json:"layout_sha256"`
	}
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
