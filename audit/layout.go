package audit

import (
	"encoding/binary"
	"fmt"
)

// The database layout, all in one place. Every numeric key is a uint64 as
// 8 big-endian bytes, so that bbolt's cursors walk it in numeric order.
//
//	meta/schema_version  -> schemaVersion ("1")
//	meta/origin          -> the checkpoint origin line, fixed at creation
//	events/<seq>         -> the event's canonical encoding (the bytes its
//	                        hash and its Merkle leaf cover), seq from 0
//	tree/<index>         -> 32-byte Merkle hash at tlog stored-hash index
//	                        <index> (tlog.StoredHashIndex); about two per event
//	checkpoints/<size>   -> signed checkpoint note for the tree of <size> events
//	head/count           -> uint64: number of events
//	head/last_hash       -> 32 bytes: Hash of event count-1 (zeros when empty)
//
// Events and tree hashes are written in the same transaction as the head,
// so the head always describes exactly the events stored.
var (
	bucketMeta        = []byte("meta")
	bucketEvents      = []byte("events")
	bucketTree        = []byte("tree")
	bucketCheckpoints = []byte("checkpoints")
	bucketHead        = []byte("head")

	keySchemaVersion = []byte("schema_version")
	keyOrigin        = []byte("origin")
	keyCount         = []byte("count")
	keyLastHash      = []byte("last_hash")
)

// allBuckets lists every bucket a log database has.
var allBuckets = [][]byte{bucketMeta, bucketEvents, bucketTree, bucketCheckpoints, bucketHead}

// schemaVersion is the layout version stored in meta/schema_version. It is
// bumped, with a migration, whenever the layout above changes; a build
// refuses a database of a version it does not know rather than guess.
const schemaVersion = "1"

// u64Key is the key of a sequence number, stored-hash index or tree size.
func u64Key(n uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n) }

// parseU64 reads an 8-byte big-endian key or value.
func parseU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%d-byte integer, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
