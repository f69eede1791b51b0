package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Metadata keys of a round's model file (safetensors, see
// [ModelFileMetadata]). They make the file describe itself: which
// federation and round it is, the digest of its parameters in wire format
// (ModelSHA256), the model it is (model_spec, from which a serving system
// learns the features and classes) and the feature scaling it was trained
// with.
const (
	MetaFederation = "fedguard.federation"
	MetaRound      = "fedguard.round"
	MetaModel      = "fedguard.model_sha256"
	MetaModelSpec  = "fedguard.model_spec"
	MetaScaling    = "fedguard.scaling_sha256"
)

// ModelFileName is the file name of a round's model as safetensors, the
// statement's second subject: [SubjectName] with .safetensors for .bin.
func ModelFileName(federation string, round uint64) string {
	return strings.TrimSuffix(SubjectName(federation, round), ".bin") + ".safetensors"
}

// ModelFileMetadata is the safetensors metadata of the model file of r:
// "format": "pt" (what PyTorch's loaders expect) and the Meta* keys, each
// taken from r (model_spec compacted). The file — the tensors of the
// model's layout, F32, in layout order, with this metadata (package
// safetensors writes one canonical encoding) — is what r.SafetensorsSHA256
// digests. It depends only on what r says before that field is set, so
// the coordinator computes the digest when it signs, and `fedguard model
// export` writes the very bytes.
func ModelFileMetadata(r Round) (map[string]string, error) {
	var spec bytes.Buffer
	if err := json.Compact(&spec, r.ModelSpec); err != nil {
		return nil, fmt.Errorf("manifest: model_spec: %w", err)
	}
	return map[string]string{
		"format":       "pt",
		MetaFederation: r.Federation,
		MetaRound:      strconv.FormatUint(r.Round, 10),
		MetaModel:      r.ModelSHA256,
		MetaModelSpec:  spec.String(),
		MetaScaling:    r.ScalingSHA256,
	}, nil
}

// CheckTrainerDigest checks that d is a trainer digest as a federation
// pins it (Round.TrainerDigest) and a hospital approves it: "sha256:" and
// 64 lowercase hex digits.
func CheckTrainerDigest(d string) error {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !isHexDigest(h) {
		return fmt.Errorf("trainer digest %.80q is not sha256: and 64 lowercase hex digits", d)
	}
	return nil
}
