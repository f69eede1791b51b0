// Package integration holds fedguard's end-to-end tests: they run the real
// fedguard binary (built once by TestMain) or real in-process servers, always
// over mutual TLS on loopback, and check what an operator, a hospital or a
// compliance officer would see.
//
// Slow tests are gated by testing.Short; `make test` runs without -short.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/data/wdbc"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/process"
)

// fedguardBin is the fedguard binary TestMain built.
var fedguardBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "fedguard-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	fedguardBin = filepath.Join(tmp, "fedguard")
	// -buildvcs=auto stamps the commit (fedguard version) even where
	// GOFLAGS turns stamping off, and builds a tree without git too.
	cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", fedguardBin, "./cmd/fedguard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go build ./cmd/fedguard: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory holding go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD = %q: not in a module", gomod)
	}
	return filepath.Dir(gomod), nil
}

// runFedguard runs the binary to completion and returns stdout and stderr.
func runFedguard(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fedguardBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("fedguard %s: timed out after %v (%w)", strings.Join(args, " "), timeout, err)
	}
	return o.String(), e.String(), err
}

// mustFedguard is runFedguard that fails the test on a non-zero exit.
func mustFedguard(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runFedguard(t, 30*time.Second, args...)
	if err != nil {
		t.Fatalf("fedguard %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// wdbcFeatures are the feature columns of the shipped WDBC CSV.
func wdbcFeatures(t *testing.T) []string {
	t.Helper()
	header, _, _ := bytes.Cut(wdbc.CSV, []byte("\n"))
	var fs []string
	for _, c := range strings.Split(strings.TrimSpace(string(header)), ",") {
		if c != wdbc.IDColumn && c != wdbc.Label {
			fs = append(fs, c)
		}
	}
	if len(fs) != 30 {
		t.Fatalf("WDBC header has %d feature columns, want 30", len(fs))
	}
	return fs
}

// writeWDBCShare writes the header and every n-th data row of WDBC starting
// at row off (the id column is kept; callers ignore it).
func writeWDBCShare(t *testing.T, path string, off, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(wdbc.CSV)), "\n")
	var b strings.Builder
	b.WriteString(lines[0] + "\n")
	for i := 1 + off; i < len(lines); i += n {
		b.WriteString(lines[i] + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fedConfig is a coordinator configuration over files laid out by
// fedtest (or demo.Setup) in dir, with the short timeouts the tests want.
func fedConfig(t *testing.T, dir, federation string, enrolled []string, min, rounds int) coordinator.Config {
	cfg := (&fedtest.Federation{Dir: dir, Name: federation}).Config(enrolled)
	cfg.MinParticipants = min
	cfg.Model = coordinator.ModelConfig{Kind: "logreg", Features: wdbcFeatures(t), Label: wdbc.Label, Classes: wdbc.Classes()}
	cfg.Training = coordinator.TrainingConfig{Rounds: rounds, LocalEpochs: 1, LearningRate: 0.1, BatchSize: 16, L2: 1e-3}
	cfg.Aggregation = aggregation.Config{Rule: "fedavg"}
	cfg.CohortTimeout = coordinator.Duration(time.Second)
	cfg.RoundTimeout = coordinator.Duration(3 * time.Second)
	cfg.StatsTimeout = coordinator.Duration(2 * time.Second)
	cfg.LongPoll = coordinator.Duration(2 * time.Second)
	return cfg
}

// demoFederation lays out the demo's federation (demo.Setup, seed 1: its
// certificates and the hospitals' shares of WDBC) in a fresh directory and
// returns the directory, the federation and its hospitals' names.
func demoFederation(t *testing.T) (string, *demo.Fed, []string) {
	t.Helper()
	dir := t.TempDir()
	fed, err := demo.Setup(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	hospitals := make([]string, len(fed.Hospitals))
	for i, h := range fed.Hospitals {
		hospitals[i] = h.Name
	}
	return dir, fed, hospitals
}

// writeConfig writes cfg as JSON and returns its path.
func writeConfig(t *testing.T, dir string, cfg coordinator.Config) string {
	t.Helper()
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("coordinator-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := coordinator.LoadConfig(path); err != nil {
		t.Fatalf("the config the test wrote does not load: %v", err)
	}
	return path
}

// coordProc is a coordinator child process owned by a test.
type coordProc struct {
	*process.Coordinator
	t      *testing.T
	logBuf *fedtest.LogBuffer
}

// startCoordinator starts `fedguard coordinator --config cfgPath --init`
// (--init: a new data directory becomes a new federation, an existing one
// is resumed); the process is killed (if still running) and reaped when
// the test ends.
func startCoordinator(t *testing.T, cfgPath string, extra ...string) *coordProc {
	t.Helper()
	return startCoordinatorArgs(t, cfgPath, append([]string{"--init"}, extra...)...)
}

// startCoordinatorArgs starts `fedguard coordinator --config cfgPath
// args...`, without --init unless args has it.
func startCoordinatorArgs(t *testing.T, cfgPath string, extra ...string) *coordProc {
	t.Helper()
	buf := &fedtest.LogBuffer{}
	p, err := process.StartCoordinator(context.Background(), fedguardBin, cfgPath, buf, extra...)
	if err != nil {
		t.Fatalf("start coordinator: %v\nlog:\n%s", err, buf.String())
	}
	cp := &coordProc{Coordinator: p, t: t, logBuf: buf}
	t.Cleanup(func() {
		killUnlessDone(p)
		if t.Failed() {
			t.Logf("coordinator log (%s):\n%s", p.Addr, buf.String())
		}
	})
	return cp
}

// killUnlessDone SIGKILLs p unless it has exited, and waits for it.
func killUnlessDone(p *process.Coordinator) {
	select {
	case <-p.Done():
	default:
		_ = p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
}

// waitLog waits until the coordinator logged a record matching match.
func (c *coordProc) waitLog(what string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range c.Logs() {
			if match(r) {
				return r
			}
		}
		select {
		case <-c.Done():
			c.t.Fatalf("coordinator exited (%v) before logging %s", c.Wait(), what)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("coordinator did not log %s within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for the coordinator to exit and returns its exit error.
func (c *coordProc) waitExit(timeout time.Duration) error {
	c.t.Helper()
	select {
	case <-c.Done():
		return c.Wait()
	case <-time.After(timeout):
		c.t.Fatalf("coordinator still running after %v", timeout)
		return nil
	}
}

// msgRound matches a log record with the given msg and round.
func msgRound(msg string, round float64) func(map[string]any) bool {
	return func(r map[string]any) bool {
		v, _ := r["round"].(float64)
		return r["msg"] == msg && v == round
	}
}

// participantProc is a `fedguard participant run` child process.
type participantProc struct {
	name string
	cmd  *exec.Cmd
	out  *fedtest.LogBuffer
	done chan struct{}
	err  error
}

// startParticipant runs `fedguard participant run args...`; it is killed
// and reaped when the test ends.
func startParticipant(t *testing.T, name string, args ...string) *participantProc {
	t.Helper()
	full := append([]string{"--log-format", "json", "participant", "run"}, args...)
	cmd := exec.Command(fedguardBin, full...)
	p := &participantProc{name: name, cmd: cmd, out: &fedtest.LogBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start participant %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("participant %s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// wait waits for the participant to exit and returns its exit error.
func (p *participantProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("participant %s still running after %v; output:\n%s", p.name, timeout, p.out.String())
		return nil
	}
}

// readRounds opens the coordinator's database (after its process exited)
// and returns the closed rounds' records.
func readRounds(t *testing.T, cfg coordinator.Config) []coordinator.RoundRecord {
	t.Helper()
	c, err := coordinator.New(cfg, coordinator.WithLogger(discardLogger()))
	if err != nil {
		t.Fatalf("reopen coordinator database: %v", err)
	}
	defer c.Close()
	recs, err := c.Rounds()
	if err != nil {
		t.Fatalf("Rounds() = %v", err)
	}
	return recs
}

// finishedRounds waits for c, run with cfg, to exit 0 and returns the
// round records of cfg's data directory, which must be rounds 1 to n.
func (c *coordProc) finishedRounds(t *testing.T, cfg coordinator.Config, n int) []coordinator.RoundRecord {
	t.Helper()
	if err := c.waitExit(30 * time.Second); err != nil {
		t.Fatalf("coordinator exited with %v, want 0", err)
	}
	recs := readRounds(t, cfg)
	checkContiguous(t, recs, n)
	return recs
}

// jsonLines decodes one JSON object per non-empty line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

var _ io.Writer = (*fedtest.LogBuffer)(nil)
