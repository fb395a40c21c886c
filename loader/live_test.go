package loader

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

// liveTopology is two namespaces joined by a veth pair: 10.1.0.1 (a, the gateway side we
// program) and 10.2.0.1 (b, the remote site).
type liveTopology struct {
	a, b       *testutil.NetNS
	aDev, bDev string
	loader     *Loader
}

func newLiveTopology(t *testing.T, opts Options) *liveTopology {
	t.Helper()
	top := &liveTopology{a: testutil.NewNetNS(t, "espgw-ld-a"), b: testutil.NewNetNS(t, "espgw-ld-b")}
	top.aDev, top.bDev = vethPair(t, top.a, top.b, "10.1.0.1/8", "10.2.0.1/8")
	top.loader = openLoader(t, opts)
	return top
}

var livePolicy = Policy{
	ID:       7,
	Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")},
	SAUp:     true,
	OutSPI:   0xc0de0007,
	MSS:      1000,
}

func TestLiveMSSClamp(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "tcx"
		if legacy {
			name = "clsact"
		}
		t.Run(name, func(t *testing.T) {
			top := newLiveTopology(t, Options{})
			for _, ns := range []*testutil.NetNS{top.a, top.b} {
				ns.Exec(t, "sysctl", "-qw", "net.ipv4.tcp_timestamps=0") // TCP_MAXSEG = MSS exactly
			}
			l := top.loader
			if err := l.SetPolicy(livePolicy); err != nil {
				t.Fatal(err)
			}
			top.a.In(t, func() error {
				for _, h := range []Hook{HookEgress, HookIngress} {
					if err := l.AttachTC(top.aDev, h, TCOptions{Legacy: legacy}); err != nil {
						t.Fatal(err)
					}
				}
				return nil
			})
			csumA := tcpCounter(t, top.a, "InCsumErrors")
			csumB := tcpCounter(t, top.b, "InCsumErrors")
			segsB := tcpCounter(t, top.b, "InSegs")

			var ln net.Listener
			top.b.In(t, func() error {
				var err error
				if ln, err = net.Listen("tcp4", "10.2.0.1:0"); err != nil {
					t.Fatal(err)
				}
				return nil
			})
			defer ln.Close()
			payload := bytes.Repeat([]byte("espgw mss clamp "), 64*1024) // 1 MiB
			type result struct {
				mss int
				err error
			}
			server := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					server <- result{err: err}
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				mss, err := tcpMaxSeg(c)
				if err == nil {
					_, err = io.Copy(c, io.LimitReader(c, int64(len(payload)))) // echo
				}
				server <- result{mss, err}
			}()

			var c net.Conn
			top.a.In(t, func() error {
				var err error
				if c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second); err != nil {
					t.Fatalf("connect through the clamp: %v", err)
				}
				return nil
			})
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			clientMSS, err := tcpMaxSeg(c)
			if err != nil {
				t.Fatal(err)
			}
			go c.Write(payload)
			echo := make([]byte, len(payload))
			if _, err := io.ReadFull(c, echo); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(echo, payload) {
				t.Fatal("echo differs from what was sent")
			}
			srv := <-server
			if srv.err != nil {
				t.Fatalf("server: %v", srv.err)
			}

			if srv.mss != int(livePolicy.MSS) {
				t.Errorf("receiver (b) TCP_MAXSEG = %d, want %d (SYN clamped on egress)", srv.mss, livePolicy.MSS)
			}
			if clientMSS != int(livePolicy.MSS) {
				t.Errorf("sender (a) TCP_MAXSEG = %d, want %d (SYN-ACK clamped on ingress)", clientMSS, livePolicy.MSS)
			}
			if d := tcpCounter(t, top.a, "InCsumErrors") - csumA; d != 0 {
				t.Errorf("a: TcpInCsumErrors rose by %d", d)
			}
			if d := tcpCounter(t, top.b, "InCsumErrors") - csumB; d != 0 {
				t.Errorf("b: TcpInCsumErrors rose by %d", d)
			}
			if d := tcpCounter(t, top.b, "InSegs") - segsB; d < 100 {
				t.Errorf("b: only %d segments received", d)
			}
			pc, err := l.PolicyCounters()
			if err != nil {
				t.Fatal(err)
			}
			if got := pc[7]; got.MSSRewrites != 2 || got.Out.Packets == 0 || got.In.Packets == 0 {
				t.Errorf("policy counters %+v, want 2 MSS rewrites and traffic both ways", got)
			}
		})
	}
}

func tcpMaxSeg(c net.Conn) (int, error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	var serr error
	err = raw.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
	if err == nil {
		err = serr
	}
	return mss, err
}

// TestLiveFailClosed marks the SA down: no protected packet may leave a, and one event arrives.
func TestLiveFailClosed(t *testing.T) {
	testutil.RequireTool(t, "tcpdump", "tcpdump")
	top := newLiveTopology(t, Options{EventInterval: time.Hour})
	l := top.loader
	down := livePolicy
	down.SAUp = false
	down.Selector.Proto = 17
	down.Selector.RemotePort = 9999
	if err := l.SetPolicy(down); err != nil {
		t.Fatal(err)
	}
	top.a.In(t, func() error {
		if err := l.AttachTC(top.aDev, HookEgress, TCOptions{}); err != nil {
			t.Fatal(err)
		}
		return nil
	})

	// Receivers in b, so no ICMP port unreachable makes the senders' writes fail.
	top.b.In(t, func() error {
		for _, port := range []string{"9998", "9999"} {
			rx, err := net.ListenPacket("udp4", "10.2.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rx.Close() })
		}
		return nil
	})
	var protected, control net.Conn
	top.a.In(t, func() error {
		var err error
		if protected, err = net.Dial("udp4", "10.2.0.1:9999"); err != nil {
			t.Fatal(err)
		}
		if control, err = net.Dial("udp4", "10.2.0.1:9998"); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	defer protected.Close()
	defer control.Close()
	// Resolve the neighbour first so no packet waits in the ARP queue during the capture.
	control.Write([]byte("warm-up"))
	time.Sleep(100 * time.Millisecond)

	pcap := filepath.Join(t.TempDir(), "b.pcap")
	dump := top.b.Command("tcpdump", "-Z", "root", "--immediate-mode",
		"-U", "-n", "-i", top.bDev, "-w", pcap, "udp and src host 10.1.0.1")
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dump.Process.Kill(); dump.Wait() })
	lines := bufio.NewScanner(stderr)
	for !strings.Contains(lines.Text(), "listening on") {
		if !lines.Scan() {
			t.Fatalf("tcpdump did not start: %v", lines.Err())
		}
	}
	go io.Copy(io.Discard, stderr)

	for i := 0; i < 5; i++ {
		protected.Write([]byte("secret"))
		control.Write([]byte("public"))
		time.Sleep(10 * time.Millisecond)
	}

	select {
	case ev := <-l.Events():
		if ev.PolicyID != 7 || ev.Flow.DstPort != 9999 || ev.Flow.Dst != addr("10.2.0.1") {
			t.Errorf("event %+v, want policy 7 to 10.2.0.1:9999", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no interesting-traffic event")
	}
	select {
	case ev := <-l.Events():
		t.Errorf("second event %+v within the event interval", ev)
	case <-time.After(200 * time.Millisecond):
	}

	time.Sleep(100 * time.Millisecond)
	dump.Process.Signal(syscall.SIGTERM)
	dump.Wait()
	out, err := exec.Command("tcpdump", "-n", "-r", pcap).CombinedOutput()
	if err != nil {
		t.Fatalf("read capture: %v\n%s", err, out)
	}
	text := string(out)
	if n := strings.Count(text, "10.2.0.1.9999"); n != 0 {
		t.Errorf("%d protected packets left a with the SA down:\n%s", n, text)
	}
	if n := strings.Count(text, "10.2.0.1.9998"); n != 5 {
		t.Errorf("captured %d control packets, want 5 (is the capture working?)\n%s", n, text)
	}
	pc, _ := l.PolicyCounters()
	if got := pc[7]; got.SADownDrops != 5 || got.Events != 1 {
		t.Errorf("policy counters %+v, want 5 drops and 1 event", got)
	}
	_ = os.Remove(pcap)
}
