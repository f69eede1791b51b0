package cli

import (
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/internal/strictjson"
	"github.com/fedguard/fedguard/witness"
)

// This file holds what `fedguard audit verify --witness FILE…` adds to
// audit verify: the hospitals' witness files (from `fedguard participant
// witness`), each checked against the federation's CA and the
// coordinator's key before the export is checked against them.

// loadWitnesses reads and verifies the witness files at paths; ca is the
// federation CA certificate's path. Each error names the file.
func loadWitnesses(ca string, paths []string, log note.Verifiers) ([]audit.Witnessed, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	if ca == "" {
		return nil, usageError("audit verify: -witness needs -ca, the federation's CA certificate (ca.crt), to check the witnesses' certificates")
	}
	caCert, err := certs.LoadCertificate(ca)
	if err != nil {
		return nil, fmt.Errorf("audit verify: -ca: %w", err)
	}
	var out []audit.Witnessed
	for _, p := range paths {
		data, err := strictjson.ReadFile(p, witness.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("audit verify: witness %s: %w", p, err)
		}
		v, err := witness.Verify(data, witness.VerifyOptions{CA: caCert, Log: log})
		if err != nil {
			return nil, fmt.Errorf("audit verify: witness %s rejected: %w", p, err)
		}
		out = append(out, audit.Witnessed{
			Witness: v.Witness.Name, Origin: v.Checkpoint.Origin, Size: v.Checkpoint.Size, Root: v.Checkpoint.Root,
		})
	}
	return out, nil
}

// describeWitnesses says, for the OK line, which witnesses the export
// extends.
func describeWitnesses(ws []audit.Witnessed) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%s (%d events)", w.Witness, w.Size)
	}
	return strings.Join(parts, ", ")
}
