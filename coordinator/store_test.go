package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/model"
)

const (
	testFed  = "demo"
	testSpec = `{"kind":"logreg","features":["a","b"],"label":"y","classes":["0","1"]}`
)

// openTestStore opens dir's store for the test federation and closes it
// when the test ends (closing twice is harmless).
func openTestStore(t *testing.T, dir string) *store {
	t.Helper()
	mode := storeOpen
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		mode = storeCreate
	}
	s, err := openStore(dir, testFed, []byte(testSpec), mode)
	if err != nil {
		t.Fatalf("openStore(%s) = %v", dir, err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// reopen closes s and opens the same file again, so assertions read what
// reached the file rather than what one handle remembers.
func reopen(t *testing.T, s *store, dir string) *store {
	t.Helper()
	if err := s.close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	return openTestStore(t, dir)
}

// openInitialStore is openTestStore holding the initial model
// modelBytes(0).
func openInitialStore(t *testing.T, dir string) *store {
	t.Helper()
	s := openTestStore(t, dir)
	if err := s.saveInitial(modelBytes(0)); err != nil {
		t.Fatal(err)
	}
	return s
}

// modelBytes is a recognisable model of 6 parameters for round r.
func modelBytes(r uint64) []byte {
	p := make([]float32, 6)
	for i := range p {
		p[i] = float32(r)*10 + float32(i)
	}
	return model.AppendBytes(nil, p)
}

// manifestBytes stands for the signed manifest of round r: the store keeps
// it without reading it.
func manifestBytes(r uint64) []byte { return []byte(fmt.Sprintf(`{"manifest of round":%d}`, r)) }

// record is the round record commitRound would get for round r.
func record(r uint64, m []byte) RoundRecord {
	sum := sha256.Sum256(m)
	opened := time.Date(2026, 3, 1, 12, 0, int(r%60), 0, time.UTC)
	return RoundRecord{
		Round: r, Attempt: uint32(r % 2), Opened: opened, Closed: opened.Add(time.Second),
		Cohort: []string{"hospital-a", "hospital-b"},
		Participants: []ParticipantRecord{
			{Name: "hospital-a", Samples: 10 * r, Norm: 1.5, SHA256: strings.Repeat("ab", 32), HoldoutCount: 3, HoldoutLoss: 0.5, HoldoutAccuracy: 0.75},
		},
		Dropped:     []string{"hospital-b"},
		Report:      aggregation.Report{Rule: "fedavg", Entries: []aggregation.Entry{{ID: "hospital-a", Weight: 1, Selected: true}}},
		ModelSHA256: hex.EncodeToString(sum[:]),
	}
}

func TestStoreLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openTestStore(t, dir)
	type result struct {
		s   *store
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := openStore(dir, testFed, []byte(testSpec), storeOpen)
		done <- result{s, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("second openStore on an open database still blocked after 10s, want a lock timeout")
	}
	if r.err == nil {
		r.s.close()
		t.Fatal("second openStore on an open database succeeded")
	}
	if !strings.Contains(r.err.Error(), "another coordinator holds it") {
		t.Errorf("second openStore = %v, want it to say another coordinator holds it", r.err)
	}
	t.Logf("second openStore refused after %v", time.Since(start))
}

func TestStoreRefusesOtherDatabase(t *testing.T) {
	tests := []struct {
		name       string
		federation string
		spec       string
		want       string // "" means accepted
	}{
		{"same", testFed, testSpec, ""},
		{"other federation", "other", testSpec, `belongs to federation "demo"`},
		// The refusal names what differs, not two whole specifications
		// (30 feature names each for WDBC) for the operator to compare.
		{"other model", testFed, `{"kind":"mlp","features":["a","b"],"label":"y","classes":["0","1"],"hidden":[16]}`,
			`model.hidden: none in state.db, [16] in the configuration; model.kind: "logreg" in state.db, "mlp" in the configuration`},
		{"other features", testFed, `{"kind":"logreg","features":["a","c"],"label":"y","classes":["0","1"]}`,
			`model.features: the configuration lacks "b" and adds "c"`},
		{"features reordered", testFed, `{"kind":"logreg","features":["b","a"],"label":"y","classes":["0","1"]}`,
			`model.features: the same names in another order`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openInitialStore(t, dir)
			s.close()
			s2, err := openStore(dir, tt.federation, []byte(tt.spec), storeOpen)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("openStore(same federation and model) = %v", err)
				}
				s2.close()
				return
			}
			if err == nil {
				s2.close()
				t.Fatalf("openStore(%q, %s) on a database of %q = nil, want refusal", tt.federation, tt.spec, testFed)
			}
			if !strings.Contains(err.Error(), tt.want) || tt.federation == testFed && !strings.Contains(err.Error(), "a federation's model cannot change") {
				t.Errorf("openStore(%q) = %v, want it to mention %q", tt.federation, err, tt.want)
			}
			// The refused open must leave the database as it was.
			s3 := openTestStore(t, dir)
			if p, ok, err := s3.load(); err != nil || !ok || !slices.Equal(p.model, modelBytes(0)) {
				t.Errorf("database after a refused open: ok %v, %v", ok, err)
			}
		})
	}
}

func TestStoreRefusesOtherSchema(t *testing.T) {
	for _, tt := range []struct{ version, want string }{
		{"3", `schema version "3", this build reads "2"`},
		{"1", "without signed round manifests"},
	} {
		dir := t.TempDir()
		s := openTestStore(t, dir)
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte(tt.version))
		}); err != nil {
			t.Fatal(err)
		}
		s.close()
		if s2, err := openStore(dir, testFed, []byte(testSpec), storeOpen); err == nil {
			s2.close()
			t.Errorf("openStore of a schema version %s database succeeded", tt.version)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("openStore of schema version %s = %v, want it to say %q", tt.version, err, tt.want)
		}
	}
}

func TestStoreDetectsCorruption(t *testing.T) {
	tests := []struct {
		name    string
		rounds  uint64 // rounds committed after the initial model
		corrupt func(tx *bolt.Tx) error
	}{
		{"flipped byte in last model", 2, func(tx *bolt.Tx) error { return flip(tx, bucketModels, roundKey(2), 5) }},
		{"flipped byte in last model, first round", 1, func(tx *bolt.Tx) error { return flip(tx, bucketModels, roundKey(1), 0) }},
		{"truncated model", 2, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketModels).Put(roundKey(2), modelBytes(2)[:20])
		}},
		{"missing last model", 2, func(tx *bolt.Tx) error { return tx.Bucket(bucketModels).Delete(roundKey(2)) }},
		{"missing last record", 2, func(tx *bolt.Tx) error { return tx.Bucket(bucketRounds).Delete(roundKey(2)) }},
		{"garbled record", 2, func(tx *bolt.Tx) error { return tx.Bucket(bucketRounds).Put(roundKey(2), []byte("{")) }},
		{"short last_round", 2, func(tx *bolt.Tx) error { return tx.Bucket(bucketState).Put(keyLastRound, []byte{2}) }},
		{"garbled scaling", 2, func(tx *bolt.Tx) error { return tx.Bucket(bucketState).Put(keyScaling, []byte("[")) }},
		{"missing manifest of the last round", 2, func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketState).Put(keyScaling, []byte(`{"Mean":[0],"Std":[1]}`)); err != nil {
				return err
			}
			return tx.Bucket(bucketManifests).Delete(roundKey(2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openInitialStore(t, dir)
			for r := uint64(1); r <= tt.rounds; r++ {
				if err := s.commitRound(record(r, modelBytes(r)), modelBytes(r), manifestBytes(r), 5); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.db.Update(tt.corrupt); err != nil {
				t.Fatal(err)
			}
			s = reopen(t, s, dir)
			if _, _, err := s.load(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("load() of a corrupted database = %v, want ErrCorrupt", err)
			}
		})
	}
}

// flip inverts one bit of byte i of bucket/key.
func flip(tx *bolt.Tx, bucket, key []byte, i int) error {
	b := tx.Bucket(bucket)
	v := slices.Clone(b.Get(key))
	if v == nil {
		return errors.New("flip: no such key")
	}
	v[i] ^= 0x04
	return b.Put(key, v)
}

// TestNewDetectsCorruptInitialModel corrupts the stored initial model (round
// 0, the starting point of round 1) of a coordinator that has not closed a
// round yet: the restart must refuse it with ErrCorrupt rather than train
// from it.
func TestNewDetectsCorruptInitialModel(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		corrupt func(m []byte) []byte
	}{
		{"truncated", func(m []byte) []byte { return m[:len(m)-4] }},
		{"NaN", func(m []byte) []byte { return append(slices.Clone(m[:len(m)-4]), 0, 0, 0xc0, 0x7f) }},
		// A finite value changed by one flipped bit: nothing but a
		// digest can tell.
		{"flipped bit", func(m []byte) []byte { m = slices.Clone(m); m[9] ^= 0x04; return m }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{
				Federation: "demo", DataDir: t.TempDir(), CACert: "ca.crt", Cert: "c.crt", Key: "c.key",
				Enrolled: []string{"hospital-a"},
				Model:    ModelConfig{Kind: "mlp", Features: []string{"a", "b"}, Label: "y", Classes: []string{"0", "1"}, Hidden: []int{3}},
				Seed:     5,
			}
			c, err := New(cfg, WithInit(), WithLogger(quiet))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if err := c.store.(*store).db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketModels)
				return b.Put(roundKey(0), tt.corrupt(b.Get(roundKey(0))))
			}); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c2, err := New(cfg, WithLogger(quiet))
			if err == nil {
				c2.Close()
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("New on a database with a %s initial model = %v, want ErrCorrupt", tt.name, err)
			}
		})
	}
}

func TestExportModel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openInitialStore(t, dir)
	if _, err := ExportModel(dir, -1); err == nil {
		t.Fatal("ExportModel while a coordinator holds the database succeeded")
	} else if !strings.Contains(err.Error(), "running coordinator") {
		t.Errorf("ExportModel while held = %v, want it to say a running coordinator holds it", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportModel(dir, -1); err == nil || !strings.Contains(err.Error(), "no signed manifest") {
		t.Errorf("ExportModel before the scaling is fixed = %v, want no signed manifest", err)
	}
	s = openTestStore(t, dir)
	if err := s.saveScaling(dataset.Scaling{Mean: []float64{0}, Std: []float64{1}}, manifestBytes(0)); err != nil {
		t.Fatal(err)
	}
	for r := uint64(1); r <= 3; r++ {
		if err := s.commitRound(record(r, modelBytes(r)), modelBytes(r), manifestBytes(r), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		round     int64
		wantRound uint64
		wantErr   string
	}{
		{-1, 3, ""},
		{2, 2, ""},
		// keep_models 2: rounds 2 and 3 only; the error says where the
		// round's manifest still is, for `participant lineage --check`.
		{1, 0, "the model of round 1 is no longer kept (keep_models: the oldest model kept is round 2); its signed manifest is still in the audit log: the manifest_signed event of round 1 in `fedguard audit export`"},
		{4, 0, "has not closed"},
	}
	for _, tt := range tests {
		m, err := ExportModel(dir, tt.round)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ExportModel(%d) = %v, want an error saying %q", tt.round, err, tt.wantErr)
			}
			continue
		}
		if err != nil || m.Round != tt.wantRound || m.Federation != testFed ||
			!slices.Equal(m.Model, modelBytes(tt.wantRound)) || !slices.Equal(m.Manifest, manifestBytes(tt.wantRound)) {
			t.Errorf("ExportModel(%d) = round %d of %q, %v; want round %d's model and manifest", tt.round, m.Round, m.Federation, err, tt.wantRound)
		}
	}
	if _, err := ExportModel(t.TempDir(), -1); err == nil || !strings.Contains(err.Error(), "state database") {
		t.Errorf("ExportModel of an empty directory = %v, want a missing state database", err)
	}
}
