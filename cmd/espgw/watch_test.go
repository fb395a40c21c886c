package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/internal/testutil"
)

// serveStatus answers status requests on a unix socket in dir, like the daemon's control
// socket, with a tunnel whose SA grows by 1000 bytes and 10 packets each way per answer.
// It answers n requests; at the next it calls done and hangs up, so a watch that ends with
// done has shown exactly n refreshes, however slow the machine.
func serveStatus(t *testing.T, n uint64, done func()) *control.Client {
	t.Helper()
	k := uint64(0)
	path := fakeDaemon(t, func(control.Request) *control.Response {
		if k++; k > n {
			done()
			return nil
		}
		st := &control.Status{Datapath: "userspace",
			IPsecSAs: []control.IPsecSA{{Connection: "bank", Tunnel: "api", SPIIn: "c0000001", SPIOut: "c0000002",
				BytesIn: 1000 * k, BytesOut: 1000 * k, PacketsIn: 10 * k, PacketsOut: 10 * k}},
			Tunnels: []control.TunnelState{{Connection: "bank", Tunnel: "api", State: control.TunnelUp}}}
		return &control.Response{Status: st}
	})
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
	const interval = 200 * time.Millisecond
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	err = watchRefreshes(t, w, 3, interval)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	out := string(b)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	line := regexp.MustCompile(`^\S+Z bank/api up in (\d+) B/s ([\d.]+) pkt/s out (\d+) B/s ([\d.]+) pkt/s$`)
	if len(lines) != 3 {
		t.Fatalf("piped: %d lines, want 3 (one per refresh):\n%s", len(lines), out)
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
	if err := watchRefreshes(t, term, 1, interval); err != nil {
		t.Fatal(err)
	}
	// The screen is in the terminal's buffer; a read may return it in parts.
	rateRow := regexp.MustCompile(`bank/api +up +\d+ +\d+ +[\d.]+ +[\d.]+`)
	var screen []byte
	buf := make([]byte, 64<<10)
	ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !rateRow.Match(screen) {
		n, err := ctrl.Read(buf)
		screen = append(screen, buf[:n]...)
		if err != nil {
			break
		}
	}
	if s := string(screen); !strings.HasPrefix(s, clearScreen) || !strings.Contains(s, "IPsec SAs:") || !strings.Contains(s, "Rates:") ||
		!rateRow.MatchString(s) {
		t.Errorf("terminal: want the screen cleared, the status tables and a rates row, got:\n%q", s)
	}
}

// watchRefreshes runs watchStatus on w against serveStatus until it has shown n refreshes
// (within a minute, so that a loaded machine is slow, not wrong).
func watchRefreshes(t *testing.T, w io.Writer, n uint64, interval time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := watchStatus(ctx, w, serveStatus(t, n, cancel), interval)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("watch: no %d refreshes within a minute", n)
	}
	return err
}
