package participant_test

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/participant"
)

// TestFileConfigDataSalt: the agent of a configuration file reports data
// versions under the salt of its federation's CA, unless no_data_version.
func TestFileConfigDataSalt(t *testing.T) {
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
