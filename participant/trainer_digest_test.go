package participant

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrainerDigest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("train.py", "print('hello')\n")
	write("lib/model.py", "class Net: pass\n")
	write("lib/__pycache__/model.cpython-311.pyc", "bytecode")
	write(".git/HEAD", "ref: refs/heads/main\n")

	// A file: what sha256sum prints.
	got, err := TrainerDigest(filepath.Join(dir, "train.py"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + shell(t, dir, "sha256sum train.py | cut -d' ' -f1"); got != want {
		t.Errorf("TrainerDigest(file) = %s, want %s", got, want)
	}
	// A directory: the documented shell pipeline.
	got, err = TrainerDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	pipeline := `find . -type f -not -path '*/__pycache__/*' -not -path '*/.git/*' | sed 's|^\./||' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1`
	if want := "sha256:" + shell(t, dir, pipeline); got != want {
		t.Errorf("TrainerDigest(dir) = %s, want the documented pipeline's %s", got, want)
	}
	if _, err := ParseTrainerDigest(got); err != nil {
		t.Errorf("ParseTrainerDigest(TrainerDigest) = %v", err)
	}
	// Caches do not count; code does.
	write("lib/__pycache__/other.pyc", "more bytecode")
	if again, _ := TrainerDigest(dir); again != got {
		t.Errorf("a new __pycache__ file changed the digest")
	}
	write("lib/model.py", "class Net: pass # changed\n")
	if again, _ := TrainerDigest(dir); again == got {
		t.Errorf("a changed source file left the digest as it was")
	}
	if _, err := TrainerDigest(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("TrainerDigest(missing) succeeded")
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + strings.Repeat("A", 64), "sha512:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("g", 64), "sha256:" + strings.Repeat("a", 63)} {
		if _, err := ParseTrainerDigest(bad); err == nil {
			t.Errorf("ParseTrainerDigest(%q) succeeded", bad)
		}
	}
}

func shell(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}

func TestExecTrainerApproval(t *testing.T) {
	code := filepath.Join(t.TempDir(), "train.sh")
	noop, err := os.ReadFile("testdata/trainer/noop.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(code, noop, 0o755); err != nil {
		t.Fatal(err)
	}
	digest, err := TrainerDigest(code)
	if err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("0", 64)

	tr := &ExecTrainer{Command: []string{"sh", code}, Code: code, Approved: []string{other}, Dir: filepath.Join(t.TempDir(), "w")}
	if _, err := tr.Prepare(execSpec()); !errors.Is(err, ErrTrainerNotApproved) || !strings.Contains(err.Error(), digest) {
		t.Fatalf("Prepare with unapproved code = %v, want ErrTrainerNotApproved naming %s", err, digest)
	}

	tr.Approved = []string{other, digest}
	if _, err := tr.Prepare(execSpec()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Train(context.Background(), execAssignment(), execStart); err != nil {
		t.Fatalf("Train with approved code = %v", err)
	}
	// The code changes between rounds: the next round is sat out.
	if err := os.WriteFile(code, append(noop, "# changed\n"...), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = tr.Train(context.Background(), execAssignment(), execStart)
	wantTrainerError(t, err, TrainerNotApproved, "")
	if !errors.Is(err, ErrTrainerNotApproved) {
		t.Fatalf("Train after the code changed = %v, want ErrTrainerNotApproved", err)
	}
	// Without Code, the program itself is what is approved.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	shDigest, err := TrainerDigest(sh)
	if err != nil {
		t.Fatal(err)
	}
	tr = &ExecTrainer{Command: []string{"sh", code}, Approved: []string{shDigest}, Dir: filepath.Join(t.TempDir(), "w")}
	if _, err := tr.Prepare(execSpec()); err != nil {
		t.Errorf("Prepare approving the program = %v", err)
	}
}
