package integration

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// crashInRound2 is an exec trainer (a real sh process) that returns the
// model unchanged, except in round 2, where it fails as a PyTorch trainer
// out of GPU memory does.
const crashInRound2 = `case "$(tr -d ' \n' < "$FEDGUARD_PLAN")" in
*'"round":2,'*) echo 'RuntimeError: CUDA out of memory' >&2; exit 3;;
esac
cp "$FEDGUARD_MODEL" "$FEDGUARD_OUTPUT"
printf '{"samples": 10}' > "$FEDGUARD_METRICS"`

// TestTrainerSitOutReported: a hospital whose trainer (a real process)
// crashes in round 2 tells the coordinator why it sits the round out. The
// coordinator audits it (round_sat_out), closes the round without waiting
// for the deadline, records the reason in the round manifest's exclusions
// and on the status page, and the hospital takes part again in round 3.
// Before ReportSatOut the reason stayed in the hospital's log and the
// round waited for its deadline.
func TestTrainerSitOutReported(t *testing.T) {
	dir, _, _ := demoFederation(t)
	hs := []string{"hospital-a", "hospital-b", "hospital-c"}
	cfg := fedConfig(t, dir, demo.Federation, hs, 2, 3)
	// Long enough that closing round 2 early is the sit-out's doing.
	cfg.RoundTimeout = coordinator.Duration(60 * time.Second)
	c := fedtest.Serve(t, cfg)
	crashing := &participant.ExecTrainer{
		Command: []string{"sh", "-c", crashInRound2},
		Dir:     filepath.Join(t.TempDir(), "work"),
		Timeout: 30 * time.Second,
		Local:   localTrainer(dir, "hospital-c"),
	}
	wait := runAgents(t, context.Background(), map[string]*participant.Agent{
		"hospital-a": newAgent(t, dir, "hospital-a", c.Addr, nil),
		"hospital-b": newAgent(t, dir, "hospital-b", c.Addr, nil),
		"hospital-c": newAgent(t, dir, "hospital-c", c.Addr, crashing),
	})
	wantFinished(t, wait(90*time.Second))
	recs := servedRounds(t, c, 3)
	r2 := recs[1]
	if !slices.Equal(r2.Dropped, []string{"hospital-c"}) || len(r2.SatOut) != 1 || r2.SatOut[0].Name != "hospital-c" ||
		!strings.HasPrefix(r2.SatOut[0].Reason, "trainer_crash: ") || !strings.Contains(r2.SatOut[0].Reason, "CUDA out of memory") {
		t.Errorf("round 2: dropped %v, sat out %+v; want hospital-c with its trainer's crash", r2.Dropped, r2.SatOut)
	}
	if d := r2.Closed.Sub(r2.Opened); d > 30*time.Second {
		t.Errorf("round 2 took %v: it waited for the hospital that sat out", d)
	}
	if got := names(recs[2].Participants); !slices.Equal(got, hs) {
		t.Errorf("round 3 participants = %v, want all three again", got)
	}
	st := c.Status()
	var excl *coordinator.ExclusionStatus
	for i, e := range st.Exclusions {
		if e.Round == 2 && e.Participant == "hospital-c" {
			excl = &st.Exclusions[i]
		}
	}
	if excl == nil || excl.Kind != coordinator.ExclusionSatOut || !strings.Contains(excl.Reason, "CUDA out of memory") {
		t.Errorf("status page's exclusion of round 2 = %+v, want hospital-c sat out with its reason", excl)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	exp, err := coordinator.ExportModel(cfg.DataDir, 2)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := manifest.Verify(exp.Manifest, keys, demo.Federation)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Round.Excluded) != 1 || v.Round.Excluded[0].Name != "hospital-c" || !strings.HasPrefix(v.Round.Excluded[0].Reason, "sat out: trainer_crash: ") {
		t.Errorf("round 2 manifest excludes %+v, want hospital-c, sat out: trainer_crash: …", v.Round.Excluded)
	}

	var satOut []audit.RoundSatOut
	for _, ev := range fedtest.AuditEvents(t, cfg, audit.KindRoundSatOut) {
		if ev.Actor != "hospital-c" || ev.Round != 2 {
			t.Errorf("round_sat_out by %s in round %d, want hospital-c in round 2", ev.Actor, ev.Round)
		}
		satOut = append(satOut, fedtest.Payload[audit.RoundSatOut](t, ev))
	}
	if len(satOut) != 1 || satOut[0].Reason != "trainer_crash" || !strings.Contains(satOut[0].Detail, "CUDA out of memory") {
		t.Errorf("audited sit-outs = %+v, want one trainer_crash quoting the trainer", satOut)
	}
}
