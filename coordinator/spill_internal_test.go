package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/wire"
)

// spillDataDir is a data directory with its spill folder made.
func spillDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := cleanSpills(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// spillUpdate sends x through a sink assembler into name's slot, chunk by
// chunk as an agent sends it, and checks that the digest and the norm are
// the in-memory assembler's bits.
func spillUpdate(t *testing.T, s *spillFile, name string, x []float32) float64 {
	t.Helper()
	sink, err := s.sink(name)
	if err != nil {
		t.Fatal(err)
	}
	asm := wire.NewSinkAssembler(len(x), sink)
	mem := wire.NewAssembler(make([]float32, len(x)))
	if err := wire.Chunks(x, func(off uint64, data []byte) error {
		if err := mem.Add(off, data); err != nil {
			return err
		}
		return asm.Add(off, data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := asm.Done(); err != nil {
		t.Fatal(err)
	}
	if asm.Sum() != mem.Sum() || math.Float64bits(asm.Norm()) != math.Float64bits(mem.Norm()) {
		t.Fatalf("%s: spilled digest %x norm %v, in memory %x %v", name, asm.Sum(), asm.Norm(), mem.Sum(), mem.Norm())
	}
	return asm.Norm()
}

// TestSpillAggregationBitIdentical writes updates into a real spill file
// as the update streams do and aggregates them out of core, for every
// rule that spills: the aggregate, the report and the anomaly flags must
// be those of the in-memory path, bit for bit. The sizes straddle the
// wire's chunks and the kernels' blocks; one update is an outlier so that
// the flags are not empty, and a cohort member that sent nothing leaves
// its slot unwritten.
func TestSpillAggregationBitIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, d := range []int{1, 5, wire.SendChunkBytes/4 + 3, 3*wire.SendChunkBytes/4 - 1} {
		for _, ruleCfg := range []aggregation.Config{
			{Rule: aggregation.NameFedAvg},
			{Rule: aggregation.NameFedAvg, MaxSamples: 50},
			{Rule: aggregation.NameMedian, F: 2},
			{Rule: aggregation.NameTrimmedMean, Beta: 0.25, F: 1},
		} {
			rule, err := aggregation.New(ruleCfg)
			if err != nil {
				t.Fatal(err)
			}
			cohort := []string{"a", "b", "c", "d", "e", "f", "silent"}
			s, err := createSpill(spillDataDir(t), 4, 1, cohort, d)
			if err != nil {
				t.Fatal(err)
			}
			names := cohort[:6]
			recv := map[string]*received{}
			var inMemory, headers []aggregation.Update
			for i, n := range names {
				x := make([]float32, d)
				for j := range x {
					x[j] = float32(rng.NormFloat64())
					if i == 2 {
						x[j] *= -30
					}
				}
				samples := 1 + rng.Uint64N(100)
				norm := spillUpdate(t, s, n, x)
				recv[n] = &received{delta: x, samples: samples, norm: norm}
				inMemory = append(inMemory, aggregation.Update{ID: n, Delta: x, Samples: samples})
				headers = append(headers, aggregation.Update{ID: n, Samples: samples})
			}
			want := make([]float32, d)
			wantRep, err := rule.Aggregate(want, inMemory)
			if err != nil {
				t.Fatal(err)
			}
			wantFlags := anomalyFlags(AnomalyConfig{}, 1, names, recv, wantRep)

			rows, err := s.rows(names)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, d)
			gotRep, err := aggregation.AggregateOutOfCore(rule, got, headers, aggregation.OutOfCore{Rows: rows, BlockBytes: 1})
			if err != nil {
				t.Fatal(err)
			}
			spilled := map[string]*received{}
			for n, r := range recv {
				spilled[n] = &received{samples: r.samples, norm: r.norm}
			}
			gotFlags, err := anomalyFlagsFrom(AnomalyConfig{}, 1, names, spilled, gotRep, rows, d)
			if err != nil {
				t.Fatal(err)
			}
			what := rule.Name()
			if !slices.EqualFunc(got, want, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
				t.Fatalf("d=%d %s: the spilled aggregate differs from the in-memory one", d, what)
			}
			if !reflect.DeepEqual(gotRep, wantRep) {
				t.Fatalf("d=%d %s: report %+v, in memory %+v", d, what, gotRep, wantRep)
			}
			if !reflect.DeepEqual(gotFlags, wantFlags) {
				t.Fatalf("d=%d %s: flags %+v, in memory %+v", d, what, gotFlags, wantFlags)
			}
			if d > 1 && len(wantFlags) == 0 {
				t.Fatalf("d=%d %s: no anomaly flag: the outlier does not test the flags", d, what)
			}
			fi, err := os.Stat(s.path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("spill file: %v, mode %v; want 0600", err, fi.Mode().Perm())
			}
			if want := int64(len(names)) * 4 * int64(d); s.written.Load() != want || s.pending() != 4*int64(d) {
				t.Fatalf("written %d, pending %d; want %d and one slot", s.written.Load(), s.pending(), want)
			}
			if err := s.remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(s.path); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("spill file after remove: %v", err)
			}
		}
	}
}

// TestSpillBadState: what the close reads from a spill file is refused,
// not aggregated, when the file is not what the streams wrote.
func TestSpillBadState(t *testing.T) {
	const d = 1000
	x := make([]float32, d)
	for i := range x {
		x[i] = float32(i)
	}
	setup := func(t *testing.T) *spillFile {
		s, err := createSpill(spillDataDir(t), 1, 0, []string{"a", "b"}, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.remove() })
		spillUpdate(t, s, "a", x)
		return s
	}
	row := make([]float32, d)
	t.Run("slot incomplete", func(t *testing.T) {
		s := setup(t)
		sink, _ := s.sink("b")
		if err := sink(0, model.AppendBytes(nil, x[:10])); err != nil {
			t.Fatal(err)
		}
		if _, err := s.rows([]string{"a", "b"}); err == nil || !strings.Contains(err.Error(), `"b"'s slot holds 40 of 4000 bytes`) {
			t.Fatalf("rows with a half-written slot: %v", err)
		}
		if _, err := s.rows([]string{"a", "stranger"}); err == nil {
			t.Fatal("rows with a name outside the cohort: no error")
		}
		if _, err := s.sink("stranger"); err == nil {
			t.Fatal("sink for a name outside the cohort: no error")
		}
		if err := sink(d-5, model.AppendBytes(nil, x[:10])); err == nil {
			t.Fatal("a chunk past the slot's end: no error")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		s := setup(t)
		rows, err := s.rows([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(s.path, 4*d-4); err != nil {
			t.Fatal(err)
		}
		if err := rows.ReadRow(0, row); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("ReadRow of a truncated file: %v", err)
		}
		_, err = aggregation.AggregateOutOfCore(aggregation.FedAvg{}, make([]float32, d), []aggregation.Update{{ID: "a", Samples: 1}}, aggregation.OutOfCore{Rows: rows})
		if !errors.Is(err, aggregation.ErrRows) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("aggregating a truncated file: %v", err)
		}
	})
	t.Run("non-finite", func(t *testing.T) {
		s := setup(t)
		rows, _ := s.rows([]string{"a"})
		f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0, 0, 0xc0, 0x7f}, 4*7); err != nil { // a NaN at parameter 7
			t.Fatal(err)
		}
		f.Close()
		for _, rule := range []aggregation.Rule{aggregation.FedAvg{}, aggregation.Median{}, aggregation.TrimmedMean{}} {
			_, err := aggregation.AggregateOutOfCore(rule, make([]float32, d), []aggregation.Update{{ID: "a", Samples: 1}}, aggregation.OutOfCore{Rows: rows})
			if !errors.Is(err, aggregation.ErrNonFinite) || !strings.Contains(err.Error(), `"a"`) {
				t.Fatalf("%s over a NaN in the file: %v", rule.Name(), err)
			}
		}
	})
	t.Run("removed", func(t *testing.T) {
		s := setup(t)
		rows, _ := s.rows([]string{"a"})
		sink, _ := s.sink("b")
		if err := s.remove(); err != nil {
			t.Fatal(err)
		}
		if err := s.remove(); err != nil {
			t.Fatalf("second remove: %v", err)
		}
		if err := rows.ReadRow(0, row); err == nil {
			t.Fatal("ReadRow after remove: no error")
		}
		if err := sink(0, model.AppendBytes(nil, x[:4])); err == nil {
			t.Fatal("a write after remove: no error")
		}
	})
	t.Run("out of range", func(t *testing.T) {
		s := setup(t)
		rows, _ := s.rows([]string{"a"})
		for _, c := range []struct{ k, off, n int }{{1, 0, 1}, {-1, 0, 1}, {0, -1, 1}, {0, d - 1, 2}} {
			if err := rows.read(c.k, c.off, make([]float32, c.n)); err == nil {
				t.Fatalf("read(%d, %d, %d): no error", c.k, c.off, c.n)
			}
		}
	})
	t.Run("exists", func(t *testing.T) {
		dir := spillDataDir(t)
		s, err := createSpill(dir, 1, 0, []string{"a"}, d)
		if err != nil {
			t.Fatal(err)
		}
		defer s.remove()
		if _, err := createSpill(dir, 1, 0, []string{"a"}, d); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("a second file for one attempt: %v", err)
		}
	})
}

// TestCleanSpills: start-up removes every spill file and refuses a spill
// folder that is not the coordinator's own.
func TestCleanSpills(t *testing.T) {
	t.Run("stale files removed", func(t *testing.T) {
		dir := spillDataDir(t)
		for _, n := range []string{"round-3-attempt-0.spill", "round-3-attempt-1.spill"} {
			if err := os.WriteFile(filepath.Join(dir, spillDirName, n), []byte("left by a crash"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := cleanSpills(dir); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(filepath.Join(dir, spillDirName)); len(left) != 0 {
			t.Fatalf("left after start-up: %v", left)
		}
	})
	t.Run("made 0700", func(t *testing.T) {
		dir := t.TempDir()
		if err := cleanSpills(dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(dir, spillDirName))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("spill folder: %v %v", fi, err)
		}
	})
	for _, tc := range []struct {
		name, want string
		make       func(t *testing.T, dir string)
	}{
		{"symlink", "is not a directory", func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), filepath.Join(dir, spillDirName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"file", "is not a directory", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, spillDirName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"readable by others", "chmod 700", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, spillDirName), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, spillDirName), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign file", "did not write", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, spillDirName), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, spillDirName, "notes.txt"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign folder", "did not write", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, spillDirName, "x.spill"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, dir)
			if err := cleanSpills(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("cleanSpills = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestSpillsDecision: when rounds spill, by mode, rule and size.
func TestSpillsDecision(t *testing.T) {
	base := Config{
		Federation: "demo", DataDir: "d", CACert: "ca", Cert: "c", Key: "k",
		Enrolled: []string{"a", "b", "c", "d"},
		// 1000 -> 10000 -> 10: 10,110,010 parameters, 4 × 40 MB of updates.
		Model: ModelConfig{Kind: "mlp", Features: make([]string, 1000), Label: "y", Classes: make([]string, 10), Hidden: []int{10000}},
	}
	small := base
	small.Model = ModelConfig{Kind: "logreg", Features: []string{"x"}, Label: "y", Classes: []string{"a", "b"}}
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want bool
	}{
		{"large fedavg spills by default", func(*Config) {}, true},
		{"large median", func(c *Config) { c.Aggregation = aggregation.Config{Rule: "median"} }, true},
		{"large trimmed-mean", func(c *Config) { c.Aggregation = aggregation.Config{Rule: "trimmed-mean", Beta: 0.25} }, true},
		{"never", func(c *Config) { c.Spill.Mode = SpillNever }, false},
		{"above a larger threshold", func(c *Config) { c.Spill.MemoryBytes = 1 << 30 }, false},
		{"krum keeps memory", func(c *Config) { c.Aggregation = aggregation.Config{Rule: "krum"} }, false},
		{"norm-clip keeps memory", func(c *Config) { c.Aggregation = aggregation.Config{Rule: "fedavg", NormClip: 1} }, false},
		{"bucketing keeps memory", func(c *Config) { c.Aggregation = aggregation.Config{Rule: "median", Bucket: 2} }, false},
		{"secure never spills", func(c *Config) { c.Secure = true }, false},
		{"small stays in memory", func(c *Config) { *c = small }, false},
		{"small, always", func(c *Config) { *c = small; c.Spill.Mode = SpillAlways }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			if got := spills(c); got != tc.want {
				t.Fatalf("spills = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSpillReserveInDiskGuard: with spilling, the free-space guard keeps
// room for one round's spill file beyond min_free_bytes. The free space
// is set half-way into that room (±240 MB of slack for other writers on
// the disk): the guard pauses; without spilling it does not.
func TestSpillReserveInDiskGuard(t *testing.T) {
	dir := t.TempDir()
	enrolled := make([]string, 300)
	for i := range enrolled {
		enrolled[i] = fmt.Sprintf("hospital-%03d", i)
	}
	cfg := Config{
		Federation: "spill", DataDir: dir, CACert: "ca.crt", Cert: "c.crt", Key: "c.key",
		Enrolled: enrolled, MinParticipants: 1,
		// 1 feature, 100,000 hidden units, 2 classes: 400,002 parameters.
		Model: ModelConfig{Kind: "mlp", Features: []string{"f1"}, Label: "y", Classes: []string{"B", "M"}, Hidden: []int{100000}},
		Spill: SpillConfig{Mode: SpillAlways},
	}
	c, err := New(cfg, WithInit(), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reserve := c.spillReserve()
	if want := uint64(300 * 4 * 400002); reserve != want {
		t.Fatalf("spillReserve between rounds = %d, want every enrolled hospital's update, %d", reserve, want)
	}
	free, err := freeBytes(dir)
	if err != nil {
		t.Skipf("free space unknown here: %v", err)
	}
	if free < reserve {
		t.Skipf("%d bytes free, the test needs %d", free, reserve)
	}
	c.cfg.MinFreeBytes = free - reserve/2
	ctx := context.Background()
	c.checkDisk(ctx)
	if !c.disk.paused.Load() {
		t.Fatalf("%d bytes free, min_free_bytes %d, spill reserve %d: the guard did not pause", free, c.cfg.MinFreeBytes, reserve)
	}
	c.spills = false
	c.checkDisk(ctx)
	if c.disk.paused.Load() {
		t.Fatal("without spilling the guard stays paused above min_free_bytes")
	}
	// An open round's file: what it may still take.
	c.spills = true
	s, err := createSpill(dir, 1, 0, enrolled[:2], 400002)
	if err != nil {
		t.Fatal(err)
	}
	defer s.remove()
	spillUpdate(t, s, enrolled[0], make([]float32, 400002))
	c.mu.Lock()
	c.round = &openRound{spill: s}
	c.mu.Unlock()
	if got := c.spillReserve(); got != 4*400002 {
		t.Fatalf("spillReserve with one of two slots written = %d, want %d", got, 4*400002)
	}
	c.mu.Lock()
	c.round = nil
	c.mu.Unlock()
}
