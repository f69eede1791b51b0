package coordinator

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/manifest"
)

// Start-up cross-checks.
//
// A federation's history lives in two files of the data directory:
// state.db (the closed rounds, their models and signed manifests) and
// audit.db (every event, checkpointed after each round). Neither may be
// lost, replaced by an empty file, rolled back or swapped alone without
// the coordinator noticing, since each would quietly start a second
// history: hospitals would train on round 1 again, or the log would no
// longer account for the rounds published. So the coordinator starts only
// if:
//
//   - both files exist and are sound bbolt files (checked page by page
//     before use; a damaged file is an error, never a crash), or neither
//     exists and it was asked to create a federation (WithInit,
//     `fedguard coordinator init` or `fedguard coordinator --init`);
//   - the audit log verifies in place (audit.Log.Check): its chain, its
//     Merkle tree and every checkpoint's signature, so nothing is ever
//     appended to a broken chain;
//   - the two agree: the manifest of state.db's last round was signed
//     against a checkpoint that audit.db holds (same size, same root), and
//     the log records that manifest after it; and the log records no
//     round past the next one (which a crash between the log and the
//     commit may leave recorded but unpublished), nor a start or stop of
//     the coordinator at a later committed round than state.db's (these
//     events carry the last committed round). A state.db with no signed
//     round goes only with a log with no checkpoint.
//
// A round commit that fails for want of space (ENOSPC in bbolt's write,
// after the round's close, checkpoint and manifest are in the log) leaves
// the same pair as that crash: bbolt writes its meta page last, so
// state.db keeps the previous round whole; the running coordinator pauses,
// abandons the attempt and, once the disk has room, runs the round again
// as a new attempt (disk.go). The log keeps the unpublished close, which
// these checks accept and the provenance report reads as an interrupted
// attempt (TestDiskFullBetweenAuditAndCommit). Nothing needs repairing.
//
// What no local check can tell apart is a state.db restored from just
// before a round's commit and a crash in that window, when nothing was
// recorded after the round closed; the hospitals then refuse the re-run
// round's manifest as a fork of the one they accepted.
//
// Each refusal says which file is at fault and what to restore.

// ErrNoFederation reports a data directory that holds no federation, to a
// coordinator that was not asked to create one.
var ErrNoFederation = errors.New("coordinator: no federation in the data directory")

// ErrInUse reports a data directory whose state.db another process (a
// running coordinator) holds locked: nothing was checked or opened.
var ErrInUse = errors.New("in use by a running coordinator")

// ErrDataMismatch reports a state database and an audit log that describe
// different histories.
var ErrDataMismatch = errors.New("coordinator: state.db and audit.db disagree")

// WithInit lets New create a new federation when the data directory holds
// neither state.db nor audit.db (the signing keys are made too, if absent).
// Without it New only resumes an existing federation: a missing file is an
// error, never the start of a new history. With it, an existing federation
// is resumed as usual, and a directory holding one file without the other
// is still refused.
func WithInit() Option { return func(o *options) { o.init = true } }

// fileState is what start-up found at a path.
type fileState int

const (
	fileAbsent fileState = iota
	fileEmpty
	filePresent
)

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fileAbsent, nil
	case err != nil:
		return 0, err
	case fi.IsDir():
		return 0, fmt.Errorf("%s is a directory", path)
	case fi.Size() == 0:
		return fileEmpty, nil
	}
	return filePresent, nil
}

// restoreAdvice ends every refusal that a backup fixes.
const restoreAdvice = "restore state.db and audit.db together from the same backup; `fedguard coordinator --check-data` checks a pair before you start"

// planStart decides from the files present how to open state.db: create
// it (a new federation, init only) or open the existing one.
func planStart(dir string, init bool) (storeMode, error) {
	statePath, auditPath := filepath.Join(dir, StateFile), filepath.Join(dir, AuditFile)
	st, err := statFile(statePath)
	if err != nil {
		return 0, err
	}
	at, err := statFile(auditPath)
	if err != nil {
		return 0, err
	}
	switch {
	case st == fileEmpty:
		return 0, fmt.Errorf("%w: %s is empty (0 bytes): a crash does not leave it so, the file was lost; %s (if this directory never ran a federation, delete the file and start with --init)", ErrCorrupt, statePath, restoreAdvice)
	case at == fileEmpty:
		return 0, fmt.Errorf("%w: %s is empty (0 bytes): a crash does not leave it so, the log was lost; %s (if this directory never ran a federation, delete the file and start with --init)", audit.ErrCorrupt, auditPath, restoreAdvice)
	case st == fileAbsent && at == filePresent:
		return 0, fmt.Errorf("%w: %s is missing, but %s holds this federation's history: starting over at round 0 would fork it; %s", ErrDataMismatch, statePath, auditPath, restoreAdvice)
	case st == fileAbsent && !init:
		return 0, fmt.Errorf("%w: %s holds neither %s nor %s; to start a new federation there, run `fedguard coordinator init` once (or start the coordinator with --init); to resume one, point data_dir at its directory", ErrNoFederation, dir, StateFile, AuditFile)
	case st == fileAbsent:
		return storeCreate, nil
	}
	return storeOpen, nil
}

// crossCheck verifies the audit log in place and checks that it and the
// state read from state.db describe one history (see the start-up
// cross-checks above). keys are the coordinator's public keys.
func crossCheck(p persisted, log *audit.Log, keys manifest.Keyring, federation string) (audit.CheckSummary, error) {
	verifiers, err := keys.NoteVerifiers(AuditOrigin(federation))
	if err != nil {
		return audit.CheckSummary{}, err
	}
	if cp, ok, err := log.LatestCheckpoint(); err == nil && ok {
		// Checked first, to name a replaced key for what it is.
		if _, err := audit.OpenCheckpoint(cp.Note, verifiers); err != nil {
			return audit.CheckSummary{}, fmt.Errorf("%w: audit.db's latest checkpoint (of %d events) is %v: the signing key in the data directory is not the one this federation signs with (the hospitals pinned its public key); restore signing.key from a backup", ErrDataMismatch, cp.Size, err)
		}
	}
	sum, err := log.Check(verifiers)
	if err != nil {
		return sum, fmt.Errorf("%w; %s", err, restoreAdvice)
	}
	if p.manifest == nil {
		return sum, checkUnsigned(log)
	}
	m, digest, err := keys.Open(p.manifest)
	if err != nil {
		return sum, fmt.Errorf("%w: manifest of round %d: %v", ErrCorrupt, p.lastRound, err)
	}
	if m.Round != p.lastRound || m.Checkpoint == nil {
		return sum, fmt.Errorf("%w: the manifest stored for round %d is of round %d (checkpoint %v)", ErrCorrupt, p.lastRound, m.Round, m.Checkpoint != nil)
	}
	cp := m.Checkpoint
	if cp.Size > sum.Events {
		return sum, fmt.Errorf("%w: state.db's round %d was signed against audit checkpoint %d, but audit.db holds only %d events: audit.db is older than state.db; %s", ErrDataMismatch, p.lastRound, cp.Size, sum.Events, restoreAdvice)
	}
	found := false
	err = log.Checkpoints(func(c audit.Checkpoint) error {
		if c.Size == cp.Size {
			found = base64.StdEncoding.EncodeToString(c.Root[:]) == cp.Root
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	if !found {
		return sum, fmt.Errorf("%w: state.db's round %d was signed against audit checkpoint %d, which audit.db does not hold: the log is another history; %s", ErrDataMismatch, p.lastRound, cp.Size, restoreAdvice)
	}
	// The manifest is recorded after its checkpoint; a crash before the
	// commit can leave later rounds' closes recorded, but only the next.
	want := hex.EncodeToString(digest[:])
	recorded := false
	err = log.Events(cp.Size, func(ev audit.Event) error {
		older := false
		switch ev.Kind {
		case audit.KindManifestSigned, audit.KindRoundClosed, audit.KindRoundOpened:
			older = ev.Round > p.lastRound+1
		case audit.KindCoordinatorStarted, audit.KindCoordinatorStopped:
			// Recorded with the last committed round.
			older = ev.Actor == audit.ActorCoordinator && ev.Round > p.lastRound
		}
		if older {
			return fmt.Errorf("%w: audit.db records %s of round %d (event %d), but state.db's last round is %d: state.db is older than the log; %s", ErrDataMismatch, ev.Kind, ev.Round, ev.Seq, p.lastRound, restoreAdvice)
		}
		if ev.Kind == audit.KindManifestSigned && ev.Round == p.lastRound {
			var ms audit.ManifestSigned
			if json.Unmarshal(ev.Payload, &ms) == nil && ms.SHA256 == want {
				recorded = true
			}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	if !recorded {
		return sum, fmt.Errorf("%w: audit.db does not record the manifest of state.db's round %d after checkpoint %d; %s", ErrDataMismatch, p.lastRound, cp.Size, restoreAdvice)
	}
	return sum, nil
}

// checkUnsigned checks a log against a state.db that has no signed round
// (the feature scaling is not fixed). The log may hold checkpoints: every
// stop signs one, before the hospitals have fixed the scaling too. What it
// must not hold is a signed history: a round opened or closed, a manifest
// beyond round 0's, or a start or stop after a round. Round 0's manifest
// itself may be there: a crash after it is recorded and before state.db
// commits it with the scaling leaves it so, as a crash leaves the next
// round's close for later rounds.
func checkUnsigned(log *audit.Log) error {
	return log.Events(0, func(ev audit.Event) error {
		signed := false
		switch ev.Kind {
		case audit.KindRoundOpened, audit.KindRoundClosed:
			signed = true
		case audit.KindManifestSigned:
			signed = ev.Round > 0
		case audit.KindCoordinatorStarted, audit.KindCoordinatorStopped:
			signed = ev.Actor == audit.ActorCoordinator && ev.Round > 0
		}
		if signed {
			return fmt.Errorf("%w: state.db has no signed round, but audit.db records %s of round %d (event %d): state.db is older than the log or belongs to another federation; %s",
				ErrDataMismatch, ev.Kind, ev.Round, ev.Seq, restoreAdvice)
		}
		return nil
	})
}

// DataCheck is the verdict of CheckData on a data directory that passed.
type DataCheck struct {
	// LastRound is state.db's last closed round; Signed whether it has a
	// signed manifest (the feature scaling is fixed).
	LastRound uint64
	Signed    bool
	// Audit is what the audit log's check found.
	Audit audit.CheckSummary
}

// CheckData runs the start-up checks of a coordinator on cfg's data
// directory without starting one, read-only, for an operator (or a backup
// job) to check a pair of files: both files sound, the audit log verified
// against the public keys in the directory, and the two in agreement. It
// needs the coordinator stopped (or a copy). A failed check is an error
// wrapping ErrNoFederation, ErrCorrupt, audit.ErrCorrupt or
// ErrDataMismatch, saying what to restore.
func CheckData(cfg Config) (DataCheck, error) {
	cfg = cfg.withDefaults()
	specJSON, err := json.Marshal(cfg.Model)
	if err != nil {
		return DataCheck{}, err
	}
	if _, err := planStart(cfg.DataDir, false); err != nil {
		return DataCheck{}, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, AuditFile)); err != nil {
		return DataCheck{}, fmt.Errorf("%w: the audit log is missing (%v); %s", ErrDataMismatch, err, restoreAdvice)
	}
	st, err := openStore(cfg.DataDir, cfg.Federation, specJSON, storeReadOnly)
	if err != nil {
		return DataCheck{}, err
	}
	defer st.close()
	p, ok, err := st.load()
	if err != nil {
		return DataCheck{}, err
	}
	if !ok {
		return DataCheck{}, fmt.Errorf("%w: state.db holds no initial model (an interrupted --init: run the coordinator with --init again)", ErrCorrupt)
	}
	current, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
	if err != nil {
		return DataCheck{}, fmt.Errorf("public keys: %w", err)
	}
	keys, _, err := loadKeyring(cfg.DataDir, current)
	if err != nil {
		return DataCheck{}, err
	}
	log, err := audit.Open(filepath.Join(cfg.DataDir, AuditFile), audit.Options{Origin: AuditOrigin(cfg.Federation), ReadOnly: true})
	if err != nil {
		return DataCheck{}, err
	}
	defer log.Close()
	sum, err := crossCheck(p, log, keys, cfg.Federation)
	if err != nil {
		return DataCheck{}, err
	}
	return DataCheck{LastRound: p.lastRound, Signed: p.manifest != nil, Audit: sum}, nil
}
