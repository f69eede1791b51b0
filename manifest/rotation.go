package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// RotationPredicateType names the predicate of a key rotation manifest, a
// [Rotation] (see the package documentation, section Key rotation).
const RotationPredicateType = "https://fedguard.dev/key-rotation/v1"

// Bounds on key rotations.
const (
	// MaxRotations bounds a chain of rotations: what a participant
	// follows, a coordinator loads, a round manifest carries. Keys rotate
	// yearly or after an incident; 64 rotations is decades of them.
	MaxRotations = 64
)

// Names of the files of key rotation, relative to the coordinator's
// signing directory (see the package documentation, section Key rotation).
const (
	// RotationsDir holds the committed rotation manifests, one file per
	// rotation ([RotationFile]).
	RotationsDir = "rotations"
	// RetiredDir holds a directory per retired key, named by the sequence
	// number of the rotation that retired it, with the key's three files.
	RetiredDir = "retired"
	// PendingRotationDir holds a rotation being made: the new key's files
	// and the rotation manifest ([PendingRotationFile]). While it exists
	// the rotation is neither done nor undone; [CommitRotation] finishes it.
	PendingRotationDir = "rotation-pending"
	// PendingRotationFile is the rotation manifest inside PendingRotationDir.
	PendingRotationFile = "rotation.json"
)

// RotationFile is the name of rotation seq's manifest inside RotationsDir:
// "rotation-NNNNNN.json", so that a listing sorts by sequence.
func RotationFile(seq uint64) string { return fmt.Sprintf("rotation-%06d.json", seq) }

// ErrPendingRotation: a key rotation was started and not finished; run
// `fedguard coordinator rotate-keys` again to finish it.
var ErrPendingRotation = errors.New("manifest: a key rotation is pending")

// Rotation is the predicate of a key rotation manifest: the coordinator's
// statement, signed by both its old and its new keys, that the new keys
// sign the federation's manifests and checkpoints from now on. Old signs
// that it hands over; New signs that it takes over (so nobody can rotate
// a federation to a key they do not hold). A participant that pinned
// OldKeys verifies it and pins NewKeys.
type Rotation struct {
	Federation string `json:"federation"`
	// Seq numbers the federation's rotations from 1.
	Seq uint64 `json:"seq"`
	// Previous is the [Digest] of rotation Seq-1's manifest; empty for the
	// first rotation. It chains the rotations as Parent chains rounds.
	Previous string `json:"previous"`
	// OldKeys and NewKeys are the two identities as signing.pub files
	// ([PublicKeys.MarshalPEM]); the fingerprints name them for people.
	OldKeys        string `json:"old_keys"`
	NewKeys        string `json:"new_keys"`
	OldFingerprint string `json:"old_fingerprint"`
	NewFingerprint string `json:"new_fingerprint"`
	// AfterRound and AfterManifest name the last round manifest the old
	// keys signed: the manifests of rounds up to AfterRound are the old
	// keys', every later one the new keys'. A participant follows the
	// rotation only at that point of the chain.
	AfterRound    uint64 `json:"after_round"`
	AfterManifest string `json:"after_manifest"`
	// Rotated is when the rotation was made, in UTC.
	Rotated time.Time `json:"rotated"`
}

// VerifiedRotation is a rotation manifest whose two pairs of signatures
// have been checked by [OpenRotation].
type VerifiedRotation struct {
	Rotation Rotation
	// Digest is the SHA-256 of the manifest's payload, as [Digest].
	Digest   [32]byte
	Envelope []byte
	Old, New PublicKeys
}

// RotationSubjectName is the in-toto subject of rotation seq: the new
// signing.pub, as "FEDERATION-signing-key-NNNNNN.pub".
func RotationSubjectName(federation string, seq uint64) string {
	return fmt.Sprintf("%s-signing-key-%06d.pub", federation, seq)
}

// SignRotation makes the manifest of r, signed by both halves of both
// identities: old's Ed25519 and ML-DSA-65 signatures, then new's. r's keys
// and fingerprints are filled in from old and new.
func SignRotation(old, new *Signer, r Rotation) ([]byte, [32]byte, error) {
	if old == nil || new == nil {
		return nil, [32]byte{}, errors.New("manifest: sign rotation: nil Signer")
	}
	r.OldKeys, r.NewKeys = string(old.public.MarshalPEM()), string(new.public.MarshalPEM())
	r.OldFingerprint, r.NewFingerprint = old.public.Fingerprint(), new.public.Fingerprint()
	r.Rotated = r.Rotated.UTC()
	if _, _, err := r.validate(); err != nil {
		return nil, [32]byte{}, fmt.Errorf("manifest: sign rotation %d: %w", r.Seq, err)
	}
	payload, err := rotationStatement(r)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("manifest: sign rotation %d: %w", r.Seq, err)
	}
	var all envelope
	for _, s := range []*Signer{old, new} {
		raw, err := s.signEnvelope(PayloadType, payload)
		if err != nil {
			return nil, [32]byte{}, err
		}
		var e envelope
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, [32]byte{}, fmt.Errorf("manifest: sign rotation: %w", err)
		}
		all.PayloadType, all.Payload = e.PayloadType, e.Payload
		all.Signatures = append(all.Signatures, e.Signatures...)
	}
	env, err := json.Marshal(all)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("manifest: encode rotation envelope: %w", err)
	}
	return env, sha256.Sum256(payload), nil
}

// rotationStatement encodes the statement of r; the subject is the new
// keys' signing.pub.
func rotationStatement(r Rotation) ([]byte, error) {
	pred, err := marshalJSON(r)
	if err != nil {
		return nil, err
	}
	keySum := sha256.Sum256([]byte(r.NewKeys))
	return marshalJSON(statement{
		Type:          StatementType,
		Subject:       []subject{{Name: RotationSubjectName(r.Federation, r.Seq), Digest: map[string]string{"sha256": hexDigest(keySum)}}},
		PredicateType: RotationPredicateType,
		Predicate:     pred,
	})
}

// OpenRotation checks a rotation manifest on its own: its form, and that
// both the old and the new keys it names signed it, each with both
// schemes. Whether the old keys are the ones the caller trusts is for the
// caller ([FollowRotations] does it). Errors wrap [ErrMalformed],
// [ErrUnsigned] or [ErrBadSignature].
func OpenRotation(envelope []byte) (VerifiedRotation, error) {
	env, payload, err := decodeEnvelope(envelope)
	if err != nil {
		return VerifiedRotation{}, err
	}
	r, err := parseRotation(payload)
	if err != nil {
		return VerifiedRotation{}, err
	}
	old, new, err := r.validate()
	if err != nil {
		return VerifiedRotation{}, fail(ErrMalformed, "rotation %d: %v", r.Seq, err)
	}
	for _, k := range []struct {
		who  string
		keys PublicKeys
	}{{"old", old}, {"new", new}} {
		if err := verifySignatures(env, payload, k.keys); err != nil {
			var oe *openError
			if errors.As(err, &oe) {
				return VerifiedRotation{}, fail(oe.kind, "rotation %d: the %s keys did not sign it: %s", r.Seq, k.who, oe.msg)
			}
			return VerifiedRotation{}, err
		}
	}
	return VerifiedRotation{Rotation: r, Digest: sha256.Sum256(payload), Envelope: envelope, Old: old, New: new}, nil
}

// parseRotation decodes the statement of a rotation manifest.
func parseRotation(payload []byte) (Rotation, error) {
	st, err := decodeStatement(payload, "rotation statement", RotationPredicateType)
	if err != nil {
		return Rotation{}, err
	}
	var r Rotation
	if err := strictUnmarshal(st.Predicate, &r); err != nil {
		return Rotation{}, fail(ErrMalformed, "rotation predicate: %v", err)
	}
	// Only what SignRotation writes, byte for byte: the subject is then
	// the new keys' digest, and there is one encoding per rotation.
	if again, err := rotationStatement(r); err != nil || !bytes.Equal(again, payload) {
		return Rotation{}, fail(ErrMalformed, "rotation %d: the statement is not in canonical form (or its subject is not %s with the sha256 of new_keys)", r.Seq, RotationSubjectName(r.Federation, r.Seq))
	}
	return r, nil
}

// validate checks r's rules and returns its two identities.
func (r *Rotation) validate() (old, new PublicKeys, err error) {
	if err := certs.ValidateName(r.Federation); err != nil {
		return old, new, fmt.Errorf("federation: %w", err)
	}
	switch {
	case r.Seq == 0:
		return old, new, errors.New("seq 0: rotations are numbered from 1")
	case r.Seq == 1 && r.Previous != "":
		return old, new, fmt.Errorf("the first rotation has no previous one, got %.80q", r.Previous)
	case r.Seq > 1 && !isHexDigest(r.Previous):
		return old, new, fmt.Errorf("previous %.80q is not 64 lowercase hex digits", r.Previous)
	case !isHexDigest(r.AfterManifest):
		return old, new, fmt.Errorf("after_manifest %.80q is not 64 lowercase hex digits", r.AfterManifest)
	case r.Rotated.IsZero():
		return old, new, errors.New("rotated time is missing")
	}
	if old, err = ParsePublicKeys([]byte(r.OldKeys)); err != nil {
		return old, new, fmt.Errorf("old_keys: %w", err)
	}
	if new, err = ParsePublicKeys([]byte(r.NewKeys)); err != nil {
		return old, new, fmt.Errorf("new_keys: %w", err)
	}
	switch {
	case old.Fingerprint() != r.OldFingerprint:
		return old, new, fmt.Errorf("old_fingerprint %.80q is not the fingerprint %s of old_keys", r.OldFingerprint, old.Fingerprint())
	case new.Fingerprint() != r.NewFingerprint:
		return old, new, fmt.Errorf("new_fingerprint %.80q is not the fingerprint %s of new_keys", r.NewFingerprint, new.Fingerprint())
	case old.Equal(new) || bytesEqual(old.Ed25519, new.Ed25519) || old.MLDSA65.Equal(new.MLDSA65):
		// Each half must change: a rotation that kept one would keep it
		// signing under the other's name.
		return old, new, errors.New("the new keys repeat an old key")
	}
	return old, new, nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// FollowRotations follows a run of rotation manifests from the keys a
// participant pinned and returns the keys it ends at, with the rotations
// it applied. Rotations before the one from pinned are skipped (they are
// history the participant followed already, or its pinned keys were
// re-pinned by hand); from that one on, each must verify ([OpenRotation]),
// be of federation, rotate from the keys the one before rotated to, and
// name the one before as Previous. A run that never mentions pinned is an
// error, unless its last rotation ends at pinned (nothing to follow).
//
// Refusals are a *RefusalError with [ReasonBadRotation].
func FollowRotations(pinned PublicKeys, federation string, envelopes [][]byte) (PublicKeys, []VerifiedRotation, error) {
	if err := pinned.check(); err != nil {
		return PublicKeys{}, nil, err
	}
	bad := func(round uint64, format string, args ...any) error {
		var cause error
		if n := len(args); n > 0 {
			cause, _ = args[n-1].(error)
		}
		return &RefusalError{Reason: ReasonBadRotation, Round: round, Detail: fmt.Sprintf(format, args...), Err: cause}
	}
	if len(envelopes) > MaxRotations {
		return PublicKeys{}, nil, bad(0, "%d rotations, more than %d", len(envelopes), MaxRotations)
	}
	rots := make([]VerifiedRotation, len(envelopes))
	for i, env := range envelopes {
		v, err := OpenRotation(env)
		if err != nil {
			return PublicKeys{}, nil, bad(0, "key rotation %d of %d: %v", i+1, len(envelopes), err)
		}
		if v.Rotation.Federation != federation {
			return PublicKeys{}, nil, bad(v.Rotation.AfterRound, "key rotation %d is for federation %q, this is %q", v.Rotation.Seq, v.Rotation.Federation, federation)
		}
		if i > 0 {
			prev := rots[i-1]
			switch {
			case v.Rotation.Seq != prev.Rotation.Seq+1:
				return PublicKeys{}, nil, bad(v.Rotation.AfterRound, "key rotation %d follows rotation %d", v.Rotation.Seq, prev.Rotation.Seq)
			case v.Rotation.Previous != hexDigest(prev.Digest):
				return PublicKeys{}, nil, bad(v.Rotation.AfterRound, "key rotation %d names previous %s, not rotation %d's %s", v.Rotation.Seq, v.Rotation.Previous, prev.Rotation.Seq, hexDigest(prev.Digest))
			case !v.Old.Equal(prev.New):
				return PublicKeys{}, nil, bad(v.Rotation.AfterRound, "key rotation %d rotates from %s, rotation %d rotated to %s", v.Rotation.Seq, v.Rotation.OldFingerprint, prev.Rotation.Seq, prev.Rotation.NewFingerprint)
			case v.Rotation.AfterRound < prev.Rotation.AfterRound:
				return PublicKeys{}, nil, bad(v.Rotation.AfterRound, "key rotation %d takes effect after round %d, before rotation %d (after round %d)", v.Rotation.Seq, v.Rotation.AfterRound, prev.Rotation.Seq, prev.Rotation.AfterRound)
			}
		}
		rots[i] = v
	}
	start := slices.IndexFunc(rots, func(v VerifiedRotation) bool { return v.Old.Equal(pinned) })
	if start < 0 {
		if n := len(rots); n > 0 && rots[n-1].New.Equal(pinned) {
			return pinned, nil, nil
		}
		return PublicKeys{}, nil, bad(0, "no key rotation is from the pinned keys %s (rotations go from %s): a rotation not signed by the pinned keys is not followed", pinned.Fingerprint(), rotationFrom(rots))
	}
	rots = rots[start:]
	return rots[len(rots)-1].New, rots, nil
}

func rotationFrom(rots []VerifiedRotation) string {
	var fps []string
	for _, v := range rots {
		fps = append(fps, v.Rotation.OldFingerprint)
	}
	if len(fps) == 0 {
		return "nowhere"
	}
	return strings.Join(fps, ", ")
}

// CarriedRotations returns the rotation manifests a round manifest
// carries (its key_rotations), without checking any signature: the
// participant needs them to learn which keys should have signed it. It
// returns nil for a manifest that carries none or cannot be read.
func CarriedRotations(envelope []byte) [][]byte {
	_, payload, err := decodeEnvelope(envelope)
	if err != nil {
		return nil
	}
	var st struct {
		Predicate struct {
			KeyRotations []json.RawMessage `json:"key_rotations"`
		} `json:"predicate"`
	}
	if json.Unmarshal(payload, &st) != nil || len(st.Predicate.KeyRotations) == 0 || len(st.Predicate.KeyRotations) > MaxRotations {
		return nil
	}
	out := make([][]byte, len(st.Predicate.KeyRotations))
	for i, r := range st.Predicate.KeyRotations {
		out[i] = r
	}
	return out
}

// Keyring is every identity a coordinator has signed with, oldest first:
// its first keys, then each rotation's new keys. Manifests and checkpoints
// made before a rotation stay verifiable with it.
type Keyring []PublicKeys

// NewKeyring returns the keyring of a coordinator that started with first
// and rotated through chain (as [LoadRotations] returns it).
func NewKeyring(first PublicKeys, chain []VerifiedRotation) Keyring {
	k := Keyring{first}
	for _, v := range chain {
		k = append(k, v.New)
	}
	return k
}

// Current returns the newest keys.
func (k Keyring) Current() PublicKeys { return k[len(k)-1] }

// Open opens a manifest signed by any of the keys, trying the newest
// first; the error is the current keys' if none verifies.
func (k Keyring) Open(envelope []byte) (Round, [32]byte, error) {
	var first error
	for i := len(k) - 1; i >= 0; i-- {
		r, d, err := Open(envelope, k[i])
		if err == nil {
			return r, d, nil
		}
		if first == nil {
			first = err
		}
	}
	return Round{}, [32]byte{}, first
}

// NoteVerifiers returns verifiers of checkpoints signed under name by any
// of the keys. The note key hash covers the key, so each signature is
// checked against exactly the key that made it.
func (k Keyring) NoteVerifiers(name string) (note.Verifiers, error) {
	var vs []note.Verifier
	for _, keys := range k {
		v, err := keys.NoteVerifier(name)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// LoadRotations reads the committed rotations in dir's RotationsDir and
// checks them as a chain: numbered from 1 without gaps, each signed by
// the keys the one before rotated to. It returns nil when there are none.
// A pending rotation is an error wrapping [ErrPendingRotation].
func LoadRotations(dir string) ([]VerifiedRotation, error) {
	if _, err := os.Stat(filepath.Join(dir, PendingRotationDir)); err == nil {
		return nil, fmt.Errorf("%w in %s: run `fedguard coordinator rotate-keys` again to finish it", ErrPendingRotation, filepath.Join(dir, PendingRotationDir))
	}
	entries, err := os.ReadDir(filepath.Join(dir, RotationsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: key rotations: %w", err)
	}
	var chain []VerifiedRotation
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "rotation-") || !strings.HasSuffix(name, ".json") {
			continue
		}
		want := RotationFile(uint64(len(chain) + 1))
		if name != want {
			return nil, fmt.Errorf("manifest: key rotations: found %s where %s was expected", name, want)
		}
		if len(chain) == MaxRotations {
			return nil, fmt.Errorf("manifest: key rotations: more than %d", MaxRotations)
		}
		path := filepath.Join(dir, RotationsDir, name)
		data, err := strictjson.ReadFile(path, MaxEnvelopeSize)
		if err != nil {
			return nil, fmt.Errorf("manifest: key rotation: %w", err)
		}
		v, err := OpenRotation(data)
		if err != nil {
			return nil, fmt.Errorf("manifest: %s: %w", path, err)
		}
		if v.Rotation.Seq != uint64(len(chain)+1) {
			return nil, fmt.Errorf("manifest: %s holds rotation %d", path, v.Rotation.Seq)
		}
		if n := len(chain); n > 0 {
			prev := chain[n-1]
			if v.Rotation.Previous != hexDigest(prev.Digest) || !v.Old.Equal(prev.New) {
				return nil, fmt.Errorf("manifest: %s does not follow %s", path, RotationFile(prev.Rotation.Seq))
			}
		}
		chain = append(chain, v)
	}
	return chain, nil
}

// Save writes s's files (signing.key mode 0600, signing.pub, cosign.pub)
// into dir, made mode 0700 if missing. It never overwrites a key: an
// existing signing.key must be s's, and is then left as it is.
func (s *Signer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("manifest: save signing keys: %w", err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		have, err := loadSigner(dir, true)
		if err != nil {
			return err
		}
		if !have.public.Equal(s.public) {
			return fmt.Errorf("manifest: %s holds other keys (%s), not %s", keyPath, have.public.Fingerprint(), s.public.Fingerprint())
		}
		return nil
	}
	keyPEM, err := s.marshalPrivateKeys()
	if err != nil {
		return err
	}
	if err := certs.WritePrivateKey(keyPath, keyPEM); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return writePublicFiles(dir, s.public, false)
}

// PendingRotation reads the rotation being made in dir: the new signer and
// the verified rotation manifest. ok is false when none is pending.
func PendingRotation(dir string) (next *Signer, v VerifiedRotation, ok bool, err error) {
	pending := filepath.Join(dir, PendingRotationDir)
	data, err := strictjson.ReadFile(filepath.Join(pending, PendingRotationFile), MaxEnvelopeSize)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(pending); serr == nil {
			// Made, but the manifest was never written: nothing was
			// committed, the directory can go.
			return nil, VerifiedRotation{}, false, os.RemoveAll(pending)
		}
		return nil, VerifiedRotation{}, false, nil
	}
	if err != nil {
		return nil, VerifiedRotation{}, false, fmt.Errorf("manifest: pending rotation: %w", err)
	}
	v, err = OpenRotation(data)
	if err != nil {
		return nil, VerifiedRotation{}, false, fmt.Errorf("manifest: pending rotation: %w", err)
	}
	// The key may already have been moved into place.
	for _, d := range []string{pending, dir} {
		if _, err := os.Stat(filepath.Join(d, KeyFile)); err != nil {
			continue
		}
		s, err := loadSignerKeyOnly(d)
		if err == nil && s.public.Equal(v.New) {
			return s, v, true, nil
		}
	}
	return nil, VerifiedRotation{}, false, fmt.Errorf("manifest: pending rotation %d: the new key %s is in neither %s nor %s", v.Rotation.Seq, v.Rotation.NewFingerprint, pending, dir)
}

// loadSignerKeyOnly reads signing.key in dir without looking at the
// public files (a rotation may have half replaced them).
func loadSignerKeyOnly(dir string) (*Signer, error) {
	keyPath := filepath.Join(dir, KeyFile)
	if err := checkPrivate(keyPath); err != nil {
		return nil, err
	}
	data, err := readSmall(keyPath)
	if err != nil {
		return nil, err
	}
	return parsePrivateKeys(data)
}

// StageRotation writes a rotation being made into dir's
// PendingRotationDir: next's key files, then the rotation manifest, which
// marks the rotation as pending. Nothing the coordinator signs with has
// changed yet.
func StageRotation(dir string, next *Signer, envelope []byte) error {
	pending := filepath.Join(dir, PendingRotationDir)
	if err := next.Save(pending); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(filepath.Join(pending, PendingRotationFile), envelope, 0o644); err != nil {
		return fmt.Errorf("manifest: stage rotation: %w", err)
	}
	return nil
}

// CommitRotation finishes the pending rotation in dir, and may be called
// again after a crash at any point of it: it keeps the old key in
// RetiredDir/NNNNNN (never deleting it: what it signed stays checkable),
// moves the rotation manifest into RotationsDir, moves the new key's files
// over signing.key, signing.pub and cosign.pub, and removes the pending
// directory. Every step is a rename or an atomic write, and is skipped
// when already done.
func CommitRotation(dir string) error {
	next, v, ok, err := PendingRotation(dir)
	if err != nil || !ok {
		return err
	}
	seq := v.Rotation.Seq
	retired := filepath.Join(dir, RetiredDir, fmt.Sprintf("%06d", seq))
	if cur, err := loadSignerKeyOnly(dir); err == nil && cur.public.Equal(v.Old) {
		if err := cur.Save(retired); err != nil {
			return fmt.Errorf("manifest: retire key: %w", err)
		}
	} else if _, err := loadSignerKeyOnly(retired); err != nil {
		return fmt.Errorf("manifest: commit rotation %d: the old key is neither in %s nor retired in %s: %w", seq, dir, retired, err)
	}
	pending := filepath.Join(dir, PendingRotationDir)
	if err := os.MkdirAll(filepath.Join(dir, RotationsDir), 0o755); err != nil {
		return fmt.Errorf("manifest: commit rotation: %w", err)
	}
	if err := certs.WriteFileAtomic(filepath.Join(dir, RotationsDir, RotationFile(seq)), v.Envelope, 0o644); err != nil {
		return fmt.Errorf("manifest: commit rotation: %w", err)
	}
	for _, name := range []string{KeyFile, PublicFile, CosignPublicFile} {
		from := filepath.Join(pending, name)
		if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
			continue // moved before a crash
		}
		if err := os.Rename(from, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("manifest: commit rotation: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if _, err := loadSigner(dir, false); err != nil {
		return fmt.Errorf("manifest: commit rotation %d: %w", seq, err)
	}
	if s, _ := loadSignerKeyOnly(dir); s == nil || !s.public.Equal(next.public) {
		return fmt.Errorf("manifest: commit rotation %d: %s does not hold the new key", seq, filepath.Join(dir, KeyFile))
	}
	if err := os.RemoveAll(pending); err != nil {
		return fmt.Errorf("manifest: commit rotation: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("manifest: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("manifest: sync %s: %w", dir, err)
	}
	return nil
}
