package testutil

import (
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
