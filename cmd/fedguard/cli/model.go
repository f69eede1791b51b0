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

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/model"
	"github.com/fedguard/fedguard/safetensors"
)

// metaManifest is the metadata key, in files exported for manifests from
// before the safetensors subject (no safetensors_sha256), that tied the
// file to its manifest's digest; [legacyMetadata] writes it.
const metaManifest = "fedguard.manifest_sha256"

// exportName is the exported file's name: the manifest's second subject
// name, the subject name with .safetensors for .bin.
func exportName(federation string, round uint64) string {
	return manifest.ModelFileName(federation, round)
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

// exportMetadata is the metadata of the exported model of r, whose
// manifest has digest manifestDigest: manifest.ModelFileMetadata when the
// manifest names the file as a subject (safetensors_sha256), else the
// metadata of files exported before that (legacyMetadata).
func exportMetadata(r manifest.Round, manifestDigest [32]byte) (map[string]string, error) {
	if r.SafetensorsSHA256 != "" {
		return manifest.ModelFileMetadata(r)
	}
	return legacyMetadata(r, manifestDigest), nil
}

// legacyMetadata is the metadata of a model exported for a manifest
// without safetensors_sha256: it names the manifest's digest, so that
// the file cannot pass for another round's.
func legacyMetadata(r manifest.Round, manifestDigest [32]byte) map[string]string {
	return map[string]string{
		"format":                "pt",
		manifest.MetaFederation: r.Federation,
		manifest.MetaRound:      strconv.FormatUint(r.Round, 10),
		manifest.MetaModel:      r.ModelSHA256,
		metaManifest:            hex.EncodeToString(manifestDigest[:]),
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
	outDir := fs.String("out", ".", "directory for FEDERATION-model-round-N.safetensors, its .manifest.json and its .scaling.json")
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
	m, err := exportModel(*dataDir, *round)
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
	meta, err := exportMetadata(v.Round, v.Digest)
	if err != nil {
		return err
	}
	// The file the manifest names as its subject, byte for byte: checked
	// before it is written, so a build that encoded it otherwise writes
	// nothing rather than a file cosign would refuse.
	if want := v.Round.SafetensorsSHA256; want != "" {
		h := sha256.New()
		if err := safetensors.Write(h, layout, params, meta); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("model export: round %d: the safetensors encoding has sha256 %s, the manifest's subject is %s", m.Round, got, want)
		}
	}
	path := filepath.Join(*outDir, exportName(m.Federation, m.Round))
	if err := safetensors.WriteFile(path, layout, params, meta, 0o644); err != nil {
		return err
	}
	if err := certs.WriteFileAtomic(path+".manifest.json", m.Manifest, 0o644); err != nil {
		return err
	}
	wrote := []string{path, path + ".manifest.json"}
	if m.Scaling != nil {
		b, err := marshalScaling(*m.Scaling, v.Round.ScalingSHA256)
		if err != nil {
			return fmt.Errorf("model export: round %d: %w", m.Round, err)
		}
		sp := scalingPath(path)
		if err := certs.WriteFileAtomic(sp, b, 0o644); err != nil {
			return err
		}
		wrote = append(wrote, sp)
	}
	fmt.Fprintf(env.Stdout, "wrote %s (round %d, %d parameters)\n", strings.Join(wrote, ", "), m.Round, len(params))
	if v.Round.SafetensorsSHA256 != "" {
		fmt.Fprintf(env.Stdout, "check it without fedguard:\n  %s\n", cosignCommand(filepath.Join(*dataDir, manifest.CosignPublicFile), path))
	}
	return nil
}

func runModelVerify(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "model verify")
	modelPath := fs.String("model", "", "the model `file` (safetensors), as fedguard model export writes it")
	manifestPath := fs.String("manifest", "", "its signed round manifest (DSSE envelope, at most 4 MiB)")
	key := fs.String("key", "", "the coordinator's signing.pub")
	federation := fs.String("federation", "", "the federation the model must come from (default: any the key signs for)")
	auditLog := fs.String("audit-log", "", "an audit `export` (fedguard audit export) verified with -key: refuse the model unless its manifest is the latest the export's last signed checkpoint covers")
	if err := parseFlags(fs, args, "model", "manifest", "key"); err != nil {
		return err
	}
	keys, err := manifest.LoadPublicKeys(*key)
	if err != nil {
		return err
	}
	envelope, err := readManifest(*manifestPath)
	if err != nil {
		return fmt.Errorf("model verify: %w", err)
	}
	res, err := verifyModel(*modelPath, envelope, keys, *federation)
	if err != nil {
		return fmt.Errorf("model verify: %s: %w", *modelPath, err)
	}
	fmt.Fprintf(env.Stdout, "verified: %s is the model of round %d of federation %q (%d parameters, model sha256 %s, layout sha256 %x)\n",
		*modelPath, res.Round.Round, res.Round.Federation, res.Round.NumParams, res.Round.ModelSHA256, res.Layout)
	if *auditLog != "" {
		latest, err := checkLatest(*auditLog, *key, res)
		if err != nil {
			return fmt.Errorf("model verify: %s: %w", *modelPath, err)
		}
		fmt.Fprintf(env.Stdout, "latest: round %d is the last round the audit log signs (checkpoint of %d events)\n", res.Round.Round, latest.covered)
	}
	return nil
}

// readManifest reads the signed round manifest a command line names. It
// reads at most manifest.MaxEnvelopeSize bytes and refuses a longer file,
// which manifest.Open would refuse anyway: a FIFO or a device behind the
// name (or a huge file) costs no more memory than a real manifest.
func readManifest(path string) ([]byte, error) {
	b, err := strictjson.ReadFile(path, manifest.MaxEnvelopeSize)
	if errors.Is(err, strictjson.ErrTooLarge) {
		return nil, fmt.Errorf("manifest: %w (no signed manifest is larger)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return b, nil
}

// verifiedModel is what verifyModel established.
type verifiedModel struct {
	Round  manifest.Round
	Digest [32]byte // the manifest's
	Layout [32]byte // safetensors.Layout.Digest
	Spec   model.Spec
	Params []float32
}

// errNotCanonical means the model file holds the right values but is not
// byte for byte the file `model export` writes for them.
var errNotCanonical = errors.New("the file is not the canonical encoding of its model (bytes were changed)")

// errNotSubject means the model file is not the file the manifest names as
// its safetensors subject.
var errNotSubject = errors.New("the file is not the manifest's safetensors subject (bytes were changed)")

// verifyModel checks a model file against its manifest: the manifest's
// signatures (and federation, when given); when the manifest names the
// safetensors file as a subject (safetensors_sha256), the file's SHA-256
// against it, which is what cosign checks; the file parses strictly as
// safetensors with exactly the layout of the manifest's model; the
// parameters' wire digest is the manifest's model_sha256; and, for a
// manifest without the subject, the file is byte for byte what `model
// export` writes for them (metadata included). So no byte of it can change
// unnoticed.
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
	if !fi.Mode().IsRegular() {
		return verifiedModel{}, fmt.Errorf("%s is not a regular file", path)
	}
	// No safetensors file of the manifest's model is larger (the header
	// bound, and 8 bytes a value for the widest dtype): refuse a larger
	// one before hashing all of it.
	if limit := 8 + safetensors.MaxHeaderSize + 8*int64(layout.NumParams()); fi.Size() > limit {
		return verifiedModel{}, fmt.Errorf("%s is %d bytes, more than the %d a safetensors file of the manifest's model (%d parameters) can take", path, fi.Size(), limit, layout.NumParams())
	}
	if want := r.SafetensorsSHA256; want != "" {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return verifiedModel{}, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return verifiedModel{}, fmt.Errorf("%w: its sha256 is %s, the manifest of round %d names %s", errNotSubject, got, r.Round, want)
		}
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
	res := verifiedModel{Round: r, Digest: digest, Layout: layout.Digest(), Spec: spec, Params: params}
	if r.SafetensorsSHA256 != "" {
		return res, nil
	}
	// A manifest from before the subject: the canonical encoding, hashed
	// as it is produced, against the file.
	want := sha256.New()
	if err := safetensors.Write(want, layout, params, legacyMetadata(r, digest)); err != nil {
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
	return res, nil
}

// latestRound is what checkLatest established.
type latestRound struct {
	covered uint64 // events the export's last checkpoint signs
}

// errNotLatest means a verified model is not the federation's latest
// according to an audit export.
var errNotLatest = errors.New("not the latest model")

// checkLatest verifies the audit export at path with the coordinator's key
// file keyPath (following its key rotations) and checks that the newest
// manifest_signed event its last signed checkpoint covers is the manifest
// of m: same round, same digest. A model of an older round, or a manifest
// the log does not hold, is refused. Events after the last checkpoint are
// chained but unsigned, so they do not count.
func checkLatest(path, keyPath string, m verifiedModel) (latestRound, error) {
	k, err := loadSigningPub(keyPath, "model verify", "")
	if err != nil {
		return latestRound{}, err
	}
	in, closeIn, err := input(path)
	if err != nil {
		return latestRound{}, err
	}
	defer closeIn()
	type signed struct {
		seq, round uint64
		sha256     string
	}
	var manifests []signed
	sum, err := audit.Verify(in, audit.VerifyOptions{Verifiers: k.Verifiers, Rotate: rotations(k), OnEvent: func(ev audit.Event) error {
		if ev.Kind != audit.KindManifestSigned {
			return nil
		}
		var p audit.ManifestSigned
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			return fmt.Errorf("event %d: manifest_signed payload: %w", ev.Seq, err)
		}
		manifests = append(manifests, signed{seq: ev.Seq, round: ev.Round, sha256: p.SHA256})
		return nil
	}})
	if err != nil {
		return latestRound{}, fmt.Errorf("audit log %s: %w", path, err)
	}
	if cp := m.Round.Checkpoint; cp != nil && cp.Origin != sum.Origin {
		return latestRound{}, fmt.Errorf("audit log %s is the log %q, the model's manifest was signed with log %q", path, sum.Origin, cp.Origin)
	}
	var last *signed
	for i := range manifests {
		if manifests[i].seq < sum.Covered {
			last = &manifests[i]
		}
	}
	want := hex.EncodeToString(m.Digest[:])
	switch {
	case last == nil:
		return latestRound{}, fmt.Errorf("%w: the audit log's last checkpoint (%d events) covers no signed manifest", errNotLatest, sum.Covered)
	case last.round != m.Round.Round:
		return latestRound{}, fmt.Errorf("%w: it is the model of round %d, and the audit log's last checkpoint (%d events) covers the manifest of round %d (event %d)",
			errNotLatest, m.Round.Round, sum.Covered, last.round, last.seq)
	case last.sha256 != want:
		return latestRound{}, fmt.Errorf("%w: the audit log signs manifest %s for round %d, the model's manifest is %s", errNotLatest, last.sha256, last.round, want)
	}
	return latestRound{covered: sum.Covered}, nil
}

// exportModel is coordinator.ExportModel for the commands that read a
// round's model (audit model, model export): they only read, so a copy of
// a running coordinator's directory does as well.
func exportModel(dataDir string, round int64) (coordinator.ExportedModel, error) {
	m, err := coordinator.ExportModel(dataDir, round)
	if errors.Is(err, coordinator.ErrInUse) {
		return m, fmt.Errorf("%w: stop it or export from a copy of the directory", err)
	}
	return m, err
}
