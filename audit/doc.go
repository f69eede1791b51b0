// Package audit keeps the federation's tamper-evident audit log: an
// append-only sequence of events, stored in bbolt, that is at once a hash
// chain and an RFC 6962 Merkle tree, with signed checkpoints. An auditor
// checks an export of it offline with only the coordinator's public key.
//
// # Events and their encoding
//
// Every event has a canonical binary encoding (see [Event.MarshalBinary]),
// versioned by its leading magic string "fedguard-audit-event-v1\x00":
//
//	magic    24 bytes  "fedguard-audit-event-v1\x00"
//	seq      uint64    big-endian, counts from 0
//	time     int64     big-endian, Unix nanoseconds (UTC)
//	round    uint64    big-endian
//	kind     uint32 big-endian length, then the bytes ([a-z_], at most 64)
//	actor    uint32 big-endian length, then the bytes (UTF-8, at most 256)
//	payload  uint32 big-endian length, then the bytes (a JSON object)
//	prev     32 bytes  Hash of the previous event (zeros for event 0)
//
// The encoding leaves out the event's own hash, which is its SHA-256:
// Event.Hash = SHA-256(encoding). Event n's leaf in the Merkle tree is
// tlog.RecordHash(encoding) at index n, so the chain and the tree cover the
// same bytes, and the database stores exactly those bytes. A payload is
// stored as encoding/json writes it: compact, with <, >, &, U+2028 and
// U+2029 escaped, so that it passes through any later json.Marshal
// unchanged and its hash survives being embedded in other JSON documents.
//
// The encoding never changes within a version: a change of any field's
// meaning or layout takes a new magic string ("…-v2"), and readers keep
// decoding v1 events, whose hashes are already signed.
//
// # Storage
//
// A [Log] keeps its bytes in a [Store]: the events' canonical encodings,
// the stored hashes of the Merkle tree (tlog's stored-hash indexes, about
// two per event, from which every root and proof is read), the
// checkpoint notes and the head. The Log does all the rest (encoding,
// hashing, chaining, signing, group commit), so every Store holds the
// same bytes. [Open] keeps them in a bbolt file ([BoltStore], in the
// layout of layout.go, whose version is meta/schema_version); [New] with a
// [MemStore] keeps them in memory, for tests and simulations that need no
// file. Package audit/audittest is the conformance suite both pass:
// append order, read-back, tree hashes and proofs, checkpoints,
// durability across a reopen, refusal after Close and concurrent readers.
//
// # Event kinds
//
// Every kind has one row in the table of event kinds (kindTable in
// events.go; [Kinds], [LookupKind], [KindSpec]): its name, its payload
// type, the logs that write it, whether a client's calls cause it (the
// coordinator's quota of audited events), and where the provenance
// report (package audit/report) places it, with the line it renders for
// a timeline kind. The report and the coordinator's metrics
// (fedguard_audit_events_total, fedguard_audit_events_suppressed_total)
// read the table; nothing else lists kinds. To add a kind:
//
//  1. In events.go, add its Kind constant (lowercase, [a-z_]), its
//     payload struct named after it, and its row in kindTable, in the
//     constants' order: timeline(…) with the function that renders its
//     timeline line, or placed[…](…) for a kind the report's round logic
//     reads (SectionRound: which also needs that logic in
//     audit/report/report_build.go's addRoundEvent), places by position
//     or counts.
//  2. Emit it: an [Entry] with the constant as Kind, appended by its
//     writer (the coordinator's record or refusal, or the CA's log).
//
// TestKindTable checks the table against the constants, and
// TestEveryEmittedKindIsInTable scans the module for kinds emitted
// without a row. A kind's name and payload fields never change meaning
// once released; a payload only gains fields.
//
// # Checkpoints
//
// A checkpoint is a C2SP tlog-checkpoint signed note
// (https://c2sp.org/tlog-checkpoint, golang.org/x/mod/sumdb/note):
//
//	<origin>
//	<tree size, decimal>
//	<root hash, standard base64>
//
//	— <origin> <signature>
//
// The key's name is the log's origin. The coordinator signs one after each
// round; each checkpoint vouches for every event before its size, and
// tlog's inclusion proofs ([Log.Prove], [VerifyProof]) show a single event
// is in it.
//
// # Key rotation
//
// When the coordinator rotates its signing keys (`fedguard coordinator
// rotate-keys`), it appends a key_rotated event ([KeyRotated]) holding the
// rotation manifest, signed by both the old and the new keys (package
// manifest, section Key rotation), and signs a checkpoint covering it with
// the old keys, their last. Every later checkpoint is the new keys'. The
// rule, which [Verify] applies when [VerifyOptions.Rotate] is set: a
// checkpoint is signed by the keys in effect when its last event was
// appended, and a key_rotated event puts its new keys in effect for the
// events after it. So an auditor who holds only the federation's first
// public key verifies a log that spans any number of rotations: each
// rotation is vouched for by the keys before it, and the checkpoints before
// and after it by the right keys. A checkpoint signed by a retired key
// after its rotation is refused, as is a rotation the trusted keys did not
// sign.
//
// # Export format
//
// [Log.Export] writes JSON lines, format "fedguard-audit-export-v1": a
// header, the events in sequence order, then the checkpoints in size order:
//
//	{"type":"header","format":"fedguard-audit-export-v1","origin":"…","events":N,"checkpoints":M}
//	{"type":"event","seq":0,"kind":"…","actor":"…","round":0,"time":"…","payload":{…},"prev":"<hex>","hash":"<hex>"}
//	{"type":"checkpoint","size":N,"note":"<signed note text>"}
//
// Times are RFC 3339 with nanoseconds in UTC, hashes lowercase hex, and
// strings escaped as encoding/json escapes them. Each line has exactly one
// form: [Verify] rejects any other spelling of the same content, so an
// accepted export is byte for byte what Export would write for it.
//
// # Verification
//
// [Verify] streams an export and checks the chain, recomputes every hash
// and the Merkle tree, and checks each checkpoint's signature and root. It
// names the first line and sequence number that fail. What Verify cannot
// see is an export cut back to an earlier checkpoint, since the signed
// history is then merely shorter: compare [Summary.Covered] and
// [Summary.Root] with a checkpoint obtained independently (a participant
// keeps the latest one it has seen) to rule that out.
package audit
