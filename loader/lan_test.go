package loader

import (
	"net"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader/pkttest"
)

// TestLANIngressProgram runs the program HookLANIngress attaches: at ingress, it treats the
// source as the local side, like HookEgress.
func TestLANIngressProgram(t *testing.T) {
	l := openLoader(t, Options{EventInterval: time.Hour})
	setupPolicies(t, l)
	prog, ingress, err := l.tcProgram(HookLANIngress, false)
	if err != nil {
		t.Fatal(err)
	}
	if !ingress {
		t.Error("HookLANIngress attaches at egress, want ingress")
	}
	syn := tcpFrame("10.1.0.5", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1460), nil)
	tests := []struct {
		name   string
		in     []byte
		ret    uint32
		out    []byte
		policy map[uint32]PolicyCounters
	}{
		{name: "from the LAN: clamped and counted out", in: syn,
			out:    tcpFrame("10.1.0.5", "10.2.0.1", 40000, 80, pkttest.SYN, pkttest.MSS(1300), nil),
			policy: map[uint32]PolicyCounters{7: {Out: Counter{1, l3len(syn)}, MSSRewrites: 1}}},
		{name: "from the LAN, SA down: dropped", in: tcpFrame("10.1.0.5", "10.3.0.9", 40001, 443, pkttest.SYN, nil, nil),
			ret: tcShot, policy: map[uint32]PolicyCounters{8: {SADownDrops: 1, Events: 1}}},
		{name: "towards the LAN: no policy", in: tcpFrame("10.2.0.1", "10.1.0.5", 80, 40000, pkttest.ACK, nil, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := l.PolicyCounters()
			ret, out := run(t, prog, tt.in)
			if ret != tt.ret {
				t.Errorf("verdict %d, want %d", ret, tt.ret)
			}
			want := tt.out
			if want == nil {
				want = tt.in
			}
			if string(out) != string(want) {
				t.Errorf("output\n%x\nwant\n%x", out, want)
			}
			after, _ := l.PolicyCounters()
			for id, a := range after {
				if got := subPolicy(a, before[id]); got != tt.policy[id] {
					t.Errorf("policy %d counters moved by %+v, want %+v", id, got, tt.policy[id])
				}
			}
		})
	}
}

// TestLiveLANIngress attaches HookLANIngress to a gateway's LAN veth and sends a LAN host's
// datagram towards a remote network whose SA is down: it must be dropped at ingress.
func TestLiveLANIngress(t *testing.T) {
	gw, host := testutil.NewNetNS(t, "espgw-ld-gw"), testutil.NewNetNS(t, "espgw-ld-lan")
	gwDev, _ := vethPair(t, gw, host, "10.1.0.1/16", "10.1.0.5/16")
	host.Exec(t, "ip", "route", "add", "10.2.0.0/16", "via", "10.1.0.1")
	l := openLoader(t, Options{EventInterval: time.Hour})
	p := Policy{ID: 1, Selector: datapath.Selector{Local: pfx("10.1.0.0/16"), Remote: pfx("10.2.0.0/16")}}
	if err := l.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	gw.In(t, func() error {
		if err := l.AttachTC(gwDev, HookLANIngress, TCOptions{}); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	if tcx, _, _, _ := attached(t, gw, gwDev); tcx != 1 {
		t.Errorf("%d TCX programs, want 1", tcx)
	}
	host.In(t, func() error {
		c, err := net.Dial("udp4", "10.2.0.9:9")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 3 {
			if _, err := c.Write([]byte("lan")); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := l.PolicyCounters()
		if err != nil {
			t.Fatal(err)
		}
		if c[1].SADownDrops >= 3 && c[1].Out.Packets == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy counters %+v, want 3 SA-down drops and nothing sent", c[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
