package audit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// helperEnv names the database TestHelperAppender appends to; it is set
// only in the child process TestAppendSurvivesSIGKILL starts.
const helperEnv = "FEDGUARD_AUDIT_HELPER_DB"

// TestHelperAppender is not a test: it is the child process of
// TestAppendSurvivesSIGKILL. It appends from several goroutines as fast as
// it can and prints each acknowledged sequence number, until it is killed.
func TestHelperAppender(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return // run directly: nothing to do
	}
	l, err := Open(path, Options{Origin: testOrigin})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				entries := make([]Entry, 1+i%3)
				for j := range entries {
					entries[j] = synthEntry(g*1_000_000 + i)
				}
				evs, err := l.Append(context.Background(), entries...)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				var buf []byte
				for _, e := range evs {
					buf = strconv.AppendUint(buf, e.Seq, 10)
					buf = append(buf, '\n')
				}
				mu.Lock()
				os.Stdout.Write(buf) // one write: the parent sees whole lines
				mu.Unlock()
			}
		}()
	}
	// Never outlive a parent that failed to kill us.
	time.Sleep(time.Minute)
	os.Exit(3)
}

// TestAppendSurvivesSIGKILL kills a real appending process with SIGKILL,
// twice, and checks that the database opens, verifies, and holds every
// event the process had acknowledged.
func TestAppendSurvivesSIGKILL(t *testing.T) {
	signer, verifiers := randomKey(t, testOrigin)
	path := filepath.Join(t.TempDir(), "audit.db")
	var acked []uint64
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAppender$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		before := len(acked)
		deadline := time.Now().Add(5 * time.Second)
		// Read acknowledgements for a while, then kill mid-stream.
		for len(acked)-before < 1500 && time.Now().Before(deadline) && sc.Scan() {
			if seq, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
				acked = append(acked, seq)
			}
		}
		if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
			t.Fatal(err)
		}
		// Acknowledgements written before the kill are still in the pipe.
		for sc.Scan() {
			if seq, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
				acked = append(acked, seq)
			}
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.String() != "signal: killed" {
			t.Fatalf("round %d: child ended with %v, want killed by SIGKILL; stderr:\n%s", round, err, stderr.Bytes())
		}
		if len(acked)-before == 0 {
			t.Fatalf("round %d: the child acknowledged no appends; stderr:\n%s", round, stderr.Bytes())
		}

		l, err := Open(path, Options{Signer: signer})
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL = %v", round, err)
		}
		size := l.Size()
		seen := make(map[uint64]bool, len(acked))
		for _, s := range acked {
			if s >= size {
				t.Errorf("round %d: seq %d was acknowledged but the log holds only %d events", round, s, size)
			}
			if seen[s] {
				t.Errorf("round %d: seq %d was acknowledged twice", round, s)
			}
			seen[s] = true
		}
		if _, err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := l.Export(&buf); err != nil {
			t.Fatal(err)
		}
		sum, err := Verify(&buf, VerifyOptions{Verifiers: verifiers, Origin: testOrigin})
		if err != nil {
			t.Fatalf("round %d: Verify after SIGKILL = %v", round, err)
		}
		if sum.Events != size || sum.Covered != size {
			t.Errorf("round %d: Verify = %+v, want %d events, all covered", round, sum, size)
		}
		t.Logf("round %d: %d acknowledged, %d stored", round, len(acked), size)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
