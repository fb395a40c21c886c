//go:build vmtest

package kernel

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
)

// TestEBPFOverESP runs the loader's programs on Linux 6.1, which has no TCX: tc through a
// clsact qdisc and XDP natively on the veth that carries a real kernel ESP tunnel. A TCP
// transfer from b into a arrives as ESP, XDP counts it per SPI, the tc ingress program sees
// the decrypted segments, counts them under the policy and clamps the SYN's MSS without
// breaking the TCP checksum. Close leaves no qdisc, filter or XDP program behind.
func TestEBPFOverESP(t *testing.T) {
	const mss = 1000
	ctx := t.Context()
	l := newLab(t)
	for _, s := range []*site{&l.a, &l.b} {
		s.ns.Sysctl(t, "net.ipv4.tcp_timestamps", "0") // TCP_MAXSEG = the MSS option exactly
	}
	da, db := newXfrm(t, &l.a), newXfrm(t, &l.b)
	tr := transforms[2]
	tn := &tunnel{t: tr, kAB: newKeys(t, tr), kBA: newKeys(t, tr)}
	tn.install(t, ctx, l, da, db)

	ld, err := loader.Open(loader.Options{})
	if err != nil {
		t.Fatalf("loader.Open on %s: %v", kernelRelease(), err)
	}
	t.Cleanup(func() { ld.Close() })
	if err := ld.SetPolicy(loader.Policy{
		ID:       1,
		Selector: datapath.Selector{Local: l.a.protect, Remote: l.b.protect},
		SAUp:     true,
		OutSPI:   tn.spiAB,
		MSS:      mss,
	}); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	if err := ld.AddSA(loader.Inbound, tn.spiBA); err != nil {
		t.Fatalf("AddSA inbound: %v", err)
	}
	if err := ld.SetPeers([]netip.Addr{l.b.outer}); err != nil {
		t.Fatalf("SetPeers: %v", err)
	}
	err = l.a.ns.Do(func() error {
		if err := ld.AttachTC(l.a.dev, loader.HookIngress, loader.TCOptions{Legacy: true}); err != nil {
			return err
		}
		return ld.AttachXDP(l.a.dev)
	})
	if err != nil {
		t.Fatalf("netns %s: attach: %v", l.a.ns.Name(), err)
	}
	if out := l.a.ns.Exec(t, "tc", "filter", "show", "dev", l.a.dev, "ingress"); !strings.Contains(out, "bpf") {
		t.Fatalf("tc filter show dev %s ingress: no bpf filter:\n%s", l.a.dev, out)
	}
	if out := l.a.ns.Exec(t, "ip", "link", "show", l.a.dev); !strings.Contains(out, "xdp") {
		t.Fatalf("ip link show %s: no XDP program:\n%s", l.a.dev, out)
	}
	csum := tcpStat(t, l.a.ns, "InCsumErrors")

	if got := tcpTransfer(t, l.b.ns, l.b.inner, l.a.ns, l.a.inner, 256<<10); got != mss {
		t.Errorf("receiver (a) TCP_MAXSEG = %d, want %d: the decrypted SYN was not clamped", got, mss)
	}
	if d := tcpStat(t, l.a.ns, "InCsumErrors") - csum; d != 0 {
		t.Errorf("a: TcpInCsumErrors rose by %d after the MSS rewrite", d)
	}
	pc, err := ld.PolicyCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c := pc[1]; c.In.Packets < 100 || c.MSSRewrites < 1 {
		t.Errorf("policy counters %+v: want >= 100 decrypted packets in and >= 1 MSS rewrite", c)
	}
	sa, err := ld.SACounters(loader.Inbound)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := da.Counters(l.a.outer, tn.spiBA)
	if err != nil {
		t.Fatal(err)
	}
	if c := sa[tn.spiBA]; c.Packets < kc.Packets || kc.Packets < 100 {
		t.Errorf("XDP counted %+v for inbound SPI 0x%08x; the kernel SA received %d packets: want XDP >= kernel >= 100",
			c, tn.spiBA, kc.Packets)
	}
	xc, err := ld.XDPCounters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy %+v; XDP SPI 0x%08x %+v, kernel SA %d packets; XDP filters %+v", pc[1], tn.spiBA, sa[tn.spiBA], kc.Packets, xc)
	if xc.UnknownSPIDrops != 0 {
		t.Errorf("XDP counters %+v: dropped ESP of a known SPI", xc)
	}

	if err := ld.Close(); err != nil {
		t.Fatalf("loader Close: %v", err)
	}
	if out := l.a.ns.Exec(t, "tc", "qdisc", "show", "dev", l.a.dev); strings.Contains(out, "clsact") {
		t.Errorf("after Close, dev %s still has a clsact qdisc:\n%s", l.a.dev, out)
	}
	if out := l.a.ns.Exec(t, "ip", "link", "show", l.a.dev); strings.Contains(out, "xdp") {
		t.Errorf("after Close, dev %s still has an XDP program:\n%s", l.a.dev, out)
	}
}

// tcpStat reads one Tcp counter of /proc/net/snmp in ns.
func tcpStat(tb testing.TB, ns *testutil.NetNS, name string) uint64 {
	tb.Helper()
	out := ns.Exec(tb, "cat", "/proc/net/snmp")
	var header []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := range header {
			if header[i] == name && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					tb.Fatalf("/proc/net/snmp Tcp %s = %q: %v", name, f[i], err)
				}
				return v
			}
		}
	}
	tb.Fatalf("netns %s: /proc/net/snmp has no Tcp %s:\n%s", ns.Name(), name, out)
	return 0
}
