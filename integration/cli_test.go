package integration

import (
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/aggregation/secagg"
	"github.com/fedguard/fedguard/benchmark"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDemo runs `fedguard demo` as a user would and checks its JSON output
// and the files it keeps.
func TestDemo(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		out, errOut, err := runFedguard(t, 2*time.Minute, "demo", "--json")
		if err != nil {
			t.Fatalf("fedguard demo --json: %v\nstderr:\n%s", err, errOut)
		}
		recs := jsonLines(t, out)
		if len(recs) != 21 {
			t.Fatalf("fedguard demo --json printed %d JSON lines, want 20 rounds + 1 summary:\n%s", len(recs), out)
		}
		var lastAcc float64
		for i, r := range recs[:20] {
			for _, k := range []string{"round", "participants", "accuracy", "loss"} {
				if _, ok := r[k]; !ok {
					t.Fatalf("round line %d has no %q: %v", i+1, k, r)
				}
			}
			if got := r["round"]; got != float64(i+1) {
				t.Errorf("line %d: round = %v, want %d", i+1, got, i+1)
			}
			if got := r["participants"]; got != float64(4) {
				t.Errorf("round %d: participants = %v, want 4", i+1, got)
			}
			lastAcc, _ = r["accuracy"].(float64)
		}
		sum, ok := recs[20]["summary"].(map[string]any)
		if !ok {
			t.Fatalf("last line = %v, want {\"summary\": {...}}", recs[20])
		}
		if got := sum["rounds"]; got != float64(20) {
			t.Errorf("summary.rounds = %v, want 20", got)
		}
		acc, _ := sum["final_accuracy"].(float64)
		if acc < 0.93 {
			t.Errorf("summary.final_accuracy = %v, want >= 0.93", acc)
		}
		if acc != lastAcc {
			t.Errorf("summary.final_accuracy = %v, but round 20 printed accuracy %v", acc, lastAcc)
		}
	})
	t.Run("dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "fed")
		out, errOut, err := runFedguard(t, time.Minute, "demo", "--dir", dir, "--rounds", "3")
		if err != nil {
			t.Fatalf("fedguard demo --dir %s --rounds 3: %v\nstdout:\n%s\nstderr:\n%s", dir, err, out, errOut)
		}
		fi, err := os.Stat(filepath.Join(dir, "ca", "ca.key"))
		if err != nil {
			t.Fatalf("demo --dir did not keep the CA key: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("ca/ca.key has mode %v, want 0600", perm)
		}
		if fi, err := os.Stat(filepath.Join(dir, "coordinator", "data", "state.db")); err != nil || fi.Size() == 0 {
			t.Errorf("demo --dir did not keep coordinator/data/state.db: %v", err)
		}
		// The demo tells the compliance officer where to start.
		pub := filepath.Join(dir, "coordinator", "data", "signing.pub")
		if !strings.Contains(out, "fedguard audit verify --key "+pub) {
			t.Errorf("demo --dir output does not show how to verify the audit log with %s:\n%s", pub, out)
		}
		checkAuditTrail(t, filepath.Join(dir, "coordinator", "data"), 3)

		// The final model and its manifest, for DSSE tools: the subject
		// digest is the model file's SHA-256.
		mustFedguard(t, "audit", "model", "--data-dir", filepath.Join(dir, "coordinator", "data"), "--key", pub, "--out", dir)
		name := manifest.SubjectName(demo.Federation, 3)
		cosign := "cosign verify-blob-attestation --key " + filepath.Join(dir, "coordinator", "data", manifest.CosignPublicFile) +
			" --insecure-ignore-tlog --type " + manifest.PredicateType + " --signature " + filepath.Join(dir, name) + ".manifest.json " + filepath.Join(dir, name)
		if !strings.Contains(out, cosign) {
			t.Errorf("demo --dir output does not show the cosign command %q:\n%s", cosign, out)
		}
		model, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		env, err := os.ReadFile(filepath.Join(dir, name+".manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		keys, err := manifest.LoadPublicKeys(pub)
		if err != nil {
			t.Fatal(err)
		}
		v, err := manifest.Verify(env, keys, demo.Federation)
		if err != nil {
			t.Fatalf("exported manifest: %v", err)
		}
		if err := v.CheckModel(sha256.Sum256(model)); err != nil || v.Round.Round != 3 {
			t.Errorf("exported model of round %d: %v; want round 3 matching its manifest", v.Round.Round, err)
		}

		// The deployable model: safetensors with its manifest, checked as
		// a serving system would.
		mustFedguard(t, "model", "export", "--data-dir", filepath.Join(dir, "coordinator", "data"), "--out", dir)
		st := filepath.Join(dir, demo.Federation+"-model-round-000003.safetensors")
		out = mustFedguard(t, "model", "verify", "--model", st, "--manifest", st+".manifest.json", "--key", pub, "--federation", demo.Federation)
		if !strings.Contains(out, "verified: ") || !strings.Contains(out, "round 3") {
			t.Errorf("model verify printed %q", out)
		}
	})
}

// TestCLIEnrolmentFlow is the operator's and the hospitals' flow done only
// with the command line: CA, coordinator certificate, hospital keys and
// CSRs, signing, then a coordinator and two hospital processes that train
// three rounds and all exit 0.
func TestCLIEnrolmentFlow(t *testing.T) {
	root := t.TempDir()
	const fed = "clinic-net"
	ca := filepath.Join(root, "operator", "ca")
	op := filepath.Join(root, "operator")
	mustFedguard(t, "ca", "init", "--dir", ca, "--federation", fed)
	mustFedguard(t, "ca", "issue", "--dir", ca, "--host", "127.0.0.1,localhost",
		"--out-cert", filepath.Join(op, "coordinator.crt"), "--out-key", filepath.Join(op, "coordinator.key"))
	if fi, err := os.Stat(filepath.Join(op, "coordinator.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca issue: coordinator.key stat = %v, %v; want mode 0600", fi, err)
	}
	hospitals := []string{"st-mary", "city-general"}
	for i, h := range hospitals {
		hdir := filepath.Join(root, h)
		mustFedguard(t, "participant", "init", "--name", h, "--federation", fed, "--dir", hdir)
		// The CSR travels to the operator; the certificate comes back.
		csr, err := os.ReadFile(filepath.Join(hdir, h+".csr"))
		if err != nil {
			t.Fatalf("participant init did not write %s.csr: %v", h, err)
		}
		if strings.Contains(string(csr), "PRIVATE KEY") {
			t.Fatalf("%s.csr contains a private key", h)
		}
		inbox := filepath.Join(op, h+".csr")
		if err := os.WriteFile(inbox, csr, 0o644); err != nil {
			t.Fatal(err)
		}
		out := mustFedguard(t, "ca", "sign", "--dir", ca, "--csr", inbox, "--out", filepath.Join(hdir, h+".crt"))
		if !strings.Contains(out, "spiffe://"+fed+"/participant/"+h) {
			t.Errorf("ca sign output does not name spiffe://%s/participant/%s:\n%s", fed, h, out)
		}
		writeWDBCShare(t, filepath.Join(hdir, "data.csv"), i, len(hospitals))
	}
	list := mustFedguard(t, "ca", "list", "--dir", ca)
	for _, h := range hospitals {
		if !strings.Contains(list, "participant/"+h) {
			t.Errorf("ca list does not show %s:\n%s", h, list)
		}
	}

	cfg := operatorConfig(t, root, op, ca, fed, hospitals, 3)
	cfgPath := writeConfig(t, op, cfg)
	mustFedguard(t, "coordinator", "--config", cfgPath, "--check-config")
	// The operator makes the signing keys before enrolment and hands
	// signing.pub to the hospitals with their certificates.
	out := mustFedguard(t, "coordinator", "--config", cfgPath, "--init-keys")
	pub := filepath.Join(cfg.DataDir, "signing.pub")
	if !strings.Contains(out, pub) || !strings.Contains(out, "sha256:") {
		t.Errorf("coordinator --init-keys output does not name %s and its fingerprint:\n%s", pub, out)
	}
	if fi, err := os.Stat(filepath.Join(cfg.DataDir, "signing.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing.key stat = %v, %v; want mode 0600", fi, err)
	}
	if again := mustFedguard(t, "coordinator", "--config", cfgPath, "--init-keys"); !strings.Contains(again, "kept the existing") {
		t.Errorf("a second --init-keys did not keep the keys:\n%s", again)
	}
	coord := startCoordinator(t, cfgPath)

	// The second hospital brings its own trainer (a real process, the
	// no-op shell trainer of the exec contract) and approves its code.
	noop, err := filepath.Abs("../participant/testdata/trainer/noop.sh")
	if err != nil {
		t.Fatal(err)
	}
	noopDigest, err := participant.TrainerDigest(noop)
	if err != nil {
		t.Fatal(err)
	}
	var procs []*participantProc
	for i, h := range hospitals {
		hdir := filepath.Join(root, h)
		args := []string{
			"--coordinator", coord.Addr, "--federation", fed,
			"--ca", filepath.Join(ca, "ca.crt"), // ca.crt is public: every hospital gets it
			"--cert", filepath.Join(hdir, h+".crt"), "--key", filepath.Join(hdir, h+".key"),
			"--data", filepath.Join(hdir, "data.csv"), "--ignore", "id",
			"--coordinator-key", pub,
		}
		if i == 1 {
			args = append(args, "--trainer", "exec", "--trainer-command", "sh "+noop,
				"--trainer-code", noop, "--approve-trainer", noopDigest, "--trainer-dir", filepath.Join(hdir, "trainer"))
		}
		procs = append(procs, startParticipant(t, h, args...))
	}
	for _, p := range procs {
		if err := p.wait(t, 90*time.Second); err != nil {
			t.Errorf("participant %s exited with %v, want 0", p.name, err)
		}
	}
	// The exec hospital ran its approved trainer once per round.
	if log := procs[1].out.String(); strings.Count(log, `"msg":"external trainer done"`) != 3 || !strings.Contains(log, noopDigest) {
		t.Errorf("%s's log does not show 3 runs of the trainer %s:\n%s", hospitals[1], noopDigest, log)
	}
	if err := coord.waitExit(30 * time.Second); err != nil {
		t.Errorf("coordinator exited with %v after the last round, want 0", err)
	}
	for r := 1; r <= 3; r++ {
		rec := coord.waitLog("round closed", time.Second, msgRound("round closed", float64(r)))
		if rec["participants"] != float64(2) {
			t.Errorf("round %d closed with %v participants, want 2", r, rec["participants"])
		}
	}
	coord.waitLog("training finished", time.Second, func(m map[string]any) bool { return m["msg"] == "training finished" })
	recs := readRounds(t, cfg)
	if len(recs) != 3 {
		t.Fatalf("database holds %d rounds, want 3", len(recs))
	}
	for _, h := range hospitals {
		// Round 3 trained on the model of round 2; when the training
		// finished, the hospital accepted the final model's manifest
		// (round 3), so its witness covers every round.
		b, err := os.ReadFile(filepath.Join(root, h, h+".accepted.json"))
		if err != nil || !strings.Contains(string(b), `"round":3`) || !strings.Contains(string(b), `"checkpoint":`) {
			t.Errorf("%s.accepted.json = %s, %v; want the manifest of round 3 and its checkpoint", h, b, err)
		}
	}
	checkAuditTrail(t, cfg.DataDir, 3)
}

// TestBenchRoundSmoke runs the round benchmark at a tiny size.
func TestBenchRoundSmoke(t *testing.T) {
	out, errOut, err := runFedguard(t, 2*time.Minute, "bench", "round", "--participants", "2", "--params", "100000", "--rounds", "2", "--json")
	if err != nil {
		t.Fatalf("fedguard bench round: %v\nstderr:\n%s", err, errOut)
	}
	recs := jsonLines(t, out)
	if len(recs) != 1 {
		t.Fatalf("bench round --json printed %d JSON objects, want 1:\n%s", len(recs), out)
	}
	for _, k := range []string{"participants", "params", "round_seconds", "bytes", "peak_rss_bytes"} {
		v, ok := recs[0][k].(float64)
		if !ok || !(v > 0) {
			t.Errorf("bench result %q = %v, want a number > 0", k, recs[0][k])
		}
	}
	if got := recs[0]["participants"]; got != float64(2) {
		t.Errorf("participants = %v, want 2", got)
	}
	if p, _ := recs[0]["params"].(float64); p < 90_000 || p > 110_000 {
		t.Errorf("params = %v, want about 100000", p)
	}
}

// TestBenchRoundSecureSmoke runs the secure round benchmark at a tiny size:
// both rounds ran, every SecAgg phase was timed, the secure round moved at
// least the plain round's bytes, and the ratios are the ratios of the parts.
func TestBenchRoundSecureSmoke(t *testing.T) {
	out, errOut, err := runFedguard(t, 3*time.Minute, "bench", "round", "--secure", "--participants", "3", "--params", "20000", "--rounds", "2", "--json")
	if err != nil {
		t.Fatalf("fedguard bench round --secure: %v\nstderr:\n%s", err, errOut)
	}
	var res benchmark.SecureComparison
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("bench round --secure --json: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name         string
		r            benchmark.RoundResult
		secure       bool
		wantPhases   int
		wantSentOver uint64
	}{
		{"plain", res.Plain, false, 0, 0},
		{"secure", res.Secure, true, len(secagg.Phases()), res.Plain.BytesSent},
	} {
		r := c.r
		if r.Secure != c.secure || r.Participants != 3 || r.Rule != aggregation.NameFedAvg || len(r.Rounds) != 2 {
			t.Errorf("%s: secure %v, %d participants, rule %q, %d rounds; want %v, 3, fedavg, 2", c.name, r.Secure, r.Participants, r.Rule, len(r.Rounds), c.secure)
		}
		if !(r.RoundSeconds > 0) || r.PeakRSSBytes == 0 || r.BytesReceived < 3*r.ModelBytes || r.BytesSent < 3*r.ModelBytes || r.BytesSent < c.wantSentOver {
			t.Errorf("%s: round %g s, peak %d B, sent %d B, received %d B; want > 0 and at least 3 models (%d B) each way",
				c.name, r.RoundSeconds, r.PeakRSSBytes, r.BytesSent, r.BytesReceived, r.ModelBytes)
		}
		if len(r.Phases) != c.wantPhases {
			t.Fatalf("%s: %d phases %v, want %d", c.name, len(r.Phases), r.Phases, c.wantPhases)
		}
		var sum float64
		for i, p := range r.Phases {
			if want := secagg.Phases()[i].Label(); p.Phase != want || !(p.Seconds >= 0) {
				t.Errorf("%s: phase %d = %+v, want %s with a time ≥ 0", c.name, i, p, want)
			}
			sum += p.Seconds
		}
		if c.secure && !(sum > 0 && sum <= r.RoundSeconds) {
			t.Errorf("%s: phases sum to %g s, want in (0, round %g s]", c.name, sum, r.RoundSeconds)
		}
	}
	if want := res.Secure.RoundSeconds / res.Plain.RoundSeconds; res.SecureOverPlain != want {
		t.Errorf("secure_over_plain = %g, want %g", res.SecureOverPlain, want)
	}
	if want := float64(res.Secure.PeakRSSBytes) / float64(res.Plain.PeakRSSBytes); res.PeakRSSSecureOverPlain != want {
		t.Errorf("peak_rss_secure_over_plain = %g, want %g", res.PeakRSSSecureOverPlain, want)
	}
}

// TestBenchRoundWritesNoStrayFiles: the benchmark must keep its files in its
// own temporary directory. Regression test: a debugLog() helper in
// benchmark/round.go once copied every coordinator log line to the fixed path
// /tmp/coord.log (ignoring TMPDIR, shared by concurrent runs, never closed).
func TestBenchRoundWritesNoStrayFiles(t *testing.T) {
	const stray = "/tmp/coord.log"
	before, errBefore := os.Stat(stray)
	time.Sleep(10 * time.Millisecond) // a rewrite must show in the mtime
	if _, errOut, err := runFedguard(t, 2*time.Minute, "bench", "round", "--participants", "1", "--params", "1000", "--rounds", "1", "--json"); err != nil {
		t.Fatalf("fedguard bench round: %v\nstderr:\n%s", err, errOut)
	}
	after, errAfter := os.Stat(stray)
	switch {
	case errAfter != nil:
		// Not written: good.
	case errBefore != nil:
		t.Errorf("fedguard bench round created %s (benchmark/round.go debugLog); it must write nothing outside its temporary directory", stray)
	case !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size():
		t.Errorf("fedguard bench round rewrote %s (benchmark/round.go debugLog); it must write nothing outside its temporary directory", stray)
	}
}

// operatorConfig is the coordinator configuration of federation fed as an
// operator lays it out with the CLI: its CA (and CRL) in ca, its key,
// certificate and data in op; a quorum of 2 for rounds rounds, with the
// default round timeout (nobody drops out in these tests).
func operatorConfig(t *testing.T, root, op, ca, fed string, hospitals []string, rounds int) coordinator.Config {
	t.Helper()
	cfg := fedConfig(t, root, fed, hospitals, 2, rounds)
	cfg.DataDir = filepath.Join(op, "data")
	cfg.CACert = filepath.Join(ca, "ca.crt")
	cfg.Cert = filepath.Join(op, "coordinator.crt")
	cfg.Key = filepath.Join(op, "coordinator.key")
	cfg.CRL = filepath.Join(ca, "crl.pem")
	cfg.RoundTimeout = 0
	return cfg
}
