package ike

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/model"
)

// prefixes parses a comma-separated list of prefixes.
func prefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range strings.Split(s, ",") {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// withSubnets gives tunnel i of A the subnets aLocal <-> aRemote and of B bLocal <-> bRemote;
// %d in them is i.
func withSubnets(aLocal, aRemote, bLocal, bRemote string) func(a, b *model.Connection) {
	return func(a, b *model.Connection) {
		for i := range a.Tunnels {
			f := func(s string) []netip.Prefix { return prefixes(strings.ReplaceAll(s, "%d", string(rune('0'+i)))) }
			a.Tunnels[i].LocalSubnets, a.Tunnels[i].RemoteSubnets = f(aLocal), f(aRemote)
			b.Tunnels[i].LocalSubnets, b.Tunnels[i].RemoteSubnets = f(bLocal), f(bRemote)
		}
	}
}

// requireSelectors fails unless every active child SA of n has these selectors (%d: the
// digit of its tunnel).
func requireSelectors(t *testing.T, n *node, who, local, remote string) {
	t.Helper()
	for _, ch := range n.k.active() {
		i := ch.Tunnel[len(ch.Tunnel)-1:]
		wl, wr := strings.ReplaceAll(local, "%d", i), strings.ReplaceAll(remote, "%d", i)
		if got := JoinTS(ch.LocalTS) + " <-> " + JoinTS(ch.RemoteTS); got != wl+" <-> "+wr {
			t.Errorf("%s's child SA %08x of %s: %s, want %s <-> %s", who, ch.SPIIn, ch.Tunnel, got, wl, wr)
		}
	}
}

// TestIKEv2SeveralSubnets: tunnels with two subnets per side get one child SA each (the first
// in IKE_AUTH, the second by CREATE_CHILD_SA) carrying every combination, the same lists on
// both sides; the rekeys of the initiator's 10-minute lifetime keep them.
func TestIKEv2SeveralSubnets(t *testing.T) {
	const local, remote = "10.10.%d.1/32,10.11.%d.0/24", "10.20.%d.0/24,10.21.%d.0/24"
	pc := pairConfig{esp: "aes128gcm16-modp2048", pskA: "k", tunnels: 2, lifetimeA: 10 * time.Minute, lifetimeB: time.Hour}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048", withSubnets(local, remote, remote, local))
	s.up(a, b)
	first := a.k.active()
	requireMirroredSets(t, first, b.k.active())
	requireSelectors(t, a, "A", local, remote)
	requireSelectors(t, b, "B", remote, local)
	s.advance(25 * time.Minute)
	ia := a.k.active()
	requireMirroredSets(t, ia, b.k.active())
	for _, x := range ia {
		for _, f := range first {
			if x.SPIIn == f.SPIIn {
				t.Errorf("child SA %08x not rekeyed after 25 minutes of a 10-minute lifetime", x.SPIIn)
			}
		}
	}
	requireSelectors(t, a, "A", local, remote)
	requireSelectors(t, b, "B", remote, local)
}

// TestIKEv2SeveralSubnetsNarrowed: the responder configured less than the initiator offers
// (one of its two subnets, and one of its own two is unknown to the initiator): it answers
// the intersections (RFC 7296 2.9), both install that narrowed set, and the initiator's
// rekeys offer the negotiated set, not its configuration.
func TestIKEv2SeveralSubnetsNarrowed(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k", tunnels: 2, lifetimeA: 10 * time.Minute, lifetimeB: time.Hour}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048",
		withSubnets("10.10.%d.0/24,10.11.%d.0/24", "10.20.%d.0/24,10.21.%d.0/24", "10.20.%d.0/24,10.29.%d.0/24", "10.10.%d.0/25,10.11.%d.0/24"))
	s.up(a, b)
	const narrowL, narrowR = "10.10.%d.0/25,10.11.%d.0/24", "10.20.%d.0/24"
	requireSelectors(t, a, "A", narrowL, narrowR)
	requireSelectors(t, b, "B", narrowR, narrowL)
	s.advance(25 * time.Minute)
	requireMirroredSets(t, a.k.active(), b.k.active())
	requireSelectors(t, a, "A", narrowL, narrowR)
	requireSelectors(t, b, "B", narrowR, narrowL)
	if errs := b.e.Status().Errors; len(errs) > 0 {
		t.Errorf("B's errors %+v, want none: the rekeys offered what it had accepted", errs)
	}
}

// TestIKEv2SeveralSubnetsUnacceptable: none of the initiator's subnets meets the responder's
// on one side: TS_UNACCEPTABLE, and the initiator's error names both lists.
func TestIKEv2SeveralSubnetsUnacceptable(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k", retransmit: RetransmitPolicy{Initial: time.Second, MaxTries: 3, Timeout: 10 * time.Second}}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048",
		withSubnets("10.10.0.0/24,10.11.0.0/24", "10.20.0.0/24,10.21.0.0/24", "10.30.0.0/24", "10.10.0.0/24"))
	errs := startTunnels(t, s, a)
	if len(errs) != 1 || !errors.Is(errs[0], ErrIDMismatch) {
		t.Fatalf("Up: %v, want %v", errs, ErrIDMismatch)
	}
	eb := b.e.Status().Errors
	if len(eb) == 0 || !strings.Contains(eb[len(eb)-1].Err, "TS_UNACCEPTABLE") || !strings.Contains(eb[len(eb)-1].Err, "10.20.0.0/24 10.21.0.0/24") {
		t.Errorf("B's errors %+v, want TS_UNACCEPTABLE naming the peer's 10.20.0.0/24 10.21.0.0/24", eb)
	}
	if n := len(a.k.active()) + len(b.k.active()); n != 0 {
		t.Errorf("%d child SAs installed, want none", n)
	}
}

// TestIKEv2TriggeringPacketFirst: A's tunnel covers 10.20.0.0/16, B has two tunnels for
// parts of it. Brought up by a packet to 10.20.1.7, A offers that packet's addresses first
// (RFC 7296 2.9), so B picks its tunnel holding 10.20.1.7 and answers its subnet, not the
// first tunnel by name that merely overlaps (which it picks without the packet).
func TestIKEv2TriggeringPacketFirst(t *testing.T) {
	pc := pairConfig{esp: "aes128gcm16", pskA: "k"}
	s, a, b, _, _ := v2Sim(t, pc, "aes128-sha256-modp2048", "aes128-sha256-modp2048", func(a, b *model.Connection) {
		a.Tunnels[0].LocalSubnets, a.Tunnels[0].RemoteSubnets = prefixes("10.10.0.0/24"), prefixes("10.20.0.0/16")
		b.Tunnels[0].LocalSubnets, b.Tunnels[0].RemoteSubnets = prefixes("10.20.0.0/24"), prefixes("10.10.0.0/24")
		second := b.Tunnels[0]
		second.Name, second.LocalSubnets = "t1", prefixes("10.20.1.0/24")
		b.Tunnels = append(b.Tunnels, second)
	})
	reqID := a.e.Tunnels()[0].ReqID
	a.e.AcquirePacket(reqID, netip.MustParseAddr("10.10.0.5"), netip.MustParseAddr("10.20.1.7"))
	s.run("tunnel up", time.Minute, func() bool { return len(a.k.active()) == 1 && len(b.k.active()) == 1 })
	ca, cb := a.k.active()[0], b.k.active()[0]
	if got := JoinTS(ca.LocalTS) + " <-> " + JoinTS(ca.RemoteTS); got != "10.10.0.0/24 <-> 10.20.1.0/24" {
		t.Errorf("A's child SA %s, want 10.10.0.0/24 <-> 10.20.1.0/24 (B's tunnel holding the packet)", got)
	}
	if cb.Tunnel != "t1" {
		t.Errorf("B installed the child SA for tunnel %s, want t1, whose subnet holds 10.20.1.7", cb.Tunnel)
	}
}
