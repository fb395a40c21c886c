package ike

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
)

// natPair wires ba and bb through a NAT in front of A that keeps A's address but maps its
// ports (500 → 31500, 4500 → 35500): NAT-D then shows A behind a NAT. A filter runs under
// its Bind's lock and injects into the other Bind: safe only on a sim, which sends from
// one goroutine.
func natPair(ba, bb *bindtest.Bind) {
	outside := func(p uint16) uint16 { return p + 31000 }
	ba.SetFilter(func(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
		if !isIKE {
			return true
		}
		bb.Inject(msg, remote, netip.AddrPortFrom(local.Addr(), outside(local.Port())))
		return false
	})
	bb.SetFilter(func(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
		if !isIKE {
			return true
		}
		ba.Inject(msg, netip.AddrPortFrom(remote.Addr(), remote.Port()-31000), local)
		return false
	})
}

// countKeepalives counts the NAT-keepalives arriving at b on port 4500.
func countKeepalives(b *bindtest.Bind) *atomic.Int32 {
	var n atomic.Int32
	b.SetESPHandler(func(pkt []byte, local, _ netip.AddrPort) {
		if bytes.Equal(pkt, []byte{0xff}) && local.Port() == 4500 {
			n.Add(1)
		}
	})
	return &n
}

func TestNATKeepalive(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"}
	s := newSim(t)
	ba, bb := bindtest.NewPair()
	natPair(ba, bb)
	atB, atA := countKeepalives(bb), countKeepalives(ba)
	ca, cb := connPair(t, pc)
	a := s.start("A", ba, newFakeKernel(0xa0000000), Options{}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	s.up(a, b)
	if c := a.k.active()[0]; c.EncapLocalPort != 4500 || c.EncapRemotePort != 4500 {
		t.Errorf("A's child SA encapsulation %d→%d, want 4500→4500", c.EncapLocalPort, c.EncapRemotePort)
	}
	if c := b.k.active()[0]; c.EncapRemotePort != 35500 {
		t.Errorf("B's child SA sends to port %d, want A's NAT mapping 35500", c.EncapRemotePort)
	}
	s.advance(3 * DefaultNATKeepalive)
	if n := atB.Load(); n != 3 {
		t.Errorf("A, behind the NAT, sent %d keepalives in %v, want 3", n, 3*DefaultNATKeepalive)
	}
	if n := atA.Load(); n != 0 {
		t.Errorf("B, not behind a NAT, sent %d keepalives", n)
	}
}

func TestNoKeepaliveWhenNATForced(t *testing.T) {
	a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", natt: model.NATTForce})
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	for _, n := range []*node{a, b} {
		n.e.mu.Lock()
		for _, sa := range n.e.ikeSAs {
			if sa.keepalive != nil || sa.behindNAT {
				t.Errorf("keepalives armed although the NAT is only forced (behindNAT=%v)", sa.behindNAT)
			}
			if !sa.natDetected() {
				t.Errorf("forced NAT-T not in effect")
			}
		}
		n.e.mu.Unlock()
	}
}
