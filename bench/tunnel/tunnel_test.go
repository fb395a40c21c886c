// Package tunnel measures TCP throughput (iperf3, one flow) through the espgw userspace
// datapath (ESP in UDP and raw ESP), through wireguard-go (the reference userspace tunnel in
// Go), through strongSwan kernel-libipsec and over the plain veth, in the same run on the same machine. It has benchmarks only: go test -run '^$' -bench . -benchtime 1x ./bench/tunnel
// (root, iperf3, strongSwan 5.9 with kernel-libipsec).
package tunnel

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// Topology of every path: two namespaces joined by a veth (wan 192.0.2.1 ⇄ 192.0.2.2); the
// protected hosts are addresses on lo (left 10.10.1.1, right 10.20.0.1), and iperf3 runs
// between them through the tunnel (plain veth: between the wan addresses).
const (
	wanL, wanR   = "192.0.2.1", "192.0.2.2"
	hostL, hostR = "10.10.1.1", "10.20.0.1"
)

// txOff reproduces the lab's conditions (../shared/lab/strongswan-pair.sh turns TX checksum
// offload off on the WAN veth so that captures show good checksums; LAB-NOTES' throughput
// figures were taken that way). It also turns off GSO/TSO on that veth, which needs TX
// checksumming, so every path then sends MTU-size packets on the wire.
var txOff = flag.Bool("veth.txoff", false, "ethtool -K wan tx off in both namespaces, as the lab scripts do")

type site struct {
	left, right *testutil.NetNS
}

func newSite(b *testing.B) site {
	b.Helper()
	testutil.RequireRoot(b)
	testutil.RequireTool(b, "iperf3", "iperf3")
	s := site{left: testutil.NewNetNS(b, "tunl"), right: testutil.NewNetNS(b, "tunr")}
	testutil.Veth(b, s.left, "wan", wanL+"/24", s.right, "wan", wanR+"/24")
	if *txOff {
		testutil.RequireTool(b, "ethtool", "ethtool")
		s.left.Exec(b, "ethtool", "-K", "wan", "tx", "off")
		s.right.Exec(b, "ethtool", "-K", "wan", "tx", "off")
	}
	s.left.AddAddr(b, "lo", hostL+"/32")
	s.right.AddAddr(b, "lo", hostR+"/32")
	return s
}

// suite is one transform as espgw and strongSwan spell it.
type suite struct {
	name     string // strongSwan ESP proposal
	enc      datapath.Encryption
	encKey   int
	integ    datapath.Integrity
	integKey int
}

var suites = []suite{
	{"aes128gcm16", datapath.EncAESGCM16, 16 + 4, datapath.IntegNone, 0},
	{"3des-sha1", datapath.Enc3DESCBC, 24, datapath.IntegHMACSHA1_96, 20},
}

// BenchmarkTunnel reports Mbit/s of one iperf3 TCP flow per path. Run it with -benchtime 1x
// (one iperf3 run per reported op; -count for repetitions) and optionally -iperf.time.
func BenchmarkTunnel(b *testing.B) {
	b.Run("veth", func(b *testing.B) {
		s := newSite(b)
		measure(b, s.left, s.right, wanL, wanR, nil)
	})
	for _, encap := range []struct {
		name string
		udp  bool
	}{{"espgw/", true}, {"espgw/raw/", false}} {
		for _, su := range suites {
			b.Run(encap.name+su.name, func(b *testing.B) {
				s := newSite(b)
				dps := espgwPair(b, s, su, encap.udp)
				measure(b, s.left, s.right, hostL, hostR, selfCPU)
				reportDrops(b, dps)
			})
		}
	}
	b.Run("wireguard-go", func(b *testing.B) {
		s := newSite(b)
		wireguardPair(b, s)
		measure(b, s.left, s.right, hostL, hostR, selfCPU)
	})
	for _, su := range suites {
		b.Run("strongswan/"+su.name, func(b *testing.B) {
			s := newSite(b)
			l, r := strongswanPair(b, s, su)
			measure(b, s.left, s.right, hostL, hostR, pidsCPU(l.PID(), r.PID()))
		})
	}
}

// espgwPair starts a userspace datapath in each namespace and installs one tunnel with
// static keys (no IKE): ESP in UDP 4500 on a Bind when udp is set, else raw ESP (IP
// protocol 50, as with nat_traversal: off).
func espgwPair(b *testing.B, s site, su suite, udp bool) (dps []*userspace.Datapath) {
	b.Helper()
	type end struct {
		ns          *testutil.NetNS
		wan, peer   netip.Addr
		local, remo netip.Prefix
		outSPI      uint32
		inSPI       uint32
	}
	l := end{s.left, netip.MustParseAddr(wanL), netip.MustParseAddr(wanR),
		netip.MustParsePrefix(hostL + "/32"), netip.MustParsePrefix(hostR + "/32"), 0x1001, 0x2002}
	r := end{s.right, l.peer, l.wan, l.remo, l.local, 0x2002, 0x1001}
	sa := func(spi uint32, src, dst netip.Addr, sel datapath.Selector) datapath.SA {
		seed := byte(spi)
		sa := datapath.SA{
			SPI: spi, Src: src, Dst: dst,
			Enc: su.enc, EncKey: key(su.encKey, seed), Integ: su.integ, IntegKey: key(su.integKey, seed+1),
			ReplayWindow: 128, ReqID: 1, Selectors: []datapath.Selector{sel},
		}
		if udp {
			sa.EncapSrcPort, sa.EncapDstPort = conn.NATTPort, conn.NATTPort
		}
		return sa
	}
	for _, e := range []end{l, r} {
		var bind *conn.UDPBind
		var dp *userspace.Datapath
		err := e.ns.Do(func() (err error) {
			opts := userspace.Options{RawESP: !udp}
			if udp {
				if bind, err = conn.Listen([]netip.Addr{e.wan}, conn.ListenOptions{}); err != nil {
					return err
				}
				opts.Bind = bind
			}
			dp, err = userspace.New(opts)
			return err
		})
		if bind != nil {
			b.Cleanup(func() { bind.Close() })
		}
		if err != nil {
			b.Fatalf("netns %s: %v", e.ns, err)
		}
		b.Cleanup(func() { dp.Close() })
		dps = append(dps, dp)
		go func() {
			for range dp.Events() { // no control plane: nothing acts on acquires
			}
		}()
		sel := datapath.Selector{Local: e.local, Remote: e.remo}
		pair := datapath.SAPair{
			Out: sa(e.outSPI, e.wan, e.peer, sel),
			In:  sa(e.inSPI, e.peer, e.wan, sel),
		}
		ctx := context.Background()
		if err := dp.AddSAPair(ctx, pair); err != nil {
			b.Fatal(err)
		}
		pol := datapath.Policy{Selector: sel, TunnelLocal: e.wan, TunnelRemote: e.peer, ReqID: 1}
		if err := dp.AddPolicy(ctx, pol); err != nil {
			b.Fatal(err)
		}
	}
	return dps
}

// reportDrops logs the packets the datapaths discarded, by reason, and reports their sum
// per op.
func reportDrops(b *testing.B, dps []*userspace.Datapath) {
	var sum uint64
	for i, dp := range dps {
		var reasons []string
		for r := userspace.DropReason(0); r.String() != "unknown"; r++ {
			if n := dp.Drops(r); n > 0 {
				sum += n
				reasons = append(reasons, fmt.Sprintf("%v=%d", r, n))
			}
		}
		b.Logf("datapath %d drops: %v", i, reasons)
	}
	b.ReportMetric(float64(sum)/float64(b.N), "drops/op")
}

// key is deterministic test key material; both ends derive the same bytes from the SPI.
func key(n int, seed byte) datapath.Key {
	k := make(datapath.Key, n)
	for i := range k {
		k[i] = seed ^ byte(i*29+7)
	}
	return k
}

// strongswanPair starts charon with kernel-libipsec in both namespaces and brings the
// CHILD_SA up (IKEv1, NAT-T forced by libipsec).
func strongswanPair(b *testing.B, s site, su suite) (l, r *strongswan.Charon) {
	b.Helper()
	base := strongswan.Config{
		PSK: "bench-preshared-key-0123456789", IKEProposals: "aes128-sha256-modp2048",
		ESPProposals: su.name, LogLevel: 1,
	}
	lc, rc := base, base
	lc.LocalAddr, lc.RemoteAddr, lc.LocalTS, lc.RemoteTS = wanL, wanR, hostL+"/32", hostR+"/32"
	rc.LocalAddr, rc.RemoteAddr, rc.LocalTS, rc.RemoteTS = wanR, wanL, hostR+"/32", hostL+"/32"
	l = strongswan.Start(b, s.left, lc)
	r = strongswan.Start(b, s.right, rc)
	if err := l.Initiate("s2s", 15*time.Second); err != nil {
		b.Fatal(err)
	}
	// The first packets may race charon installing the route into ipsec0.
	err := testutil.Poll(10*time.Second, func() (bool, error) {
		return testutil.Ping(s.left, hostL, hostR, 1) == nil, nil
	})
	if err != nil {
		b.Fatalf("strongSwan tunnel %s: no ping reply through it: %v", su.name, err)
	}
	return l, r
}
