package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The systemd units set MemoryDenyWriteExecute=yes, which kills or fails a
// process that maps memory both writable and executable. The kernel has
// the same rule since Linux 6.3, prctl(PR_SET_MDWE), kept across execve;
// TestMemoryDenyWriteExecute runs fedguard under it.
const (
	prSetMDWE          = 65 // PR_SET_MDWE, <linux/prctl.h>
	mdweRefuseExecGain = 1  // PR_MDWE_REFUSE_EXEC_GAIN
	// mdweExecEnv, when set to a binary, makes the test binary a launcher
	// (see init): it turns on MDWE and execs that binary with its own
	// arguments.
	mdweExecEnv = "FEDGUARD_TEST_MDWE_EXEC"
	// Launcher exit codes.
	mdweUnsupported = 3 // the kernel has no PR_SET_MDWE
	mdweIneffective = 4 // a writable+executable mapping was still allowed
)

func init() {
	bin := os.Getenv(mdweExecEnv)
	if bin == "" {
		return
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, mdweRefuseExecGain, 0, 0, 0, 0); e != 0 {
		fmt.Fprintf(os.Stderr, "prctl(PR_SET_MDWE): %v\n", e)
		os.Exit(mdweUnsupported)
	}
	// The rule is on: a W+X mapping must now be refused.
	if b, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC, syscall.MAP_PRIVATE|syscall.MAP_ANON); err == nil {
		_ = syscall.Munmap(b)
		fmt.Fprintln(os.Stderr, "PR_SET_MDWE is set but a writable+executable mapping was allowed")
		os.Exit(mdweIneffective)
	}
	err := syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", bin, err)
	os.Exit(1)
}

// TestMemoryDenyWriteExecute runs a whole demo federation (coordinator,
// four hospitals, mTLS, bbolt, signed manifests) in a process that may not
// map memory writable and executable, as MemoryDenyWriteExecute=yes in
// deploy/systemd makes it: Go's runtime must never need such a mapping.
// It is skipped on kernels older than 6.3.
func TestMemoryDenyWriteExecute(t *testing.T) {
	cmd := exec.Command(os.Args[0], "demo", "--rounds", "2", "--json")
	cmd.Env = append(os.Environ(), mdweExecEnv+"="+fedguardBin)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("fedguard demo under PR_SET_MDWE did not finish in 2 minutes:\n%s", out)
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == mdweUnsupported {
		t.Skipf("this kernel has no PR_SET_MDWE (Linux 6.3+): %s", out)
	}
	if err != nil {
		t.Fatalf("fedguard demo under PR_SET_MDWE: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"summary":{"rounds":2`) {
		t.Errorf("fedguard demo under PR_SET_MDWE printed no summary of 2 rounds:\n%s", out)
	}
}
