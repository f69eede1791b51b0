package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// Metadata keys of an exported model file. They tie the file to its
// manifest; [verifyModel] requires exactly these.
const (
	metaFederation = "fedguard.federation"
	metaRound      = "fedguard.round"
	metaModel      = "fedguard.model_sha256"
	metaManifest   = "fedguard.manifest_sha256"
)

// exportName is the exported file's name: the manifest's subject name with
// .safetensors for .bin.
func exportName(federation string, round uint64) string {
	return strings.TrimSuffix(manifest.SubjectName(federation, round), ".bin") + ".safetensors"
}

// specOf returns the built-in model the manifest's model_spec describes
// (the coordinator's model configuration object).
func specOf(r manifest.Round) (model.Spec, error) {
	var mc coordinator.ModelConfig
	if err := json.Unmarshal(r.ModelSpec, &mc); err != nil {
		return model.Spec{}, fmt.Errorf("manifest model_spec: %w", err)
	}
	kind, err := model.ParseKind(mc.Kind)
	if err != nil {
		return model.Spec{}, fmt.Errorf("manifest model_spec: %w", err)
	}
	s := model.Spec{Kind: kind, Features: len(mc.Features), Classes: len(mc.Classes), Hidden: mc.Hidden}
	for _, t := range mc.Tensors { // a "tensors" model: its layout, in order
		s.Tensors = append(s.Tensors, model.Tensor{Name: t.Name, Shape: t.Shape})
	}
	if err := s.Validate(); err != nil {
		return model.Spec{}, fmt.Errorf("manifest model_spec: %w", err)
	}
	if uint64(s.NumParams()) != r.NumParams {
		return model.Spec{}, fmt.Errorf("manifest model_spec has %d parameters, num_params says %d", s.NumParams(), r.NumParams)
	}
	return s, nil
}

// exportMetadata is the metadata of the exported model of r.
func exportMetadata(r manifest.Round, manifestDigest [32]byte) map[string]string {
	return map[string]string{
		"format":       "pt",
		metaFederation: r.Federation,
		metaRound:      strconv.FormatUint(r.Round, 10),
		metaModel:      r.ModelSHA256,
		metaManifest:   hex.EncodeToString(manifestDigest[:]),
	}
}

// roundModelFlags declares -data-dir and -round, which name a round's model
// in a stopped coordinator's data directory (coordinator.ExportModel).
func roundModelFlags(fs *flag.FlagSet) (dataDir *string, round *int64) {
	dataDir = fs.String("data-dir", "", "a stopped coordinator's data directory (or a copy of it)")
	round = fs.Int64("round", -1, "round whose model to write (default: the last closed round; 0 is the initial model)")
	return dataDir, round
}

// verifyExported checks an exported round's manifest against the keys of
// ring (see verifyWith), then the model's digest against the manifest.
func verifyExported(m coordinator.ExportedModel, ring manifest.Keyring) (manifest.Verified, error) {
	v, err := verifyWith(ring, m.Manifest, m.Federation)
	if err != nil {
		return manifest.Verified{}, err
	}
	if err := v.CheckModel(sha256.Sum256(m.Model)); err != nil {
		return manifest.Verified{}, err
	}
	return v, nil
}

func runModelExport(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "model export")
	dataDir, round := roundModelFlags(fs)
	outDir := fs.String("out", ".", "directory for FEDERATION-model-round-N.safetensors and its .manifest.json")
	key := fs.String("key", "", "the coordinator's signing.pub (default: signing.pub in -data-dir)")
	if err := parseFlags(fs, args, "data-dir"); err != nil {
		return err
	}
	// Checked first, so that a mistyped -out does not surface as a failed
	// temporary file after the model was read and verified.
	if fi, err := os.Stat(*outDir); err != nil || !fi.IsDir() {
		return usageError("model export: -out %s is not an existing directory", *outDir)
	}
	if *key == "" {
		*key = filepath.Join(*dataDir, "signing.pub")
	}
	keys, err := manifest.LoadPublicKeys(*key)
	if err != nil {
		return err
	}
	m, err := coordinator.ExportModel(*dataDir, *round)
	if err != nil {
		return err
	}
	v, err := verifyExported(m, manifest.Keyring{keys})
	if err != nil {
		return err
	}
	spec, err := specOf(v.Round)
	if err != nil {
		return err
	}
	layout, err := safetensors.SpecLayout(spec)
	if err != nil {
		return err
	}
	params := make([]float32, layout.NumParams())
	if err := model.DecodeInto(params, m.Model); err != nil {
		return fmt.Errorf("model of round %d: %w", m.Round, err)
	}
	path := filepath.Join(*outDir, exportName(m.Federation, m.Round))
	if err := safetensors.WriteFile(path, layout, params, exportMetadata(v.Round, v.Digest), 0o644); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(path+".manifest.json", m.Manifest, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s and %s (round %d, %d parameters)\n", path, path+".manifest.json", m.Round, len(params))
	return nil
}

func runModelVerify(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "model verify")
	modelPath := fs.String("model", "", "the model file (safetensors), as `fedguard model export` writes it")
	manifestPath := fs.String("manifest", "", "its signed round manifest (DSSE envelope)")
	key := fs.String("key", "", "the coordinator's signing.pub")
	federation := fs.String("federation", "", "the federation the model must come from (default: any the key signs for)")
	if err := parseFlags(fs, args, "model", "manifest", "key"); err != nil {
		return err
	}
	keys, err := manifest.LoadPublicKeys(*key)
	if err != nil {
		return err
	}
	envelope, err := os.ReadFile(*manifestPath)
	if err != nil {
		return err
	}
	res, err := verifyModel(*modelPath, envelope, keys, *federation)
	if err != nil {
		return fmt.Errorf("model verify: %s: %w", *modelPath, err)
	}
	fmt.Fprintf(env.Stdout, "verified: %s is the model of round %d of federation %q (%d parameters, model sha256 %s, layout sha256 %x)\n",
		*modelPath, res.Round.Round, res.Round.Federation, res.Round.NumParams, res.Round.ModelSHA256, res.Layout)
	return nil
}

// verifiedModel is what verifyModel established.
type verifiedModel struct {
	Round  manifest.Round
	Layout [32]byte // safetensors.Layout.Digest
}

// errNotCanonical means the model file holds the right values but is not
// byte for byte the file `model export` writes for them.
var errNotCanonical = errors.New("the file is not the canonical encoding of its model (bytes were changed)")

// verifyModel checks a model file against its manifest: the manifest's
// signatures (and federation, when given); the file parses strictly as
// safetensors with exactly the layout of the manifest's model; the
// parameters' wire digest is the manifest's model_sha256; and the file is
// byte for byte what `model export` writes for them (metadata included),
// so that no byte of it can change unnoticed.
func verifyModel(path string, envelope []byte, keys manifest.PublicKeys, federation string) (verifiedModel, error) {
	r, digest, err := manifest.Open(envelope, keys)
	if err != nil {
		return verifiedModel{}, err
	}
	if federation != "" && r.Federation != federation {
		return verifiedModel{}, fmt.Errorf("manifest is for federation %q, want %q", r.Federation, federation)
	}
	spec, err := specOf(r)
	if err != nil {
		return verifiedModel{}, err
	}
	layout, err := safetensors.SpecLayout(spec)
	if err != nil {
		return verifiedModel{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return verifiedModel{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return verifiedModel{}, err
	}
	st, err := safetensors.Open(f, fi.Size())
	if err != nil {
		return verifiedModel{}, err
	}
	params := make([]float32, layout.NumParams())
	if err := st.ReadInto(layout, params); err != nil {
		return verifiedModel{}, err
	}
	v := manifest.Verified{Round: r, Digest: digest}
	if err := v.CheckModel(model.Digest(params)); err != nil {
		return verifiedModel{}, err
	}
	// The canonical encoding, hashed as it is produced, against the file.
	want := sha256.New()
	if err := safetensors.Write(want, layout, params, exportMetadata(r, digest)); err != nil {
		return verifiedModel{}, err
	}
	got := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return verifiedModel{}, err
	}
	if _, err := io.Copy(got, f); err != nil {
		return verifiedModel{}, err
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		return verifiedModel{}, errNotCanonical
	}
	return verifiedModel{Round: r, Layout: layout.Digest()}, nil
}
