// Package manifest signs and verifies round manifests: the coordinator's
// signed statement, made when a round closes, of which model the round
// produced, from which parent, under which rule, from whose updates. Every
// hospital verifies the manifest against the coordinator keys it pinned at
// enrolment, and checks that it extends the last manifest it accepted,
// before it trains on the model. This is what stops a swapped, rolled-back
// or forked model (DESIGN.md, Integrity and Threat model).
//
// # Wire format
//
// A manifest is a DSSE envelope (https://github.com/secure-systems-lab/dsse,
// envelope.md and protocol.md) around an in-toto Statement v1
// (https://github.com/in-toto/attestation, spec/v1), so that common
// supply-chain tools can check it. The statement is
//
//	{"_type":"https://in-toto.io/Statement/v1",
//	 "subject":[{"name":"FED-model-round-000012.bin","digest":{"sha256":"<model_sha256>"}}],
//	 "predicateType":"https://fedguard.dev/round-manifest/v1",
//	 "predicate":<Round>}
//
// where the subject is the model file ([SubjectName]) and the predicate a
// [Round] in its JSON form. The envelope is
//
//	{"payloadType":"application/vnd.in-toto+json",
//	 "payload":"<base64 of the statement>",
//	 "signatures":[{"keyid":"","sig":"<base64 Ed25519>"},
//	               {"keyid":"mldsa65:<hex>","sig":"<base64 ML-DSA-65>"}]}
//
// (without the line breaks). Both signatures cover DSSE's pre-authentication
// encoding, PAE = "DSSEv1 " + len(type) + " " + type + " " + len(payload) +
// " " + payload. Base64 is the standard padded alphabet, and only that is
// accepted.
//
// A manifest is named by its [Digest], the SHA-256 of the payload (the
// statement bytes), not of the envelope: signatures can change (ML-DSA-65
// signing is randomized, a countersignature may be added) without changing
// what was signed. The next round's manifest holds that digest as its
// Parent, which chains the manifests from round 0, the genesis, onwards.
//
// Versioning: a v1 reader refuses unknown fields in the envelope, the
// statement and the predicate, because a field it skipped could change what
// the manifest means. Any change to the predicate is therefore a new
// PredicateType (…/round-manifest/v2), and readers that know both accept
// both. The golden file testdata/manifest.golden pins the v1 encoding.
//
// One exception was made, for data lineage (issue 17): included[] entries
// may carry data_sha256, the contributor's data version (package lineage).
// It is optional and omitted when empty, so every manifest signed before
// it (and every round whose participants report no data version) encodes
// byte for byte as before and verifies unchanged; it adds a fact about a
// contributor and changes the meaning of no other field. A reader older
// than the field refuses a manifest that carries it, which is the
// fail-closed outcome the rule above is for.
//
// # Signatures
//
// Each manifest carries an Ed25519 signature (RFC 8032, pure Ed25519) and an
// ML-DSA-65 signature (FIPS 204, NIST security category 3), both from
// github.com/cloudflare/circl. [Open] requires both to verify under the
// pinned keys: the hybrid stays unforgeable as long as either scheme does,
// so a future quantum attack on Ed25519 or a flaw found in the young
// ML-DSA does not by itself let anyone forge a manifest.
//
// ML-DSA-65 is used with an empty context string. The PAE already binds the
// payload type, so a context would add no domain separation, and an empty
// one is what generic ML-DSA verifiers (OpenSSL 3.5's, for one) use by
// default, so the signature stays checkable outside fedguard.
//
// ML-DSA-65 signing is hedged (FIPS 204's default, "randomized" in circl):
// the signing randomness mixes fresh random bytes with the key, which
// protects the long-lived coordinator key against fault-injection and
// side-channel attacks that exploit the deterministic variant's repeated
// computations. Nothing depends on reproducible signatures, since the
// digest covers only the payload. Tests sign deterministically (an
// unexported switch) to pin the whole envelope in a golden file; the
// deterministic variant is fully specified by FIPS 204 (rnd = 0³²), so that
// file is a known-answer vector any conforming implementation reproduces.
//
// Keyids are unauthenticated hints (DSSE protocol.md): Open tries every
// signature against both keys and never decides anything from a keyid.
//
// # Compatibility with cosign
//
// An auditor can check a manifest without fedguard:
//
//	cosign verify-blob-attestation --key cosign.pub --signature manifest.json \
//	    --type https://fedguard.dev/round-manifest/v1 --insecure-ignore-tlog \
//	    FED-model-round-000012.bin
//
// (--insecure-ignore-tlog because manifests are not uploaded to Rekor;
// --type because cosign otherwise expects its own predicate type; cosign
// checks the subject digest against the file.) cosign checks only the
// Ed25519 signature; the ML-DSA-65 one needs fedguard. What makes this work,
// from reading cosign's verifyOCIAttestation and go-securesystemslib's
// dsse.EnvelopeVerifier.Verify (v0.11.1):
//
//   - cosign wraps the --key verifier as a DSSE verifier with no key and no
//     keyid, and go-securesystemslib skips a signature only when both the
//     signature's keyid and the verifier's keyid are non-empty and differ.
//     So cosign tries every signature regardless of keyid.
//   - go-securesystemslib skips a signature that fails to verify and
//     succeeds once the threshold (1 for cosign) of verifiers has accepted
//     one: the ML-DSA-65 signature fails under the Ed25519 key and is
//     ignored, the Ed25519 one is accepted. Each sig must still be valid
//     base64, or the whole verification fails.
//   - sigstore's generic DSSE verifier (pkg/signature/dsse.WrapVerifier)
//     passes the public key, so go-securesystemslib derives a keyid from
//     it (an SSH-style "SHA256:…" fingerprint) and skips a signature whose
//     non-empty keyid differs. A fedguard keyid such as "ed25519:<hex>"
//     would be skipped there and the envelope refused. (An out-of-tree run
//     of go-securesystemslib v0.11.1 on testdata/manifest.golden confirmed
//     it: called either way it accepts the empty keyid; only cosign's way
//     accepts "ed25519:<hex>".)
//
// Hence the Ed25519 signature has an empty keyid, which DSSE allows, which
// every verifier above accepts, and which is what cosign's own DSSE signer
// (sigstore's dsse.WrapSigner) writes. The ML-DSA-65 signature is named
// "mldsa65:" + hex SHA-256 of its packed key; tools that do not know it
// skip it, by keyid or because it fails under their key. The Ed25519 signature comes first for tools that read only one.
//
// # Files
//
// A coordinator's signing identity lives in one directory
// ([LoadOrCreateSigner]):
//
//	signing.key  mode 0600: a PKCS #8 "PRIVATE KEY" PEM block (the Ed25519
//	             key) and an "ML-DSA-65 PRIVATE KEY" block holding the
//	             32-byte ML-DSA-65 seed ξ, from which FIPS 204 key generation
//	             derives the key (the compact form that the IETF LAMPS
//	             private-key format prefers, and immune to changes of the
//	             expanded encoding)
//	signing.pub  a PKIX "PUBLIC KEY" PEM block (Ed25519) and an
//	             "ML-DSA-65 PUBLIC KEY" block (the 1952-byte packed key);
//	             participants pin it at enrolment
//	cosign.pub   the PKIX Ed25519 "PUBLIC KEY" block alone, for cosign
//
// The key is never overwritten, and is refused if its mode lets group or
// others access it. The parsers refuse anything but exactly the expected
// blocks, in order.
//
// With the Ed25519 key on a PKCS #11 token ([LoadTokenSigner], package
// keystore), signing.key is replaced by signing-mldsa.key ([MLDSAKeyFile],
// mode 0600), the "ML-DSA-65 PRIVATE KEY" block alone: no token holds
// ML-DSA-65 keys yet (docs/keys.md). The public files are unchanged.
//
// # Chain
//
// A participant keeps an [Accepted] record ([LoadAccepted],
// [SaveAccepted]). [Verify] checks a manifest's signatures and federation;
// [Extends] checks that a run of verified manifests leads from the accepted
// one to the newest: a lower round is a rollback, another manifest for an
// accepted round or a parent that does not match is a fork, skipped rounds
// are a gap, and the same manifest again is fine. On first contact the
// chain must start at round 0: the participant trusts the keys it pinned,
// not whichever model it happens to see first. Refusals are
// [*RefusalError] values with a stable [Reason].
//
// # Key rotation
//
// The coordinator's keys can be replaced without any hospital re-pinning
// (`fedguard coordinator rotate-keys`, docs/keys.md). A rotation manifest
// is a DSSE envelope like a round manifest, around an in-toto statement
// whose subject is the new signing.pub ("FED-signing-key-NNNNNN.pub") and
// whose predicate, of type https://fedguard.dev/key-rotation/v1, is a
// [Rotation]: both identities as signing.pub files, their fingerprints,
// the rotation's sequence number and the digest of the one before it, and
// the last round manifest the old keys signed (after_round,
// after_manifest). It carries four signatures, Ed25519 and ML-DSA-65 of
// the old keys, then of the new: the old keys hand over, the new keys
// prove they are held, and each hybrid holds while either of its schemes
// does. [OpenRotation] requires all four.
//
// The manifest of round after_round+1 is the new keys' first. It is a v2
// round manifest (https://fedguard.dev/round-manifest/v2): v1 plus
// key_rotations, the rotation manifests that took effect after the round
// before it. A participant that pinned the old keys finds that the
// manifest does not verify under them, reads the rotations it carries
// ([CarriedRotations]), follows those from its pinned keys
// ([FollowRotations]) provided they take effect exactly after the manifest
// it accepted last, and verifies the manifest under the new keys; it then
// pins them. A participant that missed rounds reaches that manifest while
// catching up, since it accepts every missed manifest in order, so a chain
// of rotations (old → mid → new) is followed one link at a time. Once the
// new keys are pinned, a manifest signed by the old ones is refused, which
// stops whoever kept a retired key from rolling a participant back.
//
// On the coordinator a rotation lives in its signing directory:
//
//	rotations/rotation-NNNNNN.json  the committed rotation manifests
//	retired/NNNNNN/                 the keys rotation NNNNNN retired (never deleted)
//	rotation-pending/               a rotation being made ([StageRotation]);
//	                                [CommitRotation] finishes it, also after a crash
//
// [Keyring] holds every identity a coordinator has signed with, to check
// what the retired ones signed.
//
// # Checkpoints
//
// The coordinator's Ed25519 key also signs the audit log's checkpoints as
// signed notes (golang.org/x/mod/sumdb/note): [Signer.NoteSigner] and
// [PublicKeys.NoteVerifier]. A manifest embeds the checkpoint of its round
// ([Checkpoint]).
package manifest
