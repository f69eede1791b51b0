package coordinator

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/internal/workers"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/wire"
)

// Spilling updates to disk.
//
// A plain round's accepted updates are n model-sized vectors; held in
// memory they are the coordinator's peak (about n + 17 model sizes at 100
// hospitals × 1M parameters, where the process itself is 16). With
// spilling, each update is written, chunk by chunk as it arrives, into
// the round attempt's spill file, DATA_DIR/spill/round-R-attempt-A.spill
// (mode 0600, one slot of P float32 per cohort member, in the cohort's
// order; a member's retried upload overwrites its slot). A stream holds no
// vector: wire.NewSinkAssembler checks, hashes and measures each chunk in
// a scratch buffer shared by all streams, exactly as the in-memory
// assembler does, so the digest and norm are the same bits. The close
// aggregates out of core (aggregation.AggregateOutOfCore: column blocks of
// the file read with pread, then one row at a time for the per-update
// passes) and computes the anomaly flags the same way
// (anomaly.CheckRows): the model, the report and the flags are those of
// the in-memory path, bit for bit. The coordinator then holds the
// aggregate, one row and a column block (DefaultBlockBytes), whatever n.
//
// The file is read with pread, not mapped: mapped pages that were read
// count in the process's resident set, read ones stay in the page cache,
// which the kernel gives back under pressure.
//
// Nothing in the file is durable or trusted across a restart: it is not
// synced, and a crash abandons the attempt and its updates as it always
// did (the round is retried, retry.go). The file is removed when its
// attempt commits, fails or is abandoned, and every spill file is removed
// when the coordinator starts. An update is read back only once its whole
// stream was written and accepted; a stream refused half-way leaves its
// slot unread.
//
// Spilling applies to plain rounds whose rule can aggregate out of core
// (fedavg, median, trimmed-mean without norm-clip or bucketing; see
// aggregation.SupportsOutOfCore) and without central DP (which clips the
// updates in memory). Config.Spill says when (SpillConfig). The
// free-space guard keeps room for one round's spill file beyond
// min_free_bytes (disk.go).

// Spill modes (SpillConfig.Mode).
const (
	// SpillAuto spills when the rule supports it and the enrolled
	// hospitals' updates would take more than SpillConfig.MemoryBytes.
	SpillAuto = "auto"
	// SpillAlways spills every plain round; the rule must support it.
	SpillAlways = "always"
	// SpillNever keeps the updates in memory.
	SpillNever = "never"
)

// DefaultSpillMemoryBytes is SpillConfig.MemoryBytes by default: above
// 64 MiB of updates, they outweigh the rest of the process (a coordinator
// with 100 connections holds about 63 MB before any update arrives).
const DefaultSpillMemoryBytes = 64 << 20

// SpillConfig says when a plain round keeps its updates in a spill file
// in the data directory instead of in memory.
type SpillConfig struct {
	// Mode is "auto" (the default), "always" or "never". Auto spills
	// when the rule can aggregate out of core and enrolled × parameters
	// × 4 bytes exceeds MemoryBytes; always spills every plain round (and
	// is refused for a rule or setting that cannot); never keeps every
	// update in memory.
	Mode string `json:"mode,omitempty"`
	// MemoryBytes is auto's threshold (default DefaultSpillMemoryBytes).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// withDefaults fills the zero values.
func (s SpillConfig) withDefaults() SpillConfig {
	s.Mode = cmp.Or(s.Mode, SpillAuto)
	s.MemoryBytes = cmp.Or(s.MemoryBytes, DefaultSpillMemoryBytes)
	return s
}

// spillUnsupported says why c's rounds cannot spill, or "" when they can.
func spillUnsupported(c Config) string {
	switch {
	case c.Secure:
		return "secure rounds never hold plain updates"
	case c.CentralDP != nil:
		return "central_dp clips the updates in memory"
	}
	rule, err := aggregation.New(c.Aggregation)
	if err != nil {
		return "the aggregation rule is invalid"
	}
	if !aggregation.SupportsOutOfCore(rule) {
		return fmt.Sprintf("rule %s aggregates in memory only (spilling supports fedavg, median and trimmed-mean without norm_clip or bucket)", rule.Name())
	}
	return ""
}

// validateSpill checks c.Spill (Config.Validate).
func validateSpill(c Config, add func(string, ...any)) {
	s := c.Spill.withDefaults()
	switch s.Mode {
	case SpillAuto, SpillNever:
	case SpillAlways:
		if why := spillUnsupported(c); why != "" {
			add("spill.mode always: %s", why)
		}
	default:
		add("spill.mode %q: want %q, %q or %q", c.Spill.Mode, SpillAuto, SpillAlways, SpillNever)
	}
	if s.MemoryBytes < 0 {
		add("spill.memory_bytes %d must not be negative (0: the default %d)", s.MemoryBytes, DefaultSpillMemoryBytes)
	}
}

// spills reports whether c's plain rounds spill their updates.
func spills(c Config) bool {
	c = c.withDefaults()
	s := c.Spill.withDefaults()
	if s.Mode == SpillNever || spillUnsupported(c) != "" {
		return false
	}
	if s.Mode == SpillAlways {
		return true
	}
	spec, err := c.spec()
	if err != nil {
		return false
	}
	return int64(len(c.Enrolled))*4*int64(spec.NumParams()) > s.MemoryBytes
}

// spillDirName is the data directory's folder of spill files.
const spillDirName = "spill"

// spillSuffix ends every spill file's name.
const spillSuffix = ".spill"

// cleanSpills removes every spill file a stopped coordinator left, and
// makes the spill folder (0700) if it is missing. Anything in the folder
// that is not a spill file, and a folder that is not a directory of the
// coordinator's own (a symbolic link, a file), is refused with advice.
func cleanSpills(dataDir string) error {
	dir := filepath.Join(dataDir, spillDirName)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("spill folder: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("spill folder: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("spill folder %s is not a directory (%s): remove it, the coordinator makes its own", dir, fi.Mode().Type())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("spill folder %s has mode %v: others may read the hospitals' updates; chmod 700 it", dir, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spill folder: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), spillSuffix) || !e.Type().IsRegular() {
			return fmt.Errorf("spill folder %s holds %q, which the coordinator did not write: move it away", dir, e.Name())
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove stale spill file: %w", err)
		}
	}
	return nil
}

// spillFile is one round attempt's spill file.
type spillFile struct {
	f      *os.File
	path   string
	params int
	// slots maps each cohort member to its slot; set at creation, then
	// only read.
	slots map[string]int
	// high is the bytes written into each slot so far (its high-water
	// mark), and written their sum: what the file occupies on disk.
	high    []atomic.Int64
	written atomic.Int64
}

// createSpill makes the spill file of a round attempt for the cohort
// (slots in the cohort's order) and models of params parameters. The file
// must not exist: a stale one was removed at start, and one attempt makes
// one file.
func createSpill(dataDir string, round uint64, attempt uint32, cohort []string, params int) (*spillFile, error) {
	path := filepath.Join(dataDir, spillDirName, fmt.Sprintf("round-%d-attempt-%d%s", round, attempt, spillSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	s := &spillFile{f: f, path: path, params: params, slots: make(map[string]int, len(cohort)), high: make([]atomic.Int64, len(cohort))}
	for i, n := range cohort {
		s.slots[n] = i
	}
	return s, nil
}

// size is the file's largest size: every slot written.
func (s *spillFile) size() int64 { return int64(len(s.high)) * 4 * int64(s.params) }

// pending is what the file may still take on disk.
func (s *spillFile) pending() int64 {
	if s == nil {
		return 0
	}
	return max(s.size()-s.written.Load(), 0)
}

// slotOffset is the byte offset of parameter off of slot i.
func (s *spillFile) slotOffset(i int, off uint64) int64 {
	return (int64(i)*int64(s.params) + int64(off)) * 4
}

// sink returns the writer of name's slot, for wire.NewSinkAssembler: it
// writes each chunk at its place (chunks arrive in order, checked by the
// assembler before they reach it).
func (s *spillFile) sink(name string) (func(offset uint64, data []byte) error, error) {
	i, ok := s.slots[name]
	if !ok {
		return nil, fmt.Errorf("spill: %q has no slot in the round", name)
	}
	return func(offset uint64, data []byte) error {
		if offset+uint64(len(data)/4) > uint64(s.params) {
			return fmt.Errorf("spill: %d parameters at %d past the model's %d", len(data)/4, offset, s.params)
		}
		if _, err := s.f.WriteAt(data, s.slotOffset(i, offset)); err != nil {
			return fmt.Errorf("spill: write update: %w", err)
		}
		end := 4 * (int64(offset) + int64(len(data)/4))
		for {
			h := s.high[i].Load()
			if end <= h {
				break
			}
			if s.high[i].CompareAndSwap(h, end) {
				s.written.Add(end - h)
				break
			}
		}
		return nil
	}, nil
}

// rows returns the slots of names, in that order, as aggregation.Rows.
// Every name must have a slot that holds a complete, accepted update.
func (s *spillFile) rows(names []string) (*spillRows, error) {
	idx := make([]int, len(names))
	for k, n := range names {
		i, ok := s.slots[n]
		if !ok {
			return nil, fmt.Errorf("spill: %q has no slot in the round", n)
		}
		if s.high[i].Load() != 4*int64(s.params) {
			return nil, fmt.Errorf("spill: %q's slot holds %d of %d bytes", n, s.high[i].Load(), 4*s.params)
		}
		idx[k] = i
	}
	return &spillRows{s: s, idx: idx}, nil
}

// remove closes and removes the file. A stream still writing then fails
// (its round is over). Safe to call more than once.
func (s *spillFile) remove() error {
	if s == nil {
		return nil
	}
	err := s.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// spillRows reads accepted updates from a spill file with pread.
type spillRows struct {
	s   *spillFile
	idx []int // slot of each row
}

var _ aggregation.Rows = (*spillRows)(nil)

// ReadBlock implements aggregation.Rows. The rows are read on all cores:
// a read from the page cache is a copy, bound by one core's memory
// bandwidth.
func (r *spillRows) ReadBlock(off int, dst [][]float32) error {
	return workers.Each(context.Background(), runtime.GOMAXPROCS(0), len(dst), func(k int) error { return r.read(k, off, dst[k]) })
}

// ReadRow implements aggregation.Rows, in parts read on all cores.
func (r *spillRows) ReadRow(i int, dst []float32) error {
	const part = 1 << 20
	parts := (len(dst) + part - 1) / part
	return workers.Each(context.Background(), runtime.GOMAXPROCS(0), parts, func(k int) error {
		lo := k * part
		return r.read(i, lo, dst[lo:min(lo+part, len(dst))])
	})
}

// read fills dst with row k's parameters from off on. The bytes are read
// straight into dst's memory (format v1 is the vector's little-endian
// memory; a big-endian machine decodes them in place). The values are not
// checked here: every rule tests the finiteness of what it read through
// its own result (aggregation's deferredFinite), so a damaged file fails
// the round with ErrNonFinite rather than making its model.
func (r *spillRows) read(k, off int, dst []float32) error {
	if k < 0 || k >= len(r.idx) || off < 0 || off+len(dst) > r.s.params {
		return fmt.Errorf("spill: row %d parameters %d to %d out of range", k, off, off+len(dst))
	}
	b := model.WireBytes(dst)
	if _, err := r.s.f.ReadAt(b, r.s.slotOffset(r.idx[k], uint64(off))); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("spill: read update: %w", err)
	}
	if !nativeLittleEndian {
		return model.DecodeInto(dst, b)
	}
	return nil
}

// nativeLittleEndian is whether a float32 is stored as format v1 stores it.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// errSpillWrite marks a failure to write an update into the spill file:
// the coordinator's fault, not the participant's.
var errSpillWrite = errors.New("spill: write")

// spillAssembler returns the assembler of name's update in round r, which
// spills: each chunk is written to name's slot of r's spill file.
func (c *Coordinator) spillAssembler(r *openRound, name string) (*wire.Assembler, error) {
	sink, err := r.spill.sink(name)
	if err != nil {
		// admitLocked let only cohort members in, and every member has
		// a slot.
		return nil, status.Errorf(codes.Internal, "round %d: %v", r.number, err)
	}
	return wire.NewSinkAssembler(c.spec.NumParams(), func(offset uint64, data []byte) error {
		if err := sink(offset, data); err != nil {
			return fmt.Errorf("%w: %w", errSpillWrite, err)
		}
		return nil
	}), nil
}

// spillWriteFailed answers an update whose chunk could not be written to
// the spill file: Unavailable (send it again), and a full disk pauses the
// coordinator as the free-space guard would (disk.go). The participant is
// not at fault, so this is not a refusal of its update.
func (c *Coordinator) spillWriteFailed(ctx context.Context, name string, round uint64, err error) error {
	c.opts.log.ErrorContext(ctx, "cannot spill an update to disk", "participant", name, "round", round, "error", err)
	if isDiskFull(err) {
		c.pauseForDisk(ctx, err)
		return status.Error(codes.Unavailable, "the coordinator's disk is full; send the update again later")
	}
	return status.Error(codes.Unavailable, "the coordinator could not store the update; send it again")
}

// dropSpill removes r's spill file, if any: its attempt is over.
func (c *Coordinator) dropSpill(ctx context.Context, r *openRound) {
	if r.spill == nil {
		return
	}
	if err := r.spill.remove(); err != nil {
		c.opts.log.WarnContext(ctx, "cannot remove the spill file of a finished attempt", "round", r.number, "attempt", r.attempt, "error", err)
	}
}

// spillReserve is the room the free-space guard keeps for spill files
// beyond min_free_bytes, so that a round's updates never fill the disk
// the audit log and the state need: what the open attempt's spill file
// may still take, or, between rounds, a whole round's file (every
// enrolled hospital's update). Without spilling it is 0.
func (c *Coordinator) spillReserve() uint64 {
	if !c.spills {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.round; r != nil {
		return uint64(r.spill.pending())
	}
	return uint64(len(c.enrolled)) * 4 * uint64(c.spec.NumParams())
}

// spillVectors is what a coordinator whose rounds spill holds at most, in
// bytes, for n enrolled hospitals and models of m bytes: the aggregate,
// one update read whole (median and trimmed-mean's distances), the
// collector's headroom of one more, the column block of the out-of-core
// rules and the anomaly checks' blocks (n × 16 Ki parameters).
func spillVectors(n int, m int64) int64 {
	return 3*m + aggregation.DefaultBlockBytes + int64(n)*4*(16<<10)
}

// logSpill says at start whether plain rounds spill their updates, and
// why a large federation's do not.
func (c *Coordinator) logSpill() {
	size := int64(len(c.cfg.Enrolled)) * 4 * int64(c.spec.NumParams())
	s := c.cfg.Spill.withDefaults()
	switch {
	case c.spills:
		c.opts.log.Info("plain rounds spill their updates to disk", "dir", filepath.Join(c.cfg.DataDir, spillDirName),
			"mode", s.Mode, "updates_bytes", size, "spill_memory_bytes", s.MemoryBytes)
	case s.Mode == SpillAuto && size > s.MemoryBytes && !c.cfg.Secure:
		c.opts.log.Info("plain rounds hold their updates in memory", "updates_bytes", size, "spill_memory_bytes", s.MemoryBytes,
			"why", spillUnsupported(c.cfg))
	}
}
