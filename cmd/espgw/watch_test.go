package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/internal/testutil"
)

// serveStatus answers status requests on a unix socket in dir, like the daemon's control
// socket, with a tunnel whose SA grows by 1000 bytes and 10 packets each way per answer.
func serveStatus(t *testing.T) *control.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	n := uint64(0)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var req control.Request
			if json.NewDecoder(c).Decode(&req) == nil {
				mu.Lock()
				n++
				k := n
				mu.Unlock()
				st := &control.Status{Datapath: "userspace",
					IPsecSAs: []control.IPsecSA{{Connection: "bank", Tunnel: "api", SPIIn: "c0000001", SPIOut: "c0000002",
						BytesIn: 1000 * k, BytesOut: 1000 * k, PacketsIn: 10 * k, PacketsOut: 10 * k}},
					Tunnels: []control.TunnelState{{Connection: "bank", Tunnel: "api", State: control.TunnelUp}}}
				json.NewEncoder(c).Encode(control.Response{Status: st})
			}
			c.Close()
		}
	}()
	c, err := control.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// openPTY returns the controller and the terminal side of a new pseudo-terminal.
func openPTY(t *testing.T) (ctrl, term *os.File) {
	t.Helper()
	ctrl, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testutil.Skipf(t, "no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ctrl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctrl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ctrl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { term.Close() })
	return ctrl, term
}

// TestWatchStatus: piped, one line per tunnel and refresh with the rates of the counters'
// growth; on a terminal, the screen is cleared and redrawn with the tables and a rates table.
func TestWatchStatus(t *testing.T) {
	c := serveStatus(t)
	const interval = 200 * time.Millisecond

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*interval+interval/2)
	err = watchStatus(ctx, w, c, interval)
	cancel()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	out := string(b)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	line := regexp.MustCompile(`^\S+Z bank/api up in (\d+) B/s ([\d.]+) pkt/s out (\d+) B/s ([\d.]+) pkt/s$`)
	if len(lines) < 3 {
		t.Fatalf("piped: %d lines, want at least 3:\n%s", len(lines), out)
	}
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("piped line %q does not match %v", l, line)
		}
		// Each refresh adds 1000 bytes and 10 packets each way: whatever the timing, the byte
		// rate is 100 times the packet rate, and both are 0 only at first.
		bytesIn, _ := strconv.ParseFloat(m[1], 64)
		pktsIn, _ := strconv.ParseFloat(m[2], 64)
		bytesOut, _ := strconv.ParseFloat(m[3], 64)
		if i > 0 && (bytesIn == 0 || math.Abs(bytesIn-100*pktsIn) > 100 || bytesOut != bytesIn) {
			t.Errorf("piped line %q: want equal non-zero byte rates both ways, 100 times the packet rate", l)
		}
	}

	ctrl, term := openPTY(t)
	ctx, cancel = context.WithTimeout(context.Background(), interval+interval/2)
	err = watchStatus(ctx, term, c, interval)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	ctrl.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := ctrl.Read(buf)
	screen := string(buf[:n])
	if !strings.HasPrefix(screen, clearScreen) || !strings.Contains(screen, "IPsec SAs:") || !strings.Contains(screen, "Rates:") ||
		!regexp.MustCompile(`bank/api +up +\d+ +\d+ +[\d.]+ +[\d.]+`).MatchString(screen) {
		t.Errorf("terminal: want the screen cleared, the status tables and a rates row, got:\n%q", screen)
	}
}
