// Package process starts a fedguard coordinator as a child process and
// learns its listening address from its JSON logs. The round benchmark uses
// it to measure the coordinator's own peak memory, and the integration tests
// to kill and restart a real coordinator.
package process

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Coordinator is a running `fedguard coordinator` child process.
type Coordinator struct {
	// Addr is the address the coordinator listens on.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	mu   sync.Mutex
	logs []map[string]any
}

// StartCoordinator runs `bin --log-format json coordinator --config
// configPath [extra...]` and waits (up to a minute) until it logs its
// listening address. Every log line is also copied to logW when it is not
// nil.
func StartCoordinator(ctx context.Context, bin, configPath string, logW io.Writer, extra ...string) (*Coordinator, error) {
	args := append([]string{"--log-format", "json", "coordinator", "--config", configPath}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start coordinator: %w", err)
	}
	c := &Coordinator{cmd: cmd, done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if logW != nil {
				fmt.Fprintf(logW, "%s\n", line)
			}
			var m map[string]any
			if json.Unmarshal(line, &m) != nil {
				continue
			}
			c.mu.Lock()
			c.logs = append(c.logs, m)
			c.mu.Unlock()
			if m["msg"] == "coordinator listening" {
				if a, ok := m["addr"].(string); ok {
					select {
					case addrCh <- a:
					default:
					}
				}
			}
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case c.Addr = <-addrCh:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("coordinator exited before listening: %v%s", c.err, c.lastError())
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-c.done
		return nil, errors.New("coordinator did not start listening within a minute")
	}
}

func (c *Coordinator) lastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.logs) - 1; i >= 0; i-- {
		if e, ok := c.logs[i]["error"]; ok {
			return fmt.Sprintf(" (last logged error: %v)", e)
		}
	}
	return ""
}

// Logs returns the JSON log records seen so far.
func (c *Coordinator) Logs() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]map[string]any(nil), c.logs...)
}

// PID is the process id, for sampling /proc/PID/status while it runs.
func (c *Coordinator) PID() int { return c.cmd.Process.Pid }

// Signal sends sig to the process.
func (c *Coordinator) Signal(sig syscall.Signal) error { return c.cmd.Process.Signal(sig) }

// Wait waits for the process to exit and returns its exit error.
func (c *Coordinator) Wait() error {
	<-c.done
	return c.err
}

// Done is closed when the process has exited.
func (c *Coordinator) Done() <-chan struct{} { return c.done }

// CPUSeconds is the user and system CPU time the process used, once it
// exited: under a loaded machine a steadier measure of its work than the
// wall time.
func (c *Coordinator) CPUSeconds() (float64, error) {
	select {
	case <-c.done:
	default:
		return 0, errors.New("process: still running")
	}
	return (c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()).Seconds(), nil
}

// PeakRSS is the process's peak resident set size in bytes, once it exited.
func (c *Coordinator) PeakRSS() (uint64, error) {
	select {
	case <-c.done:
	default:
		return 0, errors.New("process: still running")
	}
	ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, errors.New("process: no resource usage on this platform")
	}
	return uint64(ru.Maxrss) * 1024, nil // Linux reports kilobytes
}
