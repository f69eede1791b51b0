//go:build unix

package participant

import (
	"os/exec"
	"syscall"
)

// openNonblock makes opening a named pipe return at once instead of
// waiting for a writer; it changes nothing for a regular file.
const openNonblock = syscall.O_NONBLOCK

// setProcessGroup starts cmd in a process group of its own and makes its
// cancellation kill the whole group, so that a trainer's workers (a
// PyTorch DataLoader, a shell's children) die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The leader has not been waited for yet, so its pid is still
		// the group's id.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killGroup kills what is left of the trainer's process group after its
// leader exited. The group id cannot name another group meanwhile: Linux
// does not reuse a pid while a group of that id has members, and when it
// has none the kill finds nothing (ESRCH, ignored).
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
