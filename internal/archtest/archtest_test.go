package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/fedguard/fedguard"

// Layers of the module, lowest first. A package may import packages of its
// own layer or a lower one; importing a higher layer is an upward import
// and fails TestImportDirection. The table is the one source of this rule:
// docs/architecture.md describes it, and a new folder must be added here
// (a package not listed takes the layer of its closest listed parent
// folder, and fails the test if there is none).
const (
	// helpers: small, domain-free helpers in internal/.
	helpers = iota
	// foundations: the wire contract, data sets and the basic types.
	foundations
	// algorithms: aggregation, the audit log, manifests, formats.
	algorithms
	// protocol: what the coordinator and the participant share on the wire,
	// and the CA as its operator runs it.
	protocol
	// services: the coordinator, the participant agent, the simulator.
	services
	// assemblies: whole federations in one process (demo, benchmarks, the
	// test harness).
	assemblies
	// cli: the command line (cmd/fedguard/cli).
	cli
	// binaries: the mains under cmd/, and the end-to-end tests.
	binaries
)

var layerNames = []string{"helpers", "foundations", "algorithms", "protocol", "services", "assemblies", "cli", "binaries"}

// layers maps each folder of the module (relative to its root) to its layer.
var layers = map[string]int{
	"internal/boltfile":      helpers,
	"internal/metricsserver": helpers,
	"internal/metricnames":   helpers,
	"internal/process":       helpers,
	"internal/archtest":      helpers,
	"internal/doccheck":      helpers,
	"internal/buildinfo":     helpers,
	"internal/strictjson":    helpers,
	"internal/excerpt":       helpers,
	"internal/chart":         helpers,
	"internal/cputime":       helpers,
	"internal/workers":       helpers,
	// Test support the internal tests of low layers import (certs, audit,
	// coordinator): kept at the bottom so that they never import what
	// imports them.
	"internal/fedtest/endless":   helpers,
	"internal/fedtest/hammer":    helpers,
	"internal/fedtest/golden":    helpers,
	"internal/fedtest/protofuzz": helpers,

	"proto/fedguard/v1": foundations,
	"data/mnist":        foundations,
	"data/wdbc":         foundations,
	"dataset":           foundations,
	"model":             foundations,
	"certs":             foundations,
	"keystore":          foundations,
	"privacy":           foundations,
	"partition":         foundations,
	"examples/pytorch":  foundations,

	"aggregation":        algorithms,
	"aggregation/secagg": algorithms,
	"attack":             algorithms,
	"anomaly":            algorithms,
	"safetensors":        algorithms,
	"validation":         algorithms,
	"manifest":           algorithms,
	"audit":              algorithms,

	"wire":        protocol,
	"witness":     protocol,
	"lineage":     protocol,
	"secureround": protocol,
	"certs/ca":    protocol,

	"coordinator": services,
	"participant": services,
	"simulation":  services,

	"demo":             assemblies,
	"benchmark":        assemblies,
	"internal/fedtest": assemblies,
	"internal/softhsm": assemblies,

	"cmd/fedguard/cli": cli,

	"cmd":         binaries,
	"integration": binaries,
}

// testSupport are packages only tests, and other test-support packages, may
// import: fixtures and harnesses that must not ship in the binary.
var testSupport = []string{"internal/fedtest", "internal/softhsm", "internal/chart/charttest", "coordinator/internal/securetest", "audit/audittest"}

// cliPackage may be imported only from cmd/.
const cliPackage = "cmd/fedguard/cli"

// pkg is what the checks need of `go list -json`.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// layerOf returns the layer of rel (a path relative to the module root):
// its own entry, or that of its closest listed parent folder.
func layerOf(rel string) (int, bool) {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if l, ok := layers[p]; ok {
			return l, true
		}
	}
	return 0, false
}

func rel(importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(importPath, module+"/")
	return r, ok
}

func isTestSupport(r string) bool {
	for _, t := range testSupport {
		if r == t || strings.HasPrefix(r, t+"/") {
			return true
		}
	}
	return false
}

// check returns every violation of the import rules in pkgs, one line each.
func check(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		from, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		fromLayer, ok := layerOf(from)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is in no layer: add its folder to the layer table in internal/archtest", from))
			continue
		}
		for _, imp := range p.Imports {
			to, ok := rel(imp)
			if !ok {
				continue
			}
			if isTestSupport(to) && !isTestSupport(from) {
				bad = append(bad, fmt.Sprintf("%s imports the test-support package %s: only _test files may", from, to))
			}
			if to == cliPackage && !strings.HasPrefix(from, "cmd/") {
				bad = append(bad, fmt.Sprintf("%s imports the CLI %s: only cmd/ may", from, to))
			}
			toLayer, ok := layerOf(to)
			if !ok {
				continue // reported as the importing package's own line
			}
			if toLayer > fromLayer {
				bad = append(bad, fmt.Sprintf("%s (layer %d, %s) imports %s (layer %d, %s): an upward import",
					from, fromLayer, layerNames[fromLayer], to, toLayer, layerNames[toLayer]))
			}
		}
		// Tests may import anything (an external test package sits above
		// its package), except that nothing imports the CLI outside cmd/.
		for _, imp := range slices.Concat(p.TestImports, p.XTestImports) {
			if to, ok := rel(imp); ok && to == cliPackage && !strings.HasPrefix(from, "cmd/") {
				bad = append(bad, fmt.Sprintf("tests of %s import the CLI %s: only cmd/ may (integration tests run the binary)", from, to))
			}
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// goList runs `go list -json` on every package of the module.
func goList(t *testing.T) []pkg {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the import graph: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Error", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			pkg
			Error *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p.pkg)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages of %s; is the test run inside the module?", len(pkgs), module)
	}
	return pkgs
}

// TestImportDirection checks the module's real import graph against the
// layer table: no upward import, the CLI imported only from cmd/, and
// test-support packages imported only by tests.
func TestImportDirection(t *testing.T) {
	pkgs := goList(t)
	for _, line := range check(pkgs) {
		t.Error(line)
	}
	// Every listed folder still exists, so the table does not rot.
	seen := map[string]bool{}
	for _, p := range pkgs {
		if r, ok := rel(p.ImportPath); ok {
			for d := r; d != "." && d != "/"; d = path.Dir(d) {
				seen[d] = true
			}
		}
	}
	for dir := range layers {
		if !seen[dir] && !isTestSupport(dir) {
			t.Errorf("layer table lists %s, which holds no package: remove it", dir)
		}
	}
}

// TestCheck shows that check catches each kind of violation, naming both
// packages, and lets through what the rules allow.
func TestCheck(t *testing.T) {
	m := func(s ...string) []string {
		for i := range s {
			s[i] = module + "/" + s[i]
		}
		return s
	}
	tests := []struct {
		name string
		pkg  pkg
		want string // "" for no violation
	}{
		{"downward", pkg{ImportPath: module + "/coordinator", Imports: m("audit", "wire", "internal/boltfile")}, ""},
		{"same layer", pkg{ImportPath: module + "/attack", Imports: m("aggregation")}, ""},
		{"upward", pkg{ImportPath: module + "/internal/metricsserver", Imports: m("aggregation/secagg")},
			"internal/metricsserver (layer 0, helpers) imports aggregation/secagg (layer 2, algorithms): an upward import"},
		{"library imports the CLI", pkg{ImportPath: module + "/demo", Imports: m("cmd/fedguard/cli")},
			"demo imports the CLI cmd/fedguard/cli: only cmd/ may"},
		{"main imports the CLI", pkg{ImportPath: module + "/cmd/fedguard", Imports: m("cmd/fedguard/cli")}, ""},
		{"test imports the CLI", pkg{ImportPath: module + "/coordinator", XTestImports: m("cmd/fedguard/cli")},
			"tests of coordinator import the CLI cmd/fedguard/cli"},
		{"production imports test support", pkg{ImportPath: module + "/benchmark", Imports: m("internal/fedtest")},
			"benchmark imports the test-support package internal/fedtest: only _test files may"},
		{"test imports test support", pkg{ImportPath: module + "/coordinator", TestImports: m("internal/fedtest"), XTestImports: m("internal/fedtest", "demo")}, ""},
		{"test support imports test support", pkg{ImportPath: module + "/audit/audittest", Imports: m("internal/fedtest/hammer")}, ""},
		{"sub-package inherits its folder's layer", pkg{ImportPath: module + "/audit/report", Imports: m("audit", "coordinator")},
			"audit/report (layer 2, algorithms) imports coordinator (layer 4, services): an upward import"},
		{"unlisted", pkg{ImportPath: module + "/newthing", Imports: m("model")},
			"newthing is in no layer: add its folder to the layer table in internal/archtest"},
		{"outside the module", pkg{ImportPath: "example.com/x", Imports: m("cmd/fedguard/cli")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check([]pkg{tt.pkg})
			switch {
			case tt.want == "" && len(got) != 0:
				t.Errorf("check(%s) = %q, want no violation", tt.pkg.ImportPath, got)
			case tt.want != "" && !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, tt.want) }):
				t.Errorf("check(%s) = %q, want a violation starting %q", tt.pkg.ImportPath, got, tt.want)
			}
		})
	}
}
