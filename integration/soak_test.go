//go:build soak

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedguard/fedguard/certs"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/internal/process"
	"github.com/fedguard/fedguard/manifest"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// The soak test of issue 12 (`make soak`, never in CI or `make test`): for
// SOAK_DURATION (default 30m) it runs federations of real processes, a
// `fedguard coordinator` and four `fedguard participant run` hospitals,
// alternating plain and secure legs, and does to them, at random:
//
//   - SIGKILL and SIGTERM the coordinator, and restart it (without --init)
//     on the same address and data directory;
//   - SIGKILL a hospital, and restart it a few seconds later;
//   - fill the coordinator's disk: its data directory is on a small tmpfs
//     (mounted by the test, which needs root; without it the test falls
//     back to a data directory on the usual disk and raises
//     min_free_bytes above its free space instead, and says so), filled to
//     below min_free_bytes (the guard must pause the coordinator), or
//     completely (ENOSPC), then emptied again (it must resume);
//   - a slow client (plain legs): the fifth enrolled hospital takes an
//     assignment and trickles its update, one parameter a second;
//   - a flooding client: the same identity sends ReportValidation calls far
//     beyond its audit quota.
//
// Each leg ends with a SIGTERM and the checks an operator would make:
// `coordinator --check-data` OK, the closed rounds in state.db contiguous
// from 1, each round's manifest signed exactly once in the audit log,
// `audit export` + `audit verify --key` OK, `audit report` flagging
// nothing, the flooding identity's audit events within its quota, and the
// coordinator's peak memory (VmHWM sampled from /proc, and the rusage
// peak at exit) within a bound. A summary table is printed at the end.
func TestSoak(t *testing.T) {
	total := 30 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		total = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("soak: %v, seed %d (SOAK_SEED=%d repeats the choices)", total, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	mnt, tmpfs := soakDisk(t)
	st := &soakStats{kills: map[string]int{}, fullStarts: map[string]int{}}
	legs := max(2, int(total/(4*time.Minute)))
	if legs%2 == 1 {
		legs++ // as many secure legs as plain ones
	}
	legDur := total / time.Duration(legs)
	end := time.Now().Add(total)
	for i := 0; i < legs; i++ {
		secure := i%2 == 1
		d := min(legDur, time.Until(end))
		if d < 30*time.Second {
			d = 30 * time.Second
		}
		leg := &soakLeg{t: t, st: st, rng: rng, n: i + 1, secure: secure, mnt: mnt, tmpfs: tmpfs}
		t.Run(fmt.Sprintf("leg%d-%s", i+1, map[bool]string{false: "plain", true: "secure"}[secure]), func(t *testing.T) {
			leg.t = t
			leg.run(d)
		})
	}
	st.print(t, tmpfs)
}

// soakDisk returns the directory the coordinators' data directories go in:
// a 64 MiB tmpfs the test mounts (true), or a temporary directory when it
// cannot mount one (false).
func soakDisk(t *testing.T) (string, bool) {
	dir, err := os.MkdirTemp("", "fedguard-soak-disk-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Logf("soak: cannot mount a tmpfs (%v: %s): the full disk is simulated by raising min_free_bytes above the free space", err, strings.TrimSpace(string(out)))
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir, false
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			return
		}
		os.Remove(dir)
	})
	return dir, true
}

// soakMinFree is the coordinators' min_free_bytes on the tmpfs.
const soakMinFree = 8 << 20

// soakStats are the numbers of the summary table.
type soakStats struct {
	mu                      sync.Mutex
	kills                   map[string]int
	rounds, plainRounds     int
	retries, wedges         int
	closesRerun             int
	processes               int
	peakRSS, peakHWM        uint64
	peakExit                uint64
	modelBytes              uint64
	auditEvents             int
	auditBytes              int64
	suppressed              uint64
	diskPauses, diskResumes int
	enospc                  int
	diskExits               int
	diskExitErr             string
	fullStarts              map[string]int
	slowStreams             int
	slowOverrun             time.Duration
	floodCalls              int
	floodCodes              map[codes.Code]int
	floodAudited            int
	legs                    []string
}

func (s *soakStats) add(f func(*soakStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *soakStats) print(t *testing.T, tmpfs bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "  %s\t%v\n", k, v) }
	b.WriteString("\nsoak summary\n")
	for _, l := range s.legs {
		b.WriteString("  " + l + "\n")
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range s.kills {
			if !yield(k) {
				return
			}
		}
	}) {
		row("kills: "+k, s.kills[k])
	}
	row("coordinator processes", s.processes)
	row("rounds closed (plain+secure)", fmt.Sprintf("%d (%d+%d)", s.rounds, s.plainRounds, s.rounds-s.plainRounds))
	row("round closes re-run after a crash", s.closesRerun)
	row("attempts retried", s.retries)
	row("wedges", s.wedges)
	row("disk pauses / resumes", fmt.Sprintf("%d / %d", s.diskPauses, s.diskResumes))
	row("disk filled to ENOSPC", s.enospc)
	row("coordinator exits on a full disk", s.diskExits)
	if s.diskExits > 0 {
		row("  last error", s.diskExitErr)
		row("  restarts on the full disk", fmt.Sprint(s.fullStarts))
	}
	if !tmpfs {
		row("disk", "no tmpfs: min_free_bytes raised instead")
	}
	row("slow streams / worst overrun of deadline", fmt.Sprintf("%d / %v", s.slowStreams, s.slowOverrun.Round(time.Millisecond)))
	row("flood calls", s.floodCalls)
	row("flood outcomes", fmt.Sprint(s.floodCodes))
	row("flooder's audit events", s.floodAudited)
	row("suppressed events (in summaries)", s.suppressed)
	row("audit events", s.auditEvents)
	row("audit.db bytes (all legs)", s.auditBytes)
	row("model bytes", s.modelBytes)
	row("peak VmRSS (sampled)", mib(s.peakRSS))
	row("peak VmHWM (sampled)", mib(s.peakHWM))
	row("peak rusage maxrss (at exit)", mib(s.peakExit))
	w.Flush()
	fmt.Println(b.String())
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// soakLeg is one federation of the soak.
type soakLeg struct {
	t      *testing.T
	st     *soakStats
	rng    *rand.Rand
	n      int
	secure bool
	mnt    string
	tmpfs  bool

	dir     string
	cfg     coordinator.Config
	cfgPath string
	addr    string

	mu        sync.Mutex
	coord     *coordProc
	logs      [][]map[string]any // logs of the coordinators that exited
	hospitals map[string]*participantProc
	peaks     []uint64
	params    uint64 // the model's number of parameters
}

// soakHospitals run as processes; soakClient is the fifth enrolled
// hospital, whose certificate the slow and the flooding client use. Four
// running hospitals make a secure cohort of four, whose sessions (two
// thirds needed: 3 of 4) survive the one hospital the soak kills at a
// time; with three, a session needs all three and a hospital killed at
// its unmasking stops the round for good (the others revealed their
// shares and decline every later session from the same model).
var soakHospitals = []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"}

const soakClient = "hospital-e"

func (l *soakLeg) run(d time.Duration) {
	t := l.t
	l.dir = t.TempDir()
	hs, err := demo.HospitalSplit(len(soakHospitals) + 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := demo.SetupHospitals(l.dir, uint64(l.n), hs); err != nil {
		t.Fatal(err)
	}
	l.cfg = fedConfig(t, l.dir, demo.Federation, append(slices.Clone(soakHospitals), soakClient), 2, 100000)
	l.cfg.DataDir = filepath.Join(l.mnt, fmt.Sprintf("leg%d", l.n))
	if l.tmpfs {
		l.cfg.MinFreeBytes = soakMinFree
	}
	l.cfg.RoundTimeout = coordinator.Duration(10 * time.Second)
	if l.secure {
		l.cfg.Secure = true
		l.cfg.SecAgg.PhaseTimeout = coordinator.Duration(20 * time.Second)
		l.cfg.RoundTimeout = coordinator.Duration(60 * time.Second)
		l.cfg.CohortTimeout = coordinator.Duration(2 * time.Second)
	}
	l.cfgPath = writeConfig(t, l.dir, l.cfg)
	l.start("--init")
	l.addr = l.coord.Addr
	jctx, jcancel := context.WithTimeout(context.Background(), 30*time.Second)
	jr, err := l.client().Join(jctx, &fedguardv1.JoinRequest{AgentVersion: "soak"})
	jcancel()
	if err != nil {
		t.Fatalf("Join as %s: %v", soakClient, err)
	}
	l.params = jr.GetModel().GetNumParams()
	l.hospitals = map[string]*participantProc{}
	for _, h := range soakHospitals {
		l.startHospital(h)
	}

	end := time.Now().Add(d)
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	for time.Now().Before(end) {
		sleep := time.Duration(5+l.rng.IntN(15)) * time.Second
		time.Sleep(min(sleep, time.Until(end)))
		if !time.Now().Before(end) {
			break
		}
		l.chaos(ctx, &bg)
	}
	cancel()
	bg.Wait()
	l.finish()
}

// start starts a coordinator process on the leg's address and data
// directory, and samples its memory while it runs.
func (l *soakLeg) start(extra ...string) {
	t := l.t
	args := slices.Clone(extra)
	if l.addr != "" {
		args = append(args, "--listen", l.addr)
	}
	var c *coordProc
	for try := 0; ; try++ {
		// The address may still be held a moment after a kill.
		buf := &fedtest.LogBuffer{}
		p, err := startCoordinatorProcess(l.cfgPath, buf, args...)
		if err == nil {
			c = &coordProc{Coordinator: p, t: t, logBuf: buf}
			break
		}
		if try == 10 {
			t.Fatalf("restart coordinator: %v\nlog:\n%s", err, tail(buf.String(), 4000))
		}
		time.Sleep(time.Second)
	}
	l.mu.Lock()
	l.coord = c
	l.mu.Unlock()
	l.st.add(func(s *soakStats) { s.processes++ })
	go l.sample(c)
	t.Cleanup(func() { killUnlessDone(c.Coordinator) })
}

// sample reads the process's VmRSS and VmHWM every 250 ms until it exits,
// then its rusage peak.
func (l *soakLeg) sample(c *coordProc) {
	path := fmt.Sprintf("/proc/%d/status", c.PID())
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.Done():
			if p, err := c.PeakRSS(); err == nil {
				l.st.add(func(s *soakStats) { s.peakExit = max(s.peakExit, p) })
				l.mu.Lock()
				l.peaks = append(l.peaks, p)
				l.mu.Unlock()
			}
			return
		case <-tick.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		rss, hwm := procKB(b, "VmRSS:"), procKB(b, "VmHWM:")
		l.st.add(func(s *soakStats) { s.peakRSS, s.peakHWM = max(s.peakRSS, rss), max(s.peakHWM, hwm) })
	}
}

// procKB is the value of a "Name:   123 kB" line of /proc/PID/status, in bytes.
func procKB(status []byte, name string) uint64 {
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			return v << 10
		}
	}
	return 0
}

// startCoordinatorProcess starts `fedguard coordinator --config cfgPath
// args...`.
func startCoordinatorProcess(cfgPath string, logW *fedtest.LogBuffer, args ...string) (*process.Coordinator, error) {
	return process.StartCoordinator(context.Background(), fedguardBin, cfgPath, logW, args...)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (l *soakLeg) current() *coordProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.coord
}

// stopCoordinator signals the coordinator and waits for it; a SIGTERM must
// end it with status 0 within 30 s.
func (l *soakLeg) stopCoordinator(sig syscall.Signal) {
	t := l.t
	c := l.current()
	if err := c.Signal(sig); err != nil {
		t.Fatalf("signal coordinator: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("coordinator still running 30 s after %v; log:\n%s", sig, tail(c.logBuf.String(), 8000))
	}
	if err := c.Wait(); sig == syscall.SIGTERM && err != nil {
		t.Errorf("coordinator given SIGTERM exited with %v; log tail:\n%s", err, tail(c.logBuf.String(), 8000))
	}
	l.mu.Lock()
	l.logs = append(l.logs, c.Logs())
	l.mu.Unlock()
	l.st.add(func(s *soakStats) { s.kills["coordinator "+sigName[sig]]++ })
}

var sigName = map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM"}

func (l *soakLeg) startHospital(h string) {
	l.hospitals[h] = startParticipant(l.t, h, "--coordinator", l.addr, "--federation", demo.Federation,
		"--ca", filepath.Join(l.dir, "ca", "ca.crt"),
		"--cert", filepath.Join(l.dir, h, h+".crt"), "--key", filepath.Join(l.dir, h, h+".key"),
		"--data", filepath.Join(l.dir, h, "data.csv"),
		"--coordinator-key", filepath.Join(l.cfg.DataDir, manifest.PublicFile))
}

// chaos does one random thing to the federation.
func (l *soakLeg) chaos(ctx context.Context, bg *sync.WaitGroup) {
	t := l.t
	switch k := l.rng.IntN(10); {
	case k < 2:
		l.stopCoordinator(syscall.SIGKILL)
		time.Sleep(time.Duration(l.rng.IntN(2000)) * time.Millisecond)
		l.start()
	case k < 3:
		l.stopCoordinator(syscall.SIGTERM)
		l.start()
	case k < 5:
		h := soakHospitals[l.rng.IntN(len(soakHospitals))]
		p := l.hospitals[h]
		select {
		case <-p.done:
			t.Errorf("%s exited on its own: %v\n%s", h, p.err, tail(p.out.String(), 4000))
		default:
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			l.st.add(func(s *soakStats) { s.kills["hospital SIGKILL"]++ })
		}
		time.Sleep(time.Duration(1+l.rng.IntN(5)) * time.Second)
		l.startHospital(h)
	case k < 7:
		l.fullDisk(l.rng.IntN(2) == 0)
	case k < 8:
		bg.Add(1)
		go func() { defer bg.Done(); l.flood(ctx) }()
	default:
		if l.secure {
			bg.Add(1)
			go func() { defer bg.Done(); l.flood(ctx) }()
			return
		}
		bg.Add(1)
		go func() { defer bg.Done(); l.slow(ctx) }()
	}
}

// fullDisk fills the data directory's file system below min_free_bytes
// (or completely, enospc), checks that the coordinator pauses, holds a
// while, frees the space and checks that it resumes.
func (l *soakLeg) fullDisk(enospc bool) {
	t := l.t
	c := l.current()
	since := len(c.Logs())
	var undo func()
	if l.tmpfs {
		filler := filepath.Join(l.mnt, "filler")
		var fs syscall.Statfs_t
		if err := syscall.Statfs(l.mnt, &fs); err != nil {
			t.Fatal(err)
		}
		free := int64(fs.Bavail) * int64(fs.Bsize)
		n := free - soakMinFree/2
		if enospc {
			n = free + 1<<20 // more than there is: the write stops at ENOSPC
		}
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		var werr error
		for w := int64(0); w < n && werr == nil; w += int64(len(buf)) {
			_, werr = f.Write(buf[:min(int64(len(buf)), n-w)])
		}
		f.Close()
		if enospc {
			if !errors.Is(werr, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v, want ENOSPC", werr)
			}
			l.st.add(func(s *soakStats) { s.enospc++ })
		} else if werr != nil {
			t.Fatalf("filling the tmpfs: %v", werr)
		}
		undo = func() { os.Remove(filler) }
	} else {
		// No tmpfs: a coordinator restarted with min_free_bytes above
		// the free space pauses the same way.
		cfg := l.cfg
		cfg.MinFreeBytes = 1 << 62
		path := writeConfig(t, l.dir, cfg)
		l.stopCoordinator(syscall.SIGTERM)
		old := l.cfgPath
		l.cfgPath = path
		l.start()
		l.cfgPath = old
		c = l.current()
		since = 0
		undo = func() { l.stopCoordinator(syscall.SIGTERM); l.start() }
	}
	paused := l.waitLogSince(c, since, 20*time.Second,
		"pausing: the data directory's disk is nearly full; calls are refused until space is freed",
		// A write that met the full disk before the guard's check.
		"pausing: the data directory's disk is full; calls are refused until space is freed")
	if paused {
		l.st.add(func(s *soakStats) { s.diskPauses++ })
	} else {
		select {
		case <-c.Done():
			// The disk filled between two free-space checks and an
			// audit append of the round loop failed: the coordinator
			// stops (nothing of the batch is stored). Count it, see
			// whether a restart on the full disk fails cleanly, then
			// free the space and restart.
			err := c.Wait()
			last := lastError(c.Logs())
			for _, r := range c.Logs() {
				if r["msg"] == "audit log append failed" {
					last = fmt.Sprintf("%s (appending %v)", last, r["kind"])
				}
			}
			t.Logf("the coordinator exited on the full disk (enospc %v): %v; last error: %s", enospc, err, last)
			l.mu.Lock()
			l.logs = append(l.logs, c.Logs())
			l.mu.Unlock()
			l.st.add(func(s *soakStats) { s.diskExits++; s.diskExitErr = last })
			buf := &fedtest.LogBuffer{}
			if p, err := startCoordinatorProcess(l.cfgPath, buf, "--listen", l.addr); err == nil {
				l.st.add(func(s *soakStats) { s.fullStarts["started"]++ })
				_ = p.Signal(syscall.SIGKILL)
				<-p.Done()
			} else {
				l.st.add(func(s *soakStats) { s.fullStarts["refused: "+shortErr(buf.String())]++ })
			}
			undo()
			l.start()
			return
		default:
			t.Errorf("the coordinator did not pause within 20 s of its disk filling (enospc %v)", enospc)
		}
	}
	time.Sleep(time.Duration(5+l.rng.IntN(10)) * time.Second)
	undo()
	c = l.current()
	if l.tmpfs && paused {
		if l.waitLogSince(c, since, 20*time.Second, "resuming: free space is back above the threshold") {
			l.st.add(func(s *soakStats) { s.diskResumes++ })
		} else {
			t.Errorf("coordinator did not resume within 20 s of the disk having space again")
		}
	} else if !l.tmpfs {
		l.st.add(func(s *soakStats) { s.diskResumes++ })
	}
}

// lastError is the error of the last log record that has one.
func lastError(logs []map[string]any) string {
	for i := len(logs) - 1; i >= 0; i-- {
		if e, ok := logs[i]["error"]; ok {
			return fmt.Sprint(e)
		}
	}
	return ""
}

// shortErr is the last line of a failed start's output, shortened.
func shortErr(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	l := lines[len(lines)-1]
	var m map[string]any
	if json.Unmarshal([]byte(l), &m) == nil {
		if e, ok := m["error"]; ok {
			l = fmt.Sprint(e)
		} else if msg, ok := m["msg"]; ok {
			l = fmt.Sprint(msg)
		}
	}
	if len(l) > 120 {
		l = l[:120] + "..."
	}
	return l
}

// waitLogSince waits for a record with one of msgs among c's records from index
// since on; false if c exits or the time runs out first.
func (l *soakLeg) waitLogSince(c *coordProc, since int, timeout time.Duration, msgs ...string) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		logs := c.Logs()
		for _, r := range logs[min(since, len(logs)):] {
			if m, _ := r["msg"].(string); slices.Contains(msgs, m) {
				return true
			}
		}
		select {
		case <-c.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// client is a raw client presenting soakClient's certificate.
func (l *soakLeg) client() fedguardv1.CoordinatorServiceClient {
	tlsCfg, err := certs.LocalClientConfig(l.dir, demo.Federation, soakClient, l.addr)
	if err != nil {
		l.t.Fatal(err)
	}
	c, _ := rawClient(l.t, l.addr, tlsCfg)
	return c
}

// flood sends ReportValidation calls, far beyond the audit quota.
func (l *soakLeg) flood(ctx context.Context) {
	c := l.client()
	got := map[codes.Code]int{}
	const calls = 300
	for range calls {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.ReportValidation(cctx, &fedguardv1.ReportValidationRequest{Round: 1, Mode: "warn", Training: true, Rows: 100, Columns: 31})
		cancel()
		got[status.Code(err)]++
		if ctx.Err() != nil {
			break
		}
	}
	l.st.add(func(s *soakStats) {
		s.floodCalls += calls
		if s.floodCodes == nil {
			s.floodCodes = map[codes.Code]int{}
		}
		for k, v := range got {
			s.floodCodes[k] += v
		}
	})
}

// slow takes part in a plain round as soakClient and trickles its update,
// one parameter a second, until the coordinator ends the stream; it
// records how long after the round's deadline that was.
func (l *soakLeg) slow(ctx context.Context) {
	c := l.client()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	jr, err := c.Join(ctx, &fedguardv1.JoinRequest{AgentVersion: "soak-slow"})
	if err != nil {
		return // paused, or the coordinator is being restarted
	}
	n := jr.GetModel().GetNumParams()
	var asg *fedguardv1.RoundAssignment
	for asg == nil && ctx.Err() == nil {
		wr, err := c.WaitRound(ctx, &fedguardv1.WaitRoundRequest{})
		if err != nil {
			return
		}
		asg = wr.GetAssignment()
	}
	if asg == nil {
		return
	}
	upd := f32bytes(make([]float32, n)...)
	sum := sha256.Sum256(upd)
	s, err := c.SubmitUpdate(ctx)
	if err != nil {
		return
	}
	if err := s.Send(header(asg.GetRound(), n, sum[:])); err != nil {
		return
	}
	for off := uint64(0); off < n && ctx.Err() == nil; off++ {
		if err := s.Send(chunk(asg.GetRound(), off, upd[4*off:4*off+4])); err != nil {
			break
		}
		time.Sleep(time.Second)
	}
	_, _ = s.CloseAndRecv()
	ended := time.Now()
	over := ended.Sub(asg.GetDeadline().AsTime())
	l.st.add(func(s *soakStats) {
		s.slowStreams++
		s.slowOverrun = max(s.slowOverrun, over)
	})
}

// finish stops the federation and checks what it left behind.
func (l *soakLeg) finish() {
	t := l.t
	for h, p := range l.hospitals {
		select {
		case <-p.done:
			t.Errorf("%s exited on its own: %v\n%s", h, p.err, tail(p.out.String(), 4000))
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	l.stopCoordinator(syscall.SIGTERM)
	l.st.add(func(s *soakStats) { s.kills["coordinator SIGTERM"]-- }) // the leg's end is not chaos
	for _, p := range l.hospitals {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	os.Remove(filepath.Join(l.mnt, "filler"))

	// The operator's check of the stopped coordinator's data.
	out, errOut, err := runFedguard(t, 2*time.Minute, "coordinator", "--config", l.cfgPath, "--check-data")
	if err != nil {
		t.Errorf("coordinator --check-data: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}

	// Every round closed once, contiguously from 1.
	recs := readRounds(t, l.cfg)
	checkContiguous(t, recs, len(recs))
	if len(recs) == 0 {
		t.Errorf("no round closed in the leg")
	}

	// The audit log: exported, verified with the public key, and each
	// closed round's manifest signed exactly once.
	pub := filepath.Join(l.cfg.DataDir, manifest.PublicFile)
	export, _, lines := exportAudit(t, l.cfg.DataDir)
	if out := mustFedguard(t, "audit", "verify", "--key", pub, export); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify printed %q, want OK", out)
	}
	// Within one attempt (from its round_opened on) a round closes at
	// most once; it closes again only when it was opened again (re-run
	// after a crash between recording its close and committing it).
	closedSinceOpen := map[uint64]bool{}
	signed, closed := map[uint64]int{}, map[uint64]int{}
	var suppressed uint64
	flooder := 0
	for _, e := range lines {
		switch e.Kind {
		case "manifest_signed":
			signed[e.Round]++
		case "round_opened":
			closedSinceOpen[e.Round] = false
		case "round_closed":
			if closedSinceOpen[e.Round] {
				t.Errorf("audit event %d closes round %d a second time without a round_opened in between", e.Seq, e.Round)
			}
			closedSinceOpen[e.Round] = true
			closed[e.Round]++
		case "events_suppressed":
			var p struct{ Total uint64 }
			if err := json.Unmarshal(e.Payload, &p); err == nil {
				suppressed += p.Total
			}
		}
		if e.Actor == soakClient {
			flooder++
		}
	}
	rerun := 0
	for r := uint64(1); r <= uint64(len(recs)); r++ {
		if signed[r] < 1 || signed[r] > closed[r] {
			t.Errorf("round %d's manifest is signed %d times in the audit log, closed %d times; want signed once per close, at least once", r, signed[r], closed[r])
		}
		if closed[r] < 1 {
			t.Errorf("round %d is closed in state.db but the audit log has no round_closed", r)
		}
		rerun += max(0, closed[r]-1)
	}
	for r, n := range closed {
		if r > uint64(len(recs))+1 {
			t.Errorf("the audit log has %d round_closed for round %d; state.db's last closed round is %d", n, r, len(recs))
		}
	}
	report := mustFedguard(t, "audit", "report", "--db", filepath.Join(l.cfg.DataDir, coordinator.AuditFile), "--key", pub)
	for _, bad := range []string{"INVALID", "NOT VERIFIED", "NOT the round's model"} {
		if strings.Contains(report, bad) {
			i := strings.Index(report, bad)
			t.Errorf("audit report says %q: ...%s...", bad, report[max(0, i-600):min(len(report), i+200)])
		}
	}

	// Counts from the logs of every coordinator of the leg.
	retries, wedges := 0, 0
	l.mu.Lock()
	allLogs := l.logs
	peaks := l.peaks
	l.mu.Unlock()
	starts := len(allLogs)
	for _, logs := range allLogs {
		for _, r := range logs {
			switch r["msg"] {
			case "round failed, retrying":
				retries++
			case "round wedged: no attempt will open":
				wedges++
			}
		}
	}
	// The flooding identity appends at most AuditEventsPerMinute events
	// and one summary per minute and per coordinator process.
	minutes := int(time.Since(l.started(allLogs)).Minutes()) + 1
	if limit := (coordinator.AuditEventsPerMinute + 1) * (minutes + starts); flooder > limit {
		t.Errorf("%s has %d audit events in %d minutes over %d coordinator processes, want at most %d", soakClient, flooder, minutes, starts, limit)
	}

	// Memory: the model is tiny (logistic regression), so the Go runtime
	// dominates; the bound is a fixed allowance plus (n+3) model sizes.
	modelBytes := 4 * l.params
	const allowance = 256 << 20
	bound := allowance + uint64(len(l.cfg.Enrolled)+3)*modelBytes
	for _, p := range peaks {
		if p > bound {
			t.Errorf("a coordinator process peaked at %s, above the bound %s", mib(p), mib(bound))
		}
	}

	fi, _ := os.Stat(filepath.Join(l.cfg.DataDir, coordinator.AuditFile))
	mode := map[bool]string{false: "plain", true: "secure"}[l.secure]
	l.st.add(func(s *soakStats) {
		s.rounds += len(recs)
		if !l.secure {
			s.plainRounds += len(recs)
		}
		s.closesRerun += rerun
		s.retries += retries
		s.wedges += wedges
		s.auditEvents += len(lines)
		if fi != nil {
			s.auditBytes += fi.Size()
		}
		s.suppressed += suppressed
		s.floodAudited += flooder
		s.modelBytes = modelBytes
		s.legs = append(s.legs, fmt.Sprintf("leg %d (%s): %d rounds, %d coordinator processes, %d audit events, audit.db %d bytes, peak %s",
			l.n, mode, len(recs), starts, len(lines), sizeOf(fi), mib(slices.Max(append(peaks, 0)))))
	})
	if wedges > 0 {
		t.Errorf("%d wedges in the %s leg", wedges, mode)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}

// started is the time of the first record of the first coordinator.
func (l *soakLeg) started(logs [][]map[string]any) time.Time {
	if len(logs) > 0 && len(logs[0]) > 0 {
		if s, ok := logs[0][0]["time"].(string); ok {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return ts
			}
		}
	}
	return time.Now()
}
