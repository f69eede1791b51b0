package manifest

import (
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/fedguard/fedguard/certs"
)

// Reason says why a participant refused a manifest. The values are stable
// and machine-readable: they go into the audit log (manifest_refused) and
// into metrics labels.
type Reason string

// Reasons of a RefusalError.
const (
	// ReasonUnsigned: a required signature is missing.
	ReasonUnsigned Reason = "unsigned"
	// ReasonBadSignature: a signature does not verify under the pinned keys.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonMalformed: the manifest cannot be parsed or breaks a rule of
	// the format.
	ReasonMalformed Reason = "malformed"
	// ReasonRollback: the manifest is older than the last one accepted.
	ReasonRollback Reason = "rollback"
	// ReasonFork: the manifest contradicts the accepted history: another
	// manifest for an accepted round, or a parent that is not the digest
	// of the manifest before it.
	ReasonFork Reason = "fork"
	// ReasonGap: the manifests offered skip rounds, so their links to the
	// accepted history cannot be checked; the participant should fetch the
	// missing ones. On first contact, a chain that does not start at
	// round 0 is a gap too.
	ReasonGap Reason = "gap"
	// ReasonWrongFederation: a valid manifest of another federation signed
	// by the same keys.
	ReasonWrongFederation Reason = "wrong_federation"
	// ReasonModelMismatch: the model and the manifest disagree on its
	// digest.
	ReasonModelMismatch Reason = "model_mismatch"
	// ReasonBadRotation: a manifest carries a key rotation that the
	// participant does not follow: not signed by both the pinned keys and
	// the new ones, not from the pinned keys, or not at the point of the
	// chain where the participant stands.
	ReasonBadRotation Reason = "bad_rotation"
	// ReasonTrainerMismatch: the manifest pins a trainer (TrainerDigest)
	// and the participant's trainer code has another digest, so it does
	// not train this model.
	ReasonTrainerMismatch Reason = "trainer_mismatch"
	// ReasonTrainerNotApproved: the participant's trainer code is not on
	// the hospital's own allow-list of trainer digests, so it does not
	// train (whatever the manifest pins).
	ReasonTrainerNotApproved Reason = "trainer_not_approved"
)

// Reasons lists every Reason: what a refusal report may name, and the
// fixed values of a reason label.
func Reasons() []Reason {
	return []Reason{ReasonUnsigned, ReasonBadSignature, ReasonMalformed, ReasonRollback,
		ReasonFork, ReasonGap, ReasonWrongFederation, ReasonModelMismatch, ReasonBadRotation,
		ReasonTrainerMismatch, ReasonTrainerNotApproved}
}

// RefusalError is why a participant refused a manifest: what [Verify],
// [Extends] and [Verified.CheckModel] return. Reason is for programs,
// Detail for people.
type RefusalError struct {
	Reason Reason
	// Round is the round of the refused manifest. For unsigned or badly
	// signed manifests it is the round the payload claims, unauthenticated
	// and only for the log; 0 when it cannot be read.
	Round  uint64
	Detail string
	// Err is the underlying error, if any: for refusals by Open, its
	// error, which wraps one of the Err* values.
	Err error
}

// Error describes the refusal.
func (e *RefusalError) Error() string {
	return fmt.Sprintf("manifest: refused manifest of round %d (%s): %s", e.Round, e.Reason, e.Detail)
}

// Unwrap returns the underlying error.
func (e *RefusalError) Unwrap() error { return e.Err }

// Accepted is what a participant persists about the last manifest it
// accepted: enough to tell a rollback or a fork from the next one.
type Accepted struct {
	Round  uint64 `json:"round"`
	Digest string `json:"digest"`
}

// Verified is a manifest whose signatures and federation have been checked
// by [Verify]: its Round and its [Digest].
type Verified struct {
	Round  Round
	Digest [32]byte
}

// Accepted returns what to persist once v has been accepted.
func (v Verified) Accepted() Accepted {
	return Accepted{Round: v.Round.Round, Digest: hexDigest(v.Digest)}
}

// CheckModel compares the SHA-256 of the model a participant received with
// the manifest's ModelSHA256, in constant time, and returns a
// *RefusalError with ReasonModelMismatch if they differ.
func (v Verified) CheckModel(sum [32]byte) error {
	want, err := hex.DecodeString(v.Round.ModelSHA256)
	if err == nil && subtle.ConstantTimeCompare(want, sum[:]) == 1 {
		return nil
	}
	return &RefusalError{
		Reason: ReasonModelMismatch,
		Round:  v.Round.Round,
		Detail: fmt.Sprintf("model digest %s, manifest says %s", hexDigest(sum), v.Round.ModelSHA256),
		Err:    ErrModelMismatch,
	}
}

// Verify opens a manifest as a participant of federation does: [Open]
// against the pinned keys, then a check that the manifest is for this
// federation (the same keys could sign for several). Every refusal is a
// *RefusalError; a call with unusable arguments (incomplete keys, no
// federation) is a plain error.
func Verify(envelope []byte, keys PublicKeys, federation string) (Verified, error) {
	if err := keys.check(); err != nil {
		return Verified{}, err
	}
	if federation == "" {
		return Verified{}, errors.New("manifest: verify: no federation")
	}
	r, digest, err := Open(envelope, keys)
	if err != nil {
		return Verified{}, refusal(envelope, err)
	}
	if r.Federation != federation {
		return Verified{}, &RefusalError{
			Reason: ReasonWrongFederation,
			Round:  r.Round,
			Detail: fmt.Sprintf("manifest is for federation %q, this is %q", r.Federation, federation),
		}
	}
	return Verified{Round: r, Digest: digest}, nil
}

// refusal turns an error of Open into a RefusalError.
func refusal(envelope []byte, err error) *RefusalError {
	e := &RefusalError{Reason: ReasonMalformed, Detail: err.Error(), Err: err}
	var oe *openError
	if errors.As(err, &oe) {
		e.Detail = oe.msg
	}
	switch {
	case errors.Is(err, ErrUnsigned):
		e.Reason = ReasonUnsigned
	case errors.Is(err, ErrBadSignature):
		e.Reason = ReasonBadSignature
	case errors.Is(err, ErrModelMismatch):
		e.Reason = ReasonModelMismatch
	}
	e.Round = claimedRound(envelope)
	return e
}

// claimedRound reads the round a refused envelope claims, for the log. It
// trusts nothing and returns 0 when anything is off.
func claimedRound(envelope []byte) uint64 {
	_, payload, err := decodeEnvelope(envelope)
	if err != nil {
		return 0
	}
	var st struct {
		Predicate struct {
			Round uint64 `json:"round"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return 0
	}
	return st.Predicate.Round
}

// Extends checks that path leads from the last accepted manifest to the
// newest one, path[len(path)-1]. path is ordered by round, without gaps,
// each manifest's Parent being the digest of the one before.
//
// With last set, path normally starts at last.Round+1 with a Parent equal
// to last.Digest. It may also start at or before last.Round (a re-fetch, or
// a peer resending history): then the manifest it holds for last.Round must
// be the accepted one. A path that ends below last.Round is a rollback; one
// that starts above last.Round+1 is a gap.
//
// With last nil (first contact), path must start at round 0: trust rests on
// the keys pinned at enrolment, and the chain is checked from its genesis
// rather than taken on faith from whatever model comes first.
//
// All manifests of path must be of one federation; [Verify] checks which.
// Every refusal is a *RefusalError.
func Extends(last *Accepted, path []Verified) error {
	if len(path) == 0 {
		return errors.New("manifest: extends: empty path")
	}
	// The path on its own: one federation, consecutive rounds, parents
	// linking each manifest to the one before.
	for i := 1; i < len(path); i++ {
		prev, cur := path[i-1].Round, path[i].Round
		switch {
		case cur.Federation != prev.Federation:
			return &RefusalError{Reason: ReasonWrongFederation, Round: cur.Round,
				Detail: fmt.Sprintf("path mixes federations %q and %q", prev.Federation, cur.Federation)}
		case cur.Round <= prev.Round:
			return &RefusalError{Reason: ReasonMalformed, Round: cur.Round,
				Detail: fmt.Sprintf("path is not ordered by round: round %d follows round %d", cur.Round, prev.Round)}
		case cur.Round > prev.Round+1:
			return &RefusalError{Reason: ReasonGap, Round: cur.Round,
				Detail: fmt.Sprintf("path skips from round %d to round %d", prev.Round, cur.Round)}
		case cur.Parent != hexDigest(path[i-1].Digest):
			return &RefusalError{Reason: ReasonFork, Round: cur.Round,
				Detail: fmt.Sprintf("parent %s is not the digest %s of the round %d manifest before it", cur.Parent, hexDigest(path[i-1].Digest), prev.Round)}
		}
	}
	first, newest := path[0].Round, path[len(path)-1].Round
	if last == nil {
		if first.Round != 0 {
			return &RefusalError{Reason: ReasonGap, Round: first.Round,
				Detail: fmt.Sprintf("first contact: the chain must start at round 0, it starts at round %d", first.Round)}
		}
		return nil
	}
	if !isHexDigest(last.Digest) {
		return fmt.Errorf("manifest: extends: accepted digest %.80q is not 64 lowercase hex digits", last.Digest)
	}
	switch {
	case newest.Round < last.Round:
		return &RefusalError{Reason: ReasonRollback, Round: newest.Round,
			Detail: fmt.Sprintf("round %d is older than the accepted round %d", newest.Round, last.Round)}
	case first.Round <= last.Round: // and last.Round <= newest.Round
		v := path[last.Round-first.Round]
		if got := hexDigest(v.Digest); got != last.Digest {
			return &RefusalError{Reason: ReasonFork, Round: last.Round,
				Detail: fmt.Sprintf("manifest %s for round %d differs from the accepted %s", got, last.Round, last.Digest)}
		}
	case first.Round-1 == last.Round: // first.Round > last.Round: no overflow
		if first.Parent != last.Digest {
			return &RefusalError{Reason: ReasonFork, Round: first.Round,
				Detail: fmt.Sprintf("parent %s is not the accepted round %d manifest %s", first.Parent, last.Round, last.Digest)}
		}
	default:
		return &RefusalError{Reason: ReasonGap, Round: first.Round,
			Detail: fmt.Sprintf("path starts at round %d, the accepted round is %d: rounds in between are missing", first.Round, last.Round)}
	}
	return nil
}

// LoadAccepted reads the participant's record of the last accepted
// manifest. It returns nil and no error when the file does not exist: the
// participant has not accepted any yet (first contact).
func LoadAccepted(path string) (*Accepted, error) {
	data, err := readSmall(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: load accepted: %w", err)
	}
	var a Accepted
	if err := strictUnmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("manifest: load accepted %s: %w", path, err)
	}
	if !isHexDigest(a.Digest) {
		return nil, fmt.Errorf("manifest: load accepted %s: digest %.80q is not 64 lowercase hex digits", path, a.Digest)
	}
	return &a, nil
}

// SaveAccepted records a as the last accepted manifest, atomically: after a
// crash the file holds either the old record or the new one, never a torn
// one that would make the participant lose its place in the chain.
func SaveAccepted(path string, a Accepted) error {
	if !isHexDigest(a.Digest) {
		return fmt.Errorf("manifest: save accepted: digest %.80q is not 64 lowercase hex digits", a.Digest)
	}
	if err := certs.WriteJSONAtomic(path, a, 0o600); err != nil {
		return fmt.Errorf("manifest: save accepted: %w", err)
	}
	return nil
}
