package testutil

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestVethPingCapture(t *testing.T) {
	a := NewNetNS(t, "tua")
	b := NewNetNS(t, "tub")
	Veth(t, a, "a0", "192.0.2.1/24", b, "b0", "192.0.2.2/24")
	b.AddAddr(t, "lo", "10.20.0.10/32")
	a.AddRoute(t, "10.20.0.0/24", "192.0.2.2", "")
	c := StartCapture(t, a, "a0", "icmp")

	if err := Ping(a, "192.0.2.1", "10.20.0.10", 2); err != nil {
		t.Fatal(err)
	}
	// 10.20.0.11 is routed but nobody answers: Ping must say so.
	if err := Ping(a, "192.0.2.1", "10.20.0.11", 1); err == nil || !strings.Contains(err.Error(), "0 of 1") {
		t.Errorf("ping to a silent address: err %v, want 0 of 1 replies", err)
	}
	pcap := c.Stop()

	rows := TShark(t, pcap, Keys{}, "icmp.type == 0", "ip.src", "ip.dst", "icmp.seq")
	if len(rows) != 2 || rows[0].First("ip.src") != "10.20.0.10" || rows[1].First("icmp.seq") != "2" {
		t.Errorf("echo replies on the wire: %v, want 2 from 10.20.0.10", rows)
	}
	if got := Protocols(t, pcap); !slices.Contains(got, "icmp") || slices.Contains(got, "esp") {
		t.Errorf("protocols %v, want icmp and no esp", got)
	}
}

// TestPingFlow: a paced flow gets every reply; when the peer's firewall drops a stretch of
// requests, exactly those count as lost, with the time they were sent.
func TestPingFlow(t *testing.T) {
	RequireTool(t, "nft", "nftables")
	a := NewNetNS(t, "tufa")
	b := NewNetNS(t, "tufb")
	Veth(t, a, "a0", "192.0.2.1/24", b, "b0", "192.0.2.2/24")
	f, err := PingFlow(a, "192.0.2.1", "192.0.2.2", 20*time.Millisecond, 20)
	if err != nil || f.Sent != 20 || f.Received != 20 || len(f.Lost) != 0 {
		t.Fatalf("flow over a veth: %+v, %v; want 20 of 20", f, err)
	}
	b.Exec(t, "nft", "add table inet tfl; add chain inet tfl input { type filter hook input priority 0; }; add rule inet tfl input icmp type echo-request icmp sequence 5-9 drop")
	f, err = PingFlow(a, "192.0.2.1", "192.0.2.2", 20*time.Millisecond, 20)
	if err != nil || f.Received != 15 || len(f.Lost) != 5 || f.Lost[0] < 80*time.Millisecond {
		t.Errorf("flow with requests 5-9 dropped: %+v, %v; want 15 replies, 5 lost from 100 ms on", f, err)
	}
}

func TestNetNSDoAndExec(t *testing.T) {
	n := NewNetNS(t, "tuexec")
	out := n.Exec(t, "ip", "-o", "link", "show", "lo")
	if !strings.Contains(out, "UP") {
		t.Errorf("lo in %s: %q, want UP", n.Name(), out)
	}
	n.Sysctl(t, "net.ipv4.ip_forward", "1")
	if got := strings.TrimSpace(n.Exec(t, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Errorf("ip_forward in netns %s = %q, want 1", n.Name(), got)
	}
}

func TestStartProcessStop(t *testing.T) {
	n := NewNetNS(t, "tuproc")
	log := filepath.Join(t.TempDir(), "sleep.log")
	// sh ignores SIGTERM here, so Stop has to escalate to SIGKILL.
	p := StartProcess(t, n, log, "sh", "-c", `trap "" TERM; echo started; exec sleep 60`)
	WaitFor(t, 5*time.Second, func() (bool, error) { return strings.Contains(p.Log(), "started"), nil })
	start := time.Now()
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a process ignoring SIGTERM: %v, want an error saying it was killed", err)
	}
	if d := time.Since(start); d < StopTimeout {
		t.Errorf("Stop returned after %v, want it to wait %v for SIGTERM", d, StopTimeout)
	}
	if done, _ := p.Exited(); !done {
		t.Errorf("process %d still running after Stop", p.PID())
	}
}

// TestTCPMaxSeg: over a 1400-byte MTU link without TCP timestamps both ends of a connection
// send 1360-byte segments (MTU - 20 IP - 20 TCP).
func TestTCPMaxSeg(t *testing.T) {
	a, b := NewNetNS(t, "tumssa"), NewNetNS(t, "tumssb")
	Veth(t, a, "a0", "192.0.2.1/24", b, "b0", "192.0.2.2/24")
	for _, end := range []struct {
		ns  *NetNS
		dev string
	}{{a, "a0"}, {b, "b0"}} {
		end.ns.Exec(t, "ip", "link", "set", "dev", end.dev, "mtu", "1400")
		end.ns.Sysctl(t, "net.ipv4.tcp_timestamps", "0")
	}
	var ln net.Listener
	if err := b.Do(func() (err error) { ln, err = net.Listen("tcp4", "192.0.2.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var c net.Conn
	if err := a.Do(func() (err error) { c, err = net.Dial("tcp4", ln.Addr().String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, end := range []net.Conn{c, s} {
		if mss, err := TCPMaxSeg(end); err != nil || mss != 1360 {
			t.Errorf("TCPMaxSeg(%v) = %d, %v; want 1360", end.LocalAddr(), mss, err)
		}
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if _, err := TCPMaxSeg(p); err == nil {
		t.Errorf("TCPMaxSeg of a net.Pipe end: no error")
	}
}
