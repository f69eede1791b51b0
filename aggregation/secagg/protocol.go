package secagg

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"

	"github.com/fedguard/fedguard/internal/workers"
)

// Limits on a session's configuration. They bound what a configuration
// (and so every message validated against it) can make either side
// allocate.
const (
	// MaxParticipants is the largest N.
	MaxParticipants = 10_000
	// MaxDim is the largest Dim: 2^27 words, 512 MiB per vector.
	MaxDim = 1 << 27
	// MaxSessionSize is the longest Session identifier, in bytes.
	MaxSessionSize = 1024
	// MaxSignatureSize is the longest identity signature accepted, in
	// bytes: room for ECDSA up to P-521 and RSA up to 4096 bits.
	MaxSignatureSize = 512
)

// Errors. Every error the package returns wraps one of these (or is a
// *TooFewError or *ShareError, which match ErrTooFewParticipants and
// ErrBadShare under errors.Is).
var (
	// ErrInvalidConfig: Config.Validate failed, or NewClient/NewServer
	// got an unusable argument.
	ErrInvalidConfig = errors.New("secagg: invalid configuration")
	// ErrMalformed: a message failed its Validate (sizes, ids, order,
	// duplicates) or does not fit the receiver's view of the session.
	ErrMalformed = errors.New("secagg: malformed message")
	// ErrBadSignature: an identity signature did not verify.
	ErrBadSignature = errors.New("secagg: bad signature")
	// ErrBadKey: an advertised X25519 public key is a low-order point.
	ErrBadKey = errors.New("secagg: invalid X25519 public key")
	// ErrBadShare: a share ciphertext failed authentication or decrypted
	// to a malformed share. See ShareError.
	ErrBadShare = errors.New("secagg: bad share")
	// ErrTooFewParticipants: fewer than Threshold participants (in the
	// session, or in some participant's neighbourhood) are left at some
	// phase. See TooFewError. The caller retries the aggregation with a
	// new Session.
	ErrTooFewParticipants = errors.New("secagg: too few participants")
	// ErrDisconnected: the survivors' neighbour graph falls apart, so
	// unmasking would reveal the sums of its parts rather than only the
	// sum of all survivors. Only possible with Degree > 0. Retryable,
	// like ErrTooFewParticipants.
	ErrDisconnected = errors.New("secagg: survivors' neighbour graph is disconnected")
	// ErrBothSecrets: an unmask request asks a participant for shares of
	// both the self-mask seed and the mask key of one participant, which
	// would unmask that participant's input.
	ErrBothSecrets = errors.New("secagg: request would reveal both secrets of one participant")
	// ErrInconsistent: a request contradicts what the participant saw or
	// signed (another survivor set, a participant that never shared keys
	// with it, a wrong addressee).
	ErrInconsistent = errors.New("secagg: request inconsistent with the participant's view")
	// ErrReplay: a participant was asked a second time to sign a survivor
	// set or to unmask.
	ErrReplay = errors.New("secagg: already answered")
	// ErrPhase: a method was called out of the protocol's order.
	ErrPhase = errors.New("secagg: call out of order")
	// ErrAborted: the Client or Server failed earlier in this session
	// and answers nothing more.
	ErrAborted = errors.New("secagg: session aborted")
	// ErrReconstruct: a secret reconstructed from the unmask responses
	// does not match what its owner committed to, so some response
	// carried a wrong share. The sum is not returned.
	ErrReconstruct = errors.New("secagg: reconstructed secret does not match its commitment")
)

// Phase names a round of the protocol, as in Bonawitz et al.
type Phase int

// The rounds, in order.
const (
	PhaseAdvertiseKeys Phase = iota + 1
	PhaseShareKeys
	PhaseMaskedInput
	PhaseConsistencyCheck
	PhaseUnmasking
)

// phases lists the rounds once, in order, with their names: String's
// (also the prefix of the coordinator's drop reasons in the audit log)
// and Label's (the phase label of the coordinator's and the
// participant's metrics). Phases, String, Label and ParsePhase all read
// it, so a phase is added or renamed here only.
var phases = [...]struct {
	phase       Phase
	name, label string
}{
	{PhaseAdvertiseKeys, "AdvertiseKeys", "advertise_keys"},
	{PhaseShareKeys, "ShareKeys", "share_keys"},
	{PhaseMaskedInput, "MaskedInput", "masked_input"},
	{PhaseConsistencyCheck, "ConsistencyCheck", "consistency_check"},
	{PhaseUnmasking, "Unmasking", "unmasking"},
}

// Phases returns the rounds of the protocol, in order.
func Phases() []Phase {
	out := make([]Phase, len(phases))
	for i, p := range phases {
		out[i] = p.phase
	}
	return out
}

// valid reports whether p is one of the rounds.
func (p Phase) valid() bool {
	return p >= PhaseAdvertiseKeys && int(p-PhaseAdvertiseKeys) < len(phases)
}

// String is the round's name as in the paper, e.g. "AdvertiseKeys".
func (p Phase) String() string {
	if !p.valid() {
		return fmt.Sprintf("Phase(%d)", int(p))
	}
	return phases[p-PhaseAdvertiseKeys].name
}

// Label is the round's name as a metric label value, e.g.
// "advertise_keys"; "other" for anything else, so that a label set stays
// bounded.
func (p Phase) Label() string {
	if !p.valid() {
		return "other"
	}
	return phases[p-PhaseAdvertiseKeys].label
}

// ParsePhase is the round whose String is name.
func ParsePhase(name string) (Phase, bool) {
	for _, p := range phases {
		if p.name == name {
			return p.phase, true
		}
	}
	return 0, false
}

// TooFewError reports that a phase cannot go on because fewer than Need
// participants are left: in the whole session (ID 0), or among the holders
// of participant ID's shares, so that its secrets could not be
// reconstructed. It matches ErrTooFewParticipants.
type TooFewError struct {
	Phase Phase
	ID    uint32
	Have  int
	Need  int
}

func (e *TooFewError) Error() string {
	if e.ID == 0 {
		return fmt.Sprintf("secagg: too few participants at %v: %d, need %d", e.Phase, e.Have, e.Need)
	}
	return fmt.Sprintf("secagg: too few participants at %v: %d in the neighbourhood of participant %d, need %d",
		e.Phase, e.Have, e.ID, e.Need)
}

// Unwrap makes errors.Is(err, ErrTooFewParticipants) hold.
func (e *TooFewError) Unwrap() error { return ErrTooFewParticipants }

// ShareError reports a share ciphertext, claimed to be from participant
// From, that participant To rejected. It matches ErrBadShare. Since only
// From and To know the key, either From sent garbage or the server
// altered or forged the ciphertext; the receiver cannot tell which.
type ShareError struct {
	From, To uint32
	Err      error
}

func (e *ShareError) Error() string {
	return fmt.Sprintf("secagg: share from participant %d to participant %d rejected: %v", e.From, e.To, e.Err)
}

// Unwrap makes errors.Is(err, ErrBadShare) hold, and exposes the cause.
func (e *ShareError) Unwrap() []error { return []error{ErrBadShare, e.Err} }

// Rejection is a message the server refused. The participant that sent it
// is treated as having dropped out at that phase.
type Rejection struct {
	// ID is the claimed sender (0 for a nil message).
	ID uint32
	// Err says why; it wraps one of the package's errors.
	Err error
}

func (r Rejection) String() string { return fmt.Sprintf("participant %d: %v", r.ID, r.Err) }

// Verify checks that sig is participant id's identity signature of msg.
// msg is the full, domain-separated message: a Verify for ECDSA keys
// hashes it with SHA-256 first, as the signing side does (see
// PublicKeyVerifier). The caller maps ids to identities (in fedguard, to
// the participants' certificates). A Verify must be safe for concurrent
// use: the Server checks the advertisements of distinct participants on
// several goroutines at once. PublicKeyVerifier's is, as long as its key
// function is (crypto/ecdsa and crypto/ed25519 verification only read the
// key).
type Verify func(id uint32, msg, sig []byte) error

// PublicKeyVerifier returns the Verify matching how a Client signs, for
// identities that are ECDSA keys (msg hashed with SHA-256, ASN.1
// signature) or Ed25519 keys (msg signed directly). key returns the
// public key of participant id.
func PublicKeyVerifier(key func(id uint32) (crypto.PublicKey, error)) Verify {
	return func(id uint32, msg, sig []byte) error {
		pub, err := key(id)
		if err != nil {
			return fmt.Errorf("identity key of participant %d: %w", id, err)
		}
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			digest := sha256.Sum256(msg)
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				return fmt.Errorf("ECDSA signature of participant %d does not verify", id)
			}
		case ed25519.PublicKey:
			if !ed25519.Verify(pub, msg, sig) {
				return fmt.Errorf("Ed25519 signature of participant %d does not verify", id)
			}
		default:
			return fmt.Errorf("identity key of participant %d: unsupported type %T", id, pub)
		}
		return nil
	}
}

// checkSigner checks that sign supports signer's key type.
func checkSigner(signer crypto.Signer) error {
	switch signer.Public().(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: unsupported identity key type %T (want ECDSA or Ed25519)", ErrInvalidConfig, signer.Public())
}

// sign signs msg the way PublicKeyVerifier verifies it: Ed25519 signs msg
// itself, ECDSA its SHA-256 digest.
func sign(signer crypto.Signer, rand io.Reader, msg []byte) ([]byte, error) {
	if _, ok := signer.Public().(ed25519.PublicKey); ok {
		return signer.Sign(rand, msg, crypto.Hash(0))
	}
	digest := sha256.Sum256(msg)
	return signer.Sign(rand, digest[:], crypto.SHA256)
}

// Config is the public configuration of one aggregation (one session).
// Every participant and the server must use the same Config: all of it is
// hashed into every signature, key derivation and associated data, so a
// participant given another Config (another threshold, graph or session)
// cannot interoperate with the others.
type Config struct {
	// Session identifies this aggregation uniquely (in fedguard:
	// federation, round, attempt, bucket). A retry must use a new one.
	Session []byte
	// N is the number of participants, numbered 1..N. 0 is never an id:
	// a Shamir share is the sharing polynomial evaluated at the holder's
	// id, and the value at 0 is the secret.
	N int
	// Threshold is how many shares reconstruct a secret. circl's
	// secretsharing counts differently: its t is the degree of the
	// sharing polynomial, and t+1 shares reconstruct, so this package
	// passes t = Threshold-1.
	Threshold int
	// Degree is the number of neighbours of each participant: 0 for the
	// complete graph (everyone is everyone's neighbour, as in Bonawitz et
	// al.), k > 0 for the k-regular graph of SecAgg+ (see Neighbours).
	// A participant shares its secrets with, and masks against, its
	// neighbours only.
	Degree int
	// GraphSeed is public randomness that picks the k-regular graph. It
	// must not be chosen by the server (in fedguard it comes from the
	// previous signed round manifest): a server that picks the graph can
	// choose whose neighbours are its accomplices.
	GraphSeed [32]byte
	// Dim is the number of 32-bit words per input vector.
	Dim int
}

// neighbourhood is the size of a closed neighbourhood: a participant and
// its neighbours, the holders of its shares.
func (c Config) neighbourhood() int {
	if c.Degree == 0 {
		return c.N
	}
	return c.Degree + 1
}

// Validate checks c. The rules on Threshold, with m the size of a closed
// neighbourhood (N for the complete graph, Degree+1 otherwise; a
// participant holds a share of its own secrets):
//
//   - Threshold ≤ m: otherwise no participant's secrets can ever be
//     reconstructed.
//   - 2·Threshold > m: an honest participant answers one unmask request
//     and, for each neighbour, reveals a share of its self-mask seed or
//     of its mask key, never both. A server needs Threshold holders of
//     each kind to learn both secrets of one participant; with 2·Threshold
//     > m those two groups share a member, so the server cannot split the
//     holders into two disjoint quorums, one told "w survived" and one
//     told "w dropped". With c holders colluding with the server it needs
//     2·Threshold − c ≤ m: the margin 2·Threshold − m is the number of
//     colluding neighbours tolerated.
//   - Threshold ≥ 2 follows: no single other participant can reconstruct
//     a secret alone.
//
// Degree·N must be even (a k-regular graph on N vertices exists only
// then), and GraphSeed must not be all zero when Degree > 0, to catch a
// seed left unset.
func (c Config) Validate() error {
	switch {
	case len(c.Session) == 0:
		return fmt.Errorf("%w: empty Session", ErrInvalidConfig)
	case len(c.Session) > MaxSessionSize:
		return fmt.Errorf("%w: Session of %d bytes, at most %d", ErrInvalidConfig, len(c.Session), MaxSessionSize)
	case c.N < 2 || c.N > MaxParticipants:
		return fmt.Errorf("%w: N = %d, want 2..%d", ErrInvalidConfig, c.N, MaxParticipants)
	case c.Degree < 0 || c.Degree >= c.N:
		return fmt.Errorf("%w: Degree = %d, want 0 (complete graph) or 1..N-1 = %d", ErrInvalidConfig, c.Degree, c.N-1)
	case c.Degree%2 == 1 && c.N%2 == 1:
		return fmt.Errorf("%w: no %d-regular graph on %d participants: Degree·N must be even", ErrInvalidConfig, c.Degree, c.N)
	case c.Degree > 0 && c.GraphSeed == [32]byte{}:
		return fmt.Errorf("%w: GraphSeed is all zero with Degree = %d", ErrInvalidConfig, c.Degree)
	case c.Dim < 1 || c.Dim > MaxDim:
		return fmt.Errorf("%w: Dim = %d, want 1..%d", ErrInvalidConfig, c.Dim, MaxDim)
	}
	m := c.neighbourhood()
	switch {
	case c.Threshold > m:
		return fmt.Errorf("%w: Threshold %d exceeds the neighbourhood size %d (a participant and its neighbours), so no secret could be reconstructed",
			ErrInvalidConfig, c.Threshold, m)
	case 2*c.Threshold <= m:
		return fmt.Errorf("%w: Threshold %d must be more than half the neighbourhood size %d, or a server could gather two disjoint quorums",
			ErrInvalidConfig, c.Threshold, m)
	}
	return nil
}

// Neighbours returns the neighbours of participant id, sorted, without id
// itself; nil if id is not in 1..N or c is invalid. With Degree 0 that is
// everyone else. With Degree k it is id's neighbours in the Harary graph
// H(k, N) laid over a permutation of the ids drawn from GraphSeed (Bell et
// al., CCS 2020): position p is joined to positions p±1, …, p±⌊k/2⌋ (mod
// N), and for odd k also to p+N/2. The permutation sorts the ids by
// SHA-256(context, GraphSeed, id). It costs O(N log N); Client and Server
// compute the graph once.
func (c Config) Neighbours(id uint32) []uint32 {
	if c.Validate() != nil || id == 0 || id > uint32(c.N) {
		return nil
	}
	return newGraph(c).neighbours(id)
}

// domain prefixes every context string: the protocol and its version.
// Changing anything that is hashed, signed or derived needs a new
// version.
const domain = "fedguard/secagg/v1 "

// transcript builds the byte strings that are hashed, signed, used as
// associated data or as HKDF info: a length-prefixed context string, then
// fields, each either of fixed size or length-prefixed, so that no two
// different field lists encode the same bytes.
type transcript []byte

func newTranscript(label string) transcript {
	return transcript(nil).bytes([]byte(domain + label))
}

func (t transcript) u32(v uint32) transcript { return binary.BigEndian.AppendUint32(t, v) }

func (t transcript) fixed(b []byte) transcript { return append(t, b...) }

func (t transcript) bytes(b []byte) transcript { return append(t.u32(uint32(len(b))), b...) }

func (t transcript) ids(ids []uint32) transcript {
	t = t.u32(uint32(len(ids)))
	for _, id := range ids {
		t = t.u32(id)
	}
	return t
}

// sessionDigest hashes the whole Config. It stands for "the session" in
// every signature, key derivation and associated data.
func (c Config) sessionDigest() [32]byte {
	t := newTranscript("config").bytes(c.Session).
		u32(uint32(c.N)).u32(uint32(c.Threshold)).u32(uint32(c.Degree)).
		fixed(c.GraphSeed[:]).u32(uint32(c.Dim))
	return sha256.Sum256(t)
}

// Signed messages.

func advertiseMessage(session *[32]byte, id uint32, cPub, sPub *x25519.Key) []byte {
	return newTranscript("advertise-keys").fixed(session[:]).u32(id).fixed(cPub[:]).fixed(sPub[:])
}

// consistencyMessage is what participant id signs to confirm survivors.
func consistencyMessage(session *[32]byte, id uint32, survivors []uint32) []byte {
	return encodeSurvivors(survivors).message(session, id)
}

// survivorsEncoding is a survivor set as the consistency messages end
// with it (transcript.ids). Whoever checks many signatures of one set (the
// server, and each participant before it unmasks: 900 of them at n =
// 1,000) encodes it once: encoding it afresh for each message was a fifth
// of the server's CollectConsistency besides ECDSA (issue 16).
type survivorsEncoding []byte

func encodeSurvivors(survivors []uint32) survivorsEncoding {
	return survivorsEncoding(transcript(nil).ids(survivors))
}

var consistencyLabel = newTranscript("consistency-check")

// message is participant id's consistency message for the set e.
func (e survivorsEncoding) message(session *[32]byte, id uint32) []byte {
	t := make(transcript, 0, len(consistencyLabel)+len(session)+4+len(e))
	return t.fixed(consistencyLabel).fixed(session[:]).u32(id).fixed(e)
}

// Key derivations. All use HKDF-SHA-256 with the session digest as salt.

func deriveKey(secret []byte, session *[32]byte, info transcript) [32]byte {
	k, err := hkdf.Key(sha256.New, secret, session[:], string(info), 32)
	if err != nil {
		panic("secagg: " + err.Error()) // only for lengths over 255·32 bytes
	}
	return [32]byte(k)
}

// pairSeed is the seed of the mask between participants a and b, from
// their mask-key agreement dh = X25519(s_a, s_b) = X25519(s_b, s_a).
func pairSeed(dh *x25519.Key, session *[32]byte, a, b uint32, aPub, bPub *x25519.Key) [SeedSize]byte {
	if a > b {
		a, b, aPub, bPub = b, a, bPub, aPub
	}
	return deriveKey(dh[:], session, newTranscript("pair-mask").u32(a).u32(b).fixed(aPub[:]).fixed(bPub[:]))
}

// selfSeed is participant id's self-mask seed, from the encoding of its
// secret scalar b.
func selfSeed(b []byte, session *[32]byte, id uint32) [SeedSize]byte {
	return deriveKey(b, session, newTranscript("self-mask").u32(id))
}

// selfCommit is participant id's commitment to b, published in ShareKeys
// so that the server can tell a correct reconstruction from one spoiled by
// a bad share. b is a uniform 252-bit scalar, so its hash reveals nothing
// useful about it.
func selfCommit(b []byte, session *[32]byte, id uint32) [32]byte {
	return deriveKey(b, session, newTranscript("self-commit").u32(id))
}

// shareKey is the AES-256-GCM key for the share ciphertext from participant
// from to participant to, from their encryption-key agreement dh.
func shareKey(dh *x25519.Key, session *[32]byte, from, to uint32, fromPub, toPub *x25519.Key) [32]byte {
	return deriveKey(dh[:], session, newTranscript("share-key").u32(from).u32(to).fixed(fromPub[:]).fixed(toPub[:]))
}

// shareAD is the associated data of the share ciphertext from from to to.
func shareAD(session *[32]byte, from, to uint32) []byte {
	return newTranscript("share").fixed(session[:]).u32(from).u32(to)
}

// Share ciphertexts: AES-256-GCM of (share of b ‖ share of s). Each key
// encrypts exactly one message (it is derived from fresh per-session
// X25519 keys, the session and the ordered pair of ids, and a Client
// encrypts once per neighbour), so a fixed zero nonce is safe and saves
// sending one.
const scalarSize = 32

func newAEAD(key *[32]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("secagg: " + err.Error()) // 32-byte keys are always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("secagg: " + err.Error())
	}
	return aead
}

var zeroNonce [12]byte

// X25519.

// smallOrder lists the encodings, bit 255 clear, of the points of small
// order on Curve25519 and its twist: 0 and 1, the two u-coordinates of the
// points of order 8, p−1, and the non-canonical p (= 0) and p+1 (= 1), p =
// 2^255−19. Adding p to any other entry passes 2^255, so no other u in
// [0, 2^255) reduces to a point of small order. It is libsodium's
// has_small_order blocklist, and the list circl's x25519.Shared compares a
// key with after masking bit 255 and reducing it mod p (its five canonical
// entries, plus p and p+1 since the comparison here does not reduce).
var smallOrder = [...]x25519.Key{
	{}, // 0
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	fieldEncoding(0xec), // p−1
	fieldEncoding(0xed), // p
	fieldEncoding(0xee), // p+1
}

// fieldEncoding is the little-endian encoding of 2^255 − 0x100 + low: for
// low 0xec, 0xed, 0xee, the integers p−1, p, p+1.
func fieldEncoding(low byte) x25519.Key {
	var k x25519.Key
	for i := range k {
		k[i] = 0xff
	}
	k[0], k[31] = low, 0x7f
	return k
}

// checkPublicKey rejects low-order points (and their non-canonical
// encodings), as the server must before relaying a key: it compares the
// key, bit 255 masked as X25519 ignores it (RFC 7748, section 5), with
// smallOrder. The agreements themselves are circl's x25519.Shared, which
// refuses the same keys (FuzzCheckPublicKey checks that the two agree); a
// probe Shared here ran the whole ladder only to learn that: 2,000 ladders
// per n = 1,000 session, 45 % of CollectKeys' CPU (issue 16). Keys are
// public, so the comparison need not be constant-time.
func checkPublicKey(pub *x25519.Key) error {
	k := *pub
	k[31] &= 0x7f
	for i := range smallOrder {
		if k == smallOrder[i] {
			return fmt.Errorf("%w: %x is a point of small order", ErrBadKey, pub[:])
		}
	}
	return nil
}

// agree computes X25519(secret, public), rejecting low-order points.
func agree(secret, public *x25519.Key) (x25519.Key, error) {
	var out x25519.Key
	if !x25519.Shared(&out, secret, public) {
		return out, fmt.Errorf("%w: %x is a point of small order", ErrBadKey, public[:])
	}
	return out, nil
}

// Scalars and secret sharing, over the ristretto255 scalar field.

var scalarDST = []byte(domain + "random-scalar")

// randomScalar draws a uniform ristretto255 scalar from rand. circl's
// Ristretto255.RandomScalar ignores its reader (it always reads
// crypto/rand), so the scalar is derived from 64 bytes of rand with
// HashToScalar, which reduces 512 uniform bits modulo the group order ℓ
// (bias below 2^-250): the caller's reader is then the only source of the
// participant's secrets.
func randomScalar(rand io.Reader) (group.Scalar, error) {
	var buf [64]byte
	if _, err := io.ReadFull(rand, buf[:]); err != nil {
		return nil, fmt.Errorf("secagg: read randomness: %w", err)
	}
	return group.Ristretto255.HashToScalar(buf[:], scalarDST), nil
}

func encodeScalar(s group.Scalar) [scalarSize]byte {
	b, err := s.MarshalBinary()
	if err != nil || len(b) != scalarSize {
		panic("secagg: encoding a ristretto255 scalar failed") // cannot happen
	}
	return [scalarSize]byte(b)
}

// decodeScalar accepts only canonical encodings (below ℓ).
func decodeScalar(b *[scalarSize]byte) (group.Scalar, error) {
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(b[:]); err != nil {
		return nil, errors.New("not a canonical ristretto255 scalar")
	}
	return s, nil
}

func idScalar(id uint32) group.Scalar {
	return group.Ristretto255.NewScalar().SetUint64(uint64(id))
}

// splitSecret makes one Shamir share of secret for each holder, Threshold
// of them reconstructing it. circl's degree t is threshold-1. (circl draws
// the polynomial's other coefficients from crypto/rand whatever the reader:
// see randomScalar.)
func splitSecret(rand io.Reader, threshold int, secret group.Scalar, holders []uint32) map[uint32][scalarSize]byte {
	ss := secretsharing.New(rand, uint(threshold-1), secret)
	out := make(map[uint32][scalarSize]byte, len(holders))
	for _, h := range holders {
		out[h] = encodeScalar(ss.ShareWithID(idScalar(h)).Value)
	}
	return out
}

// heldShare is a share as the server collects it: holder's share of some
// participant's secret.
type heldShare struct {
	holder uint32
	value  group.Scalar
}

// recoverAll reconstructs secrets from shares: secret i from the first
// threshold shares of held[i], whose holders must be distinct and
// non-zero, or errs[i] if it has fewer. secretsharing.Recover computes the
// Lagrange basis afresh for every secret (threshold field inversions and
// threshold² multiplications, 2 ms at threshold 51), but the server
// reconstructs up to N secrets, from few distinct sets of holders in the
// complete graph (the same first Threshold responders for every secret)
// and from one set per secret with a SecAgg+ graph. So the basis at 0 is
// computed once per distinct set of holders, every set's with one field
// inversion in all (lagrangeBases), and each secret is then
// Σ_j L_j(0)·share_j: the same arithmetic as Recover. The work runs on all
// cores; the results do not depend on the schedule.
func recoverAll(threshold int, held [][]heldShare) (secrets []group.Scalar, errs []error) {
	secrets = make([]group.Scalar, len(held))
	errs = make([]error, len(held))
	setOf := make([]int, len(held)) // index in sets, of secret i's holders
	index := make(map[string]int)
	var sets [][]uint32
	var key []byte
	for i, h := range held {
		if len(h) < threshold {
			errs[i] = fmt.Errorf("%d shares, need %d", len(h), threshold)
			continue
		}
		h = h[:threshold]
		key = key[:0]
		for _, s := range h {
			key = binary.BigEndian.AppendUint32(key, s.holder)
		}
		k, ok := index[string(key)]
		if !ok {
			k = len(sets)
			index[string(key)] = k
			ids := make([]uint32, threshold)
			for j, s := range h {
				ids[j] = s.holder
			}
			sets = append(sets, ids)
		}
		setOf[i] = k
	}
	bases := lagrangeBases(sets)
	forEach(len(held), func(_, i int) {
		if errs[i] != nil {
			return
		}
		basis := bases[setOf[i]]
		secret := group.Ristretto255.NewScalar()
		term := group.Ristretto255.NewScalar()
		for j, h := range held[i][:threshold] {
			secret.Add(secret, term.Mul(basis[j], h.value))
		}
		secrets[i] = secret
	})
	return secrets, errs
}

// Masks.

// mask is one mask to add (or subtract) with AddMask.
type mask struct {
	seed   [SeedSize]byte
	negate bool
}

// applyMasks adds every mask to dst, expanding them on up to GOMAXPROCS
// goroutines (workers.Indexed). The goroutine w = 0 accumulates into dst,
// each other one into a private vector, added to dst at the end: addition
// modulo 2^32 is associative and commutative, so the result does not
// depend on scheduling.
func applyMasks(dst []uint32, masks []mask) {
	limit := runtime.GOMAXPROCS(0)
	acc := make([][]uint32, max(workers.Count(limit, len(masks)), 1))
	acc[0] = dst
	workers.Indexed(limit, len(masks), func(w, i int) {
		if acc[w] == nil {
			acc[w] = make([]uint32, len(dst))
		}
		AddMask(acc[w], &masks[i].seed, masks[i].negate)
	})
	for _, a := range acc[1:] {
		if a != nil {
			addVectors(dst, a)
		}
	}
}

// sumBlock is how many words of the sum sumVectors adds up at a time:
// 32 KiB, so that the block of the sum stays in the L1 or L2 cache while
// each vector's block is added to it, and is read and written once.
const sumBlock = 8 << 10

// sumVectors adds every vector of vecs to dst. The words are cut into
// blocks of sumBlock, taken in turn by up to GOMAXPROCS goroutines (at d =
// 10^5 and 900 inputs the sum was 6 % of the server's CPU, and ran on one
// core: the blocks were 64 Ki words, one per core).
func sumVectors(dst []uint32, vecs [][]uint32) {
	blocks := (len(dst) + sumBlock - 1) / sumBlock
	forEach(blocks, func(_, b int) {
		lo := b * sumBlock
		hi := min(lo+sumBlock, len(dst))
		d := dst[lo:hi]
		for _, v := range vecs {
			addVectors(d, v[lo:hi])
		}
	})
}

// Helpers for messages and sets of ids.

// checkID checks that id is a participant id of cfg.
func checkID(cfg *Config, what string, id uint32) error {
	if id == 0 || id > uint32(cfg.N) {
		return fmt.Errorf("%w: %s %d not in 1..%d", ErrMalformed, what, id, cfg.N)
	}
	return nil
}

// checkIDs checks that ids are participant ids of cfg in strictly
// increasing order (so without duplicates, and at most N of them).
func checkIDs(cfg *Config, what string, ids []uint32) error {
	if len(ids) > cfg.N {
		return fmt.Errorf("%w: %d %s, at most N = %d", ErrMalformed, len(ids), what, cfg.N)
	}
	for i, id := range ids {
		if err := checkID(cfg, what, id); err != nil {
			return err
		}
		if i > 0 && id <= ids[i-1] {
			return fmt.Errorf("%w: %s not strictly increasing at %d", ErrMalformed, what, id)
		}
	}
	return nil
}

func formatIDs(ids []uint32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, id)
	}
	b.WriteByte(']')
	return b.String()
}
