package participant

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/dirhash"
)

// digestSkip are directory names a trainer digest leaves out: caches an
// interpreter writes beside the code (so the first run does not change
// the digest) and version-control metadata.
var digestSkip = []string{"__pycache__", ".git"}

// TrainerDigest returns the digest ("sha256:" and 64 hex digits) of a
// trainer's code at path, the value a hospital approves (ExecTrainer.Approved,
// --approve-trainer). For a file it is the SHA-256 of its bytes, what
// `sha256sum FILE` prints. For a directory it is the SHA-256 of the lines
// "<sha256 hex>  <relative path>\n" of its regular files sorted by path
// (golang.org/x/mod's dirhash Hash1, hex-encoded), skipping directories
// named __pycache__ or .git; in a shell:
//
//	cd DIR && find . -type f -not -path '*/__pycache__/*' -not -path '*/.git/*' |
//	    sed 's|^\./||' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum
func TrainerDigest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("participant: trainer digest: %w", err)
	}
	var files []string
	dir := path
	if fi.IsDir() {
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != path && slices.Contains(digestSkip, d.Name()) {
					return filepath.SkipDir
				}
				return nil
			}
			rel, err := filepath.Rel(path, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("participant: trainer digest: %w", err)
		}
	} else {
		files, dir = []string{filepath.Base(path)}, filepath.Dir(path)
	}
	open := func(name string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, filepath.FromSlash(name))) }
	if !fi.IsDir() {
		f, err := open(files[0])
		if err != nil {
			return "", fmt.Errorf("participant: trainer digest: %w", err)
		}
		defer f.Close()
		return sha256Reader(f)
	}
	h1, err := dirhash.Hash1(files, open)
	if err != nil {
		return "", fmt.Errorf("participant: trainer digest: %w", err)
	}
	sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h1, "h1:"))
	if err != nil {
		return "", fmt.Errorf("participant: trainer digest: %w", err)
	}
	return "sha256:" + hex.EncodeToString(sum), nil
}

// ParseTrainerDigest checks that s is "sha256:" and 64 lowercase hex
// digits, and returns it.
func ParseTrainerDigest(s string) (string, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return "", fmt.Errorf("participant: trainer digest %q is not sha256: and 64 lowercase hex digits", s)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("participant: trainer digest %q is not sha256: and 64 lowercase hex digits", s)
	}
	return s, nil
}

func sha256Reader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("participant: trainer digest: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
