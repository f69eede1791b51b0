package participant_test

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/participant"
)

// TestFileConfigDataSalt: the agent of a configuration file reports data
// versions under the salt of its federation's CA, unless no_data_version.
func TestFileConfigDataSalt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := enrolment(t, dir, "clinic-net")
	ca, err := certs.LoadCertificate(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []bool{false, true} {
		c.NoDataVersion = off
		loaded, err := participant.LoadFileConfig(writeConfig(t, dir, c))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := loaded.Config()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case off && cfg.DataSalt != nil:
			t.Errorf("no_data_version: Config().DataSalt = %x, want nil", *cfg.DataSalt)
		case !off && (cfg.DataSalt == nil || *cfg.DataSalt != lineage.SaltFor(ca.Raw)):
			t.Errorf("Config().DataSalt = %v, want the salt of ca.crt", cfg.DataSalt)
		}
	}
}

// TestLocalTrainerDataDescription: after Prepare, the description names
// the digest of the file's bytes, the features and label, and the training
// rows only.
func TestLocalTrainerDataDescription(t *testing.T) {
	spec := testSpec()
	tr := &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Holdout: 0.25, Seed: 3}
	if _, ok := tr.DataDescription(); ok {
		t.Fatal("DataDescription before Prepare = ok")
	}
	st, err := tr.Prepare(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := tr.DataDescription()
	if !ok {
		t.Fatal("DataDescription after Prepare: not ok")
	}
	raw, err := os.ReadFile(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	if d.FileSHA256 != sha256.Sum256(raw) {
		t.Errorf("FileSHA256 = %x, want the SHA-256 of %s", d.FileSHA256, dataFile)
	}
	if want := append(append([]string{}, spec.GetFeatures()...), spec.GetLabel()); len(d.Columns) != len(want) || d.Columns[len(want)-1] != spec.GetLabel() {
		t.Errorf("Columns = %q, want %q", d.Columns, want)
	}
	if uint64(len(d.Rows)) != st.Count {
		t.Errorf("%d rows described, %d trained on", len(d.Rows), st.Count)
	}
	if _, err := lineage.SaltFor(nil).Version(d); err != nil {
		t.Errorf("Version(description) = %v", err)
	}
}

// TestExecTrainerDataDescription: an exec trainer's data version is that
// of what the agent hands the trainer: the data file's digest, the
// federation's columns and every row of the file (the trainer's own row
// selection is not visible to the agent). Before, the exec trainer was no
// DataDescriber and its agent reported no version at all.
func TestExecTrainerDataDescription(t *testing.T) {
	spec := testSpec()
	var tr participant.Trainer = &participant.ExecTrainer{
		Command: []string{"sh", "-c", "exit 0"}, Dir: filepath.Join(t.TempDir(), "work"),
		Local: &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Holdout: 0.25, Seed: 3},
	}
	d, isDescriber := tr.(participant.DataDescriber)
	if !isDescriber {
		t.Fatal("ExecTrainer is not a DataDescriber: its agent reports no data version")
	}
	if _, ok := d.DataDescription(); ok {
		t.Fatal("DataDescription before Prepare = ok")
	}
	if _, err := tr.Prepare(spec); err != nil {
		t.Fatal(err)
	}
	got, ok := d.DataDescription()
	if !ok {
		t.Fatal("DataDescription after Prepare: not ok")
	}
	// The whole file: the local trainer's description without a holdout.
	all := &participant.LocalTrainer{DataFile: dataFile, Ignore: []string{"id"}, Holdout: participant.NoHoldout}
	if _, err := all.Prepare(spec); err != nil {
		t.Fatal(err)
	}
	want, _ := all.DataDescription()
	if got.FileSHA256 != want.FileSHA256 || !slices.Equal(got.Columns, want.Columns) || !slices.Equal(got.Rows, want.Rows) {
		t.Errorf("DataDescription() = %x %q %d rows, want %x %q %d rows (the whole file)", got.FileSHA256, got.Columns, len(got.Rows), want.FileSHA256, want.Columns, len(want.Rows))
	}
	// Without a data file the agent hands nothing over.
	none := &participant.ExecTrainer{Command: []string{"sh", "-c", "exit 0"}, Dir: filepath.Join(t.TempDir(), "work")}
	if _, ok := none.DataDescription(); ok {
		t.Error("DataDescription without Local = ok")
	}
}

// TestFileConfigDataVersionExec: `participant lineage` recomputes an exec
// trainer's data version (it refused before), and it changes with the file.
func TestFileConfigDataVersionExec(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := enrolment(t, dir, "clinic-net")
	c.Trainer, c.TrainerCommand = participant.TrainerExec, "sh -c true"
	loaded, err := participant.LoadFileConfig(writeConfig(t, dir, c))
	if err != nil {
		t.Fatal(err)
	}
	spec := testSpec()
	raw, err := json.Marshal(map[string]any{"kind": "logreg", "features": spec.GetFeatures(), "label": spec.GetLabel(), "classes": spec.GetClasses()})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := loaded.DataVersion(raw, spec.GetNumParams())
	if err != nil {
		t.Fatalf("DataVersion of an exec trainer: %v", err)
	}
	// The same as the agent computes.
	ca, err := certs.LoadCertificate(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &participant.ExecTrainer{Command: []string{"sh", "-c", "true"}, Dir: filepath.Join(t.TempDir(), "work"),
		Local: &participant.LocalTrainer{DataFile: filepath.Join(dir, "data.csv"), Ignore: []string{"id"}}}
	if _, err := tr.Prepare(spec); err != nil {
		t.Fatal(err)
	}
	d, _ := tr.DataDescription()
	if want, err := lineage.SaltFor(ca.Raw).Version(d); err != nil || v1 != want {
		t.Errorf("DataVersion = %v, the agent's %v (%v)", v1, want, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(filepath.Join(dir, "data.csv"), []byte(strings.Join(lines[:len(lines)-2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if v2, err := loaded.DataVersion(raw, spec.GetNumParams()); err != nil || v2 == v1 {
		t.Errorf("after a row was removed: DataVersion = %v, %v; want another version", v2, err)
	}
}
