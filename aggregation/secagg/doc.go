// Package secagg is secure aggregation for fedguard: N participants add
// up their vectors of 32-bit words (modulo 2^32) through a server that
// learns the sum and not the vectors, even when participants drop out at
// any point. It implements SecAgg of Bonawitz et al. with the sparse
// neighbour graphs of SecAgg+ (Bell et al.), as plain functions and state
// machines over byte slices: no network, no storage, so the coordinator,
// the participant agent and the simulator share it.
//
// One aggregation is one session, described by a Config that everyone
// knows. A participant runs a Client, the coordinator a Server; each
// round is a method on both, and the caller carries the messages (plain
// structs) between them.
//
// # Rounds
//
// Participants are numbered 1..N; Config.Neighbours gives each one's
// neighbours (everyone else with Degree 0; a random k-regular graph with
// Degree k). A participant's closed neighbourhood N[u] is u and its
// neighbours: the holders of shares of u's secrets. The sets U1 ⊇ U2 ⊇
// U3 ⊇ U4 ⊇ U5 are the participants still in at each round.
//
//  0. AdvertiseKeys. Each participant makes two fresh X25519 key pairs, c
//     (to encrypt shares) and s (to agree pairwise masks), and signs
//     (session, id, cPub, sPub) with its identity key. The server verifies
//     the signatures, rejects low-order points, and relays to each member
//     of U1 the advertisements of its neighbours in U1.
//  1. ShareKeys. Each participant verifies the relayed advertisements,
//     draws a self-mask secret b (a random ristretto255 scalar; its mask
//     seed is HKDF of its encoding), and Shamir-shares b and the scalar
//     behind s among N[u] ∩ U1, itself included. The shares for
//     neighbour v are sealed with AES-256-GCM under HKDF(X25519(c_u,
//     c_v), session, u, v), with (session, u, v) as associated data. It
//     sends the ciphertexts and a commitment to b. The server keeps U2 and
//     routes each member the ciphertexts addressed to it by members of U2.
//  2. MaskedInput. Each participant decrypts its shares and sends
//     y_u = x_u + PRG(b_u) + Σ_{v ∈ N(u) ∩ U2} ±PRG(s_uv), + if u < v and
//     − if u > v, where s_uv = HKDF(X25519(s_u, s_v), session, min, max)
//     and PRG is AddMask (AES-128-CTR). The server adds up the masked
//     inputs it receives (U3) and keeps only the running sum.
//  3. ConsistencyCheck. The server announces U3; each member signs
//     (session, U3). The signers form U4.
//  4. Unmasking. The server asks each member u of U4 for its shares,
//     sending U3, u's neighbours in U2 \ U3, and the signatures. u checks
//     the request (see Client.Unmask) and reveals its shares of b_v for
//     each v ∈ N[u] ∩ U3 and of s_v for each v ∈ N(u) ∩ (U2 \ U3). The
//     responders form U5. The server reconstructs each survivor's b and
//     subtracts PRG(b), reconstructs each dropped neighbour's s, recomputes
//     its pairwise seeds with each surviving neighbour's sPub and removes
//     the dangling pairwise masks, and obtains Σ_{u ∈ U3} x_u mod 2^32.
//
// A participant never reveals both secrets of one participant: its
// shares of b_v only if v is in the U3 it signed, of s_v only if not. Its
// own s share is never revealed (it is in U3 whenever it answers).
//
// # Thresholds
//
// Config.Threshold is the number of shares that reconstruct a secret.
// circl's secretsharing takes the polynomial's degree t instead, with t+1
// shares reconstructing: the package passes t = Threshold − 1. With m the
// size of a closed neighbourhood (N, or Degree+1), Config.Validate
// requires m/2 < Threshold ≤ m; see there for why.
//
// Every round needs at least Threshold participants in the session, and,
// from round 2 on, Threshold holders of every secret the server will need
// (each survivor's b among N[w], each dropped member of U2 with a
// surviving neighbour's s among its neighbours) among those that can
// still answer: U3 at MaskedInput, U4 at ConsistencyCheck, U5 at
// Unmasking. In rounds 0 and 1 the server drops participants whose
// closed neighbourhood falls below Threshold (their secrets could never be
// reconstructed, and dropping them then costs nothing). At
// ConsistencyCheck the server needs Threshold valid signatures (|U4| ≥
// Threshold) and each participant, before unmasking, Threshold valid
// signatures by members of U3 of the very U3 it signed. The graph induced
// on U3 must be connected (always so for the complete graph): the server
// can unmask the sum of any connected part separately, so a split would
// give it partial sums. Short of any of these, the round fails with a
// *TooFewError (ErrTooFewParticipants) naming the round and the counts, or
// ErrDisconnected, and the caller retries with a new Session.
//
// # Cryptography
//
// Everything comes from circl and the standard library: X25519 from
// circl/dh/x25519, whose Shared rejects low-order points (the server,
// which relays keys without agreeing on them, compares each advertised
// key with the same seven encodings, libsodium's has_small_order list,
// rather than run a ladder to find out); Shamir sharing
// from circl/secretsharing over the ristretto255 scalar field
// (circl/group); HKDF-SHA-256 (crypto/hkdf), AES-256-GCM and AES-128-CTR
// (crypto/aes, crypto/cipher).
//
//   - The session is SHA-256 of the whole Config (Session, N, Threshold,
//     Degree, GraphSeed, Dim). It is the HKDF salt, and is part of every
//     signed message and every associated data, so nothing carries over
//     between sessions or between participants given different
//     configurations.
//   - Signed messages and HKDF infos are domain-separated: a
//     length-prefixed context string "fedguard/secagg/v1 <purpose>", then
//     fixed-size or length-prefixed fields. ECDSA identities sign the
//     SHA-256 of the message, Ed25519 identities the message; see
//     PublicKeyVerifier.
//   - The s private key is the 32-byte encoding of a random ristretto255
//     scalar, so that it can be Shamir-shared: X25519 accepts any 32 bytes
//     as a private key (it clamps them), and the reconstructed scalar
//     encodes to the same bytes (see Client.AdvertiseKeys).
//   - Each share key encrypts one message (fresh keys per session, one
//     key per ordered pair), so the GCM nonce is fixed at zero.
//   - The commitment to b, HKDF(b, session, "self-commit", id), lets the
//     server detect a wrong share (ErrReconstruct) instead of returning a
//     wrong sum; the reconstructed s is checked against sPub the same way.
//   - circl's Ristretto255.RandomScalar ignores its reader; secrets are
//     derived from the caller's reader with HashToScalar instead. The
//     other coefficients of the sharing polynomials come from crypto/rand
//     inside circl.
//
// The domain string carries the version: any change to what is signed,
// hashed or derived needs a new one. testdata/protocol_v1.json holds
// known answers for all of it.
//
// # Failures
//
// A message that fails Validate, or does not fit the session (a sender
// not in the previous set, shares to the wrong neighbours, a bad
// signature, a duplicate), is returned by the Server as a Rejection, and
// its sender counts as dropped out: one participant cannot crash or
// corrupt the session. The ids of unsigned messages (ShareKeys,
// MaskedInput, UnmaskResponse) must be set by the transport from the
// authenticated connection.
//
// A Client aborts on any error: on anything an honest server never sends
// (a bad or forged advertisement, a share ciphertext that fails
// authentication, an inconsistent survivor set or unmask request) and on
// misuse. It then counts as dropped out. A bad share ciphertext aborts
// the recipient rather than excluding the sender (see
// Client.MaskedInput): both choices let a malicious participant knock out
// honest ones, and aborting keeps the protocol's logic unchanged.
//
// # Threat model
//
// Semi-honest (curious) coordinator: it learns Σ_{u ∈ U3} x_u and nothing
// else about the inputs; beyond that, only metadata: who is in each set,
// and when. Every masked input it holds carries the self mask of a secret
// it can only reconstruct for survivors, and a survivor's pairwise masks
// with other survivors cancel only in the sum over a connected part of
// the graph, which is required to be all of U3. This holds as long as
// fewer than Threshold participants of any closed neighbourhood collude
// with it (Bonawitz et al., Theorem 6.3).
//
// Colluding participants, without the coordinator, see no masked input at
// all: only public keys and the shares addressed to them. Fewer than
// Threshold of a participant's closed neighbourhood cannot reconstruct its
// secrets. A malicious participant can make a session fail (a bad input
// spoils the sum, a bad share aborts a neighbour or makes reconstruction
// fail with ErrReconstruct, naming whose secret), but learns nothing by it.
//
// Malicious coordinator, complete graph (Degree 0): as in Bonawitz et
// al.'s active model. It may ask for anything, but an honest participant
// reveals shares only for the one survivor set it signed, only with
// Threshold signatures on that set, and only once. Two different survivor
// sets each signed by Threshold participants out of N share 2·Threshold −
// N signers, so with fewer than 2·Threshold − N participants colluding,
// all honest participants that answer agree on U3, and the coordinator
// learns at most the sum over that U3, of at least Threshold inputs. What
// it can still do: choose U3 (claim that participants dropped out,
// leaving their inputs out of the sum), fail the session, and return any
// sum it likes (there is no verifiable aggregation; robust rules over
// bucket sums deal with bad inputs, not with a lying coordinator). Above
// all, it can run a session to completion, claim it failed, and get the
// retry unmasked over another survivor set: the difference of the two
// sums of the same inputs reveals an input. The caller must prevent that:
// a participant should answer Unmask in at most one session per round
// (fedguard's participant agent has to enforce this across retries).
// Re-sending, to a session resumed after the server crashed, the very
// bytes a Client already sent, and going on with that same Client when
// the server's answers so far come back identical, is safe: the Client
// still runs each round once, so it masks one input with one set of
// masks and reveals the shares of one signed survivor set (fedguard's
// agent resumes sessions so; see package participant).
//
// Malicious coordinator, k-regular graph (Degree > 0): Threshold is a
// fraction of a neighbourhood, not of N, so the coordinator can gather
// Threshold honest signatures on different survivor sets in different
// parts of the graph. Quorum intersection inside each closed
// neighbourhood still means that no participant's two secrets are both
// revealed without 2·Threshold − (Degree+1) colluding neighbours, and each
// accepted set is signed and connected; but by combining several survivor
// sets the coordinator may be able to strip all of one participant's
// pairwise masks. The package gives SecAgg+'s guarantees against a
// semi-honest coordinator only; use the complete graph (for instance per
// bucket) when the coordinator is not trusted to follow the protocol.
// The graph must come from GraphSeed the coordinator cannot choose.
//
// # References
//
//   - K. Bonawitz, V. Ivanov, B. Kreuter, A. Marcedone, H. B. McMahan,
//     S. Patel, D. Ramage, A. Segal, K. Seth, "Practical Secure
//     Aggregation for Privacy-Preserving Machine Learning", ACM CCS 2017.
//     https://eprint.iacr.org/2017/281
//   - J. H. Bell, K. A. Bonawitz, A. Gascón, T. Lepoint, M. Raykova,
//     "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
//     ACM CCS 2020. https://eprint.iacr.org/2020/704
//   - F. Harary, "The Maximum Connectivity of a Graph", PNAS 48(7), 1962
//     (the graphs H(k, n)).
//   - A. Langley, M. Hamburg, S. Turner, "Elliptic Curves for Security",
//     RFC 7748 (X25519, clamping, low-order points).
package secagg
