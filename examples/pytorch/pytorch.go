// Package pytorch ships the PyTorch example trainer (train.py and its
// numpy safetensors helper, safetensors_np.py) inside the fedguard binary,
// so that `fedguard demo --trainer pytorch` can lay it out for its
// hospitals, approve it by digest and run it through the exec contract
// (docs/trainer.md) without a checkout of the repository.
package pytorch

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files are the trainer's files, as in this directory.
//
//go:embed train.py safetensors_np.py
var Files embed.FS

// Script is the file the trainer command runs.
const Script = "train.py"

// Write copies Files into dir (created 0700), each file 0600, so that dir
// holds exactly the trainer's code: the directory a hospital approves by
// its digest (participant.TrainerDigest).
func Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pytorch: %w", err)
	}
	return fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := Files.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o600); err != nil {
			return fmt.Errorf("pytorch: %w", err)
		}
		return nil
	})
}
