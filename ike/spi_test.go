package ike

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/isakmp"
)

// spiProblems checks the fake kernel's SPI bookkeeping: every SPI AllocSPI handed out is
// installed or released, once, and nothing else is released. It returns what is wrong.
func (k *fakeKernel) spiProblems() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	allocated, installed, released := map[uint32]bool{}, map[uint32]bool{}, map[uint32]bool{}
	for _, s := range k.allocated {
		allocated[s] = true
	}
	for _, c := range k.installed {
		installed[c.SPIIn] = true
	}
	var out []string
	for _, s := range k.released {
		switch {
		case !allocated[s]:
			out = append(out, fmt.Sprintf("released %08x, which was never allocated", s))
		case installed[s]:
			out = append(out, fmt.Sprintf("released %08x, which is installed", s))
		case released[s]:
			out = append(out, fmt.Sprintf("released %08x twice", s))
		}
		released[s] = true
	}
	for _, s := range k.allocated {
		if !installed[s] && !released[s] {
			out = append(out, fmt.Sprintf("leaked %08x: neither installed nor released", s))
		}
	}
	return out
}

// spiCounts returns how many SPIs were allocated, installed and released.
func (k *fakeKernel) spiCounts() (allocated, installed, released int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.allocated), len(k.installed), len(k.released)
}

// waitSPIsSettled waits until n's SPI bookkeeping is consistent and fails with the
// problems if it does not become so.
func waitSPIsSettled(t *testing.T, name string, n *node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p := n.k.spiProblems()
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", name, strings.Join(p, "; "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// passFirst delivers the first n IKE messages of exchange x a Bind sends and drops the rest.
func passFirst(x isakmp.ExchangeType, n int) bindtest.Filter {
	var mu sync.Mutex
	return func(msg []byte, _, _ netip.AddrPort, isIKE bool) bool {
		h, err := isakmp.ParseHeader(msg)
		if !isIKE || err != nil || h.Exchange != x {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		n--
		return n >= 0
	}
}

// A quick mode that does not end in InstallChildSA hands its reserved inbound SPI back
// through ReleaseSPI, on each side that allocated one, whatever ends it.
func TestQuickModeFailureReleasesSPIs(t *testing.T) {
	fast := RetransmitPolicy{Initial: 20 * time.Millisecond, MaxTries: 3, Timeout: 300 * time.Millisecond}
	slow := RetransmitPolicy{Initial: time.Second, MaxTries: 5, Timeout: 20 * time.Second}
	dropQM := dropExchanges(isakmp.ExchangeQuickMode)
	type counts struct{ allocated, installed, released int }
	tests := []struct {
		name         string
		pc           pairConfig
		edit         func(cb *model.Connection)
		dropA, dropB bindtest.Filter
		// act, if set, runs once both sides have allocated their SPI.
		act          func(t *testing.T, a, b *node, ca, cb model.Connection)
		upOK         bool
		wantA, wantB counts
	}{
		{
			name:  "ESP proposal mismatch",
			pc:    pairConfig{esp: "3des-sha1-modp1024", espB: "aes256gcm16-modp2048", retransmit: fast},
			wantA: counts{1, 0, 1},
		},
		{
			name: "proxy-ID mismatch",
			pc:   pairConfig{esp: "3des-sha1", retransmit: fast},
			edit: func(cb *model.Connection) {
				cb.Tunnels[0].RemoteSubnets = []netip.Prefix{netip.MustParsePrefix("10.10.9.0/24")}
			},
			wantA: counts{1, 0, 1},
		},
		{
			name:  "QM2 lost: both sides time out",
			pc:    pairConfig{esp: "aes128-sha256-modp2048", retransmit: fast},
			dropB: dropQM,
			wantA: counts{1, 0, 1}, wantB: counts{1, 0, 1},
		},
		{
			name:  "QM3 lost: responder times out",
			pc:    pairConfig{esp: "aes128-sha256-modp2048", retransmit: fast},
			dropA: passFirst(isakmp.ExchangeQuickMode, 1),
			upOK:  true,
			wantA: counts{1, 1, 0}, wantB: counts{1, 0, 1},
		},
		{
			name:  "engines shut down",
			pc:    pairConfig{esp: "3des-sha1", retransmit: slow},
			dropB: dropQM,
			act:   func(t *testing.T, a, b *node, _, _ model.Connection) { a.stop(); b.stop() },
			wantA: counts{1, 0, 1}, wantB: counts{1, 0, 1},
		},
		{
			name:  "tunnel removed by Configure",
			pc:    pairConfig{esp: "3des-sha1", retransmit: slow},
			dropB: dropQM,
			act: func(t *testing.T, a, b *node, ca, cb model.Connection) {
				ca.Tunnels, cb.Tunnels = nil, nil
				if err := a.e.Configure([]model.Connection{ca}); err != nil {
					t.Fatal(err)
				}
				if err := b.e.Configure([]model.Connection{cb}); err != nil {
					t.Fatal(err)
				}
			},
			wantA: counts{1, 0, 1}, wantB: counts{1, 0, 1},
		},
		{
			name:  "IKE SA deleted",
			pc:    pairConfig{esp: "3des-sha1", retransmit: slow},
			dropB: dropQM,
			act: func(t *testing.T, a, b *node, _, _ model.Connection) {
				// A tells B with an ISAKMP Delete, which only quick-mode filters let through.
				if err := a.e.Down(upCtx(t), "peer", ""); err != nil {
					t.Fatal(err)
				}
			},
			wantA: counts{1, 0, 1}, wantB: counts{1, 0, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.pc.mode, tt.pc.ike, tt.pc.pskA = model.ModeMain, "aes128-sha256-modp2048", "k"
			ba, bb := bindtest.NewPair()
			ba.SetFilter(tt.dropA)
			bb.SetFilter(tt.dropB)
			ca, cb := connPair(t, tt.pc)
			if tt.edit != nil {
				tt.edit(&cb)
			}
			a := startNode(t, "A", ba, 0xa0000000, tt.pc.retransmit, ca)
			b := startNode(t, "B", bb, 0xb0000000, tt.pc.retransmit, cb)
			upErr := make(chan error, 1)
			go func() { upErr <- a.e.Up(upCtx(t), "peer", "") }()
			if tt.act != nil {
				waitFor(t, "SPIs allocated on both sides", func() bool {
					na, _, _ := a.k.spiCounts()
					nb, _, _ := b.k.spiCounts()
					return na == 1 && nb == 1
				})
				tt.act(t, a, b, ca, cb)
			}
			if err := <-upErr; (err == nil) != tt.upOK {
				t.Fatalf("Up: %v, want success %v", err, tt.upOK)
			}
			for _, n := range []struct {
				name string
				n    *node
				want counts
			}{{"A", a, tt.wantA}, {"B", b, tt.wantB}} {
				waitSPIsSettled(t, n.name, n.n)
				var got counts
				got.allocated, got.installed, got.released = n.n.k.spiCounts()
				if got != n.want {
					t.Errorf("%s: SPIs allocated/installed/released %v, want %v", n.name, got, n.want)
				}
			}
		})
	}
}

// A quick mode that succeeds releases nothing, also when its SAs are deleted later.
func TestInstalledSPIsNotReleased(t *testing.T) {
	a, b := upPair(t, pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"})
	if err := a.e.Down(upCtx(t), "peer", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "child SAs deleted", func() bool { return len(a.k.active()) == 0 && len(b.k.active()) == 0 })
	a.stop()
	b.stop()
	for _, n := range []*node{a, b} {
		if p := n.k.spiProblems(); len(p) != 0 {
			t.Error(strings.Join(p, "; "))
		}
		if _, _, released := n.k.spiCounts(); released != 0 {
			t.Errorf("%d SPIs released, want 0", released)
		}
	}
}
