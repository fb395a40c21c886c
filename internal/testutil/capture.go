package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Capture is a running tcpdump writing a pcap file.
type Capture struct {
	path string
	proc *Process
}

// StartCapture runs tcpdump on iface inside ns with the BPF capture filter ("" = everything),
// writing every packet immediately to a pcap in tb.TempDir(), and returns once tcpdump reports
// it is listening. The capture is stopped in tb.Cleanup; if the test failed, a tshark summary of
// the first packets is logged.
func StartCapture(tb testing.TB, ns *NetNS, iface, filter string) *Capture {
	tb.Helper()
	RequireRoot(tb)
	RequireTool(tb, "tcpdump", "tcpdump")
	dir := tb.TempDir()
	c := &Capture{path: filepath.Join(dir, ns.Name()+"-"+iface+".pcap")}
	tb.Cleanup(func() {
		if tb.Failed() {
			if out, err := RunTShark(c.path); err == nil {
				tb.Logf("capture %s on %s/%s:\n%s", c.path, ns.Name(), iface, firstLines(out, 60))
			}
		}
	})
	argv := []string{"tcpdump", "-i", iface, "-nn", "-U", "--immediate-mode", "-Z", "root", "-w", c.path}
	if filter != "" {
		argv = append(argv, filter)
	}
	c.proc = StartProcess(tb, ns, filepath.Join(dir, "tcpdump-"+iface+".log"), argv...)
	err := Poll(5*time.Second, func() (bool, error) {
		if done, err := c.proc.Exited(); done {
			return false, err
		}
		return strings.Contains(c.proc.Log(), "listening on"), nil
	})
	if err != nil {
		tb.Fatalf("tcpdump on %s/%s did not start: %v\n%s", ns.Name(), iface, err, c.proc.Log())
	}
	return c
}

// Path is the pcap file; it is complete only after Stop.
func (c *Capture) Path() string { return c.path }

// quietPeriod is how long the pcap must stop growing before Stop ends tcpdump: on a loaded
// machine tcpdump may still be reading packets that were sent before Stop was called.
const quietPeriod = 300 * time.Millisecond

// Stop waits until the pcap has not grown for quietPeriod (at most 3 s), ends tcpdump with
// SIGTERM and returns the pcap path. Call it after the traffic of interest has been answered.
func (c *Capture) Stop() string {
	if done, _ := c.proc.Exited(); !done {
		last, stable := int64(-1), time.Time{}
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			st, err := os.Stat(c.path)
			if err != nil {
				break
			}
			if st.Size() != last {
				last, stable = st.Size(), time.Now()
			} else if time.Since(stable) >= quietPeriod {
				break
			}
		}
	}
	_ = c.proc.Stop()
	return c.path
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
