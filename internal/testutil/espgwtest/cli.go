package espgwtest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// CLI runs `espgw --socket S args...` and returns its combined output. It runs outside the
// namespace: the socket is a file.
func (g *Gateway) CLI(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--socket", g.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("espgw %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Up runs `espgw up target` (NAME or NAME/TUNNEL), which returns once the negotiation ended,
// and fails after timeout.
func (g *Gateway) Up(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := g.CLI(ctx, "up", target)
	return err
}

// Run runs the espgw binary under test with args, outside any namespace and without a
// daemon (import, sheet, config check), and returns its stdout and stderr.
func Run(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("espgw %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errOut.Bytes()))
	}
	return out.String(), errOut.String(), err
}
