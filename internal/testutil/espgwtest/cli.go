package espgwtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// CLI runs `espgw --socket S args...` and returns its combined output. It runs outside the
// namespace: the socket is a file.
func (g *Gateway) CLI(ctx context.Context, args ...string) (string, error) {
	cmd := g.Command(ctx, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("espgw %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Command is `espgw --socket S args...` for the caller to run (outside the namespace).
func (g *Gateway) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, bin, append([]string{"--socket", g.socket}, args...)...)
}

// Up runs `espgw up target` (NAME or NAME/TUNNEL), which returns once the negotiation ended,
// and fails after timeout.
func (g *Gateway) Up(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := g.CLI(ctx, "up", target)
	return err
}

// Result is the outcome of one espgw command run by Run.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
}

// Run runs `espgw args...` inside ns (for commands that look at the namespace: doctor, ping),
// or where the test runs if ns is nil (import, sheet, config check), and returns its output
// and exit status; err is set only if it could not run or ctx ended.
func Run(ctx context.Context, ns *testutil.NetNS, args ...string) (Result, error) {
	if bin == "" {
		return Result{}, fmt.Errorf("espgwtest: no espgw binary: call Find or Build from TestMain")
	}
	cmd := exec.Command(bin, args...)
	if ns != nil {
		cmd = ns.Command(append([]string{bin}, args...)...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("espgw %s: %w", strings.Join(args, " "), err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	err := cmd.Wait()
	r := Result{Stdout: out.String(), Stderr: errOut.String(), Code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		return r, fmt.Errorf("espgw %s: %w", strings.Join(args, " "), ctx.Err())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return r, fmt.Errorf("espgw %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// Err is nil for exit status 0, else an error with the command's standard error.
func (r Result) Err() error {
	if r.Code == 0 {
		return nil
	}
	return fmt.Errorf("espgw exited with %d: %s", r.Code, strings.TrimSpace(r.Stderr))
}

// RunIn runs `espgw args...` in the gateway's namespace with its socket; args choose the
// configuration (--config g.ConfigPath()) if the command needs it.
func (g *Gateway) RunIn(ctx context.Context, args ...string) (Result, error) {
	return Run(ctx, g.NS, append([]string{"--socket", g.socket}, args...)...)
}

// ConfigPath is the gateway's espgw.yaml.
func (g *Gateway) ConfigPath() string { return filepath.Join(g.Dir, "espgw.yaml") }
