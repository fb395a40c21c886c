package ike

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/clock/clocktest"
)

// dhLimitEngine is an engine on a manual clock, for the DH budget alone.
func dhLimitEngine(t *testing.T) (*Engine, *clocktest.Clock) {
	bind, _ := bindtest.NewPair()
	clk := clocktest.New()
	return New(Options{Logger: slog.New(slog.DiscardHandler), Bind: bind, Kernel: newFakeKernel(0), Clock: clk}), clk
}

// peerN is the n-th of many distinct peer addresses.
func peerN(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}) }

// allowMany asks for n DH in group, dhPeerBurst from each of distinct peer addresses
// starting at first, and counts the ones allowed.
func allowMany(e *Engine, first, n int, group uint16) int {
	allowed := 0
	for i := range n {
		if e.allowResponderDH(peerN(first+i/dhPeerBurst), group) {
			allowed++
		}
	}
	return allowed
}

// The overall budget is CPU time: many peers starting at once get the burst's worth of DH
// of their group, then the rate's worth per second; a cheap group gets more than an
// expensive one, and never more CPU time than the budget.
func TestResponderDHBudgetByCost(t *testing.T) {
	for _, group := range []uint16{14, 16, 19} {
		e, clk := dhLimitEngine(t)
		cost := dhCost(group)
		burst := int(dhCPUBurst / cost)
		if got := allowMany(e, 0, 2*burst, group); got < burst-1 || got > burst { // -1: float rounding
			t.Errorf("group %d: %d DH allowed at once, want the burst's %d (%v each)", group, got, burst, cost)
		}
		clk.Advance(time.Second)
		perSecond := int(dhCPUPerSecond / cost)
		if got := allowMany(e, 2*burst/dhPeerBurst+1, 2*perSecond, group); got < perSecond || got > perSecond+1 { // + the burst's remainder
			t.Errorf("group %d: %d DH allowed in the next second, want %d", group, got, perSecond)
		}
	}
	if n14, n16 := int(dhCPUBurst/dhCost(14)), int(dhCPUBurst/dhCost(16)); n14 < 100 || n16 > n14/2 {
		t.Errorf("burst admits %d modp2048 and %d modp4096 DH: want ≥ 100 cheap ones (200 peers in 2 s), fewer dear ones", n14, n16)
	}
}

// One address (a flood of forged first messages) gets its own burst and rate and leaves
// the rest of the overall budget to the other peers.
func TestResponderDHPerPeer(t *testing.T) {
	e, clk := dhLimitEngine(t)
	flood := peerN(0)
	n := 0
	for range 1000 {
		if e.allowResponderDH(flood, 14) {
			n++
		}
	}
	if n != dhPeerBurst {
		t.Errorf("one address: %d DH allowed at once, want %d", n, dhPeerBurst)
	}
	others := 0
	for i := 1; i <= 50; i++ {
		if e.allowResponderDH(peerN(i), 14) {
			others++
		}
	}
	if others != 50 {
		t.Errorf("other peers during the flood: %d of 50 allowed", others)
	}
	clk.Advance(time.Second)
	n = 0
	for range 1000 {
		if e.allowResponderDH(flood, 14) {
			n++
		}
	}
	if n != dhPeerRate {
		t.Errorf("one address, a second later: %d DH allowed, want %d", n, dhPeerRate)
	}
}

// A group without a measured cost is charged as the dearest.
func TestDHCostUnknownGroup(t *testing.T) {
	if dhCost(9999) != dhCost(16) {
		t.Errorf("unknown group costs %v, want modp4096's %v", dhCost(9999), dhCost(16))
	}
}
