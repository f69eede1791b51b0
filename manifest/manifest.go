package manifest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/ed25519"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// Identifiers of the wire format (see the package documentation, section
// Wire format). Changing what a v1 predicate means requires a new
// PredicateType.
const (
	// PayloadType is the DSSE payload type: an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto statement version.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType names the predicate, a [Round].
	PredicateType = "https://fedguard.dev/round-manifest/v1"
	// PredicateTypeV2 names a [Round] that carries key rotations
	// (KeyRotations): v1 with that one field added. A manifest without
	// rotations is written as v1, so v1 readers read every manifest of a
	// federation that never rotated its keys.
	PredicateTypeV2 = "https://fedguard.dev/round-manifest/v2"
)

// Bounds on untrusted envelopes, checked before any decoding so that a
// hostile peer cannot make a participant parse or verify without limit.
const (
	// MaxEnvelopeSize bounds an envelope. A manifest lists one entry per
	// hospital and two signatures (about 4.5 KB base64): 4 MiB leaves room
	// for tens of thousands of participants.
	MaxEnvelopeSize = 4 << 20
	// MaxSignatures bounds the signatures of an envelope: fedguard makes
	// two; a few more leave room for countersignatures (an auditor's, say),
	// which Open ignores.
	MaxSignatures = 8
)

// Errors of [Open], to test with errors.Is. Every error Open returns wraps
// exactly one of them; [Verify] maps them onto a [Reason].
var (
	// ErrMalformed: the envelope, the statement or the predicate is not
	// what this package writes (bad JSON or base64, a wrong type, a field
	// out of range, a broken round/parent rule, a size bound exceeded).
	ErrMalformed = errors.New("manifest: malformed")
	// ErrUnsigned: a signature required by the pinned keys is missing.
	ErrUnsigned = errors.New("manifest: unsigned")
	// ErrBadSignature: a signature is present but does not verify under
	// the pinned key: the payload was changed, or another key signed it.
	ErrBadSignature = errors.New("manifest: bad signature")
	// ErrModelMismatch: two digests of the model that must agree do not:
	// the statement's subject and the predicate's model_sha256 (in Open),
	// or the model a participant received and the manifest (in
	// [Verified.CheckModel]).
	ErrModelMismatch = errors.New("manifest: model mismatch")
)

// Contributor is a participant whose update went into the round's model.
type Contributor struct {
	Name         string  `json:"name"`
	Samples      uint64  `json:"samples"`
	UpdateSHA256 string  `json:"update_sha256"`
	Norm         float64 `json:"norm"`
	Weight       float64 `json:"weight,omitempty"`
	// Bucket, in a secure round, is the 1-based bucket whose secure sum
	// the update went into. UpdateSHA256 is then the digest of that sum
	// (the only vector the coordinator saw), and Samples and Norm are 0.
	Bucket int `json:"bucket,omitempty"`
	// DataSHA256 is the data version the participant trained on: an HMAC
	// of its data file's digest, columns and rows under the federation's
	// salt (package lineage). Omitted when the participant reported none,
	// so manifests without it encode exactly as before.
	DataSHA256 string `json:"data_sha256,omitempty"`
}

// Exclusion is a participant whose update was left out, and why (a robust
// rule's verdict, a failed check, a dropout).
type Exclusion struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Checkpoint is the audit log checkpoint signed when the round closed: the
// tree size and root hash (base64, as in a tlog checkpoint), and the whole
// signed note, so that a participant holding the manifest can later demand
// a consistency proof from that exact tree.
type Checkpoint struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"`
	Note   string `json:"note"`
}

// Round is the predicate of a round manifest: everything a participant
// needs to decide whether to train on a model, and everything an auditor
// needs to tell how it was made. Digests are lowercase hex SHA-256.
type Round struct {
	Federation string `json:"federation"`
	// Round is the number of the round whose model this is; 0 is the
	// initial model (the genesis of the chain).
	Round   uint64 `json:"round"`
	Attempt uint32 `json:"attempt"`
	// Parent is the [Digest] of the previous round's manifest; empty only
	// for round 0. It chains the manifests, so a participant can tell a
	// rollback or a fork from the next round.
	Parent string `json:"parent"`
	// ModelSHA256 is the digest of the model file, also the statement's
	// subject digest.
	ModelSHA256 string `json:"model_sha256"`
	// SafetensorsSHA256 is the digest of the same model as the
	// safetensors file `fedguard model export` writes (see
	// [ModelFileMetadata]), the statement's second subject, named
	// [ModelFileName]: so `cosign verify-blob-attestation` checks the
	// deployable file itself. Empty in manifests from before it, which
	// then encode exactly as before.
	SafetensorsSHA256 string          `json:"safetensors_sha256,omitempty"`
	NumParams         uint64          `json:"num_params"`
	ModelSpec         json.RawMessage `json:"model_spec"`
	// TrainerDigest, when the federation pins the code its hospitals
	// train with, is that code's digest: "sha256:" and 64 lowercase hex
	// digits, a file's SHA-256 or a directory's dirhash (see
	// participant.TrainerDigest). An agent refuses to train this model
	// with code of another digest. Empty when nothing is pinned, so
	// manifests without it encode exactly as before.
	TrainerDigest string `json:"trainer_digest,omitempty"`
	// ScalingSHA256 is the digest of the federation's feature
	// standardization, so participants verify the scaling along with the
	// model it was trained with.
	ScalingSHA256 string          `json:"scaling_sha256"`
	Rule          string          `json:"rule"`
	Parameters    json.RawMessage `json:"parameters"`
	// Secure marks a round aggregated with secure aggregation: the rule
	// ran over bucket sums, never over individual updates.
	Secure     bool          `json:"secure,omitempty"`
	Included   []Contributor `json:"included"`
	Excluded   []Exclusion   `json:"excluded"`
	Checkpoint *Checkpoint   `json:"checkpoint,omitempty"`
	// Closed is when the round closed. Sign stores it in UTC.
	Closed time.Time `json:"closed"`
	// KeyRotations, in a v2 manifest only, are the key rotation manifests
	// (DSSE envelopes, see [Rotation]) that took effect after the round
	// before this one: this manifest is the first its new keys sign, and
	// a participant that pinned the old keys follows them from here. See
	// the package documentation, section Key rotation.
	KeyRotations []json.RawMessage `json:"key_rotations,omitempty"`
	// Privacy is the round's differential-privacy record; nil in a
	// federation without DP, so its manifests encode exactly as before.
	Privacy *Privacy `json:"privacy,omitempty"`
}

// Privacy records what differential privacy protected a round's model and
// what has been spent so far. It is part of the signed predicate because a
// compliance officer's question, "what is the guarantee, as a number", must
// have an answer nobody can change afterwards.
//
// Two kinds of guarantee can stand side by side. A federation-level
// mechanism (Mechanism, Parameters, Epsilon, Delta) protects a hospital's
// whole contribution: the coordinator's noise on a plain aggregate, or the
// hospitals' own noise inside secure aggregation. Record-level DP-SGD
// protects each patient's record at the hospital that trained on it, and
// each hospital reports its own ledger (Hospitals).
type Privacy struct {
	// Mechanism names the federation-level mechanism applied to this
	// round's aggregate: "central-gaussian" or
	// "distributed-discrete-gaussian"; empty when only hospitals'
	// record-level DP applies.
	Mechanism string `json:"mechanism,omitempty"`
	// Parameters are the mechanism's parameters for this round, as its
	// accountant in package privacy reads them.
	Parameters json.RawMessage `json:"parameters,omitempty"`
	// Epsilon is the federation-level ε (natural log) spent by every round
	// up to and including this one, at Delta.
	Epsilon float64 `json:"epsilon,omitempty"`
	Delta   float64 `json:"delta,omitempty"`
	// Hospitals are the record-level ledgers of the included hospitals
	// that train with DP-SGD, sorted by name, as each reported them.
	Hospitals []HospitalPrivacy `json:"hospitals,omitempty"`
	// HospitalsDistributed are the federation-level ledgers of distributed
	// DP the included hospitals of a secure round reported with their
	// masked input, sorted by name: each hospital's own account of the
	// sums with its noise it contributed to (beside the coordinator's
	// Epsilon, which counts rounds), in the unit of Epsilon — a whole
	// hospital — never added to Hospitals' record-level ε.
	HospitalsDistributed []HospitalDistributedPrivacy `json:"hospitals_distributed,omitempty"`
}

// HospitalPrivacy is one hospital's record-level DP ledger after a round.
type HospitalPrivacy struct {
	Name string `json:"name"`
	// Epsilon is what the hospital has spent up to and including this
	// round, at Delta; Budget is the ε it refuses to exceed.
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	Budget  float64 `json:"budget,omitempty"`
}

// HospitalDistributedPrivacy is one hospital's federation-level ledger of
// distributed DP after a secure round, as it reported it: the ε of the
// Releases sums with its noise it sent a masked input to, this round's
// included, at Delta, and the ε it refuses to exceed (Budget; 0: none).
type HospitalDistributedPrivacy struct {
	Name     string  `json:"name"`
	Epsilon  float64 `json:"epsilon"`
	Delta    float64 `json:"delta"`
	Budget   float64 `json:"budget,omitempty"`
	Releases uint64  `json:"releases"`
}

// predicateType is the predicate type r is written as.
func (r *Round) predicateType() string {
	if len(r.KeyRotations) > 0 {
		return PredicateTypeV2
	}
	return PredicateType
}

// statement is the in-toto Statement v1 that carries a Round.
type statement struct {
	Type          string          `json:"_type"`
	Subject       []subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// subject is an in-toto ResourceDescriptor, restricted to name and digest.
type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// envelope is a DSSE envelope (https://github.com/secure-systems-lab/dsse,
// envelope.md).
type envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []signature `json:"signatures"`
}

type signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// b64 is the base64 of DSSE fields: standard alphabet, padded, strict (no
// stray bits), so each byte string has exactly one accepted encoding.
var b64 = base64.StdEncoding.Strict()

// SubjectName is the file name of a round's model, the in-toto subject
// name: "FEDERATION-model-round-NNNNNN.bin" with the round in at least six
// digits, so that a listing sorts by round.
func SubjectName(federation string, round uint64) string {
	return fmt.Sprintf("%s-model-round-%06d.bin", federation, round)
}

// Sign makes the signed manifest of r: a DSSE envelope around an in-toto
// statement, signed with both keys of s. It returns the envelope and its
// [Digest], which the next round's manifest names as its Parent. It
// refuses a Round that [Open] would refuse, so the coordinator never
// publishes a manifest its participants cannot accept.
func Sign(s *Signer, r Round) (envelope []byte, digest [32]byte, err error) {
	if s == nil {
		return nil, digest, errors.New("manifest: sign: nil Signer")
	}
	r.Closed = r.Closed.UTC()
	if err := r.validate(); err != nil {
		return nil, digest, fmt.Errorf("manifest: sign round %d: %w", r.Round, err)
	}
	payload, err := marshalStatement(r)
	if err != nil {
		return nil, digest, fmt.Errorf("manifest: sign round %d: %w", r.Round, err)
	}
	env, err := s.signEnvelope(PayloadType, payload)
	if err != nil {
		return nil, digest, err
	}
	return env, sha256.Sum256(payload), nil
}

// marshalStatement encodes the statement of r. encoding/json writes struct
// fields in declaration order and compacts the raw messages, so the same
// Round always gives the same bytes.
func marshalStatement(r Round) ([]byte, error) {
	pred, err := marshalJSON(r)
	if err != nil {
		return nil, fmt.Errorf("encode predicate: %w", err)
	}
	return marshalJSON(statement{
		Type:          StatementType,
		Subject:       r.subjects(),
		PredicateType: r.predicateType(),
		Predicate:     pred,
	})
}

// subjects are the statement's subjects for r: the model in wire format
// ([SubjectName], ModelSHA256) and, when the round has it, the same model
// as a safetensors file ([ModelFileName], SafetensorsSHA256).
func (r *Round) subjects() []subject {
	s := []subject{{
		Name:   SubjectName(r.Federation, r.Round),
		Digest: map[string]string{"sha256": r.ModelSHA256},
	}}
	if r.SafetensorsSHA256 != "" {
		s = append(s, subject{
			Name:   ModelFileName(r.Federation, r.Round),
			Digest: map[string]string{"sha256": r.SafetensorsSHA256},
		})
	}
	return s
}

// marshalJSON is json.Marshal without HTML escaping: manifests are read by
// auditors, not embedded in web pages, and "norm > clip" reads better than
// "norm \u003e clip".
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// signEnvelope signs payload with both keys and encodes the envelope. The
// Ed25519 signature comes first with an empty keyid, the ML-DSA-65 one
// second with keyid "mldsa65:<hex SHA-256 of the packed key>"; see the
// package documentation, section Compatibility with cosign.
func (s *Signer) signEnvelope(payloadType string, payload []byte) ([]byte, error) {
	msg := pae(payloadType, payload)
	// Pure Ed25519 (hash 0), in a file key or on a token.
	edSig, err := s.ed.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("manifest: Ed25519 sign: %w", err)
	}
	mlSig := make([]byte, mldsa65.SignatureSize)
	// Empty context string; hedged unless a test asked for determinism.
	if err := mldsa65.SignTo(s.mldsa, msg, nil, !s.deterministic, mlSig); err != nil {
		return nil, fmt.Errorf("manifest: ML-DSA-65 sign: %w", err)
	}
	env, err := json.Marshal(envelope{
		PayloadType: payloadType,
		Payload:     b64.EncodeToString(payload),
		Signatures: []signature{
			{KeyID: "", Sig: b64.EncodeToString(edSig)},
			{KeyID: s.public.mldsaKeyID(), Sig: b64.EncodeToString(mlSig)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: encode envelope: %w", err)
	}
	return env, nil
}

// pae is DSSE's pre-authentication encoding, what both signatures cover:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in decimal.
// Binding the type stops a signature being replayed on another kind of
// payload.
func pae(payloadType string, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len("DSSEv1") + len(payloadType) + len(body) + 44)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteByte(' ')
	b.Write(body)
	return b.Bytes()
}

// Open verifies a signed manifest against the pinned keys and returns its
// Round and [Digest]. Both signatures are required: the Ed25519 one and the
// ML-DSA-65 one must each verify, so a manifest stays unforgeable while
// either scheme holds. The signatures are checked before the payload is
// parsed; keyids are hints and play no part in the decision.
//
// Errors wrap [ErrMalformed], [ErrUnsigned], [ErrBadSignature] or
// [ErrModelMismatch]. Open checks the manifest alone: whether it belongs to
// the right federation and extends the chain is for [Verify] and [Extends].
func Open(envelope []byte, keys PublicKeys) (Round, [32]byte, error) {
	if err := keys.check(); err != nil {
		return Round{}, [32]byte{}, err
	}
	env, payload, err := decodeEnvelope(envelope)
	if err != nil {
		return Round{}, [32]byte{}, err
	}
	if err := verifySignatures(env, payload, keys); err != nil {
		return Round{}, [32]byte{}, err
	}
	r, err := parseStatement(payload)
	if err != nil {
		return Round{}, [32]byte{}, err
	}
	return r, sha256.Sum256(payload), nil
}

// Digest returns the SHA-256 of the envelope's decoded payload: the
// statement bytes that the signatures cover. It does not check the
// signatures, and does not change when they do (ML-DSA-65 signing is
// randomized, and a countersignature may be added), so it names the
// manifest itself; [Round].Parent holds it.
func Digest(envelope []byte) ([32]byte, error) {
	_, payload, err := decodeEnvelope(envelope)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(payload), nil
}

// openError is an error of Open: one of the Err* kinds, a message, and the
// cause if any. Verify uses the message as a RefusalError's Detail.
type openError struct {
	kind  error
	msg   string
	cause error
}

func (e *openError) Error() string { return e.kind.Error() + ": " + e.msg }

func (e *openError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// fail builds an openError; a trailing error argument becomes its cause.
func fail(kind error, format string, args ...any) error {
	e := &openError{kind: kind, msg: fmt.Sprintf(format, args...)}
	if n := len(args); n > 0 {
		if err, ok := args[n-1].(error); ok {
			e.cause = err
		}
	}
	return e
}

// decodeEnvelope checks the envelope's size and shape and decodes its
// payload. It does not look at what the signatures say.
func decodeEnvelope(data []byte) (envelope, []byte, error) {
	if len(data) > MaxEnvelopeSize {
		return envelope{}, nil, fail(ErrMalformed, "envelope is %d bytes, more than %d", len(data), MaxEnvelopeSize)
	}
	var env envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return envelope{}, nil, fail(ErrMalformed, "envelope: %v", err)
	}
	if env.PayloadType != PayloadType {
		return envelope{}, nil, fail(ErrMalformed, "payloadType %.64q, want %q", env.PayloadType, PayloadType)
	}
	payload, err := b64.DecodeString(env.Payload)
	if err != nil {
		return envelope{}, nil, fail(ErrMalformed, "payload is not standard base64: %v", err)
	}
	if len(env.Signatures) > MaxSignatures {
		return envelope{}, nil, fail(ErrMalformed, "%d signatures, more than %d", len(env.Signatures), MaxSignatures)
	}
	return env, payload, nil
}

// verifySignatures requires one valid signature under each pinned key.
// Every signature is tried against both keys: a keyid is an unauthenticated
// hint (DSSE protocol.md), and trying costs at most MaxSignatures of each
// verification. Signature lengths only decide which error to report: one
// of the right length that fails is a bad signature, none at all means
// unsigned.
func verifySignatures(env envelope, payload []byte, keys PublicKeys) error {
	if len(env.Signatures) == 0 {
		return fail(ErrUnsigned, "the envelope has no signatures")
	}
	sigs := make([][]byte, len(env.Signatures))
	for i, s := range env.Signatures {
		sig, err := b64.DecodeString(s.Sig)
		if err != nil {
			return fail(ErrMalformed, "signature %d is not standard base64: %v", i, err)
		}
		sigs[i] = sig
	}
	msg := pae(env.PayloadType, payload)
	var edOK, mlOK, edSeen, mlSeen bool
	for _, sig := range sigs {
		switch len(sig) {
		case ed25519.SignatureSize:
			edSeen = true
			edOK = edOK || ed25519.Verify(keys.Ed25519, msg, sig)
		case mldsa65.SignatureSize:
			mlSeen = true
			// Empty context string, as in signEnvelope.
			mlOK = mlOK || mldsa65.Verify(keys.MLDSA65, msg, nil, sig)
		}
	}
	var bad, missing []string
	for _, c := range []struct {
		scheme   string
		ok, seen bool
	}{{"Ed25519", edOK, edSeen}, {"ML-DSA-65", mlOK, mlSeen}} {
		switch {
		case c.ok:
		case c.seen:
			bad = append(bad, fmt.Sprintf("no %s signature verifies under the pinned key", c.scheme))
		default:
			missing = append(missing, fmt.Sprintf("no %s signature", c.scheme))
		}
	}
	switch {
	case len(bad) > 0:
		return fail(ErrBadSignature, "%s (pinned keys %s)", strings.Join(append(bad, missing...), "; "), keys.Fingerprint())
	case len(missing) > 0:
		return fail(ErrUnsigned, "%s", strings.Join(missing, "; "))
	}
	return nil
}

// decodeStatement decodes an in-toto statement strictly and checks its
// _type and that its predicateType is one of predicateTypes; what names
// the statement in a decoding error. Subject and predicate are the
// caller's to check.
func decodeStatement(payload []byte, what string, predicateTypes ...string) (statement, error) {
	var st statement
	if err := strictUnmarshal(payload, &st); err != nil {
		return statement{}, fail(ErrMalformed, "%s: %v", what, err)
	}
	if st.Type != StatementType {
		return statement{}, fail(ErrMalformed, "statement _type %.64q, want %q", st.Type, StatementType)
	}
	if !slices.Contains(predicateTypes, st.PredicateType) {
		want := make([]string, len(predicateTypes))
		for i, t := range predicateTypes {
			want[i] = strconv.Quote(t)
		}
		return statement{}, fail(ErrMalformed, "predicateType %.64q, want %s", st.PredicateType, strings.Join(want, " or "))
	}
	return st, nil
}

// parseStatement decodes and checks the statement and its Round.
func parseStatement(payload []byte) (Round, error) {
	st, err := decodeStatement(payload, "statement", PredicateType, PredicateTypeV2)
	if err != nil {
		return Round{}, err
	}
	if len(st.Subject) != 1 && len(st.Subject) != 2 {
		return Round{}, fail(ErrMalformed, "statement has %d subjects, want 1 or 2", len(st.Subject))
	}
	for i, subj := range st.Subject {
		d, ok := subj.Digest["sha256"]
		if !ok || len(subj.Digest) != 1 {
			return Round{}, fail(ErrMalformed, "%s digest must be exactly a sha256 digest, got %d entries", subjectLabel(i), len(subj.Digest))
		}
		if !isHexDigest(d) {
			return Round{}, fail(ErrMalformed, "%s sha256 digest %.80q is not 64 lowercase hex digits", subjectLabel(i), d)
		}
	}
	var r Round
	if err := strictUnmarshal(st.Predicate, &r); err != nil {
		return Round{}, fail(ErrMalformed, "predicate: %v", err)
	}
	if err := r.validate(); err != nil {
		return Round{}, fail(ErrMalformed, "round %d: %v", r.Round, err)
	}
	if want := r.predicateType(); st.PredicateType != want {
		return Round{}, fail(ErrMalformed, "round %d with %d key rotations is a %s manifest, not %s", r.Round, len(r.KeyRotations), want, st.PredicateType)
	}
	// The subjects are exactly those the predicate names, in order.
	want := r.subjects()
	if len(st.Subject) != len(want) {
		return Round{}, fail(ErrMalformed, "round %d: statement has %d subjects, want %d (safetensors_sha256 %q)", r.Round, len(st.Subject), len(want), r.SafetensorsSHA256)
	}
	for i, w := range want {
		got := st.Subject[i]
		if got.Name != w.Name {
			return Round{}, fail(ErrMalformed, "%s name %.80q, want %q", subjectLabel(i), got.Name, w.Name)
		}
		if d := got.Digest["sha256"]; d != w.Digest["sha256"] {
			field := "model_sha256"
			if i > 0 {
				field = "safetensors_sha256"
			}
			return Round{}, fail(ErrModelMismatch, "round %d: %s digest %s differs from %s %s", r.Round, subjectLabel(i), d, field, w.Digest["sha256"])
		}
	}
	return r, nil
}

// subjectLabel names subject i of a statement in an error.
func subjectLabel(i int) string {
	if i == 0 {
		return "subject"
	}
	return "second subject"
}

// strictUnmarshal is strictjson.Unmarshal. Unknown fields are refused
// because a v1 reader that skipped a field added later could accept a
// manifest whose meaning it does not know; additions need a new
// PredicateType.
var strictUnmarshal = strictjson.Unmarshal

// validate checks the rules a Round obeys, for Sign and Open alike.
func (r *Round) validate() error {
	if err := certs.ValidateName(r.Federation); err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	switch {
	case r.Round == 0 && r.Parent != "":
		return fmt.Errorf("round 0 is the genesis and has no parent, got parent %.80q", r.Parent)
	case r.Round > 0 && r.Parent == "":
		return fmt.Errorf("round %d has no parent", r.Round)
	case r.Round > 0 && !isHexDigest(r.Parent):
		return fmt.Errorf("parent %.80q is not 64 lowercase hex digits", r.Parent)
	}
	if !isHexDigest(r.ModelSHA256) {
		return fmt.Errorf("model_sha256 %.80q is not 64 lowercase hex digits", r.ModelSHA256)
	}
	if r.SafetensorsSHA256 != "" && !isHexDigest(r.SafetensorsSHA256) {
		return fmt.Errorf("safetensors_sha256 %.80q is not 64 lowercase hex digits", r.SafetensorsSHA256)
	}
	if r.TrainerDigest != "" {
		if err := CheckTrainerDigest(r.TrainerDigest); err != nil {
			return err
		}
	}
	if !isHexDigest(r.ScalingSHA256) {
		return fmt.Errorf("scaling_sha256 %.80q is not 64 lowercase hex digits", r.ScalingSHA256)
	}
	if r.NumParams == 0 {
		return errors.New("num_params is 0")
	}
	if err := checkObject(r.ModelSpec); err != nil {
		return fmt.Errorf("model_spec: %w", err)
	}
	if err := checkObject(r.Parameters); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if r.Round > 0 && r.Rule == "" {
		return fmt.Errorf("round %d has no aggregation rule", r.Round)
	}
	seen := make(map[string]string, len(r.Included)+len(r.Excluded))
	for i, c := range r.Included {
		if err := addListed(seen, "included", i, c.Name); err != nil {
			return err
		}
		if !isHexDigest(c.UpdateSHA256) {
			return fmt.Errorf("included[%d] %q: update_sha256 %.80q is not 64 lowercase hex digits", i, c.Name, c.UpdateSHA256)
		}
		if !(c.Norm >= 0) || math.IsInf(c.Norm, 0) {
			return fmt.Errorf("included[%d] %q: norm %v is not a finite non-negative number", i, c.Name, c.Norm)
		}
		if !(c.Weight >= 0) || math.IsInf(c.Weight, 0) {
			return fmt.Errorf("included[%d] %q: weight %v is not a finite non-negative number", i, c.Name, c.Weight)
		}
		if c.DataSHA256 != "" && !isHexDigest(c.DataSHA256) {
			return fmt.Errorf("included[%d] %q: data_sha256 %.80q is not 64 lowercase hex digits", i, c.Name, c.DataSHA256)
		}
	}
	for i, e := range r.Excluded {
		if err := addListed(seen, "excluded", i, e.Name); err != nil {
			return err
		}
		if e.Reason == "" {
			return fmt.Errorf("excluded[%d] %q: no reason", i, e.Name)
		}
	}
	if c := r.Checkpoint; c != nil {
		if c.Origin == "" {
			return errors.New("checkpoint: no origin")
		}
		root, err := b64.DecodeString(c.Root)
		if err != nil || len(root) != sha256.Size {
			return fmt.Errorf("checkpoint: root %.80q is not a base64 SHA-256 hash", c.Root)
		}
		if c.Note == "" {
			return errors.New("checkpoint: no signed note")
		}
	}
	if r.Closed.IsZero() {
		return errors.New("closed time is missing")
	}
	if len(r.KeyRotations) > MaxRotations {
		return fmt.Errorf("%d key rotations, more than %d", len(r.KeyRotations), MaxRotations)
	}
	if len(r.KeyRotations) > 0 && r.Round == 0 {
		return errors.New("round 0 carries key rotations: the genesis is signed by the first keys")
	}
	for i, k := range r.KeyRotations {
		if err := checkObject(k); err != nil {
			return fmt.Errorf("key_rotations[%d]: %w", i, err)
		}
	}
	return nil
}

// checkObject requires raw to be one JSON object.
func checkObject(raw json.RawMessage) error {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return errors.New("missing")
	}
	if t[0] != '{' || !json.Valid(t) {
		return fmt.Errorf("not a JSON object: %.40q", t)
	}
	return nil
}

// isHexDigest reports whether s is a SHA-256 digest in lowercase hex, the
// one spelling this package writes and accepts.
func isHexDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// hexDigest spells a digest as this package does.
func hexDigest(d [32]byte) string { return hex.EncodeToString(d[:]) }

// addListed records name, entry i of the manifest's list (included or
// excluded), in seen: a participant is named once, in one list.
func addListed(seen map[string]string, list string, i int, name string) error {
	if err := certs.ValidateName(name); err != nil {
		return fmt.Errorf("%s[%d]: %w", list, i, err)
	}
	if prev, dup := seen[name]; dup {
		return fmt.Errorf("%s[%d]: %q is already listed as %s", list, i, name, prev)
	}
	seen[name] = list
	return nil
}
