package ike

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// holdQM1 makes b hold back the quick-mode messages it sends, recording the first one.
type holdQM1 struct {
	mu    sync.Mutex
	msg   []byte
	local netip.AddrPort
	peer  netip.AddrPort
}

func (h *holdQM1) filter(msg []byte, local, remote netip.AddrPort, isIKE bool) bool {
	hd, err := isakmp.ParseHeader(msg)
	if !isIKE || err != nil || hd.Exchange != isakmp.ExchangeQuickMode {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msg == nil {
		h.msg, h.local, h.peer = append([]byte(nil), msg...), local, remote
	}
	return false
}

func (h *holdQM1) held() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msg != nil
}

// release delivers the held message to the peer bind.
func (h *holdQM1) release(peer *bindtest.Bind) {
	h.mu.Lock()
	defer h.mu.Unlock()
	peer.Inject(h.msg, h.peer, h.local)
}

// tunnelChildren returns the active child SAs of tunnel on n.
func tunnelChildren(n *node, tunnel string) []*ChildSA {
	var out []*ChildSA
	for _, c := range n.k.active() {
		if c.Tunnel == tunnel {
			out = append(out, c)
		}
	}
	return out
}

func installedCount(n *node, tunnel string) int {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	c := 0
	for _, sa := range n.k.installed {
		if sa.Tunnel == tunnel {
			c++
		}
	}
	return c
}

func TestSimultaneousQuickModes(t *testing.T) {
	// Both sides start a quick mode for t1 before seeing the other's: two SA pairs are
	// negotiated, and both sides then keep the same one and delete the other.
	a, b := startPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1-modp1024", pskA: "k", tunnels: 2})
	if err := a.e.Up(upCtx(t), "peer", "t0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "t0 at responder", func() bool { return len(b.k.active()) == 1 })
	var ha, hb holdQM1
	a.bind.SetFilter(ha.filter)
	b.bind.SetFilter(hb.filter)
	errs := make(chan error, 2)
	for _, n := range []*node{a, b} {
		go func() { errs <- n.e.Up(upCtx(t), "peer", "t1") }()
	}
	waitFor(t, "both QM1 held", func() bool { return ha.held() && hb.held() })
	a.bind.SetFilter(nil)
	b.bind.SetFilter(nil)
	ha.release(b.bind)
	hb.release(a.bind)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Up t1: %v", err)
		}
	}
	waitFor(t, "both pairs installed on both sides", func() bool {
		return installedCount(a, "t1") == 2 && installedCount(b, "t1") == 2
	})
	waitFor(t, "one mirrored pair left for t1", func() bool {
		x, y := tunnelChildren(a, "t1"), tunnelChildren(b, "t1")
		return len(x) == 1 && len(y) == 1 && x[0].SPIIn == y[0].SPIOut && x[0].SPIOut == y[0].SPIIn
	})
	if len(tunnelChildren(a, "t0")) != 1 || len(tunnelChildren(b, "t0")) != 1 {
		t.Error("t0 lost while settling t1's duplicates")
	}
	// The survivor is the tunnel's current child SA on both sides, so a rekey replaces it.
	for _, n := range []*node{a, b} {
		n.e.mu.Lock()
		cur := n.e.conns["peer"].tunnels["t1"].child
		want := tunnelChildren(n, "t1")[0].SPIIn
		n.e.mu.Unlock()
		if cur == nil || cur.SPIIn != want {
			t.Errorf("tunnel t1's current child SA is not the survivor %08x", want)
		}
	}
}
