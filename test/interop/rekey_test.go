package interop

import (
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// Rekey under traffic: 5 echo requests a second for 75 s through a tunnel whose child SAs
// live 20 s and whose ISAKMP SA lives 60 s.
const (
	rekeyFlowInterval = 200 * time.Millisecond
	rekeyFlowCount    = 375
	rekeyMaxLost      = rekeyFlowCount / 100 // 1 %
	rekeyMinChild     = 3                    // child SA rekeys at least
)

// TestRekeyUnderTraffic: a steady ping flow crosses the tunnel while its child SAs are
// rekeyed every ~17 s and its ISAKMP SA is replaced once. Once espgw rekeys (its lifetimes
// are the short ones: child 20 s, IKE 60 s; it initiated) and once strongSwan does (its
// rekey_time is short; it initiated, espgw answers with 30 min / 1 h). strongSwan must have
// installed at least 4 child SAs one after the other (3 rekeys) and established a second
// ISAKMP SA, as its swanctl listings (sampled every second) and its log show; the wire
// must show as many quick modes, a second main mode and ESP under at least 4 SPIs each way,
// every packet decrypting with the exported keys; at most 1 % of the flow is lost.
func TestRekeyUnderTraffic(t *testing.T) {
	t.Run("espgw rekeys", func(t *testing.T) {
		t.Parallel()
		testRekeyUnderTraffic(t, true)
	})
	t.Run("strongSwan rekeys", func(t *testing.T) {
		t.Parallel()
		testRekeyUnderTraffic(t, false)
	})
}

func testRekeyUnderTraffic(t *testing.T, espgwRekeys bool) {
	set := proposalSets[1]
	l := newLab(t)
	cfg := strongswan.Config{LocalAddr: partnerAddr, RemoteAddr: gwAddr, PSK: labPSK,
		IKEProposals: set.ike, ESPProposals: set.esp, LocalTS: remoteSubnet, RemoteTS: localSubnet}
	c := gwConn(set.ike, set.esp, "manual")
	if espgwRekeys {
		c.Tunnels[0].Start, c.Tunnels[0].Lifetime, c.IKELifetime = "always", "20s", "60s"
	} else {
		// IKEv1: rekey_time reauthenticates the ISAKMP SA (a new main mode).
		cfg.ExtraConn = "rekey_time = 50s\nover_time = 10s\nrand_time = 5s"
		cfg.ExtraChild = "rekey_time = 16s\nlife_time = 20s\nrand_time = 2s"
	}
	sw := strongswan.Start(t, l.partner, cfg)
	capture := testutil.StartCapture(t, l.gw, gwWAN, "udp")
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Connections: []espgwtest.Connection{c}})
	if !espgwRekeys {
		if err := sw.Initiate("s2s", negotiationTimeout); err != nil {
			t.Fatal(err)
		}
	}
	sw.WaitInstalled(t, "s2s", negotiationTimeout)
	g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)

	peer := watchPeer(sw, time.Second)
	begin := time.Now()
	f, err := testutil.PingFlow(l.gw, serviceAddr, hostAddr, rekeyFlowInterval, rekeyFlowCount)
	if err != nil {
		t.Fatal(err)
	}
	seen := peer.stop()
	pcap := capture.Stop()
	t.Logf("%d of %d echo replies in %v; lost at %v", f.Received, rekeyFlowCount, time.Since(begin).Round(time.Second), f.Lost)
	if lost := rekeyFlowCount - f.Received; lost > rekeyMaxLost {
		t.Errorf("%d of %d echo requests lost across the rekeys, want at most %d (1 %%)", lost, rekeyFlowCount, rekeyMaxLost)
	}

	// The peer: installed child SAs (swanctl samples and charon's log) and ISAKMP SAs.
	established := len(childEstablished.FindAllString(sw.Log(), -1))
	t.Logf("strongSwan: %d child SAs INSTALLED in the samples, %d established in its log, %d ISAKMP SAs ESTABLISHED; %d listings failed",
		len(seen.children), established, len(seen.ikes), seen.errors)
	if len(seen.children) < rekeyMinChild+1 || established < rekeyMinChild+1 {
		t.Errorf("strongSwan installed %d child SAs (log: %d established), want at least %d (%d rekeys)",
			len(seen.children), established, rekeyMinChild+1, rekeyMinChild)
	}
	if len(seen.ikes) < 2 {
		t.Errorf("strongSwan had %d ISAKMP SAs ESTABLISHED, want a replacement (2 or more)", len(seen.ikes))
	}
	if seen.maxChildren > 2 {
		t.Errorf("strongSwan had %d child SAs INSTALLED at once, want at most 2 (old and new while rekeying)", seen.maxChildren)
	}

	// The wire: quick and main modes, and ESP under each new SPI, all decrypting.
	// The rekeying side began every exchange but strongSwan's first main and quick mode
	// (when it rekeys, it also began those).
	x := exchangesOnWire(t, pcap)
	rekeyer, other := gwAddr, partnerAddr
	if !espgwRekeys {
		rekeyer, other = partnerAddr, gwAddr
	}
	if x.quick[rekeyer] < rekeyMinChild || x.main[rekeyer] < 1 || x.quick[other] > 1 || x.main[other] > 1 {
		t.Errorf("on the wire quick modes %v and main modes %v by initiator; want at least %d and 1 by %s, at most the first by %s",
			x.quick, x.main, rekeyMinChild, rekeyer, other)
	}
	keys := g.Keys(t)
	spis := map[string]map[string]int{}
	for _, r := range testutil.ESPRows(t, pcap, keys) {
		if !r.ICVGood || !r.Decrypted {
			t.Errorf("ESP frame %d (%v -> %v SPI %08x): ICV good %v, decrypted %v with espgw's keys", r.Frame, r.OuterSrc, r.OuterDst, r.SPI, r.ICVGood, r.Decrypted)
		}
		dir := r.OuterSrc.String()
		if spis[dir] == nil {
			spis[dir] = map[string]int{}
		}
		spis[dir][fmt.Sprintf("%08x", r.SPI)]++
	}
	for _, src := range []string{gwAddr, partnerAddr} {
		if n := len(spis[src]); n < rekeyMinChild+1 {
			t.Errorf("ESP from %s under %d SPIs (%v), want at least %d", src, n, spis[src], rekeyMinChild+1)
		}
	}
	t.Logf("wire: quick modes %v, main modes %v by initiator; ESP packets by SPI from espgw %v, from strongSwan %v", x.quick, x.main, spis[gwAddr], spis[partnerAddr])
	g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
	g.Stop(t)
}

// childEstablished is charon's log line for every child SA it installs.
var childEstablished = regexp.MustCompile(`CHILD_SA s2s\{\d+\} established with SPIs`)

// peerSeen is what a peerWatch found: every child SA (by inbound SPI) and ISAKMP SA (by
// unique id) listed INSTALLED or ESTABLISHED, and the most child SAs installed at once.
type peerSeen struct {
	children, ikes map[uint32]bool
	maxChildren    int
	errors         int
}

// peerWatch samples charon's SAs until stopped.
type peerWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	seen peerSeen
}

func watchPeer(sw *strongswan.Charon, every time.Duration) *peerWatch {
	w := &peerWatch{done: make(chan struct{}), seen: peerSeen{children: map[uint32]bool{}, ikes: map[uint32]bool{}}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			w.sample(sw)
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *peerWatch) sample(sw *strongswan.Charon) {
	sas, err := sw.ListSAs()
	if err != nil {
		w.seen.errors++
		return
	}
	installed := 0
	for _, s := range sas {
		if s.State == "ESTABLISHED" {
			w.seen.ikes[uint32(s.UniqueID)] = true
		}
		for _, ch := range s.Children {
			if ch.State == "INSTALLED" {
				w.seen.children[ch.SPIIn] = true
				installed++
			}
		}
	}
	w.seen.maxChildren = max(w.seen.maxChildren, installed)
}

func (w *peerWatch) stop() peerSeen {
	close(w.done)
	w.wg.Wait()
	return w.seen
}

// exchanges counts the exchanges of a capture by who began them (the source address of
// their first message); retransmissions count once.
type exchanges struct {
	quick, main map[string]int // initiator address → exchanges
}

// exchangesOnWire finds the quick modes (distinct message IDs of exchange type 32) and main
// modes (distinct initiator cookies of exchange type 2) in pcap.
func exchangesOnWire(t *testing.T, pcap string) exchanges {
	t.Helper()
	x := exchanges{quick: map[string]int{}, main: map[string]int{}}
	seen := map[string]bool{}
	for _, r := range testutil.TShark(t, pcap, testutil.Keys{}, "isakmp", "ip.src", "isakmp.exchangetype", "isakmp.ispi", "isakmp.messageid") {
		key, by := r.First("isakmp.ispi"), x.main
		switch r.First("isakmp.exchangetype") {
		case "32":
			key, by = key+"/"+r.First("isakmp.messageid"), x.quick
		case "2":
		default:
			continue
		}
		if !seen[key] {
			seen[key] = true
			by[r.First("ip.src")]++
		}
	}
	return x
}
