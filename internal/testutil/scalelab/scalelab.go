// Package scalelab builds the many-peers lab shared by test/interop, bench/setup and the VM's
// test/kernel: espgw (one address) and one strongSwan charon with one address per peer in its
// namespace, one connection per peer, Tunnels subnet pairs per connection, ESP in userspace on
// both sides unless KernelESP puts it into the kernel.
package scalelab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// The lab's WAN: espgw is GWAddr, peer p (1-based) is PeerAddr(p), all on one veth.
const (
	GWAddr = "192.0.2.1"
	psk    = "scale lab psk"
)

// Lab is the shape of one run.
type Lab struct {
	Peers, Tunnels int    // connections, and tunnels per connection
	EspgwInitiates bool   // espgw starts every tunnel (start: always) or charon does (start_action = start)
	IKE, ESP       string // proposals, e.g. aes256-sha256-modp2048 and aes256gcm16-modp2048
	NoEBPF         bool
	DPDDelay       string // espgw's ike.dpd_delay, e.g. 30s; "" = off
	Lifetime       string // espgw's child SA lifetime, e.g. 90s; "" = espgwtest's default
	IKEVersion     int    // 2 for IKEv2 at both ends; 0 = IKEv1
	// KernelESP does ESP in the kernel at both ends, espgw on the xfrm datapath and charon
	// with kernel-netlink, and routes the subnets between the namespaces (charon then
	// installs no routes). It needs a kernel with ESP, such as the test VM's.
	KernelESP bool
	// Daemon is how espgw runs (log level, save_keys, metrics, pprof); Start fills in the
	// datapath, eBPF and connections.
	Daemon espgwtest.Config
}

// Run is a started lab.
type Run struct {
	Lab
	GW       *espgwtest.Gateway
	Swan     *strongswan.Charon
	GWNS     *testutil.NetNS
	PeerNS   *testutil.NetNS
	Began    time.Time // when the initiator started (the responder was already up)
	Ready    time.Time // when the initiator's daemon answered (espgw: control socket; charon: config loaded)
	children map[string]bool
}

// PeerAddr is peer p's address (p ≤ 200).
func PeerAddr(p int) string { return fmt.Sprintf("192.0.2.%d", 10+p) }

// Peer p's connection name at both ends.
func peerName(p int) string { return fmt.Sprintf("p%03d", p) }

// Every LocalAddr and every remoteNet (up to 32,767 tunnels).
const localNets, remoteNets = "10.1.0.0/16", "10.128.0.0/9"

// Tunnel i (1-based over all peers) protects espgw's LocalAddr(i)/32 and strongSwan's
// RemoteNet(i), which holds RemoteAddr(i).
func tunnelName(i int) string    { return fmt.Sprintf("t%04d", i) }
func LocalAddr(i int) string     { return fmt.Sprintf("10.1.%d.%d", i/256, i%256) }
func RemoteAddr(i int) string    { return fmt.Sprintf("10.%d.%d.1", 128+i/256, i%256) }
func remoteNet(i int) string     { return fmt.Sprintf("10.%d.%d.0/24", 128+i/256, i%256) }
func (l Lab) index(p, t int) int { return (p-1)*l.Tunnels + t }

// N is the number of tunnels.
func (l Lab) N() int { return l.Peers * l.Tunnels }

// Start builds the namespaces and addresses, starts the responder and then the initiator,
// which begins negotiating every tunnel at once.
func Start(tb testing.TB, l Lab) *Run {
	tb.Helper()
	if l.Peers < 1 || l.Peers > 200 || l.Tunnels < 1 || l.N() > 32767 {
		tb.Fatalf("scalelab: %d peers × %d tunnels: want 1..200 peers and ≤ 32767 tunnels", l.Peers, l.Tunnels)
	}
	r := &Run{Lab: l, children: map[string]bool{}}
	r.GWNS = testutil.NewNetNS(tb, "scale-gw")
	r.PeerNS = testutil.NewNetNS(tb, "scale-peer")
	testutil.Veth(tb, r.GWNS, "gw-wan", GWAddr+"/24", r.PeerNS, "p-wan", PeerAddr(1)+"/24")
	// kernel-libipsec installs a CHILD_SA only with a local address inside its traffic selector.
	testutil.Veth(tb, r.PeerNS, "p-int", "", r.PeerNS, "p-int-end", "")
	for p := 2; p <= l.Peers; p++ {
		r.PeerNS.AddAddr(tb, "p-wan", PeerAddr(p)+"/24")
	}
	for i := 1; i <= l.N(); i++ {
		r.GWNS.AddAddr(tb, "lo", LocalAddr(i)+"/32")
		r.PeerNS.AddAddr(tb, "p-int", RemoteAddr(i)+"/24")
	}
	if l.KernelESP {
		// One route each way covers every tunnel: the XFRM policies pick the peer.
		r.GWNS.AddRoute(tb, remoteNets, PeerAddr(1), "")
		r.PeerNS.AddRoute(tb, localNets, GWAddr, "")
	}

	gwStart, swStart := "manual", "start"
	if l.EspgwInitiates {
		gwStart, swStart = "always", "none"
	}
	gc := l.Daemon
	gc.Datapath, gc.NoEBPF = "auto", l.NoEBPF
	if l.KernelESP {
		gc.Datapath = "xfrm"
	}
	var sc []strongswan.Config
	for p := 1; p <= l.Peers; p++ {
		c := espgwtest.Connection{Name: peerName(p), Local: GWAddr, Remote: PeerAddr(p), PSK: psk,
			IKEVersion: l.IKEVersion, IKEProposal: l.IKE, DPDDelay: l.DPDDelay}
		var extra strings.Builder
		extra.WriteString("children {\n")
		for t := 1; t <= l.Tunnels; t++ {
			i := l.index(p, t)
			c.Tunnels = append(c.Tunnels, espgwtest.Tunnel{Name: tunnelName(i), LocalSubnet: LocalAddr(i) + "/32",
				RemoteSubnet: remoteNet(i), ESPProposal: l.ESP, Start: gwStart, Lifetime: l.Lifetime})
			r.children[tunnelName(i)] = true
			if t > 1 {
				fmt.Fprintf(&extra, "%s {\nmode = tunnel\nlocal_ts = %s\nremote_ts = %s/32\nesp_proposals = %s\nstart_action = %s\n}\n",
					tunnelName(i), remoteNet(i), LocalAddr(i), l.ESP, swStart)
			}
		}
		extra.WriteString("}\n")
		gc.Connections = append(gc.Connections, c)
		// The connection's first child is the harness's own, the others are added beside it.
		first := l.index(p, 1)
		sc = append(sc, strongswan.Config{
			Name: peerName(p), Version: l.IKEVersion, LocalAddr: PeerAddr(p), RemoteAddr: GWAddr, PSK: psk,
			IKEProposals: l.IKE, ESPProposals: l.ESP, LocalTS: remoteNet(first), RemoteTS: LocalAddr(first) + "/32",
			StartAction: swStart, LogLevel: 1, ExtraConn: extra.String(), KernelESP: l.KernelESP,
		})
		// swanctl names CHILD_SAs after their config; the first one is named after the connection.
		delete(r.children, tunnelName(first))
		r.children[peerName(p)] = true
	}
	swCfg := sc[0]
	swCfg.More = sc[1:]
	// All of espgw's connections come from GWAddr: without this charon ignores all but 5 of
	// their first messages, and again in each of espgw's retransmission rounds.
	swCfg.HalfOpenPerIP = l.Peers

	if l.EspgwInitiates {
		r.Swan = strongswan.Start(tb, r.PeerNS, swCfg)
		r.Began = time.Now()
		r.GW = espgwtest.Start(tb, r.GWNS, gc)
		r.Ready = time.Now()
	} else {
		r.GW = espgwtest.Start(tb, r.GWNS, gc)
		r.Began = time.Now()
		r.Swan = strongswan.Start(tb, r.PeerNS, swCfg)
		r.Ready = time.Now()
	}
	return r
}

// Installed counts the lab's distinct CHILD_SAs INSTALLED at strongSwan under an ESTABLISHED
// IKE_SA.
func (r *Run) Installed() (int, error) {
	sas, err := r.Swan.ListSAs()
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, s := range sas {
		for _, ch := range s.Children {
			if s.State == "ESTABLISHED" && ch.State == "INSTALLED" && r.children[ch.Name] {
				seen[ch.Name] = true
			}
		}
	}
	return len(seen), nil
}

// WaitInstalled waits up to timeout until every tunnel is INSTALLED at strongSwan and returns
// the time since Began.
func (r *Run) WaitInstalled(timeout time.Duration) (time.Duration, error) {
	var n int
	err := testutil.Poll(timeout, func() (bool, error) {
		var err error
		if n, err = r.Installed(); err != nil {
			return false, err
		}
		if n < r.N() {
			return false, fmt.Errorf("%d of %d CHILD_SAs INSTALLED at strongSwan", n, r.N())
		}
		return true, nil
	})
	return time.Since(r.Began), err
}

// Ping sends count pings through tunnel i (1-based) from espgw's side.
func (r *Run) Ping(i, count int) error {
	return testutil.Ping(r.GWNS, LocalAddr(i), RemoteAddr(i), count)
}

// WaitTunnelsUp waits until espgw shows every tunnel up.
func (r *Run) WaitTunnelsUp(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	for p := 1; p <= r.Peers; p++ {
		for t := 1; t <= r.Tunnels; t++ {
			r.GW.WaitTunnelUp(tb, peerName(p), tunnelName(r.index(p, t)), timeout)
		}
	}
}

// CPUTime is the user+system time process pid has used (/proc/PID/stat, 100 Hz ticks).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields, want utime and stime (14, 15)", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q: want tick counts", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// RSS is the resident set size of process pid in bytes (VmRSS of /proc/PID/status).
func RSS(pid int) (uint64, error) { return statusBytes(pid, "VmRSS") }

// RSSParts splits RSS into anonymous memory (heap, stacks, the Go runtime's) and file pages
// (mostly the executable's own code and data, shared with every other process running it).
func RSSParts(pid int) (anon, file uint64, err error) {
	anon, err1 := statusBytes(pid, "RssAnon")
	file, err2 := statusBytes(pid, "RssFile")
	return anon, file, errors.Join(err1, err2)
}

// statusBytes reads a "kB" line of /proc/PID/status.
func statusBytes(pid int, key string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %s %q: want a number of kB", pid, key, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s line", pid, key)
}

// UDPCounters reads the Udp line of /proc/net/snmp inside ns (per namespace): InDatagrams,
// RcvbufErrors (a socket's receive buffer was full), SndbufErrors and the rest, by name.
func UDPCounters(ns *testutil.NetNS) (map[string]int64, error) {
	out, err := ns.Command("cat", "/proc/net/snmp").Output()
	if err != nil {
		return nil, fmt.Errorf("netns %s: /proc/net/snmp: %w", ns.Name(), err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		m := map[string]int64{}
		for i, v := range f[1:] {
			if i < len(names) {
				m[names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("netns %s: /proc/net/snmp has no Udp lines", ns.Name())
}

// ReportUDPDrops reports the UDP receive and send buffer errors of both namespaces so far.
func (r *Run) ReportUDPDrops(b *testing.B) {
	for side, ns := range map[string]*testutil.NetNS{"gw": r.GWNS, "peer": r.PeerNS} {
		c, err := UDPCounters(ns)
		if err != nil {
			b.Log(err)
			continue
		}
		b.Logf("%s netns: UDP InDatagrams %d RcvbufErrors %d SndbufErrors %d InErrors %d", side,
			c["InDatagrams"], c["RcvbufErrors"], c["SndbufErrors"], c["InErrors"])
		b.ReportMetric(float64(c["RcvbufErrors"]), side+"-udp-rcvbuf-errs")
		b.ReportMetric(float64(c["SndbufErrors"]), side+"-udp-sndbuf-errs")
	}
}
