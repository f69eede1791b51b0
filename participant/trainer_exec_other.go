//go:build !unix

package participant

import "os/exec"

// setProcessGroup kills only the trainer's own process on systems without
// POSIX process groups.
func setProcessGroup(cmd *exec.Cmd) {}
