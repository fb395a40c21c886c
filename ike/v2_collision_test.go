package ike

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/model"
)

// rekeyIKEv2Now starts n's rekey of its established IKE SA; the peer sees the request only
// when the simulation delivers it, so two calls in a row make both requests cross.
func rekeyIKEv2Now(t *testing.T, n *node) {
	t.Helper()
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	for _, sa := range n.e.v2SAs {
		if sa.state == v2Established && !sa.deleting {
			n.e.rekeyV2(sa)
			return
		}
	}
	t.Fatal("no established IKE SA to rekey")
}

// requireOneIKEv2SA checks that a and b have one IKE SA each, the same one (SPIs), not
// first, with children child SAs, and returns its initiator SPI.
func requireOneIKEv2SA(t *testing.T, a, b *node, first string, children int) string {
	t.Helper()
	sa, sb := a.e.Status().IKESAs, b.e.Status().IKESAs
	if len(sa) != 1 || len(sb) != 1 {
		t.Fatalf("%d/%d IKE SAs, want 1/1: %+v / %+v", len(sa), len(sb), sa, sb)
	}
	x, y := sa[0], sb[0]
	if x.InitiatorCookie != y.InitiatorCookie || x.ResponderCookie != y.ResponderCookie || x.State != "ESTABLISHED" || y.State != "ESTABLISHED" {
		t.Errorf("A keeps IKE SA %s/%s (%s), B %s/%s (%s): want the same, ESTABLISHED",
			x.InitiatorCookie, x.ResponderCookie, x.State, y.InitiatorCookie, y.ResponderCookie, y.State)
	}
	if x.InitiatorCookie == first {
		t.Errorf("IKE SA %s not replaced", first)
	}
	if len(x.ChildSAs) != children || len(y.ChildSAs) != children {
		t.Errorf("the surviving IKE SA has %d/%d child SAs, want %d", len(x.ChildSAs), len(y.ChildSAs), children)
	}
	for _, n := range []*node{a, b} {
		if p := n.k.spiProblems(); len(p) > 0 {
			t.Error(p)
		}
	}
	return x.InitiatorCookie
}

// TestIKEv2IKERekeyCollision: both sides rekey the IKE SA at once (RFC 7296 2.8.2). The new
// SA of the exchange with the lowest of the four nonces is deleted by its initiator, the
// other survives on both sides with the child SAs, which stay installed untouched; the new
// SA then carries child SA work. Random nonces: each side wins in some of the runs. With
// A's answer to B's request lost, B learns of A's rekey first (and gives its own up if A
// won and deleted the old SA): still one IKE SA each in the end.
func TestIKEv2IKERekeyCollision(t *testing.T) {
	for _, lost := range []bool{false, true} {
		survivors := map[string]int{}
		for i := range 12 {
			s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
			s.up(a, b)
			first := a.e.Status().IKESAs[0].InitiatorCookie
			children := a.k.active()
			if lost {
				dropOnce := true
				a.bind.SetFilter(func(m []byte, _, _ netip.AddrPort, _ bool) bool {
					answer := len(m) > 19 && m[18] == byte(ikev2.ExchangeCreateChildSA) && ikev2.Flags(m[19])&ikev2.FlagResponse != 0
					if answer && dropOnce {
						dropOnce = false
						return false
					}
					return true
				})
			}
			rekeyIKEv2Now(t, a)
			rekeyIKEv2Now(t, b)
			s.advance(2 * time.Minute)
			spi := requireOneIKEv2SA(t, a, b, first, 2)
			if got := a.k.active(); len(got) != 2 || len(b.k.active()) != 2 ||
				got[0].SPIIn != children[0].SPIIn && got[0].SPIIn != children[1].SPIIn {
				t.Errorf("run %d: child SAs changed with the IKE SA rekeys: %v, were %v", i, got, children)
			}
			if a.e.Status().IKESAs[0].Initiator {
				survivors["A's"]++
			} else {
				survivors["B's"]++
			}
			deleteOneChild(b)
			s.run("child deleted at A on the new IKE SA "+spi, time.Minute, func() bool { return len(a.k.active()) == 1 })
		}
		t.Logf("answer lost %v: surviving IKE SA %v", lost, survivors)
		if len(survivors) != 2 {
			t.Errorf("answer lost %v: the same side's IKE SA survived every run (%v): the nonces do not decide", lost, survivors)
		}
	}
}

// TestIKEv2RekeyCrossings: an IKE SA rekey of one side crosses the other side's child SA
// exchange (RFC 7296 2.25.2): a child SA rekey or creation gets TEMPORARY_FAILURE both ways
// and each side tries again, a child SA Delete is answered as usual; both sides end with
// one IKE SA, the new one, and mirrored child SAs.
func TestIKEv2RekeyCrossings(t *testing.T) {
	for _, tt := range []struct {
		name     string
		children int // after
		cross    func(a, b *node)
	}{
		{"child rekey", 2, func(_, b *node) { b.e.Expire(b.k.active()[0].SPIIn, false) }},
		{"child delete", 1, func(_, b *node) { deleteOneChild(b) }},
		{"both", 1, func(a, b *node) {
			deleteOneChild(a)
			b.e.Expire(b.k.active()[0].SPIIn, false)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 6 {
				s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16-modp2048", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
				s.up(a, b)
				first := a.e.Status().IKESAs[0].InitiatorCookie
				ikeSide, childSide := a, b
				if i%2 == 1 { // the original responder rekeys the IKE SA
					ikeSide, childSide = b, a
				}
				rekeyIKEv2Now(t, ikeSide)
				tt.cross(ikeSide, childSide)
				s.advance(time.Minute)
				requireOneIKEv2SA(t, a, b, first, tt.children)
				ia, ib := a.k.active(), b.k.active()
				if len(ia) != tt.children || len(ib) != tt.children {
					t.Fatalf("run %d: %d/%d child SAs installed, want %d", i, len(ia), len(ib), tt.children)
				}
				requireMirroredSets(t, ia, ib)
			}
		})
	}
}

// requireMirroredSets checks that each of A's child SAs has its mirror among B's.
func requireMirroredSets(t *testing.T, ia, ib []*ChildSA) {
	t.Helper()
	for _, x := range ia {
		i := slices.IndexFunc(ib, func(y *ChildSA) bool { return y.SPIIn == x.SPIOut })
		if i < 0 {
			t.Errorf("A's child %08x/%08x has no peer at B", x.SPIIn, x.SPIOut)
			continue
		}
		checkMirrored(t, x, ib[i])
	}
}

// TestIKEv2IKERekeyTimeoutInCollision: both sides rekey the IKE SA at once, but A's
// CREATE_CHILD_SA never reaches B and B's Delete of the old SA never reaches A: A answered
// B's rekey and so has a collision pending when its own request times out. The pending
// state must not outlive the exchange: B's rekey, which both sides completed, takes the
// child SAs at A too, the old SA goes with its timers, and nothing half-done stays.
func TestIKEv2IKERekeyTimeoutInCollision(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048")
	s.up(a, b)
	first := a.e.Status().IKESAs[0].InitiatorCookie
	children := len(a.k.active())
	isRequest := func(m []byte, x ikev2.ExchangeType) bool {
		return len(m) > 19 && m[18] == byte(x) && ikev2.Flags(m[19])&ikev2.FlagResponse == 0
	}
	a.bind.SetFilter(func(m []byte, _, _ netip.AddrPort, _ bool) bool { return !isRequest(m, ikev2.ExchangeCreateChildSA) })
	b.bind.SetFilter(func(m []byte, _, _ netip.AddrPort, _ bool) bool { return !isRequest(m, ikev2.ExchangeInformational) })
	rekeyIKEv2Now(t, a)
	rekeyIKEv2Now(t, b)
	s.advance(2 * time.Minute) // A's retransmissions give up after 28 s
	a.bind.SetFilter(nil)
	b.bind.SetFilter(nil)
	spi := requireOneIKEv2SA(t, a, b, first, children)
	if got := len(a.k.active()); got != children {
		t.Errorf("A has %d child SAs installed, want %d", got, children)
	}
	a.e.mu.Lock()
	for _, sa := range a.e.v2SAs {
		if sa.race != nil || sa.rekeying || sa.pending != nil || len(sa.queue) > 0 {
			t.Errorf("A's IKE SA %s: race %v, rekeying %v, request pending %v, %d queued; want none left", sa.spiI, sa.race != nil, sa.rekeying, sa.pending != nil, len(sa.queue))
		}
	}
	if a.e.halfOpen != 0 {
		t.Errorf("A counts %d half-open IKE SAs, want 0", a.e.halfOpen)
	}
	a.e.mu.Unlock()
	// The surviving SA carries work both ways.
	deleteOneChild(b)
	s.run("child deleted at A on the IKE SA "+spi, time.Minute, func() bool { return len(a.k.active()) == children-1 })
	deleteOneChild(a)
	s.run("child deleted at B on the IKE SA "+spi, time.Minute, func() bool { return len(b.k.active()) == children-2 })
}

// TestIKEv2IKERekeyUnanswered: A's IKE SA rekey gets no answer (B's responses are lost
// for a minute) and no collision is pending: the peer counts as dead, A deletes the old SA
// with its child SAs and the unfinished new one, and its start: always tunnels come back on
// a new IKE SA whose INITIAL_CONTACT clears what B kept: one IKE SA and mirrored child SAs
// each, no half-open SA left.
func TestIKEv2IKERekeyUnanswered(t *testing.T) {
	s, a, b, _, _ := v2Sim(t, pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2}, "aes128-sha256-modp2048", "aes128-sha256-modp2048",
		func(ca, _ *model.Connection) {
			for i := range ca.Tunnels {
				ca.Tunnels[i].Start = model.StartAlways
			}
		})
	s.up(a, b)
	first := a.e.Status().IKESAs[0].InitiatorCookie
	mute := true
	b.bind.SetFilter(func(m []byte, _, _ netip.AddrPort, _ bool) bool {
		return !mute || len(m) <= 19 || ikev2.Flags(m[19])&ikev2.FlagResponse == 0
	})
	rekeyIKEv2Now(t, a)
	s.advance(time.Minute)
	mute = false
	s.advance(time.Minute)
	requireOneIKEv2SA(t, a, b, first, 2)
	requireMirroredSets(t, a.k.active(), b.k.active())
	for _, n := range []*node{a, b} {
		n.e.mu.Lock()
		if len(n.e.v2SAs) != 1 || n.e.halfOpen != 0 {
			t.Errorf("%d IKE SAs in the table, %d half-open; want 1, 0", len(n.e.v2SAs), n.e.halfOpen)
		}
		n.e.mu.Unlock()
	}
}
