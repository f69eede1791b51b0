package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/manifest"
)

// redactDigests replaces each distinct 64- or 12-digit hex digest of s by a
// stable label in order of first appearance, so that a golden file can pin
// a federation's output whose keys (and so salt and models) are new each
// run. Abbreviations get the label of their full digest.
func redactDigests(s string) string {
	labels := map[string]string{}
	n := 0
	full := regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	for _, d := range full.FindAllString(s, -1) {
		if _, ok := labels[d]; !ok {
			n++
			labels[d] = fmt.Sprintf("<digest %d>", n)
			labels[d[:12]] = fmt.Sprintf("<%-10d>", n) // as wide as an abbreviation
		}
	}
	return regexp.MustCompile(`\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b`).ReplaceAllStringFunc(s, func(d string) string {
		if l, ok := labels[d]; ok {
			return l
		}
		return "<unknown>"
	})
}

// TestAuditLineageDemo prints the lineage of the demo federation's final
// model: every hospital's data version in every round, unchanged.
func TestAuditLineageDemo(t *testing.T) {
	dir := runDemoFed(t)
	data := filepath.Join(dir, "coordinator", "data")
	db := filepath.Join(data, coordinator.AuditFile)
	key := filepath.Join(data, manifest.PublicFile)
	code, table, errOut := runCLI("audit", "lineage", "-db", db, "-key", key)
	if code != 0 {
		t.Fatalf("audit lineage: exit %d: %s", code, errOut)
	}
	code, js, errOut := runCLI("audit", "lineage", "-db", db, "-key", key, "-json")
	if code != 0 {
		t.Fatalf("audit lineage -json: exit %d: %s", code, errOut)
	}
	golden.Check(t, filepath.Join("testdata", "lineage-demo.golden"), []byte(redactDigests(table+"\n"+js)))
	// The same from an export, which is verified as it is read.
	lines := exportLines(t, dir)
	export := writeTemp(t, "audit.jsonl", strings.Join(lines, "\n")+"\n")
	if code, fromExport, errOut := runCLI("audit", "lineage", "-key", key, export); code != 0 || fromExport != table {
		t.Fatalf("audit lineage EXPORT = exit %d, %q, %s; want the table from -db:\n%s", code, fromExport, errOut, table)
	}
	// An export whose data version was rewritten does not verify.
	tampered := slices.Clone(lines)
	for i, l := range lines {
		if j := strings.Index(l, `"data_sha256":"`); j >= 0 && strings.Contains(l, `"kind":"update_received"`) {
			j += len(`"data_sha256":"`)
			flip := byte('0')
			if l[j] == '0' {
				flip = '1'
			}
			tampered[i] = l[:j] + string(flip) + l[j+1:]
			break
		}
	}
	if slices.Equal(tampered, lines) {
		t.Fatal("no data version to rewrite in the export")
	}
	bad := writeTemp(t, "tampered.jsonl", strings.Join(tampered, "\n")+"\n")
	if code, _, errOut := runCLI("audit", "lineage", "-key", key, bad); code != 1 || !strings.Contains(errOut, "hash does not match") {
		t.Fatalf("audit lineage on a tampered export = exit %d, %s; want exit 1, hash does not match", code, errOut)
	}
	if code, _, errOut := runCLI("audit", "lineage", "-key", key, "-db", db, export); code != 2 {
		t.Fatalf("audit lineage with -db and an export = exit %d, %s; want 2", code, errOut)
	}
	// Round 2's model: the trace stops there.
	code, r2, errOut := runCLI("audit", "lineage", "-db", db, "-key", key, "-round", "2")
	if code != 0 || strings.Contains(r2, "\n3 ") || !strings.Contains(r2, "lineage of the model of round 2") {
		t.Fatalf("audit lineage -round 2 = exit %d, %q, %s", code, r2, errOut)
	}
	// Without the coordinator's key nothing is read.
	if code, _, errOut := runCLI("audit", "lineage", "-db", db); code != 2 || !strings.Contains(errOut, "-key is required") {
		t.Fatalf("audit lineage without -key = exit %d, %s", code, errOut)
	}
}

// hospitalConfig writes the participant configuration of the demo's
// hospital name in dir, as its agent ran (holdout 0.2, seed 1).
func hospitalConfig(t *testing.T, dir, name string) string {
	t.Helper()
	h := filepath.Join(dir, name)
	cfg := map[string]any{
		"coordinator": "127.0.0.1:7070", "federation": demo.Federation,
		"ca": filepath.Join(dir, "ca", "ca.crt"), "cert": filepath.Join(h, name+".crt"), "key": filepath.Join(h, name+".key"),
		"coordinator_key": filepath.Join(dir, "coordinator", "data", manifest.PublicFile),
		"data":            filepath.Join(h, "data.csv"), "holdout": 0.2, "seed": 1,
	}
	return writeJSON(t, t.TempDir(), name+".json", cfg)
}

// TestParticipantLineageCheck: a hospital confirms that the final model's
// manifest records its data version, and the check fails once its data
// differ.
func TestParticipantLineageCheck(t *testing.T) {
	src := runDemoFed(t)
	// A copy, since this test changes a hospital's data.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if code, _, errOut := runCLI("audit", "model", "-data-dir", filepath.Join(dir, "coordinator", "data"), "-out", out); code != 0 {
		t.Fatalf("audit model: exit %d: %s", code, errOut)
	}
	man := filepath.Join(out, manifest.SubjectName(demo.Federation, 3)+".manifest.json")
	cfg := hospitalConfig(t, dir, "hospital-b")
	code, stdout, errOut := runCLI("participant", "lineage", "-config", cfg, "-manifest", man, "-check")
	if code != 0 || !strings.HasPrefix(stdout, "OK: the manifest of round 3 records hospital-b's data version ") {
		t.Fatalf("participant lineage -check = exit %d, %q, %s", code, stdout, errOut)
	}

	// One row dropped: another file and other rows.
	data := filepath.Join(dir, "hospital-b", "data.csv")
	dropLastRow(t, data)
	code, _, errOut = runCLI("participant", "lineage", "-config", cfg, "-manifest", man, "-check")
	if code != 1 || !strings.Contains(errOut, "FAILED: the manifest of round 3 records hospital-b's data version") {
		t.Fatalf("participant lineage -check on changed data = exit %d, %s; want exit 1, FAILED", code, errOut)
	}
}

// dropLastRow removes the last row of a CSV file.
func dropLastRow(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if err := os.WriteFile(path, []byte(strings.TrimSuffix(strings.Join(lines[:len(lines)-1], ""), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAuditLineageShowsChange runs a federation in which hospital-a is
// restarted with changed data after round 1: the lineage shows its data
// version change, and the other hospitals' stay the same.
func TestAuditLineageShowsChange(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation")
	}
	dir := t.TempDir()
	hs, err := demo.HospitalSplit(3)
	if err != nil {
		t.Fatal(err)
	}
	fed, err := demo.SetupHospitals(dir, 1, hs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fed.CoordinatorConfig(demo.Options{Rounds: 5, Seed: 1})
	cfg.RoundTimeout = coordinator.Duration(10 * time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	closed := make(chan uint64, 64)
	coord, err := coordinator.New(cfg, coordinator.WithInit(), coordinator.WithLogger(log),
		coordinator.WithObserver(func(r coordinator.RoundResult) {
			select {
			case closed <- r.Record.Round:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); serveErr <- coord.Serve(ctx, lis) }()
	start := func(name string) func() {
		actx, acancel := context.WithCancel(ctx)
		agent, err := fed.Agent(name, lis.Addr().String(), coord.PublicKeys(), log, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = agent.Run(actx) }()
		return func() { acancel(); <-done }
	}
	stopA := start("hospital-a")
	stopB, stopC := start("hospital-b"), start("hospital-c")
	for r := uint64(0); r < 1; {
		select {
		case r = <-closed:
		case <-ctx.Done():
			t.Fatal("round 1 did not close")
		}
	}
	stopA()
	dropLastRow(t, filepath.Join(dir, "hospital-a", "data.csv"))
	stopA = start("hospital-a")
	select {
	case err := <-serveErr:
		if err != nil {
			t.Fatalf("coordinator: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the federation did not finish")
	}
	stopA()
	stopB()
	stopC()
	wg.Wait()
	coord.Close()

	var got struct {
		Lineage []struct {
			Round     uint64
			Hospitals []struct{ Name, Change string }
		}
	}
	js := lineageJSON(t, cfg.DataDir, &got)
	changes := map[string][]string{}
	for _, mv := range got.Lineage {
		for _, h := range mv.Hospitals {
			changes[h.Name] = append(changes[h.Name], fmt.Sprintf("%d:%s", mv.Round, h.Change))
		}
	}
	a := strings.Join(changes["hospital-a"], " ")
	if !strings.HasPrefix(a, "1:first") || strings.Count(a, ":changed") != 1 {
		t.Errorf("hospital-a's lineage is %q, want first in round 1 and exactly one change later\n%s", a, js)
	}
	for _, h := range []string{"hospital-b", "hospital-c"} {
		if s := strings.Join(changes[h], " "); strings.Contains(s, "changed") || !strings.Contains(s, "first") {
			t.Errorf("%s's lineage is %q, want first, then the same", h, s)
		}
	}
}

// lineageJSON runs `fedguard audit lineage -json` on the audit log of a
// coordinator's data directory, checked with its signing.pub, decodes the
// output into v and returns it.
func lineageJSON(t *testing.T, dataDir string, v any) string {
	t.Helper()
	code, js, errOut := runCLI("audit", "lineage", "-db", filepath.Join(dataDir, coordinator.AuditFile), "-key", filepath.Join(dataDir, manifest.PublicFile), "-json")
	if code != 0 {
		t.Fatalf("audit lineage: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(js), v); err != nil {
		t.Fatalf("audit lineage -json: %v\n%s", err, js)
	}
	return js
}

// TestAuditLineageSecure: a secure federation's lineage lists every
// hospital's data version in every round, as a plain one's does, and each
// secure_session event records its survivors' data versions. Before the
// data version rode on the masked input, every secure contribution was
// "not reported".
func TestAuditLineageSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := demo.Run(ctx, demo.Options{
		Dir: dir, Rounds: 2, Hospitals: 4, Seed: 1, Secure: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, io.Discard); err != nil {
		t.Fatalf("secure demo: %v", err)
	}
	var got struct {
		Lineage []struct {
			Round     uint64
			Hospitals []struct {
				Name       string
				DataSHA256 string `json:"data_sha256"`
				Change     string
			}
		}
	}
	js := lineageJSON(t, filepath.Join(dir, "coordinator", "data"), &got)
	if len(got.Lineage) != 2 {
		t.Fatalf("lineage of %d rounds, want 2:\n%s", len(got.Lineage), js)
	}
	versions := map[string]string{}
	for _, mv := range got.Lineage {
		if len(mv.Hospitals) != 4 {
			t.Errorf("round %d: %d hospitals, want 4", mv.Round, len(mv.Hospitals))
		}
		for _, h := range mv.Hospitals {
			want := map[uint64]string{1: "first", 2: "same"}[mv.Round]
			if h.Change != want || len(h.DataSHA256) != 64 {
				t.Errorf("round %d, %s: data version %q, change %q; want one, %q", mv.Round, h.Name, h.DataSHA256, h.Change, want)
			}
			versions[h.Name] = h.DataSHA256
		}
	}
	// The audit log's secure_session events carry the same versions.
	sessions := 0
	for _, l := range exportLines(t, dir) {
		var e struct {
			Kind    string `json:"kind"`
			Payload struct {
				Survivors  []string          `json:"survivors"`
				DataSHA256 map[string]string `json:"data_sha256"`
			} `json:"payload"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Kind != "secure_session" {
			continue
		}
		sessions++
		for _, s := range e.Payload.Survivors {
			if e.Payload.DataSHA256[s] != versions[s] {
				t.Errorf("secure_session records %s's data version %q, the manifest %q", s, e.Payload.DataSHA256[s], versions[s])
			}
		}
	}
	if sessions == 0 {
		t.Error("no secure_session event in the export")
	}
}
