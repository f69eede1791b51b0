package audit

import (
	"encoding/json"
	"time"
)

// Event is one entry of the audit log. Prev is the hash of the event
// before it (all zeros for the first), Hash its own: together a hash chain.
// The same canonical encoding that Hash covers is the event's leaf in the
// log's Merkle tree.
type Event struct {
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Actor   string          `json:"actor"`
	Round   uint64          `json:"round"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload"`
	Prev    Hash            `json:"prev"`
	Hash    Hash            `json:"hash"`
}

// Hash is a SHA-256 digest; it marshals as lowercase hex.
type Hash [32]byte
