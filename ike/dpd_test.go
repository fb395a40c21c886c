package ike

import (
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/clock"
	"github.com/espgw/espgw/ike/clock/clocktest"
	"github.com/espgw/espgw/model"
)

// lateClock fires every timer late, as a loaded machine does.
type lateClock struct {
	*clocktest.Clock
	late time.Duration
}

func (c lateClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return c.Clock.AfterFunc(d+c.late, f)
}

// TestDPDTimeoutEqualsDelay: with dpd_timeout equal to dpd_delay (30 s each, the default
// timeout), a peer that answers every probe stays alive even when the next round's timer
// fires later after the probe than the answer took to come back; one that stops answering
// is dead a round later. Before, a timer 1 ms late declared a live peer dead (measured
// with 200 IKE SAs on a loaded machine: BenchmarkScale's tunnels went down while idle).
func TestDPDTimeoutEqualsDelay(t *testing.T) {
	const delay = 30 * time.Second
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", dpdDelay: delay, dpdTimeout: delay})
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{Clock: lateClock{s.clk, time.Millisecond}}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	s.up(a, b)
	s.advance(10 * delay)
	if got := len(a.e.Status().IKESAs); got != 1 || len(a.k.active()) != 1 {
		t.Fatalf("%d IKE SAs and %d child SAs after 10 DPD rounds the peer answered, want 1 and 1", got, len(a.k.active()))
	}
	b.bind.SetFilter(func([]byte, netip.AddrPort, netip.AddrPort, bool) bool { return false })
	silent := s.clk.Now()
	s.run("dead peer cleared", 4*delay, func() bool { return len(a.e.Status().IKESAs) == 0 })
	if got := s.elapsed(silent); got > 2*delay+time.Second {
		t.Errorf("peer declared dead %v after it went silent, want within two rounds of %v", got, delay)
	}
}
