package cli

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

func testEnv() *Env {
	return &Env{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}
}

// parseRunCase runs parseParticipantRun on args. With wantErr, it checks
// that the error contains it and is a usage error exactly when wantUsage,
// and returns false; else it fails on any error.
func parseRunCase(t *testing.T, args []string, wantErr string, wantUsage bool) (participantRun, bool) {
	t.Helper()
	r, err := parseParticipantRun(testEnv(), args)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("parseParticipantRun(%q) = %v, want an error containing %q", args, err, wantErr)
		}
		if got := errors.Is(err, errUsage); got != wantUsage {
			t.Errorf("parseParticipantRun(%q) = %v: usage error %v, want %v", args, err, got, wantUsage)
		}
		return participantRun{}, false
	}
	if err != nil {
		t.Fatalf("parseParticipantRun(%q) = %v", args, err)
	}
	return r, true
}

// writeJSON writes v (a value, or raw JSON as a string) to dir/name.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, ok := v.(string)
	if !ok {
		raw, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b = string(raw)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(b), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readJSON reads the JSON object in the file at path, for a test to edit
// and write again with writeJSON.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func TestParticipantRunConfig(t *testing.T) {
	dir := t.TempDir()
	file := map[string]any{
		"coordinator": "coord.example:7443", "federation": "clinic-net", "ca": "ca.crt", "cert": "st-mary.crt",
		"key": "/keys/st-mary.key", "coordinator_key": "signing.pub", "data": "data.csv", "ignore": []string{"id"},
		"seed": 7, "require_secure": true, "expect": "e.json", "validation": "enforce",
	}
	cfgPath := writeJSON(t, dir, "participant.json", file)
	fromFile := participant.FileConfig{
		Coordinator: "coord.example:7443", Federation: "clinic-net", CA: filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, "st-mary.crt"), Key: "/keys/st-mary.key", CoordinatorKey: filepath.Join(dir, "signing.pub"),
		Data: filepath.Join(dir, "data.csv"), Ignore: []string{"id"}, Holdout: participant.DefaultHoldout, Seed: 7,
		RequireSecure: true, Expect: filepath.Join(dir, "e.json"), Validation: "enforce",
	}
	without := func(field string) string {
		m := map[string]any{}
		for k, v := range file {
			if k != field {
				m[k] = v
			}
		}
		return writeJSON(t, dir, "without-"+field+".json", m)
	}
	flagsOnly := []string{"--coordinator", "c:1", "--federation", "f", "--ca", "ca.crt", "--cert", "h.crt",
		"--key", "h.key", "--coordinator-key", "s.pub", "--data", "d.csv"}

	tests := []struct {
		name      string
		args      []string
		want      func(c *participant.FileConfig) // applied to fromFile
		wantErr   string                          // substring
		wantUsage bool                            // the error is a usage error (exit 2)
	}{
		{name: "file alone", args: []string{"--config", cfgPath}, want: func(*participant.FileConfig) {}},
		{name: "flags override the file", args: []string{"--config", cfgPath, "--holdout", "0", "--data", "other.csv", "--coordinator", "10.0.0.1:7443"},
			want: func(c *participant.FileConfig) { c.Holdout, c.Data, c.Coordinator = 0, "other.csv", "10.0.0.1:7443" }},
		{name: "a flag list replaces the file's", args: []string{"--config", cfgPath, "--ignore", "a,b", "--ignore", "c"},
			want: func(c *participant.FileConfig) { c.Ignore = []string{"a", "b", "c"} }},
		{name: "a false flag overrides a true field", args: []string{"--config", cfgPath, "--require-secure=false", "--seed", "1"},
			want: func(c *participant.FileConfig) { c.RequireSecure, c.Seed = false, 1 }},
		{name: "flags complete the file", args: []string{"--config", without("data"), "--data", "d.csv"},
			want: func(c *participant.FileConfig) { c.Data = "d.csv" }, wantErr: ""},
		{name: "flags alone", args: flagsOnly, want: func(c *participant.FileConfig) {
			*c = participant.FileConfig{Coordinator: "c:1", Federation: "f", CA: "ca.crt", Cert: "h.crt", Key: "h.key",
				CoordinatorKey: "s.pub", Data: "d.csv", Holdout: participant.DefaultHoldout, Seed: participant.DefaultSeed}
		}},
		{name: "field missing from the file", args: []string{"--config", without("coordinator_key")},
			wantErr: "without-coordinator_key.json: coordinator_key is required"},
		{name: "flag missing without a file", args: flagsOnly[2:], wantErr: "participant run: -coordinator is required", wantUsage: true},
		{name: "bad flag overrides a good file", args: []string{"--config", cfgPath, "--holdout", "1"},
			wantErr: "participant run: -holdout 1 outside [0, 1)", wantUsage: true},
		{name: "file field refers to a flag", args: []string{"--config", cfgPath, "--expect", ""},
			wantErr: "participant.json: validation needs -expect"},
		{name: "flag fixes a bad file value", args: []string{"--config", writeJSON(t, dir, "warn.json", strings.Replace(mustJSON(t, file), `"enforce"`, `"strict"`, 1)), "--validation", "warn"},
			want: func(c *participant.FileConfig) {
				c.Validation = "warn"
			}},
		{name: "bad file value", args: []string{"--config", writeJSON(t, dir, "strict.json", strings.Replace(mustJSON(t, file), `"enforce"`, `"strict"`, 1))},
			wantErr: `strict.json: validation "strict", want warn or enforce`},
		{name: "unknown field", args: []string{"--config", writeJSON(t, dir, "unknown.json", `{"coordinator":"c:1","holdot":0.1}`)},
			wantErr: `unknown.json: json: unknown field "holdot"`},
		{name: "bad JSON", args: []string{"--config", writeJSON(t, dir, "bad.json", `{"coordinator":`)},
			wantErr: "bad.json: unexpected EOF"},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "nope.json")}, wantErr: "nope.json: no such file"},
		{name: "bad flag", args: []string{"--config", cfgPath, "--seed", "x"}, wantErr: "invalid value", wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := parseRunCase(t, tt.args, tt.wantErr, tt.wantUsage)
			if !ok {
				return
			}
			want := fromFile
			want.Ignore = append([]string(nil), fromFile.Ignore...)
			tt.want(&want)
			if diff := cmp.Diff(want, r.cfg); diff != "" {
				t.Errorf("parseParticipantRun(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestParticipantExampleConfig keeps examples/participant.json loadable
// through the command line.
func TestParticipantExampleConfig(t *testing.T) {
	r, err := parseParticipantRun(testEnv(), []string{"--config", "../../../examples/participant.json"})
	if err != nil {
		t.Fatalf("examples/participant.json: %v", err)
	}
	if r.cfg.Federation != "breast-cancer" || r.cfg.Validation != participant.ValidationEnforce {
		t.Errorf("examples/participant.json loaded as %+v", r.cfg)
	}
}

// hospitalFiles writes an enrolled hospital's files into dir (ca.crt,
// st-mary.crt and .key, signing.pub, data.csv) and a participant.json
// naming them by relative paths.
func hospitalFiles(t *testing.T, dir string) string {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, err := certs.Init(caDir, "clinic-net", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := certs.NewParticipantRequest("clinic-net", "st-mary")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Sign(csrPEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	coord := t.TempDir()
	if _, _, err := manifest.LoadOrCreateSigner(coord); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{
		filepath.Join(caDir, "ca.crt"):            "ca.crt",
		filepath.Join(coord, manifest.PublicFile): "signing.pub",
		wdbcCSV: "data.csv",
	} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeJSON(t, dir, to, string(b))
	}
	writeJSON(t, dir, "st-mary.crt", string(certPEM))
	if err := certs.WritePrivateKey(filepath.Join(dir, "st-mary.key"), keyPEM); err != nil {
		t.Fatal(err)
	}
	return writeJSON(t, dir, "participant.json", map[string]any{
		"coordinator": "127.0.0.1:7443", "federation": "clinic-net", "ca": "ca.crt", "cert": "st-mary.crt",
		"key": "st-mary.key", "coordinator_key": "signing.pub", "data": "data.csv", "ignore": []string{"id"},
		"expect": "expectations.json",
	})
}

func TestParticipantRunCheckConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := hospitalFiles(t, dir)
	// participant.json names expectations.json, which is not there: the
	// flag points at the example instead.
	example, err := filepath.Abs("../../../examples/expectations-wdbc.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  []string
	}{
		{"ok", []string{"--config", cfgPath, "--expect", example}, 0,
			cfgPath + ": OK: st-mary of federation clinic-net, coordinator 127.0.0.1:7443", nil},
		{"missing expectations file", []string{"--config", cfgPath}, 1, "",
			[]string{cfgPath + ": participant: expect:", filepath.Join(dir, "expectations.json"), "no such file"}},
		{"data overridden by a missing file", []string{"--config", cfgPath, "--expect", example, "--data", filepath.Join(dir, "nope.csv")}, 1, "",
			[]string{cfgPath + ": participant: data:", "nope.csv"}},
		{"flags alone", []string{"--coordinator", "127.0.0.1:7443", "--federation", "clinic-net", "--ca", filepath.Join(dir, "ca.crt"),
			"--cert", filepath.Join(dir, "st-mary.crt"), "--key", filepath.Join(dir, "st-mary.key"),
			"--coordinator-key", filepath.Join(dir, "signing.pub"), "--data", filepath.Join(dir, "data.csv")}, 0,
			"participant run: OK: st-mary of federation clinic-net", nil},
		{"wrong federation", []string{"--config", cfgPath, "--expect", example, "--federation", "other-net"}, 1, "",
			[]string{`want a participant of federation "other-net"`}},
		{"coordinator key is a certificate", []string{"--config", cfgPath, "--expect", example, "--coordinator-key", filepath.Join(dir, "ca.crt")}, 1, "",
			[]string{"participant: coordinator_key:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"participant", "run", "--check-config"}, tt.args...)
			code, out, errOut := caRun(t, args...)
			if code != tt.wantCode {
				t.Fatalf("fedguard %s = exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) || strings.Count(out, "\n") > 1 {
				t.Errorf("stdout = %q, want one line containing %q", out, tt.wantOut)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr = %q, want it to contain %q", errOut, w)
				}
			}
		})
	}
}

func TestCoordinatorFlagsOverride(t *testing.T) {
	dir := t.TempDir()
	file := readJSON(t, "../../../examples/coordinator.json")
	file["reflection"] = true
	file["metrics_listen"] = "127.0.0.1:9464"
	cfgPath := writeJSON(t, dir, "coordinator.json", file)
	type overridable struct{ Listen, DataDir, MetricsListen string }
	fromFile := overridable{"0.0.0.0:7443", "/var/lib/fedguard", "127.0.0.1:9464"}

	tests := []struct {
		name           string
		args           []string
		want           overridable
		wantReflection bool
	}{
		{"file alone", nil, fromFile, true},
		{"listen and data dir", []string{"--listen", "10.0.0.1:7443", "--data-dir", "/srv/fg"}, overridable{"10.0.0.1:7443", "/srv/fg", "127.0.0.1:9464"}, true},
		{"metrics moved", []string{"--metrics-listen", "0.0.0.0:9464"}, overridable{"0.0.0.0:7443", "/var/lib/fedguard", "0.0.0.0:9464"}, true},
		{"metrics off", []string{"--metrics-listen="}, overridable{"0.0.0.0:7443", "/var/lib/fedguard", ""}, true},
		{"reflection off", []string{"--reflection=false"}, fromFile, false},
		{"flags before the config", []string{"--reflection=false", "--listen", ":1"}, overridable{":1", "/var/lib/fedguard", "127.0.0.1:9464"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string(nil), tt.args...), "--config", cfgPath)
			r, err := parseCoordinator(testEnv(), args)
			if err != nil {
				t.Fatalf("parseCoordinator(%q) = %v", args, err)
			}
			got := overridable{r.cfg.Listen, r.cfg.DataDir, r.cfg.MetricsListen}
			if diff := cmp.Diff(tt.want, got); diff != "" || r.cfg.Reflection != tt.wantReflection {
				t.Errorf("parseCoordinator(%q): reflection %v, want %v; mismatch (-want +got):\n%s", args, r.cfg.Reflection, tt.wantReflection, diff)
			}
			// Everything else is the file's.
			if r.cfg.Federation != "breast-cancer" || len(r.cfg.Enrolled) != 3 {
				t.Errorf("parseCoordinator(%q) lost the file's other fields: %+v", args, r.cfg)
			}
		})
	}
}

// TestCoordinatorExampleConfigs keeps examples/coordinator*.json valid.
func TestCoordinatorExampleConfigs(t *testing.T) {
	for _, name := range []string{"coordinator.json", "coordinator-secure.json"} {
		path := filepath.Join("../../../examples", name)
		r, err := parseCoordinator(testEnv(), []string{"--config", path})
		if err != nil {
			t.Errorf("parseCoordinator(%s) = %v", path, err)
			continue
		}
		if err := r.cfg.Validate(); err != nil {
			t.Errorf("examples/%s: Validate() = %v", name, err)
		}
	}
}
