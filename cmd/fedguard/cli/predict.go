package cli

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/dataset"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// This file holds `fedguard predict`, which scores new rows with a model
// the federation trained: the serving side of the built-in tabular models.

// maxScalingBytes bounds a scaling file: two float64 lists of one entry per
// feature (MNIST's 784 pixels make about 40 KB).
const maxScalingBytes = 16 << 20

// scalingFile is the federation's feature scaling as `model export` writes
// it beside the model (FED-model-round-N.scaling.json): x' = (x − mean) /
// std per feature, in the model's feature order, and the digest the
// manifest's scaling_sha256 (and the model file's metadata) name.
type scalingFile struct {
	ScalingSHA256 string    `json:"scaling_sha256"`
	Mean          []float64 `json:"mean"`
	Std           []float64 `json:"std"`
}

// scalingPath is where `model export` writes the scaling of the model at
// modelPath.
func scalingPath(modelPath string) string {
	return strings.TrimSuffix(modelPath, ".safetensors") + ".scaling.json"
}

// marshalScaling encodes sc as a scaling file, after checking that it is
// the scaling whose digest is want.
func marshalScaling(sc dataset.Scaling, want string) ([]byte, error) {
	d := sc.Digest()
	if got := hex.EncodeToString(d[:]); got != want {
		return nil, fmt.Errorf("the feature scaling has digest %s, the manifest names %s", got, want)
	}
	b, err := json.MarshalIndent(scalingFile{ScalingSHA256: want, Mean: sc.Mean, Std: sc.Std}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// loadScaling reads a scaling file and checks it against want, the digest
// the model's manifest (or metadata) names, and against the model's
// number of features.
func loadScaling(path, want string, features int) (dataset.Scaling, error) {
	b, err := strictjson.ReadFile(path, maxScalingBytes)
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) && pe.Op == "open" {
		return dataset.Scaling{}, fmt.Errorf("feature scaling: %w (model export writes it beside the model; name it with -scaling)", err)
	}
	if err != nil {
		return dataset.Scaling{}, fmt.Errorf("feature scaling: %w", err)
	}
	var sf scalingFile
	if err := strictjson.Unmarshal(b, &sf); err != nil {
		return dataset.Scaling{}, fmt.Errorf("feature scaling %s: %w", path, err)
	}
	sc := dataset.Scaling{Mean: sf.Mean, Std: sf.Std}
	d := sc.Digest()
	if got := hex.EncodeToString(d[:]); got != want {
		return dataset.Scaling{}, fmt.Errorf("feature scaling %s has digest %s, the model names %s: it is not the scaling the model was trained with", path, got, want)
	}
	if len(sc.Mean) != features || len(sc.Std) != features {
		return dataset.Scaling{}, fmt.Errorf("feature scaling %s has %d/%d entries, the model has %d features", path, len(sc.Mean), len(sc.Std), features)
	}
	return sc, nil
}

// servedModel is a model ready to score rows: its specification, its
// parameters, the federation's configuration of it (feature names,
// classes) and the digest of the scaling it needs.
type servedModel struct {
	spec    model.Spec
	config  coordinator.ModelConfig
	params  []float32
	scaling string // hex digest
	round   uint64
	checked string // how it was checked, for the summary
}

// configOf decodes a model_spec (the coordinator's model configuration).
func configOf(raw []byte) (coordinator.ModelConfig, error) {
	var mc coordinator.ModelConfig
	if err := json.Unmarshal(raw, &mc); err != nil {
		return coordinator.ModelConfig{}, fmt.Errorf("model_spec: %w", err)
	}
	return mc, nil
}

// loadServed reads the model file at path as fedguard predict uses it:
// verified against its manifest and key when given (verifyModel), else
// checked against its own metadata (parses strictly with the layout its
// model_spec names, and the parameters' digest is its model_sha256), which
// catches a damaged file but not a forged one.
func loadServed(path, manifestPath, keyPath, federation string) (servedModel, error) {
	if manifestPath != "" {
		keys, err := manifest.LoadPublicKeys(keyPath)
		if err != nil {
			return servedModel{}, err
		}
		env, err := readManifest(manifestPath)
		if err != nil {
			return servedModel{}, err
		}
		v, err := verifyModel(path, env, keys, federation)
		if err != nil {
			return servedModel{}, fmt.Errorf("%s: %w", path, err)
		}
		mc, err := configOf(v.Round.ModelSpec)
		if err != nil {
			return servedModel{}, err
		}
		return servedModel{spec: v.Spec, config: mc, params: v.Params, scaling: v.Round.ScalingSHA256, round: v.Round.Round,
			checked: "verified against its signed manifest"}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return servedModel{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return servedModel{}, err
	}
	st, err := safetensors.Open(f, fi.Size())
	if err != nil {
		return servedModel{}, fmt.Errorf("%s: %w", path, err)
	}
	meta := st.Metadata()
	for _, k := range []string{manifest.MetaModelSpec, manifest.MetaScaling, manifest.MetaModel, manifest.MetaRound} {
		if meta[k] == "" {
			return servedModel{}, fmt.Errorf("%s: no %s in its metadata (exported for a manifest from before fedguard predict): give -manifest and -key", path, k)
		}
	}
	if federation != "" && meta[manifest.MetaFederation] != federation {
		return servedModel{}, fmt.Errorf("%s: the model is of federation %q, want %q", path, meta[manifest.MetaFederation], federation)
	}
	round, err := strconv.ParseUint(meta[manifest.MetaRound], 10, 64)
	if err != nil {
		return servedModel{}, fmt.Errorf("%s: metadata %s: %w", path, manifest.MetaRound, err)
	}
	mc, err := configOf([]byte(meta[manifest.MetaModelSpec]))
	if err != nil {
		return servedModel{}, fmt.Errorf("%s: %w", path, err)
	}
	kind, err := model.ParseKind(mc.Kind)
	if err != nil {
		return servedModel{}, fmt.Errorf("%s: model_spec: %w", path, err)
	}
	spec := model.Spec{Kind: kind, Features: len(mc.Features), Classes: len(mc.Classes), Hidden: mc.Hidden}
	if err := spec.Validate(); err != nil {
		return servedModel{}, fmt.Errorf("%s: model_spec: %w", path, err)
	}
	layout, err := safetensors.SpecLayout(spec)
	if err != nil {
		return servedModel{}, err
	}
	// The model_spec is the file's own word: allocate for it only when
	// the tensors the file holds (which safetensors.Open checked against
	// its size) are as many values. Else a file of a few bytes could
	// claim a model of model.MaxParams values.
	if got, want := st.Layout().NumParams(), layout.NumParams(); got != want {
		return servedModel{}, fmt.Errorf("%s: %w: the file holds %d values, its model_spec describes a model of %d", path, safetensors.ErrLayout, got, want)
	}
	params := make([]float32, layout.NumParams())
	if err := st.ReadInto(layout, params); err != nil {
		return servedModel{}, fmt.Errorf("%s: %w", path, err)
	}
	if d := model.Digest(params); hex.EncodeToString(d[:]) != meta[manifest.MetaModel] {
		return servedModel{}, fmt.Errorf("%s: its parameters have digest %x, its metadata names %s (the file was changed)", path, d, meta[manifest.MetaModel])
	}
	return servedModel{spec: spec, config: mc, params: params, scaling: meta[manifest.MetaScaling], round: round,
		checked: "not verified (no -manifest): checked against its own metadata only"}, nil
}

// prediction is one scored row.
type prediction struct {
	id          string // the -id column's value, or the row number
	class       string
	probability float64
	label       string // the label column's value, if the file has one
}

// errColumns means a data file's columns are not the model's features
// (plus, optionally, its label and an -id column).
var errColumns = errors.New("the data file's columns do not match the model")

// scoreCSV reads rows of features from r (a CSV file with a header),
// standardizes them with sc and scores them with m, calling emit for each
// row in order. The header must name every feature of the model, in any
// order; besides them it may hold the model's label column (its values
// are passed through) and idCol (likewise); any other column is an error,
// as is a missing feature. Input is bounded as dataset.ReadCSV bounds it.
func scoreCSV(r io.Reader, m servedModel, sc dataset.Scaling, idCol string, emit func(prediction) error) (rows int, err error) {
	cr := csv.NewReader(dataset.NewBoundedReader(r, dataset.MaxBytes, dataset.MaxLineBytes))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return 0, fmt.Errorf("%w: no header", dataset.ErrEmpty)
	}
	if err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	if err := dataset.CheckSeparator(header); err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	pos := make(map[string]int, len(header))
	var unknown []string
	labelCol, idIdx := -1, -1
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.TrimSpace(h)
		if _, dup := pos[h]; dup {
			return 0, fmt.Errorf("%w: column %q appears twice", errColumns, h)
		}
		pos[h] = i
		switch {
		case h == idCol && idCol != "":
			idIdx = i
		case h == m.config.Label && h != "":
			labelCol = i
		case !slices.Contains(m.config.Features, h):
			unknown = append(unknown, strconv.Quote(h))
		}
	}
	var missing []string
	cols := make([]int, len(m.config.Features))
	for j, f := range m.config.Features {
		i, ok := pos[f]
		if !ok {
			missing = append(missing, strconv.Quote(f))
		}
		cols[j] = i
	}
	if idCol != "" && idIdx < 0 {
		return 0, fmt.Errorf("%w: no -id column %q", errColumns, idCol)
	}
	if len(unknown) > 0 || len(missing) > 0 {
		var parts []string
		if len(missing) > 0 {
			parts = append(parts, fmt.Sprintf("missing feature columns %s", strings.Join(missing, ", ")))
		}
		if len(unknown) > 0 {
			parts = append(parts, fmt.Sprintf("columns %s are not features of the model (name an identifier column with -id)", strings.Join(unknown, ", ")))
		}
		return 0, fmt.Errorf("%w: %s; the model's %d features are %s, its label is %q",
			errColumns, strings.Join(parts, "; "), len(m.config.Features), strings.Join(m.config.Features, ","), m.config.Label)
	}
	x := make([]float64, len(cols))
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rows, fmt.Errorf("row %d: %w", rows+1, err)
		}
		if rows >= dataset.DefaultMaxRows {
			return rows, fmt.Errorf("%w: more than %d rows", dataset.ErrTooLarge, dataset.DefaultMaxRows)
		}
		rows++
		line, _ := cr.FieldPos(0)
		for j, c := range cols {
			v, err := dataset.ParseNumber(strings.TrimSpace(rec[c]))
			if err != nil {
				return rows, fmt.Errorf("line %d, column %q: %w (value %.40q)", line, m.config.Features[j], err, rec[c])
			}
			v = (v - sc.Mean[j]) / sc.Std[j]
			if !(v >= -1e300 && v <= 1e300) {
				return rows, fmt.Errorf("line %d, column %q: the scaling makes the value non-finite", line, m.config.Features[j])
			}
			x[j] = v
		}
		class, probs, err := model.Predict(m.spec, m.params, x)
		if err != nil {
			return rows, fmt.Errorf("line %d: %w", line, err)
		}
		p := prediction{id: strconv.Itoa(rows), class: m.config.Classes[class], probability: probs[class]}
		if idIdx >= 0 {
			p.id = strings.TrimSpace(rec[idIdx])
		}
		if labelCol >= 0 {
			p.label = strings.TrimSpace(rec[labelCol])
		}
		if err := emit(p); err != nil {
			return rows, err
		}
	}
	if rows == 0 {
		return 0, fmt.Errorf("%w: header but no data rows", dataset.ErrEmpty)
	}
	return rows, nil
}

func runPredict(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "predict")
	modelPath := fs.String("model", "", "the model `file` (safetensors), as fedguard model export writes it")
	dataPath := fs.String("data", "", "a CSV file of rows to score, with a header naming the model's features (- for standard input)")
	scalingArg := fs.String("scaling", "", "the federation's feature scaling (default: FILE.scaling.json beside -model, as model export writes it)")
	manifestPath := fs.String("manifest", "", "the model's signed manifest (at most 4 MiB): verify the model (with -key) before scoring")
	key := fs.String("key", "", "with -manifest: the coordinator's signing.pub")
	federation := fs.String("federation", "", "the federation the model must come from")
	idCol := fs.String("id", "", "a column of the data file that identifies each row, copied into the output (default: the row number)")
	out := fs.String("out", "", "write the predictions as CSV to this file (default: standard output; a table on a terminal)")
	if err := parseFlags(fs, args, "model", "data"); err != nil {
		return err
	}
	if (*manifestPath == "") != (*key == "") {
		return usageError("predict: -manifest and -key go together")
	}
	m, err := loadServed(*modelPath, *manifestPath, *key, *federation)
	if err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	sp := *scalingArg
	if sp == "" {
		sp = scalingPath(*modelPath)
	}
	sc, err := loadScaling(sp, m.scaling, len(m.config.Features))
	if err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	in, closeIn, err := input(*dataPath)
	if err != nil {
		return err
	}
	defer closeIn()

	w, done := output(env, *out)
	table := *out == "" && isTerminal(env.Stdout)
	var cw *csv.Writer
	var tw *tabwriter.Writer
	idName := "row"
	if *idCol != "" {
		idName = *idCol
	}
	if table {
		tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tclass\tprobability\n", idName)
	} else {
		cw = csv.NewWriter(w)
		if err := cw.Write([]string{idName, "class", "probability"}); err != nil {
			return done(err)
		}
	}
	var labelled, correct int
	rows, err := scoreCSV(in, m, sc, *idCol, func(p prediction) error {
		if p.label != "" {
			labelled++
			if p.label == p.class {
				correct++
			}
		}
		prob := strconv.FormatFloat(p.probability, 'f', 4, 64)
		if table {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\n", p.id, p.class, prob)
			return err
		}
		return cw.Write([]string{p.id, p.class, prob})
	})
	if err != nil {
		err = fmt.Errorf("predict: %s: %w", *dataPath, err)
	} else if table {
		err = tw.Flush()
	} else {
		cw.Flush()
		err = cw.Error()
	}
	if err := done(err); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "scored %d rows with the model of round %d (%s)", rows, m.round, m.checked)
	if labelled > 0 {
		fmt.Fprintf(env.Stderr, "; accuracy on the %d rows with a %q label: %.4f", labelled, m.config.Label, float64(correct)/float64(labelled))
	}
	fmt.Fprintln(env.Stderr)
	return nil
}
