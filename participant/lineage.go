package participant

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// This file holds the agent's part of data lineage (package lineage): the
// exact training data of a [LocalTrainer] as a data version, reported with
// every update and recomputed offline by `fedguard participant lineage`.

// DataDescriber is a [Trainer] that can say what data it trains on (the
// local trainer exactly; the exec trainer, what it is handed).
// The agent reports the data version of that description with every
// update when [Config.DataSalt] is set.
type DataDescriber interface {
	// DataDescription returns the description of the data the last
	// Prepare read and selected; false before Prepare.
	DataDescription() (lineage.Description, bool)
}

var (
	_ DataDescriber = (*LocalTrainer)(nil)
	_ DataDescriber = (*ExecTrainer)(nil)
)

// DataDescription implements [DataDescriber]: the data file's digest as
// Prepare read it, the feature columns and the label, and the training
// rows (the holdout rows are not trained on and not listed).
func (t *LocalTrainer) DataDescription() (lineage.Description, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.data == nil {
		return lineage.Description{}, false
	}
	return *t.data, true
}

// DataDescription implements [DataDescriber] for an ExecTrainer with a
// Local data file: what the agent hands the trainer, not what the trainer
// trains on. The trainer reads the file named in plan.json and selects its
// own rows (and holdout), which the agent cannot see; so the description
// is the digest of the file's bytes, the federation's columns (features,
// then the label) and every row of the file. Editing the file still gives
// a new version; a trainer that changes its own row selection does not.
// False without Local or before Prepare.
func (t *ExecTrainer) DataDescription() (lineage.Description, bool) {
	if t.Local == nil {
		return lineage.Description{}, false
	}
	l := t.Local
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.data == nil {
		return lineage.Description{}, false
	}
	d := lineage.Description{FileSHA256: l.data.FileSHA256, Columns: slices.Clone(l.data.Columns), Rows: make([]int, l.rows)}
	for i := range d.Rows {
		d.Rows[i] = i
	}
	return d, true
}

// readHashed reads the data file at path as dataset.ReadFile does, and
// returns the SHA-256 of exactly the bytes it parsed.
func readHashed(path string, o dataset.ReadOptions) (*dataset.Table, [32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	tee := io.TeeReader(f, h)
	t, err := dataset.ReadCSV(tee, o)
	if err == nil {
		// Whatever the parser left unread (nothing, for a well-formed
		// file) is part of the file's bytes.
		_, err = io.Copy(io.Discard, tee)
	}
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("dataset: read %s: %w", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return t, sum, nil
}

// dataVersion is the data version of the agent's trainer under the
// federation's salt; nil when the agent reports none.
func (a *Agent) dataVersion() ([]byte, error) {
	d, ok := a.cfg.Trainer.(DataDescriber)
	if a.cfg.DataSalt == nil || !ok {
		return nil, nil
	}
	desc, ok := d.DataDescription()
	if !ok {
		return nil, nil
	}
	v, err := a.cfg.DataSalt.Version(desc)
	if err != nil {
		return nil, fmt.Errorf("participant: data version: %w", err)
	}
	return v[:], nil
}

// DataVersion recomputes, offline, the data version this configuration's
// agent reports for a federation whose manifests carry modelSpec (a
// manifest's model_spec) and numParams: it reads and selects the data as
// the agent does, and takes the salt from the configuration's CA
// certificate. For the exec trainer it is the version of the file and
// columns the agent hands over (see [ExecTrainer.DataDescription]).
func (c FileConfig) DataVersion(modelSpec json.RawMessage, numParams uint64) (lineage.Version, error) {
	if err := c.Validate(); err != nil {
		return lineage.Version{}, err
	}
	ca, err := certs.LoadCertificate(c.CA)
	if err != nil {
		return lineage.Version{}, fmt.Errorf("participant: ca: %w", err)
	}
	spec, err := specFromManifest(modelSpec, numParams)
	if err != nil {
		return lineage.Version{}, err
	}
	h := c.Holdout
	if h == 0 {
		h = NoHoldout // as Config does
	}
	// The local trainer reads and selects the data in Prepare; so does the
	// exec trainer's Local, without running the trainer.
	tr := c.trainer(h)
	local, ok := tr.(*LocalTrainer)
	if e, isExec := tr.(*ExecTrainer); isExec {
		local, ok = e.Local, e.Local != nil
	}
	if !ok {
		return lineage.Version{}, fmt.Errorf("participant: trainer %q reports no data version", c.Trainer)
	}
	if _, err := local.Prepare(spec); err != nil {
		return lineage.Version{}, err
	}
	desc, ok := tr.(DataDescriber).DataDescription()
	if !ok {
		return lineage.Version{}, fmt.Errorf("participant: trainer %q reports no data version", c.Trainer)
	}
	return lineage.SaltFor(ca.Raw).Version(desc)
}

// specFromManifest is the model specification a manifest's model_spec
// (the coordinator's model configuration) describes, as Join sends it.
func specFromManifest(raw json.RawMessage, numParams uint64) (*fedguardv1.ModelSpec, error) {
	var m manifestSpec
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("participant: manifest model_spec: %w", err)
	}
	kind, err := model.ParseKind(m.Kind)
	if err != nil {
		return nil, fmt.Errorf("participant: manifest model_spec: %w", err)
	}
	return &fedguardv1.ModelSpec{
		FormatVersion: model.FormatVersion, Kind: fedguardv1.ModelKind(kind),
		Features: m.Features, Label: m.Label, Classes: m.Classes, Hidden: m.Hidden, NumParams: numParams,
	}, nil
}
