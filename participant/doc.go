// Package participant is the hospital's agent of a fedguard federation: it
// dials out to the coordinator, trains on local rows that never leave the
// hospital, and sends back only model updates and aggregates.
//
// # Protocol
//
// An [Agent] follows the life cycle that the wire contract
// (proto/fedguard/v1/coordinator.proto) describes for a participant:
//
//  1. Join, once per connection (and again after every reconnect). The
//     identity is the client certificate, never a request field.
//  2. [Trainer.Prepare], once per model specification: the local data are
//     loaded and checked against the federation's features, label and classes.
//  3. ReportStats, when Join says the federation still lacks feature scaling:
//     per-feature count, sum and sum of squares, never a row.
//  4. A loop of WaitRound (a long poll), GetModel, [Trainer.Train] and
//     SubmitUpdate, until WaitRound says the training is finished. A
//     secure round replaces SubmitUpdate with SecureAggregate (below).
//
// # Verification of the starting model
//
// Every chunk of a streamed model must name the assigned round, format
// version 1 ([model.FormatVersion]) and the specification's parameter count,
// and the SHA-256 of the assembled parameter bytes must equal the digest in
// the round assignment (compared in constant time). A model that fails any
// check is refused: the agent logs it, does not train or submit, and goes
// back to WaitRound after a backoff. Refusals are counted in [AgentStats].
//
// # Signed round manifests
//
// Before it downloads a starting model the agent verifies the round's
// signed manifest (package manifest): a DSSE envelope whose Ed25519 and
// ML-DSA-65 signatures must both verify against the coordinator keys pinned
// in [Config.CoordinatorKeys], for [Config.Federation], vouching for
// exactly the assigned model digest, parameter count and feature scaling,
// and extending the last manifest the agent accepted: the round grows and
// the parent digests chain back to it (manifests of rounds the agent missed
// are fetched with GetManifest and checked too). The last accepted manifest
// is kept in [Config.StateFile], so a restart does not forget it. A refused
// manifest (unsigned, signed by another key, rolled back, forked, for
// another model) is reported to the coordinator with ReportRefusal, so it
// lands in the federation's audit log, and logged at the hospital; then
// Run stops with [ErrManifestRefused]: a coordinator that serves such a
// model needs an operator, not a retry.
//
// When the coordinator rotates its keys, the first manifest the new keys
// sign carries the rotation manifest, signed by the old and the new keys
// (package manifest, section Key rotation). The agent follows a rotation
// only from the keys it pins and only at the point of the chain where it
// stands, pins the new keys, and records the rotation in the state file in
// the same write as that manifest; at start it verifies the recorded
// rotations again from [Config.CoordinatorKeys]. Nobody re-pins by hand,
// and a manifest signed by a retired key is refused from then on.
//
// # Secure rounds
//
// When an assignment carries a SecureRound, the agent derives the round's
// layout itself (package secureround: its bucket, its session id, the
// SecAgg session and the fixed-point encoding) from the assignment and the
// digest of the manifest it just verified, and refuses the round if it is
// not in the cohort. It then runs its side of SecAgg+ (package
// aggregation/secagg) on one SecureAggregate stream: key advertisement
// (signed with the key of its client certificate), encrypted shares, the
// masked input (its update, clipped to the plan's L2 norm, quantized with
// its weight, and masked), the signature of the survivor set, and the
// unmasking. The other participants' certificates, relayed by the
// coordinator, must chain to the federation CA and name the bucket members.
// The coordinator only ever sees the masked input.
//
// The agent reveals its shares in at most one session per starting model
// and records that in [Config.StateFile] before it does; an assignment
// that starts again from such a model is declined
// ([DeclineAlreadyRevealed]), since two unmasked sums of nearly the same
// inputs over different survivor sets would give one hospital's update
// away. A session interrupted by a coordinator crash is not another
// session: the agent keeps its side of its last session in memory, and
// when the restarted coordinator offers that same session again it
// re-sends what it had sent, byte for byte, checks that the answers it
// had received come back identical, and goes on (see runSecure, "Resuming
// a session after a coordinator crash"). The round's context lasts until
// the deadline plus two phase timeouts and [SecureRoundMargin].
//
// # Failures
//
// Run separates three kinds of failure:
//
//   - permanent: the coordinator answers PermissionDenied, Unauthenticated or
//     Unimplemented; a round manifest is refused ([ErrManifestRefused]); a
//     TLS handshake fails because a certificate was refused (by either
//     side, see [ErrCertificate]); the local data cannot satisfy the model
//     specification ([ErrIncompatible]). Run returns the error.
//   - per round: a refused model ([ErrModelRefused]), a secure round the
//     agent abandoned ([ErrSecureRound]), or the coordinator
//     answering FailedPrecondition, InvalidArgument or Aborted to a round
//     call (the round closed, the caller is not in its cohort, the update was
//     not accepted). The agent logs it and waits for the next assignment.
//   - transient: anything else (Unavailable, DeadlineExceeded, a reset
//     connection, a restarting coordinator). The agent backs off
//     exponentially with full jitter between [DefaultMinBackoff] and
//     [DefaultMaxBackoff] (or the configured bounds), then joins again.
//     When nothing has answered for Config.GiveUpAfter
//     ([DefaultGiveUpAfter], an hour), Run returns [ErrCoordinatorGone]:
//     an agent started after its federation finished, or left running
//     when the coordinator exited, stops with that message instead of
//     retrying forever. (An agent that is told the training is finished
//     returns nil at once.)
//
// # External trainers
//
// [ExecTrainer] runs the hospital's own program (PyTorch or anything else)
// once per round through files in a private directory: the verified
// global model as safetensors (package safetensors) and a [TrainerPlan] in,
// the trained weights and a [TrainerMetrics] out; docs/trainer.md is the
// contract. A trainer that fails (crash, timeout, bad weights or metrics,
// code not on the hospital's allow-list, see [TrainerDigest]) makes the
// agent sit the round out with a stable reason ([ErrTrainer],
// [TrainerError]); cancelling the round kills the trainer's process group.
//
// # Privacy
//
// Nothing derived from individual rows is sent or logged except the feature
// aggregates of ReportStats, the update itself (in a secure round, only
// masked) and the holdout metrics (count, loss, accuracy; not sent in a
// secure round). Parameter values, update norms and masked words are
// never logged.
package participant
