//go:build !unix

package participant

import "os/exec"

// openNonblock is not needed where there are no named pipes to block on.
const openNonblock = 0

// setProcessGroup kills only the trainer's own process on systems without
// POSIX process groups.
func setProcessGroup(cmd *exec.Cmd) {}

// killGroup has no group to kill on systems without process groups.
func killGroup(cmd *exec.Cmd) {}
