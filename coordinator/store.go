package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/fedguard/fedguard/manifest"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/boltfile"
	"github.com/fedguard/fedguard/internal/excerpt"
)

// The database layout, all in one place. Keys of per-round buckets are the
// round number as 8 big-endian bytes, so cursors walk rounds in order.
//
//	meta/schema_version  -> "1"
//	meta/federation      -> federation name
//	meta/spec            -> JSON of the ModelConfig the database was made for
//	state/last_round     -> uint64: the last closed round (0: only the initial model)
//	state/model_sha256   -> SHA-256 of models/<last_round>, checked at start-up
//	state/scaling        -> JSON dataset.Scaling, once fixed
//	models/<round>       -> global model after that round, wire format v1
//	rounds/<round>       -> JSON RoundRecord
//	manifests/<round>    -> signed round manifest (DSSE envelope) of models/<round>
//	state/enrolled       -> JSON []string: enrolment as last recorded in the audit log
//	state/revoked        -> JSON []string: revoked serials already recorded in the audit log
//
// The audit log lives in its own file (audit.db, package audit), so that it
// can be copied and verified on its own.
var (
	bucketMeta      = []byte("meta")
	bucketState     = []byte("state")
	bucketModels    = []byte("models")
	bucketRounds    = []byte("rounds")
	bucketManifests = []byte("manifests")

	keySchema    = []byte("schema_version")
	keyFed       = []byte("federation")
	keySpec      = []byte("spec")
	keyLastRound = []byte("last_round")
	keyScaling   = []byte("scaling")
	keyModelSum  = []byte("model_sha256")
	keyEnrolled  = []byte("enrolled")
	keyRevoked   = []byte("revoked")
)

// schemaVersion is bumped, with a migration, whenever the layout changes.
// Version 1 (before signed manifests) cannot be migrated: its rounds have
// no manifests a participant could verify, so it is refused with advice.
const schemaVersion = "2"

// StateFile is the database's name inside the data directory.
const StateFile = "state.db"

// ErrCorrupt reports a database whose contents contradict themselves.
var ErrCorrupt = errors.New("coordinator: state database is corrupt")

// ParticipantRecord is what a round kept of one participant's update.
type ParticipantRecord struct {
	Name            string  `json:"name"`
	Samples         uint64  `json:"samples"`
	Norm            float64 `json:"norm"`
	SHA256          string  `json:"sha256"`
	HoldoutCount    uint64  `json:"holdout_count"`
	HoldoutLoss     float64 `json:"holdout_loss"`
	HoldoutAccuracy float64 `json:"holdout_accuracy"`
	// Bucket, in a secure round, is the 1-based bucket whose sum the
	// update went into; SHA256 is then that sum's digest, and Samples
	// and Norm are zero: the coordinator never saw the update.
	Bucket int `json:"bucket,omitempty"`
	// DataSHA256 is the data version the participant trained on (package
	// lineage), empty if it reported none.
	DataSHA256 string `json:"data_sha256,omitempty"`
	// Privacy is the participant's record-level DP ledger after the round,
	// as it reported it; nil if it reported none.
	Privacy *manifest.HospitalPrivacy `json:"privacy,omitempty"`
	// DistributedPrivacy, in a secure round with distributed DP, is the
	// participant's federation-level ledger after the round, as it
	// reported it with its masked input; nil if it reported none.
	DistributedPrivacy *manifest.HospitalDistributedPrivacy `json:"distributed_privacy,omitempty"`
}

// RefusedUpdate is a refused update of a round: who sent it and why.
type RefusedUpdate struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// RoundRecord is a closed round as persisted.
type RoundRecord struct {
	Round        uint64              `json:"round"`
	Attempt      uint32              `json:"attempt"`
	Opened       time.Time           `json:"opened"`
	Closed       time.Time           `json:"closed"`
	Cohort       []string            `json:"cohort"`
	Participants []ParticipantRecord `json:"participants"`
	// Dropped are cohort members whose update did not arrive in time.
	Dropped []string `json:"dropped,omitempty"`
	// Refused are cohort members whose update was refused and who sent no
	// acceptable one afterwards.
	Refused []RefusedUpdate `json:"refused,omitempty"`
	// SatOut are the Dropped members that said why they sent no update
	// (ReportSatOut), with their reason: "<reason>: <detail>".
	SatOut      []RefusedUpdate    `json:"sat_out,omitempty"`
	Report      aggregation.Report `json:"report"`
	ModelSHA256 string             `json:"model_sha256"`
	// HoldoutLoss and HoldoutAccuracy are the participants' evaluations of
	// the round's starting model, weighted by their holdout sizes.
	HoldoutLoss     float64 `json:"holdout_loss"`
	HoldoutAccuracy float64 `json:"holdout_accuracy"`
	// Secure lists the buckets of a secure round, as their secure_session
	// events in the audit log have them.
	Secure []audit.SecureSession `json:"secure,omitempty"`
	// Privacy is the round's federation-level DP record (central DP), as
	// its manifest carries it; nil without one. The participants'
	// record-level ledgers are in Participants.
	Privacy *manifest.Privacy `json:"privacy,omitempty"`
}

// stateStore keeps the coordinator's state between rounds: the closed
// rounds' records, models and signed manifests, the feature scaling and a
// few lists (enrolment, revocations, the open secure attempt). Every
// method that writes is all or nothing: after a crash, or an error, the
// store holds the state before the call or after it, never a mix. A closed
// store refuses every call with an error wrapping errStoreClosed.
//
// store (a bbolt file, the coordinator's) and memStore (tests and tools
// that need no file) implement it; testStateStore is the conformance
// suite both pass.
type stateStore interface {
	// load reads the persisted state; ok is false before saveInitial.
	load() (p persisted, ok bool, err error)
	// saveInitial stores the initial model as round 0.
	saveInitial(model []byte) error
	// saveScaling fixes the feature scaling with the signed manifest of
	// round 0.
	saveScaling(sc dataset.Scaling, genesis []byte) error
	// commitRound stores a closed round, its model and manifest, makes it
	// the last round and drops models older than keep rounds.
	// rec.ModelSHA256 must be the SHA-256 of model: the store keeps it as
	// the state's model digest without hashing the model again (load
	// checks the two against each other).
	commitRound(rec RoundRecord, model, manifest []byte, keep int) error
	// manifest returns the signed manifest of a round, or nil.
	manifest(round uint64) ([]byte, error)
	// model returns the model of a round in wire format v1, or nil when
	// it is not kept.
	model(round uint64) ([]byte, error)
	// readModel copies len(dst) bytes of round's model in wire format v1,
	// from byte offset off, into dst, without holding the whole model in
	// memory (GetModel and the round's close read it chunk by chunk). It
	// returns an error wrapping errModelGone when the model is not kept,
	// and one wrapping ErrCorrupt when [off, off+len(dst)) is not in it.
	readModel(round uint64, off int64, dst []byte) error
	// rounds returns every closed round's record, oldest first.
	rounds() ([]RoundRecord, error)
	// stateList reads a list kept under key (nil when absent); putStateList
	// replaces it.
	stateList(key []byte) ([]string, error)
	putStateList(key []byte, list []string) error
	// close releases the store; closing twice is harmless.
	close() error
}

var (
	_ stateStore = (*store)(nil)
	_ stateStore = (*memStore)(nil)
)

// errStoreClosed reports a call to a closed stateStore.
var errStoreClosed = errors.New("coordinator: state database is closed")

// errModelGone reports a read of a model the store no longer keeps
// (keep_models dropped it when a later round committed).
var errModelGone = errors.New("coordinator: model no longer kept")

// store keeps the coordinator's state in a bbolt file. Every change is one
// transaction, so a crash at any point leaves either the old or the new
// state, never a mix.
type store struct {
	db *bolt.DB
	// file is a second, read-only handle on the database file: readModel
	// reads model bytes with pread through it rather than through bbolt's
	// memory map, so that the pages stay in the kernel's page cache and
	// out of the coordinator's resident memory.
	file *os.File
	// failCommit, when set (by tests), fails commitRound before it
	// writes, as a crash between recording a round and committing it.
	failCommit func() error
}

// persisted is the state read back at start-up.
type persisted struct {
	lastRound uint64
	model     []byte // wire format v1
	scaling   *dataset.Scaling
	cohort    []string // the last closed round's cohort
	manifest  []byte   // signed manifest of lastRound; nil before the scaling is fixed
}

func roundKey(r uint64) []byte { return binary.BigEndian.AppendUint64(nil, r) }

// storeMode says how openStore may treat the file.
type storeMode int

const (
	storeOpen     storeMode = iota // an existing database, read-write
	storeCreate                    // a new database; the file must not exist
	storeReadOnly                  // an existing database, read-only (tools)
)

// openStore opens dir/state.db for federation and the given model
// configuration, or creates it (storeCreate). A database made for another
// federation or another model is refused rather than silently reused, and
// the file is checked page by page before use (package internal/boltfile):
// a damaged or empty file is an error wrapping ErrCorrupt, never a crash
// and never a new database.
func openStore(dir, federation string, spec []byte, mode storeMode) (*store, error) {
	path := filepath.Join(dir, StateFile)
	if mode == storeCreate {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("create %s: it exists already", path)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open state database: %w", err)
	}
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, ReadOnly: mode == storeReadOnly})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w: another coordinator holds it", path, ErrInUse)
		case errors.Is(err, boltfile.ErrEmpty), errors.Is(err, boltfile.ErrDamaged):
			return nil, fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	check := func(tx *bolt.Tx) error {
		if mode == storeCreate {
			for _, b := range [][]byte{bucketMeta, bucketState, bucketModels, bucketRounds, bucketManifests} {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
		}
		for _, b := range [][]byte{bucketMeta, bucketState, bucketModels, bucketRounds, bucketManifests} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: it has no %q bucket (not a fedguard state database?)", ErrCorrupt, b)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v == nil {
			if mode != storeCreate {
				return fmt.Errorf("%w: it has no schema version", ErrCorrupt)
			}
			if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
			if err := meta.Put(keyFed, []byte(federation)); err != nil {
				return err
			}
			return meta.Put(keySpec, spec)
		} else if string(v) == "1" {
			return fmt.Errorf("schema version 1 was written by a fedguard without signed round manifests and cannot be upgraded: start this federation in a new data directory")
		} else if string(v) != schemaVersion {
			return fmt.Errorf("schema version %q, this build reads %q", v, schemaVersion)
		}
		if got := meta.Get(keyFed); string(got) != federation {
			return fmt.Errorf("database belongs to federation %q, config says %q", got, federation)
		}
		if got := meta.Get(keySpec); !bytes.Equal(got, spec) {
			return fmt.Errorf("database was made for another model than the configuration's (%s): a federation's model cannot change; "+
				"restore the configuration's model section, or point data_dir at an empty directory for a new federation", specDiff(got, spec))
		}
		return nil
	}
	if mode == storeReadOnly {
		err = db.View(check)
	} else {
		err = db.Update(check)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &store{db: db, file: f}, nil
}

func (s *store) close() error {
	err := s.db.Close()
	if s.file != nil {
		// A second close reports os.ErrClosed, which is harmless here.
		if ferr := s.file.Close(); ferr != nil && !errors.Is(ferr, os.ErrClosed) && err == nil {
			err = ferr
		}
	}
	return err
}

// view and update run fn in a bbolt transaction; a closed database is
// errStoreClosed.
func (s *store) view(fn func(*bolt.Tx) error) error   { return storeErr(s.db.View(fn)) }
func (s *store) update(fn func(*bolt.Tx) error) error { return storeErr(s.db.Update(fn)) }

func storeErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", errStoreClosed, err)
	}
	return err
}

// load reads the persisted state; ok is false for a new database.
func (s *store) load() (p persisted, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketState)
		v := st.Get(keyLastRound)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: last_round is %d bytes", ErrCorrupt, len(v))
		}
		p.lastRound = binary.BigEndian.Uint64(v)
		m := tx.Bucket(bucketModels).Get(roundKey(p.lastRound))
		if m == nil {
			return fmt.Errorf("%w: no model for round %d", ErrCorrupt, p.lastRound)
		}
		p.model = bytes.Clone(m)
		sum := sha256.Sum256(p.model)
		if want := st.Get(keyModelSum); !bytes.Equal(sum[:], want) {
			return fmt.Errorf("%w: model of round %d does not match its recorded digest", ErrCorrupt, p.lastRound)
		}
		if p.lastRound > 0 {
			var rec RoundRecord
			if err := json.Unmarshal(tx.Bucket(bucketRounds).Get(roundKey(p.lastRound)), &rec); err != nil {
				return fmt.Errorf("%w: round %d record: %v", ErrCorrupt, p.lastRound, err)
			}
			if hex.EncodeToString(sum[:]) != rec.ModelSHA256 {
				return fmt.Errorf("%w: round %d record names another model digest", ErrCorrupt, p.lastRound)
			}
			p.cohort = rec.Cohort
		}
		if sc := st.Get(keyScaling); sc != nil {
			p.scaling = new(dataset.Scaling)
			if err := json.Unmarshal(sc, p.scaling); err != nil {
				return fmt.Errorf("%w: scaling: %v", ErrCorrupt, err)
			}
			m := tx.Bucket(bucketManifests).Get(roundKey(p.lastRound))
			if m == nil {
				return fmt.Errorf("%w: no signed manifest for round %d", ErrCorrupt, p.lastRound)
			}
			p.manifest = bytes.Clone(m)
		}
		ok = true
		return nil
	})
	return p, ok, err
}

// saveInitial stores the initial model as round 0.
func (s *store) saveInitial(model []byte) error {
	return s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketModels).Put(roundKey(0), model); err != nil {
			return err
		}
		sum := sha256.Sum256(model)
		if err := tx.Bucket(bucketState).Put(keyModelSum, sum[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketState).Put(keyLastRound, roundKey(0))
	})
}

// saveScaling fixes the federation's feature scaling together with the
// signed manifest of the initial model (round 0), which vouches for both.
func (s *store) saveScaling(sc dataset.Scaling, genesis []byte) error {
	b, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketManifests).Put(roundKey(0), genesis); err != nil {
			return err
		}
		return tx.Bucket(bucketState).Put(keyScaling, b)
	})
}

// roundValue returns a copy of round's value in bucket, or nil.
func (s *store) roundValue(bucket []byte, round uint64) (out []byte, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucket).Get(roundKey(round)))
		return nil
	})
	return out, err
}

// manifest returns the signed manifest of a closed round, or nil.
func (s *store) manifest(round uint64) ([]byte, error) {
	return s.roundValue(bucketManifests, round)
}

// stateList reads a JSON list kept in the state bucket (nil when absent).
func (s *store) stateList(key []byte) (out []string, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		out, err = decodeStateList(key, tx.Bucket(bucketState).Get(key))
		return err
	})
	return out, err
}

// decodeStateList decodes the JSON list v stored under key, for both
// stores: nil when v is absent, ErrCorrupt when it does not decode.
func decodeStateList(key, v []byte) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("%w: state/%s: %v", ErrCorrupt, key, err)
	}
	return out, nil
}

// putStateList replaces a JSON list kept in the state bucket.
func (s *store) putStateList(key []byte, list []string) error {
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketState).Put(key, b) })
}

// commitRound stores a closed round, its model and its signed manifest in
// one transaction and drops models older than keep rounds (manifests and
// records are small and kept for good: they are the federation's history).
// The state's model digest is the record's, rec.ModelSHA256, which the
// close computed over these bytes: hashing the 40 MB model of a 10 M
// parameter round again here was 1 % of the coordinator's CPU
// (docs/capacity.md).
func (s *store) commitRound(rec RoundRecord, model, manifest []byte, keep int) error {
	if s.failCommit != nil {
		if err := s.failCommit(); err != nil {
			return err
		}
	}
	sum, err := modelDigest(rec)
	if err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		models := tx.Bucket(bucketModels)
		if err := models.Put(roundKey(rec.Round), model); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRounds).Put(roundKey(rec.Round), b); err != nil {
			return err
		}
		if err := tx.Bucket(bucketManifests).Put(roundKey(rec.Round), manifest); err != nil {
			return err
		}
		if err := tx.Bucket(bucketState).Put(keyLastRound, roundKey(rec.Round)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketState).Put(keyModelSum, sum); err != nil {
			return err
		}
		if rec.Round >= uint64(keep) {
			cut := rec.Round - uint64(keep) + 1
			// Collect first: deleting under a moving cursor skips keys.
			var old [][]byte
			c := models.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < cut; k, _ = c.Next() {
				old = append(old, bytes.Clone(k))
			}
			for _, k := range old {
				if err := models.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// modelDigest is rec.ModelSHA256 as bytes, or an error when it is not a
// SHA-256 in hex.
func modelDigest(rec RoundRecord) ([]byte, error) {
	sum, err := hex.DecodeString(rec.ModelSHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("commit round %d: model digest %q is not a SHA-256 in hex", rec.Round, rec.ModelSHA256)
	}
	return sum, nil
}

// model returns the model of a round, or nil when it is not kept.
func (s *store) model(round uint64) ([]byte, error) {
	return s.roundValue(bucketModels, round)
}

// readModel implements stateStore. Within one read transaction (so that
// bbolt neither remaps the file nor reuses the model's pages) it finds the
// model's bytes in the memory map, turns their address into a file offset
// and reads them with pread: bbolt's map is read-only and MAP_SHARED, so
// the file holds the same bytes at that offset, and the pages read never
// become part of the process's resident set.
func (s *store) readModel(round uint64, off int64, dst []byte) error {
	return s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketModels).Get(roundKey(round))
		if v == nil {
			return fmt.Errorf("%w: round %d", errModelGone, round)
		}
		if off < 0 || off > int64(len(v)) || int64(len(dst)) > int64(len(v))-off {
			return fmt.Errorf("%w: read of %d bytes at %d from a model of %d bytes", ErrCorrupt, len(dst), off, len(v))
		}
		if len(dst) == 0 {
			return nil
		}
		base := tx.DB().Info().Data
		at := int64(uintptr(unsafe.Pointer(unsafe.SliceData(v))) - base)
		if fi, err := s.file.Stat(); err != nil || at < 0 || at+int64(len(v)) > fi.Size() {
			// Not where the map says: read through the map instead.
			copy(dst, v[off:])
			return nil
		}
		if _, err := s.file.ReadAt(dst, at+off); err != nil {
			return fmt.Errorf("read model of round %d: %w", round, err)
		}
		return nil
	})
}

// rounds returns every closed round's record, oldest first.
func (s *store) rounds() ([]RoundRecord, error) {
	var out []RoundRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRounds).ForEach(func(k, v []byte) error {
			var rec RoundRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("%w: round %x: %v", ErrCorrupt, k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// ExportedModel is a closed round's global model and its signed manifest,
// as read from a stopped coordinator's data directory.
type ExportedModel struct {
	Federation string
	Round      uint64
	// Model is the parameters in wire format v1: the bytes the manifest's
	// subject digest covers.
	Model    []byte
	Manifest []byte
	// Scaling is the federation's feature scaling, which the manifest's
	// scaling_sha256 vouches for; nil before it was fixed.
	Scaling *dataset.Scaling
}

// ExportModel reads the model of a closed round (round < 0: the last one)
// and its manifest from dataDir's state database, read-only, so that an
// auditor can check the model file against its signed manifest with any
// DSSE tool. Only the last keep_models models are kept; older rounds have a
// manifest but no model.
func ExportModel(dataDir string, round int64) (ExportedModel, error) {
	path := filepath.Join(dataDir, StateFile)
	if _, err := os.Stat(path); err != nil {
		return ExportedModel{}, fmt.Errorf("state database: %w", err)
	}
	db, err := boltfile.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return ExportedModel{}, fmt.Errorf("open %s: %w", path, ErrInUse)
		}
		if errors.Is(err, boltfile.ErrEmpty) || errors.Is(err, boltfile.ErrDamaged) {
			return ExportedModel{}, fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
		}
		return ExportedModel{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var out ExportedModel
	err = db.View(func(tx *bolt.Tx) error {
		meta, st := tx.Bucket(bucketMeta), tx.Bucket(bucketState)
		if meta == nil || st == nil || tx.Bucket(bucketManifests) == nil || tx.Bucket(bucketModels) == nil {
			return fmt.Errorf("%s is not a fedguard state database of schema version %s", path, schemaVersion)
		}
		if v := meta.Get(keySchema); string(v) != schemaVersion {
			return fmt.Errorf("%s has schema version %q, this build reads %q", path, v, schemaVersion)
		}
		out.Federation = string(meta.Get(keyFed))
		last := st.Get(keyLastRound)
		if len(last) != 8 {
			return fmt.Errorf("%w: no closed round", ErrCorrupt)
		}
		r := binary.BigEndian.Uint64(last)
		if round >= 0 {
			if uint64(round) > r {
				return fmt.Errorf("round %d has not closed (last closed round: %d)", round, r)
			}
			r = uint64(round)
		}
		out.Round = r
		out.Manifest = bytes.Clone(tx.Bucket(bucketManifests).Get(roundKey(r)))
		if out.Manifest == nil {
			return fmt.Errorf("round %d has no signed manifest (the feature scaling was not fixed yet)", r)
		}
		if sc := st.Get(keyScaling); sc != nil {
			out.Scaling = new(dataset.Scaling)
			if err := json.Unmarshal(sc, out.Scaling); err != nil {
				return fmt.Errorf("%w: scaling: %v", ErrCorrupt, err)
			}
		}
		models := tx.Bucket(bucketModels)
		out.Model = bytes.Clone(models.Get(roundKey(r)))
		if out.Model == nil {
			oldest := "none"
			if k, _ := models.Cursor().First(); len(k) == 8 {
				oldest = fmt.Sprintf("round %d", binary.BigEndian.Uint64(k))
			}
			return fmt.Errorf("the model of round %d is no longer kept (keep_models: the oldest model kept is %s); "+
				"its signed manifest is still in the audit log: the manifest_signed event of round %d in `fedguard audit export`", r, oldest, r)
		}
		return nil
	})
	return out, err
}

// specDiff says how the model specification stored in state.db differs
// from the configuration's, field by field ("model.kind: "logreg" in
// state.db, "mlp" in the configuration"), naming the feature names one
// lacks and the other adds rather than printing two lists of them.
func specDiff(stored, configured []byte) string {
	var a, b map[string]json.RawMessage
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(configured, &b) != nil {
		return fmt.Sprintf("state.db's %s, the configuration's %s", excerpt.Of(string(stored), 200), excerpt.Of(string(configured), 200))
	}
	value := func(m map[string]json.RawMessage, k string) string {
		if v, ok := m[k]; ok {
			return excerpt.Of(string(v), 120)
		}
		return "none"
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if bytes.Equal(a[k], b[k]) {
			continue
		}
		var x, y []string
		if json.Unmarshal(a[k], &x) == nil && json.Unmarshal(b[k], &y) == nil && x != nil && y != nil {
			lacks, adds := quotedMissing(x, y), quotedMissing(y, x)
			switch {
			case lacks == "" && adds == "":
				diffs = append(diffs, fmt.Sprintf("model.%s: the same names in another order", k))
			default:
				d := fmt.Sprintf("model.%s: the configuration", k)
				if lacks != "" {
					d += " lacks " + lacks
				}
				if lacks != "" && adds != "" {
					d += " and"
				}
				if adds != "" {
					d += " adds " + adds
				}
				diffs = append(diffs, d)
			}
			continue
		}
		diffs = append(diffs, fmt.Sprintf("model.%s: %s in state.db, %s in the configuration", k, value(a, k), value(b, k)))
	}
	return strings.Join(diffs, "; ")
}

// quotedMissing lists the names of from that are not in in, quoted, at
// most 10 of them.
func quotedMissing(from, in []string) string {
	var out []string
	for _, s := range from {
		if !slices.Contains(in, s) {
			out = append(out, strconv.Quote(s))
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("and %d more", len(out)-10))
	}
	return strings.Join(out, ", ")
}
