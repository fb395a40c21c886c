package ike

import (
	"bytes"
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/conn/bindtest"
)

// natPair wires ba and bb through a NAT in front of A that keeps A's address but maps its
// ports (500 → 31500, 4500 → 35500): NAT-D then shows A behind a NAT.
func natPair(t *testing.T, ba, bb *bindtest.Bind) {
	outside := func(p uint16) uint16 { return p + 31000 }
	type fwd struct {
		to            *bindtest.Bind
		msg           []byte
		local, remote netip.AddrPort
	}
	q := make(chan fwd, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range q {
			f.to.Inject(f.msg, f.local, f.remote)
		}
	}()
	t.Cleanup(func() { ba.SetFilter(nil); bb.SetFilter(nil); close(q); <-done })
	// Injection runs on its own goroutine, in order: a filter runs under its Bind's lock.
	ba.SetFilter(func(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
		if !isIKE {
			return true
		}
		q <- fwd{bb, append([]byte(nil), msg...), remote, netip.AddrPortFrom(local.Addr(), outside(local.Port()))}
		return false
	})
	bb.SetFilter(func(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
		if !isIKE {
			return true
		}
		q <- fwd{ba, append([]byte(nil), msg...), netip.AddrPortFrom(remote.Addr(), remote.Port()-31000), local}
		return false
	})
}

func startKeepaliveNode(t *testing.T, name string, b *bindtest.Bind, base uint32, c config.Connection) *node {
	k := newFakeKernel(base)
	e := New(Options{Logger: testLogger(t, name), Bind: b, Kernel: k, NATKeepalive: 10 * time.Millisecond,
		Retransmit: RetransmitPolicy{Initial: 50 * time.Millisecond, MaxTries: 5, Timeout: 3 * time.Second}})
	if err := e.Configure([]config.Connection{c}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{e: e, k: k, bind: b, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); e.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
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
	pc := pairConfig{mode: config.ModeMain, ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "k"}
	ba, bb := bindtest.NewPair()
	natPair(t, ba, bb)
	atB, atA := countKeepalives(bb), countKeepalives(ba)
	ca, cb := connPair(t, pc)
	a := startKeepaliveNode(t, "A", ba, 0xa0000000, ca)
	b := startKeepaliveNode(t, "B", bb, 0xb0000000, cb)
	if err := a.e.Up(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "responder child SA", func() bool { return len(b.k.active()) == 1 })
	if c := a.k.active()[0]; c.EncapLocalPort != 4500 || c.EncapRemotePort != 4500 {
		t.Errorf("A's child SA encapsulation %d→%d, want 4500→4500", c.EncapLocalPort, c.EncapRemotePort)
	}
	if c := b.k.active()[0]; c.EncapRemotePort != 35500 {
		t.Errorf("B's child SA sends to port %d, want A's NAT mapping 35500", c.EncapRemotePort)
	}
	waitFor(t, "keepalives from A, the side behind the NAT", func() bool { return atB.Load() >= 3 })
	if n := atA.Load(); n != 0 {
		t.Errorf("B, not behind a NAT, sent %d keepalives", n)
	}
}

func TestNoKeepaliveWhenNATForced(t *testing.T) {
	a, b := startPair(t, pairConfig{mode: config.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k", natt: config.NATTForce})
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
