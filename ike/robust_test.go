package ike

import (
	crand "crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// strongSwan answers a message it cannot decrypt (a late retransmission whose IV it has moved
// past) with PAYLOAD-MALFORMED for the ISAKMP SA, naming no exchange. It must not fail the
// quick mode we have in flight: the peer's QM2 for it, retransmitted, still gets our QM3 and
// the tunnel comes up at both ends (bench/setup at 1,000 tunnels lost 134 tunnels to this).
func TestUnattributedPayloadMalformedKeepsQuickMode(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: 2})
	ts := a.e.Tunnels()
	a.e.Acquire(ts[0].ReqID)
	s.run("first tunnel up", time.Minute, func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })

	var hold atomic.Bool
	hold.Store(true)
	b.bind.SetFilter(dropWhile(isakmp.ExchangeQuickMode, &hold)) // B's first QM2 is lost
	a.e.Acquire(ts[1].ReqID)
	for s.deliver() {
	}
	saB := b.established(t)
	b.e.mu.Lock()
	b.e.sendInformational(saB, &isakmp.Notification{DOI: isakmp.DOIIPsec, ProtocolID: isakmp.ProtoISAKMP,
		NotifyType: isakmp.NotifyPayloadMalformed})
	b.e.mu.Unlock()
	for s.deliver() {
	}
	hold.Store(false)
	s.run("second tunnel up at both ends", 10*time.Second, func() bool { return len(a.k.active()) == 2 && len(b.k.active()) == 2 })
}

// Connections started together retransmit apart: each retransmission interval is jittered
// (by the engine's Rand, so a seeded one repeats the run), within ±retransmitJitter of the
// schedule, so 200 peers' MM1s do not come back in lockstep.
func TestRetransmissionsJittered(t *testing.T) {
	s := newSim(t)
	ba, _ := bindtest.NewPair()
	ca, _ := connPair(t, pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"})
	var conns []model.Connection
	for i := range 20 {
		c := ca
		c.Name = fmt.Sprintf("peer%d", i)
		c.RemoteAddress = netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		c.Tunnels = slices.Clone(ca.Tunnels)
		c.Tunnels[0].Start = model.StartAlways
		conns = append(conns, c)
	}
	sends := map[netip.Addr][]time.Time{}
	ba.SetFilter(func(_ []byte, _, remote netip.AddrPort, isIKE bool) bool {
		sends[remote.Addr()] = append(sends[remote.Addr()], s.clk.Now())
		return false // no peer answers
	})
	s.start("A", ba, newFakeKernel(0xa0000000), Options{Rand: mathrand.NewChaCha8([32]byte{1})}, conns...)
	start := s.clk.Now()
	s.advance(DefaultRetransmit.Initial * 2)
	firsts := map[time.Duration]bool{}
	for peer, at := range sends {
		if len(at) < 2 {
			t.Fatalf("%v: %d MM1s sent, want a retransmission within %v", peer, len(at), 2*DefaultRetransmit.Initial)
		}
		d := at[1].Sub(start)
		lo, hi := jitterBounds(DefaultRetransmit.Initial)
		if d < lo || d > hi {
			t.Errorf("%v: first retransmission after %v, want within %v..%v", peer, d, lo, hi)
		}
		firsts[d] = true
	}
	if len(firsts) < len(sends)/2 {
		t.Errorf("20 connections retransmitted at %d distinct instants, want them spread", len(firsts))
	}
}

// jitterBounds is the range a jittered d falls in.
func jitterBounds(d time.Duration) (lo, hi time.Duration) {
	return d - d*retransmitJitter/100, d + d*retransmitJitter/100
}

// A start: always tunnel whose quick mode the peer rejects tries again, after pauses that
// double from retryBase up to retryCap (jittered), and says so in Status; an on-demand
// tunnel with the same failure waits for its next trigger.
func TestAlwaysRetriesQuickModeWithBackoff(t *testing.T) {
	for _, start := range []model.StartAction{model.StartAlways, model.StartOnDemand} {
		t.Run(string(start), func(t *testing.T) {
			s := newSim(t)
			ba, bb := bindtest.NewPair()
			ca, cb := connPair(t, pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16",
				espB: "aes256gcm16", pskA: "k"}) // B answers NO-PROPOSAL-CHOSEN
			ca.Tunnels[0].Start = start
			var qm1s []time.Time
			ba.SetFilter(func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
				if h, err := isakmp.ParseHeader(msg); err == nil && h.Exchange == isakmp.ExchangeQuickMode {
					qm1s = append(qm1s, s.clk.Now())
				}
				return true
			})
			s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
			a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
			if start == model.StartOnDemand {
				a.e.Acquire(a.e.Tunnels()[0].ReqID)
			}
			s.advance(time.Second)
			if start == model.StartAlways {
				st := a.e.Status()
				if len(st.Retrying) != 1 || st.Retrying[0].Failures != 1 || !strings.Contains(st.Retrying[0].Err, "NO-PROPOSAL-CHOSEN") {
					t.Errorf("status Retrying %+v, want the tunnel with 1 failure and its error", st.Retrying)
				}
			}
			s.advance(30 * time.Minute)
			if start == model.StartOnDemand {
				if len(qm1s) != 1 {
					t.Errorf("on-demand tunnel negotiated %d times, want once (no automatic retry)", len(qm1s))
				}
				return
			}
			// 10, 20, 40, 80, 160, then 300 s: 11 attempts in 30 minutes, ±20 %.
			if len(qm1s) < 9 || len(qm1s) > 14 {
				t.Fatalf("%d quick modes in 30 minutes, want about 11", len(qm1s))
			}
			for i := 1; i < len(qm1s); i++ {
				want := min(retryBase*DefaultRetransmit.Initial<<(i-1), retryCap*DefaultRetransmit.Initial)
				lo, hi := jitterBounds(want)
				if gap := qm1s[i].Sub(qm1s[i-1]); gap < lo || gap > hi+time.Second {
					t.Errorf("pause before attempt %d: %v, want %v..%v", i+1, gap, lo, hi)
				}
			}
		})
	}
}

// gateRand is a random source that holds the reads of a MODP private exponent until
// released, telling the test when one waits.
type gateRand struct {
	waiting chan struct{}
	release chan struct{}
}

func (g *gateRand) Read(p []byte) (int, error) {
	if readingDHExponent() {
		g.waiting <- struct{}{}
		<-g.release
	}
	return crand.Read(p)
}

// The responder computes DH for a peer's AM1 without the engine lock: while it does, other
// SAs' packets, timers and status calls go on (review finding 1: "take DH off the lock").
func TestResponderDHOffLock(t *testing.T) {
	pc := pairConfig{mode: model.ModeAggressive, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"}
	ca, cb := connPair(t, pc)
	am1 := firstMessageOf(t, ca)
	_, bb := bindtest.NewPair()
	gate := &gateRand{waiting: make(chan struct{}), release: make(chan struct{})}
	b := New(Options{Logger: testLogger(t, "B"), Bind: bb, Kernel: newFakeKernel(0xb0000000), Rand: gate})
	if err := b.Configure([]model.Connection{cb}); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.mu.Lock()
		b.handlePacket(conn.Packet{Data: am1, Local: portB, Remote: portA})
		b.mu.Unlock()
	}()
	<-gate.waiting // B is making its DH key
	// The goroutine that handed the DH over may still be on its way out of handlePacket:
	// the lock must come free while the DH waits, not at once.
	free := false
	for deadline := time.Now().Add(5 * time.Second); !free && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		free = b.mu.TryLock()
	}
	if free {
		b.mu.Unlock()
	} else {
		t.Errorf("engine lock held while the responder computes DH")
	}
	close(gate.release)
	b.work.Wait()
	waitFor(t, "AM2", func() bool { return len(sentOf(bb, isakmp.ExchangeAggressive)) == 1 })
}

// After we retransmitted QM1, the peer answers each copy with its QM2 again: those copies
// crossed our QM3 and are no sign that the peer lost it. Answering them with QM3 again sent
// strongSwan a QM3 it no longer expected, whose failed decryption and PAYLOAD-MALFORMED cost
// two of its three phase-2 IV slots and with them the next quick mode's (bench/setup, 1,000
// tunnels: 3–12 tunnels up at espgw only). So are not answered: as many repeats as we resent
// QM1, however late (a loaded gateway reads them seconds late), and one more soon after
// our QM3 (the peer's own retransmission, sent before our QM3 reached it). Further
// repeats still get QM3.
func TestQM2EchoOfOurRetransmissionNotAnswered(t *testing.T) {
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"})
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
	// B retransmits as late as strongSwan: A's QM1 comes again first, and B answers it.
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{Retransmit: RetransmitPolicy{Initial: 4 * time.Second}}, cb)
	var sent atomic.Int32
	bb.SetFilter(dropNth(isakmp.ExchangeQuickMode, 1, &sent)) // B's first QM2 is late, not lost
	s.up(a, b)
	late := sentOf(b.bind, isakmp.ExchangeQuickMode)[0]
	before := len(sentOf(a.bind, isakmp.ExchangeQuickMode)) // QM1, QM1 again, QM3
	s.advance(3 * DefaultRetransmit.Initial)                // A was slow to read them
	for i, want := range []int{0, 0, 1} {
		deliver(a, late, portA, portB)
		if got := len(sentOf(a.bind, isakmp.ExchangeQuickMode)) - before; got != want {
			t.Errorf("repeated QM2 #%d: initiator has sent %d messages since its QM3, want %d", i+1, got, want)
		}
	}
	s.advance(qm2CrossingWindow * DefaultRetransmit.Initial)
	deliver(a, late, portA, portB)
	if got := len(sentOf(a.bind, isakmp.ExchangeQuickMode)) - before; got != 2 {
		t.Errorf("initiator answered a QM2 repeated later with %d messages, want its QM3 again", got-1)
	}
}

// Once the peer answered our next quick mode, a repeat of an earlier QM2 is an echo of one
// of our QM1 copies (strongSwan retransmits only its latest answer) and gets no QM3.
func TestQM2RepeatAfterNextQuickModeNotAnswered(t *testing.T) {
	s := newSim(t)
	a, b := s.pair(pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k", tunnels: 2})
	s.up(a, b)
	s.run("both child SAs", time.Minute, func() bool { return len(a.k.active()) == 2 && len(b.k.active()) == 2 })
	first := sentOf(b.bind, isakmp.ExchangeQuickMode)[0]
	s.advance(2 * qm2CrossingWindow * DefaultRetransmit.Initial)
	before := len(sentOf(a.bind, isakmp.ExchangeQuickMode))
	deliver(a, first, portA, portB)
	if got := len(sentOf(a.bind, isakmp.ExchangeQuickMode)) - before; got != 0 {
		t.Errorf("initiator answered the first quick mode's QM2, repeated after the second one's, with %d messages, want none", got)
	}
}
