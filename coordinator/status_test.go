package coordinator_test

import (
	"crypto/sha256"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/model"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// participantStatus finds name in s.
func participantStatus(t *testing.T, s coordinator.Status, name string) coordinator.ParticipantStatus {
	t.Helper()
	i := slices.IndexFunc(s.Participants, func(p coordinator.ParticipantStatus) bool { return p.Name == name })
	if i < 0 {
		t.Fatalf("status lists no %s: %+v", name, s.Participants)
	}
	return s.Participants[i]
}

// TestStatusFederation runs two plain rounds and reads the status page
// over HTTP after each: a poisoned participant flagged in round 1, a
// refused and a dropped one in round 2.
func TestStatusFederation(t *testing.T) {
	t.Parallel()
	names := []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}
	f := newFederation(t, names)
	f.cfg.MetricsListen = "127.0.0.1:0"
	f.cfg.RoundTimeout = coordinator.Duration(2 * time.Second)
	s := start(t, f.cfg)
	addr := waitMetricsAddr(t, s.c)

	st := fedtest.Status(t, addr)
	if st.Federation != fedName || st.Phase != "stats" || st.Round != 0 || st.Open || len(st.Participants) != len(names) {
		t.Errorf("status at start = %+v, want phase stats, no round, %d participants", st, len(names))
	}
	for _, p := range st.Participants {
		if p.Status != coordinator.ParticipantEnrolled {
			t.Errorf("%s at start: status %q, want %q", p.Name, p.Status, coordinator.ParticipantEnrolled)
		}
	}
	if st.Audit.Size == 0 || st.Audit.Origin != coordinator.AuditOrigin(fedName) {
		t.Errorf("audit at start = %+v, want the start events under origin %s", st.Audit, coordinator.AuditOrigin(fedName))
	}

	ps := f.connect(t, s, names...)
	fixScaling(t, ps)
	assignments(t, ps)
	st = fedtest.Status(t, addr)
	if st.Phase != "training" || st.Round != 1 || !st.Open || !slices.Equal(st.Cohort, names) || st.Deadline.IsZero() {
		t.Errorf("status in round 1 = phase %s round %d open %t cohort %v deadline %v, want round 1 open with everyone",
			st.Phase, st.Round, st.Open, st.Cohort, st.Deadline)
	}
	for _, p := range st.Participants {
		if p.Status != coordinator.ParticipantInCohort || p.Round != 1 {
			t.Errorf("%s in round 1: %+v, want in cohort of round 1", p.Name, p)
		}
	}
	base := []float32{0.1, -0.05, 0.02, 0.08, -0.03, 0.04}
	submitAll(t, 1, ps, map[string]update{
		"hospital-a": {delta: scaled(base, 1.0), samples: 10},
		"hospital-b": {delta: scaled(base, 1.1), samples: 10},
		"hospital-c": {delta: scaled(base, 0.9), samples: 10},
		"hospital-d": {delta: scaled(base, 50), samples: 10},
	})
	s.waitObserved(t, 1, 10*time.Second)

	st = fedtest.Status(t, addr)
	if st.LastClosed != 1 || st.Open || st.CohortRound != 1 {
		t.Errorf("status after round 1 = last closed %d open %t cohort round %d, want 1, false, 1", st.LastClosed, st.Open, st.CohortRound)
	}
	for _, n := range names {
		p := participantStatus(t, st, n)
		want, flags := coordinator.ParticipantIncluded, []string(nil)
		if n == "hospital-d" {
			want, flags = coordinator.ParticipantFlagged, []string{coordinator.AnomalyNorm}
		}
		// A participant already back in WaitRound is ready for round 2.
		if (p.Status != want && p.Status != coordinator.ParticipantReady) || p.Round != 1 || !slices.Equal(p.Flags, flags) {
			t.Errorf("%s after round 1: %+v, want %s (or ready) in round 1 with flags %v", n, p, want, flags)
		}
	}
	if len(st.Flags) != 1 || st.Flags[0].Participant != "hospital-d" || st.Flags[0].Kind != coordinator.AnomalyNorm ||
		st.Flags[0].Round != 1 || len(st.Flags[0].Band) != 2 || !(st.Flags[0].Value > st.Flags[0].Band[1]) {
		t.Errorf("flags after round 1 = %+v, want hospital-d's norm above its band", st.Flags)
	}
	// The charts hold round 1: everyone's norm, the band the norm flag
	// used, and the flag on the time line.
	if len(st.Charts.Rounds) != 1 {
		t.Fatalf("charts after round 1 = %+v, want one round", st.Charts)
	}
	r1 := st.Charts.Rounds[0]
	if r1.Round != 1 || len(r1.Norms) != len(names) || !slices.Equal(r1.NormBand, st.Flags[0].Band) || r1.Norms["hospital-d"] != st.Flags[0].Value {
		t.Errorf("charts round 1 = %+v, want 4 norms and the norm flag's band %v", r1, st.Flags[0].Band)
	}
	if want := []coordinator.ChartFlag{{Round: 1, Participant: "hospital-d", Kind: coordinator.AnomalyNorm}}; !slices.Equal(st.Charts.Flags, want) {
		t.Errorf("chart flags after round 1 = %+v, want %+v", st.Charts.Flags, want)
	}
	cp := st.Audit.Checkpoint
	if cp == nil || cp.Size == 0 || cp.Size > st.Audit.Size || cp.Root == "" || cp.Time.IsZero() {
		t.Errorf("audit after round 1 = %+v (checkpoint %+v), want a checkpoint signed by this process", st.Audit, cp)
	}

	// Round 2: hospital-c's update is refused, hospital-d sends none.
	assignments(t, ps)
	submitAll(t, 2, ps[:2], map[string]update{
		"hospital-a": {delta: scaled(base, 1.0), samples: 10},
		"hospital-b": {delta: scaled(base, 1.1), samples: 10},
	})
	bad := model.AppendBytes(nil, base)
	sum := sha256.Sum256(append(bad, 0))
	if _, err := ps[2].send(t, []*fedguardv1.SubmitUpdateRequest{
		{Round: 2, FormatVersion: model.FormatVersion, Body: &fedguardv1.SubmitUpdateRequest_Header{Header: &fedguardv1.UpdateHeader{
			NumParams: numParams, SampleCount: 10, Sha256: sum[:],
		}}},
		chunkMsg(2, 0, bad),
	}); err == nil {
		t.Fatal("an update with a wrong digest was accepted")
	}
	if p := participantStatus(t, fedtest.Status(t, addr), "hospital-c"); p.Status != coordinator.ParticipantRefused || !strings.Contains(p.Reason, "sha256") {
		t.Errorf("hospital-c after its refused update: %+v, want refused with the reason", p)
	}
	s.waitObserved(t, 2, 10*time.Second)
	st = fedtest.Status(t, addr)
	kinds := map[string]string{}
	for _, e := range st.Exclusions {
		if e.Round == 2 {
			kinds[e.Participant] = e.Kind
		}
	}
	if want := map[string]string{"hospital-c": coordinator.ExclusionRefused, "hospital-d": coordinator.ExclusionDropped}; !maps.Equal(kinds, want) {
		t.Errorf("round 2 exclusions = %v, want %v", kinds, want)
	}
	if p := participantStatus(t, st, "hospital-d"); p.Status != coordinator.ParticipantDropped && p.Status != coordinator.ParticipantReady || len(p.Flags) != 0 {
		t.Errorf("hospital-d after round 2: %+v, want dropped, no flags", p)
	}

	// The HTML page shows the same.
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<td>hospital-d</td><td>norm</td>", "<td>hospital-c</td><td>refused</td>", "round 2 (closed)",
		`<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="chart-norm-hospital-d"`, `<line class="marker" data-kind="norm"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /status lacks %q", want)
		}
	}
}
