package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/manifest"
)

// exportRound runs `model export` for round (-1: the last) of the demo
// federation in dir and returns the model file's path.
func exportRound(t *testing.T, dir string, round int) string {
	t.Helper()
	out := t.TempDir()
	code, stdout, errOut := runCLI("model", "export", "--data-dir", filepath.Join(dir, "coordinator", "data"), "--round", strconv.Itoa(round), "--out", out)
	if code != 0 {
		t.Fatalf("model export --round %d: exit %d: %s", round, code, errOut)
	}
	if !strings.Contains(stdout, "cosign verify-blob-attestation") {
		t.Errorf("model export does not show the cosign command:\n%s", stdout)
	}
	matches, err := filepath.Glob(filepath.Join(out, "*.safetensors"))
	if err != nil || len(matches) != 1 {
		t.Fatalf("model export wrote %v (%v), want one .safetensors file", matches, err)
	}
	return matches[0]
}

// cosign runs the repository's pinned cosign (tools/cosign) offline.
func cosign(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	modRoot := filepath.Dir(strings.TrimSpace(string(root)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "-modfile=" + filepath.Join(modRoot, "tools", "cosign", "go.mod"), "cosign"}, args...)...)
	cmd.Dir = modRoot
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// TestExportedModelIsSubject (issue 14): the safetensors file `model
// export` writes is a subject of the round's signed in-toto statement, so
// the repository's pinned cosign accepts the file itself against the
// coordinator's cosign.pub, and `fedguard model verify` accepts it; a
// one-byte change makes both refuse.
func TestExportedModelIsSubject(t *testing.T) {
	dir := runDemoFed(t)
	data := filepath.Join(dir, "coordinator", "data")
	key := filepath.Join(data, manifest.PublicFile)
	model := exportRound(t, dir, -1)
	env := model + ".manifest.json"

	keys, envelope, good := readSigned(t, model, env, key)
	v, err := manifest.Verify(envelope, keys, demo.Federation)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(good); v.Round.SafetensorsSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("manifest names safetensors %q, the exported file has sha256 %x", v.Round.SafetensorsSHA256, sum)
	}
	if code, out, errOut := runCLI("model", "verify", "--model", model, "--manifest", env, "--key", key); code != 0 || !strings.Contains(out, "verified: ") {
		t.Fatalf("model verify: exit %d: %s%s", code, out, errOut)
	}

	changed := filepath.Join(t.TempDir(), filepath.Base(model))
	b := bytes.Clone(good)
	b[len(b)-1] ^= 0x01 // the last parameter's lowest mantissa bit
	if err := os.WriteFile(changed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// cosign, offline, against cosign.pub alone.
	args := []string{"verify-blob-attestation", "--key", filepath.Join(data, manifest.CosignPublicFile), "--insecure-ignore-tlog",
		"--type", manifest.PredicateType, "--signature", env}
	if out, err := cosign(t, append(args, model)...); err != nil || !strings.Contains(out, "Verified OK") {
		t.Errorf("cosign verify-blob-attestation of the exported model: %v\n%s", err, out)
	}
	if out, err := cosign(t, append(args, changed)...); err == nil || strings.Contains(out, "Verified OK") {
		t.Errorf("cosign verify-blob-attestation accepted the model with one byte changed:\n%s", out)
	}
	if code, _, errOut := runCLI("model", "verify", "--model", changed, "--manifest", env, "--key", key); code == 0 || !strings.Contains(errOut, "not the manifest's safetensors subject") {
		t.Errorf("model verify of the changed file: exit %d: %s", code, errOut)
	}

	// Every one-byte change of the file is refused.
	refusesEveryByteChange(t, good, envelope, keys, 0x20)
}

// TestModelVerifyLatest: with -audit-log, `model verify` accepts the last
// round's model and refuses an older round's, which verifies on its own.
func TestModelVerifyLatest(t *testing.T) {
	dir := runDemoFed(t)
	data := filepath.Join(dir, "coordinator", "data")
	key := filepath.Join(data, manifest.PublicFile)
	lines := exportLines(t, dir)
	export := writeTemp(t, "audit.jsonl", strings.Join(lines, "\n")+"\n")

	last := exportRound(t, dir, -1)
	code, out, errOut := runCLI("model", "verify", "--model", last, "--manifest", last+".manifest.json", "--key", key, "--audit-log", export)
	if code != 0 || !strings.Contains(out, "latest: round 3 is the last round") {
		t.Fatalf("model verify -audit-log of the last round: exit %d: %s%s", code, out, errOut)
	}
	older := exportRound(t, dir, 2)
	if code, _, errOut := runCLI("model", "verify", "--model", older, "--manifest", older+".manifest.json", "--key", key); code != 0 {
		t.Fatalf("model verify of round 2 without -audit-log: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI("model", "verify", "--model", older, "--manifest", older+".manifest.json", "--key", key, "--audit-log", export)
	if code == 0 || !strings.Contains(errOut, "not the latest model: it is the model of round 2") || !strings.Contains(errOut, "covers the manifest of round 3") {
		t.Errorf("model verify -audit-log of round 2: exit %d: %s", code, errOut)
	}
	// An audit log that does not verify under the key is refused.
	tampered := writeTemp(t, "tampered.jsonl", strings.Replace(strings.Join(lines, "\n")+"\n", `"round":1`, `"round":7`, 1))
	if code, _, errOut := runCLI("model", "verify", "--model", last, "--manifest", last+".manifest.json", "--key", key, "--audit-log", tampered); code == 0 {
		t.Errorf("model verify with a tampered audit log: exit 0: %s", errOut)
	}
}

// TestPredictWDBC (issue 14): `fedguard predict` scores the shipped WDBC
// data with the demo federation's exported model and scaling, after
// verifying the model against its manifest, and the predictions are good;
// columns that are not the model's features are a clear error, and so is
// a scaling other than the federation's.
func TestPredictWDBC(t *testing.T) {
	dir := runDemoFed(t)
	key := filepath.Join(dir, "coordinator", "data", manifest.PublicFile)
	model := exportRound(t, dir, -1)
	dataPath := writeTemp(t, "wdbc.csv", string(wdbc.CSV))
	outPath := filepath.Join(t.TempDir(), "predictions.csv")

	code, _, errOut := runCLI("predict", "--model", model, "--data", dataPath, "--id", wdbc.IDColumn,
		"--manifest", model+".manifest.json", "--key", key, "--out", outPath)
	if code != 0 {
		t.Fatalf("predict: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "scored 569 rows with the model of round 3 (verified against its signed manifest)") {
		t.Errorf("predict summary = %q", errOut)
	}
	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 570 || strings.Join(rows[0], ",") != "id,class,probability" {
		t.Fatalf("predictions: %d lines, header %v; want 570 and id,class,probability", len(rows), rows[0])
	}
	truth, err := csv.NewReader(bytes.NewReader(wdbc.CSV)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	labelCol := len(truth[0]) - 1
	correct := 0
	for i, r := range rows[1:] {
		p, err := strconv.ParseFloat(r[2], 64)
		if r[0] != truth[i+1][0] || (r[1] != "B" && r[1] != "M") || err != nil || p < 0.5 || p > 1 {
			t.Fatalf("prediction %d = %v, want id %s, class B or M, probability in [0.5, 1]", i+1, r, truth[i+1][0])
		}
		if r[1] == truth[i+1][labelCol] {
			correct++
		}
	}
	acc := float64(correct) / 569
	if acc < 0.9 {
		t.Errorf("accuracy of the predictions on WDBC = %.3f, want ≥ 0.9", acc)
	}
	t.Logf("predict on the shipped WDBC data (569 rows), 3-round demo model: accuracy %.4f", acc)
	if !strings.Contains(errOut, "accuracy on the 569 rows with a \"diagnosis\" label: ") {
		t.Errorf("predict does not report the accuracy against the label column: %q", errOut)
	}

	// Without a manifest: checked against its own metadata, same output.
	code, stdout, errOut := runCLI("predict", "--model", model, "--data", dataPath, "--id", wdbc.IDColumn)
	if code != 0 || !strings.Contains(errOut, "not verified (no -manifest)") {
		t.Fatalf("predict without -manifest: exit %d: %s", code, errOut)
	}
	want, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Errorf("predict without -manifest printed other predictions")
	}

	// Columns other than the model's features.
	for _, tc := range []struct {
		name, csv, id, want string
	}{
		{"an id column not named", string(wdbc.CSV), "", `columns "id" are not features of the model (name an identifier column with -id)`},
		{"a feature missing", dropColumn(t, wdbc.CSV, "mean_radius"), wdbc.IDColumn, `missing feature columns "mean_radius"`},
		{"an extra column", addColumn(t, wdbc.CSV, "age"), wdbc.IDColumn, `columns "age" are not features of the model`},
		{"no such id column", string(wdbc.CSV), "patient", `no -id column "patient"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTemp(t, "new.csv", tc.csv)
			code, _, errOut := runCLI("predict", "--model", model, "--data", p, "--id", tc.id)
			if code != 1 || !strings.Contains(errOut, "the data file's columns do not match the model") || !strings.Contains(errOut, tc.want) {
				t.Errorf("predict: exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
		})
	}

	// Another scaling than the federation's.
	sc, err := os.ReadFile(scalingPath(model))
	if err != nil {
		t.Fatal(err)
	}
	other := writeTemp(t, "other.scaling.json", strings.Replace(string(sc), `"mean": [`+"\n    ", `"mean": [`+"\n    1", 1))
	code, _, errOut = runCLI("predict", "--model", model, "--data", dataPath, "--id", wdbc.IDColumn, "--scaling", other)
	if code != 1 || !strings.Contains(errOut, "it is not the scaling the model was trained with") {
		t.Errorf("predict with another scaling: exit %d: %s", code, errOut)
	}
}

// dropColumn returns the CSV b without column name.
func dropColumn(t *testing.T, b []byte, name string) string {
	t.Helper()
	return editCSV(t, b, func(row []string, header []string) []string {
		for i, h := range header {
			if h == name {
				return append(append([]string{}, row[:i]...), row[i+1:]...)
			}
		}
		t.Fatalf("no column %q", name)
		return nil
	})
}

// addColumn returns the CSV b with a column name of zeros.
func addColumn(t *testing.T, b []byte, name string) string {
	t.Helper()
	first := true
	return editCSV(t, b, func(row []string, _ []string) []string {
		v := "0"
		if first {
			v, first = name, false
		}
		return append(append([]string{}, row...), v)
	})
}

func editCSV(t *testing.T, b []byte, edit func(row, header []string) []string) string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	for _, r := range rows {
		if err := w.Write(edit(r, rows[0])); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	return out.String()
}
