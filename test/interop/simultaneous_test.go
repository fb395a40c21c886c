package interop

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// Simultaneous start: both ends start: always, child SAs 20 s, ISAKMP SAs 60 s; the flow
// runs 150 s (5 pings/s), seven child lifetimes and two and a half ISAKMP lifetimes.
const (
	simulFlowCount = 750
	simulMaxLost   = simulFlowCount / 100
	// simulSettle is how long after the release the crossing negotiations may leave
	// duplicates (they are deleted one retransmission interval after they are seen).
	simulSettle = 15 * time.Second
)

// TestSimultaneousStart: two espgw daemons, one each side, both with start: always, started
// together. Their IKE is held back by the partner's firewall until both have sent a main
// mode, then released: both initiate, their retransmissions cross, and duplicate SAs must
// settle to one usable pair. While a flow crosses the tunnel for 150 s, neither side ever
// has more than two SA pairs of the tunnel at once (one old and one new while rekeying:
// no duplicate left behind), and at the end both list exactly one pair, the same SPIs
// crossed, which is also all their datapaths carry (the SA series of /metrics).
func TestSimultaneousStart(t *testing.T) {
	testutil.RequireTool(t, "nft", "nftables")
	t.Parallel()
	set := proposalSets[1]
	l := newLab(t)
	applyNFT(t, l.partner, `table inet hold {
	chain in { type filter hook input priority -10; udp dport 500 counter drop; }
	chain out { type filter hook output priority -10; udp sport 500 counter drop; }
}
`)
	capture := testutil.StartCapture(t, l.gw, gwWAN, "ip")

	gc := gwConn(set.ike, set.esp, "always")
	pc := espgwtest.Connection{Name: connName, Local: partnerAddr, Remote: gwAddr, PSK: labPSK, IKEProposal: set.ike,
		Tunnels: []espgwtest.Tunnel{{Name: tunnelName, LocalSubnet: remoteSubnet, RemoteSubnet: localSubnet, ESPProposal: set.esp, Start: "always"}}}
	for _, c := range []*espgwtest.Connection{&gc, &pc} {
		c.NATTraversal, c.IKELifetime, c.Tunnels[0].Lifetime = "off", "60s", "20s"
	}
	gwMetrics, partnerMetrics := metricsAddr, partnerAddr+":9814"
	gs := espgwtest.StartTogether(t, []*testutil.NetNS{l.gw, l.partner}, []espgwtest.Config{
		{Datapath: "userspace", Metrics: gwMetrics, Connections: []espgwtest.Connection{gc}},
		{Datapath: "userspace", Metrics: partnerMetrics, Connections: []espgwtest.Connection{pc}},
	})
	g, p := gs[0], gs[1]
	// Both have sent main mode 1 (the in chain counts the gateway's, out the partner's).
	testutil.WaitFor(t, negotiationTimeout, func() (bool, error) {
		if out := l.partner.Exec(t, "nft", "list", "table", "inet", "hold"); strings.Contains(out, "counter packets 0 ") {
			return false, fmt.Errorf("not both held yet:\n%s", out)
		}
		return true, nil
	})
	l.partner.Exec(t, "nft", "delete", "table", "inet", "hold")
	released := time.Now()

	g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	p.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	t.Logf("both tunnels up %v after the release", time.Since(released).Round(time.Millisecond))
	watch := watchPair(g, p, released.Add(simulSettle))
	f, err := testutil.PingFlow(l.gw, serviceAddr, hostAddr, rekeyFlowInterval, simulFlowCount)
	if err != nil {
		t.Fatal(err)
	}
	seen := watch.stop()
	t.Logf("%d of %d echo replies; lost at %v", f.Received, simulFlowCount, f.Lost)
	if lost := simulFlowCount - f.Received; lost > simulMaxLost {
		t.Errorf("%d of %d echo requests lost, want at most %d (1 %%)", lost, simulFlowCount, simulMaxLost)
	}
	t.Logf("after settling, most SA pairs of the tunnel at once: gateway %d, partner %d; most IKE SAs: %d, %d; %d samples, %d failed; child SAs seen: %d, %d",
		seen[0].maxPairs, seen[1].maxPairs, seen[0].maxIKE, seen[1].maxIKE, seen[0].samples, seen[0].errors, len(seen[0].spis), len(seen[1].spis))
	for i, side := range []string{"gateway", "partner"} {
		if seen[i].maxPairs > 2 {
			t.Errorf("%s had %d SA pairs of the tunnel at once after settling (at %v), want at most 2 (old and new while rekeying)",
				side, seen[i].maxPairs, seen[i].maxPairsAt.Round(time.Second))
		}
		if seen[i].samples == 0 {
			t.Errorf("no status sample of the %s", side)
		}
	}

	// One ISAKMP SA and one pair each way, crossed, and what the datapaths carry.
	var gsa, psa espgwtest.IPsecSA
	err = testutil.Poll(30*time.Second, func() (bool, error) {
		gst, pst := g.MustStatus(t), p.MustStatus(t)
		gsas, psas := gst.TunnelSAs(connName, tunnelName), pst.TunnelSAs(connName, tunnelName)
		if len(gsas) != 1 || len(psas) != 1 {
			return false, fmt.Errorf("gateway has %d SA pairs, partner %d; want 1 each", len(gsas), len(psas))
		}
		gi, pi := gst.ConnectionSAs(connName), pst.ConnectionSAs(connName)
		if len(gi) != 1 || len(pi) != 1 || gi[0].InitiatorCookie != pi[0].InitiatorCookie {
			return false, fmt.Errorf("ISAKMP SAs: gateway %+v, partner %+v; want the same one alone at both", gi, pi)
		}
		gsa, psa = gsas[0], psas[0]
		if gsa.SPIIn != psa.SPIOut || gsa.SPIOut != psa.SPIIn {
			return false, fmt.Errorf("SPIs: gateway in/out %s/%s, partner in/out %s/%s; want crossed equal", gsa.SPIIn, gsa.SPIOut, psa.SPIIn, psa.SPIOut)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		name, addr string
		ns         *testutil.NetNS
		sa         espgwtest.IPsecSA
	}{{"gateway", gwMetrics, l.gw, gsa}, {"partner", partnerMetrics, l.partner, psa}} {
		if side.sa.CountersError != "" {
			t.Errorf("%s: the datapath has no counters for SA %s: %s", side.name, side.sa.SPIIn, side.sa.CountersError)
		}
		in := grepLines(scrapeAt(t, side.ns, side.addr).text, `espgw_sa_packets_total{`)
		if n := strings.Count(in, `direction="in"`); n != 1 || !strings.Contains(in, `spi="0x`+side.sa.SPIIn+`"`) {
			t.Errorf("%s datapath SAs (/metrics):\n%s\nwant exactly one inbound, SPI 0x%s", side.name, in, side.sa.SPIIn)
		}
	}
	if err := testutil.Ping(l.host, hostAddr, serviceAddr, 3); err != nil {
		t.Error(err)
	}

	// The wire: both sides began main modes; all ESP decrypts with either side's keys.
	pcap := capture.Stop()
	x := exchangesOnWire(t, pcap)
	if x.main[gwAddr] < 1 || x.main[partnerAddr] < 1 {
		t.Errorf("main modes by initiator on the wire %v, want both sides", x.main)
	}
	rows := testutil.ESPRows(t, pcap, g.Keys(t).Merge(p.Keys(t)))
	for _, r := range rows {
		if !r.ICVGood || !r.Decrypted {
			t.Errorf("ESP frame %d (%v -> %v SPI %08x): ICV good %v, decrypted %v", r.Frame, r.OuterSrc, r.OuterDst, r.SPI, r.ICVGood, r.Decrypted)
		}
	}
	t.Logf("wire: main modes %v, quick modes %v by initiator, %d ESP packets", x.main, x.quick, len(rows))
	g.Stop(t)
	p.Stop(t)
}

// pairSeen is what watchPair found on one side after settling.
type pairSeen struct {
	samples, errors  int
	maxPairs, maxIKE int
	maxPairsAt       time.Duration // since settling
	spis             map[string]bool
}

// pairWatch samples both gateways' status every second until stopped, counting from settled on.
type pairWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	seen [2]pairSeen
}

func watchPair(a, b *espgwtest.Gateway, settled time.Time) *pairWatch {
	w := &pairWatch{done: make(chan struct{})}
	for i, g := range []*espgwtest.Gateway{a, b} {
		w.seen[i].spis = map[string]bool{}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-w.done:
					return
				case <-tick.C:
				}
				if time.Now().After(settled) {
					w.seen[i].sample(g, time.Since(settled))
				}
			}
		}()
	}
	return w
}

func (s *pairSeen) sample(g *espgwtest.Gateway, at time.Duration) {
	st, err := g.Status()
	if err != nil {
		s.errors++
		return
	}
	s.samples++
	sas := st.TunnelSAs(connName, tunnelName)
	for _, sa := range sas {
		s.spis[sa.SPIIn] = true
	}
	if len(sas) > s.maxPairs {
		s.maxPairs, s.maxPairsAt = len(sas), at
	}
	s.maxIKE = max(s.maxIKE, len(st.ConnectionSAs(connName)))
}

func (w *pairWatch) stop() [2]pairSeen {
	close(w.done)
	w.wg.Wait()
	return w.seen
}
