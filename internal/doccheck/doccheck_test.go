package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// testRef matches a test reference in a document: a folder, a colon, and a
// test name, all in one code span, as in `coordinator: TestStatsAttack`.
var testRef = regexp.MustCompile("`([a-z0-9_/]+): (Test[A-Za-z0-9_]+)`")

// controlRow matches a row of the controls table, which starts with its id.
var controlRow = regexp.MustCompile(`^\| C[0-9]+ \| `)

// repoRoot is two folders up from this package.
const repoRoot = "../.."

// TestThreatModelTestsExist fails when docs/threat-model.md names a test that
// no _test.go file in the named folder defines. The threat model's promise is
// that every control is shown by a test; a renamed or deleted test would
// otherwise leave the page claiming evidence that no longer runs.
func TestThreatModelTestsExist(t *testing.T) {
	refs := documentRefs(t, "docs/threat-model.md")
	if len(refs) < 20 {
		t.Fatalf("docs/threat-model.md names %d tests; the page maps every control to a test, so far fewer than expected means the reference format changed", len(refs))
	}
	defined := map[string]map[string]bool{}
	for _, r := range refs {
		if defined[r.dir] == nil {
			defined[r.dir] = testsIn(t, r.dir)
		}
		if !defined[r.dir][r.name] {
			t.Errorf("docs/threat-model.md names `%s: %s`, but no _test.go file in %s defines func %s", r.dir, r.name, r.dir, r.name)
		}
	}
}

// TestThreatModelControlsHaveTests checks the other direction: every row of
// the controls table names at least one test.
func TestThreatModelControlsHaveTests(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs/threat-model.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !controlRow.MatchString(line) {
			continue
		}
		cells := strings.Split(line, "|")
		// The controls table has five cells (id, control, stops, tests) plus
		// the empty ends; the framework table starts with "C1 robust ...".
		if len(cells) != 6 {
			continue
		}
		rows++
		if !testRef.MatchString(cells[4]) {
			t.Errorf("control %s names no test: %q", strings.TrimSpace(cells[1]), strings.TrimSpace(cells[4]))
		}
	}
	if rows == 0 {
		t.Fatal("no control rows found in docs/threat-model.md")
	}
}

type ref struct{ dir, name string }

func documentRefs(t *testing.T, doc string) []ref {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, doc))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ref]bool{}
	var refs []ref
	for _, m := range testRef.FindAllStringSubmatch(string(data), -1) {
		r := ref{m[1], m[2]}
		if !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].dir+refs[i].name < refs[j].dir+refs[j].name })
	return refs
}

// testsIn lists the Test functions the _test.go files of one folder define.
func testsIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Errorf("folder %s has no _test.go files", dir)
	}
	decl := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	names := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllSubmatch(data, -1) {
			names[string(m[1])] = true
		}
	}
	return names
}

// norace matches the Makefile's list of packages that `make test` runs a
// second time without the race detector.
var norace = regexp.MustCompile(`(?m)^NORACE_PKGS :=(.*)$`)

// TestRaceGatedPackagesRunWithoutRace fails when a package's tests shrink
// or skip work under the race detector (they define a raceEnabled
// constant) and `make test`, which runs everything with -race, does not
// also run that package without it. Such tests would otherwise never run
// full-size anywhere: secagg's exhaustive dropout patterns and
// aggregation's big kernel sizes did not, until both were listed.
func TestRaceGatedPackagesRunWithoutRace(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := norace.FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile: no NORACE_PKGS line")
	}
	listed := map[string]bool{}
	for _, pkg := range strings.Fields(string(m[1])) {
		listed[strings.TrimPrefix(pkg, "./")] = true
	}
	gated := map[string]bool{}
	err = filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(src), "\nconst raceEnabled") {
			dir, err := filepath.Rel(repoRoot, filepath.Dir(path))
			if err != nil {
				return err
			}
			gated[filepath.ToSlash(dir)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(gated) == 0 {
		t.Fatal("no package defines raceEnabled in its tests; the search is broken")
	}
	for dir := range gated {
		if !listed[dir] {
			t.Errorf("%s gates tests on raceEnabled but is not in the Makefile's NORACE_PKGS, so `make test` never runs them full-size", dir)
		}
	}
}
