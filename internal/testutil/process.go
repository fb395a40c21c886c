package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopTimeout is how long Process.Stop waits after SIGTERM before it sends SIGKILL.
const StopTimeout = 3 * time.Second

// logTailLines is how many lines of a process log are dumped when a test fails.
const logTailLines = 60

// Process is a background process started by StartProcess.
type Process struct {
	Argv    []string
	LogPath string // stdout and stderr of the process

	pid  int
	proc *os.Process
	done chan struct{} // closed when the process has been reaped
	err  error         // wait status, valid after done
}

// StartProcess starts argv in the background inside ns (nil: the test's own namespace) with
// stdout and stderr appended to logfile ("" = a file in tb.TempDir()). tb.Cleanup stops exactly
// that PID (SIGTERM, SIGKILL after StopTimeout) and, if the test failed, logs the last lines of
// logfile.
func StartProcess(tb testing.TB, ns *NetNS, logfile string, argv ...string) *Process {
	tb.Helper()
	if len(argv) == 0 {
		tb.Fatalf("StartProcess: empty argv")
	}
	if logfile == "" {
		logfile = filepath.Join(tb.TempDir(), filepath.Base(argv[0])+".log")
	}
	f, err := os.OpenFile(logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatalf("StartProcess %s: log file: %v", argv[0], err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if ns != nil {
		cmd = ns.Command(argv...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		tb.Fatalf("StartProcess %s: %v", strings.Join(argv, " "), err)
	}
	p := &Process{Argv: argv, LogPath: logfile, pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Logf("%v", err)
		}
		if tb.Failed() {
			tb.Logf("last lines of %s (%s):\n%s", logfile, argv[0], Tail(logfile, logTailLines))
		}
	})
	return p
}

// PID is the process ID (the process itself, not a wrapper).
func (p *Process) PID() int { return p.pid }

// Exited reports whether the process has ended, and its wait error (nil for exit status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits up to timeout for the process to exit by itself and returns its wait error.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Argv[0], p.pid, timeout)
	}
}

// Stop sends SIGTERM, then SIGKILL if the process is still running after StopTimeout, and
// waits for it. It is idempotent; it returns an error only if the process could not be ended.
func (p *Process) Stop() error {
	if done, _ := p.Exited(); done {
		return nil
	}
	if err := p.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", p.Argv[0], p.pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(StopTimeout):
	}
	if err := p.proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.Argv[0], p.pid, err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v, killed", p.Argv[0], p.pid, StopTimeout)
	case <-time.After(StopTimeout):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Argv[0], p.pid)
	}
}

// Log returns what the process wrote so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the file at path (or the read error as text).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitFor polls cond every 50 ms until it returns true, and fails the test if that does not
// happen within timeout. An error from cond does not stop the polling (the condition may not be
// checkable yet); the last one is reported on timeout.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() (bool, error)) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Poll is WaitFor returning an error instead of failing the test.
func Poll(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("condition not met within %v, last error: %w", timeout, last)
			}
			return fmt.Errorf("condition not met within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
