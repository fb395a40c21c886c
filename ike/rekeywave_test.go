package ike

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/clock/clocktest"
	"github.com/espgw/espgw/model"
)

// quickModeClock records when its engine starts a quick mode (reserves an inbound SPI),
// on the simulation's clock.
type quickModeClock struct {
	*fakeKernel
	clk    *clocktest.Clock
	starts []time.Time
}

func (k *quickModeClock) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	k.starts = append(k.starts, k.clk.Now())
	return k.fakeKernel.AllocSPI(ctx, local, remote)
}

// TestRekeyWave: 1,000 child SAs negotiated in the same instant with the same lifetime are
// rekeyed spread over the jitter window (85 to 90 % of the lifetime), not in one burst.
// Messages take no time in the simulation, so quick-mode pacing does not spread them here:
// the jitter alone must.
func TestRekeyWave(t *testing.T) {
	const n, life = 1000, 30 * time.Minute
	s := newSim(t)
	ca, cb := connPair(t, pairConfig{ike: "aes128-sha256-modp2048", esp: "aes128gcm16", pskA: "wave"})
	ca.Tunnels, cb.Tunnels = manyTunnels(t, n, life, "10.10", "10.20"), manyTunnels(t, n, life, "10.20", "10.10")
	ba, bb := bindtest.NewPair()
	ka := &quickModeClock{fakeKernel: newFakeKernel(0xa0000000), clk: s.clk}
	a := s.start("A", ba, ka.fakeKernel, Options{Kernel: ka}, ca)
	b := s.start("B", bb, newFakeKernel(0xb0000000), Options{}, cb)
	s.up(a, b)
	established := s.clk.Now()
	if got := len(ka.starts); got != n {
		t.Fatalf("%d quick modes to bring %d tunnels up", got, n)
	}
	ka.starts = nil

	s.advance(life * 95 / 100)
	if len(ka.starts) != n {
		t.Fatalf("%d rekeys of %d child SAs by 95 %% of their lifetime", len(ka.starts), n)
	}
	perSecond := map[time.Duration]int{}
	for _, at := range ka.starts {
		since := at.Sub(established)
		if since < life*85/100 || since > life*90/100 {
			t.Errorf("a rekey started %v after establishment, want between 85 and 90 %% of %v", since, life)
		}
		perSecond[since.Truncate(time.Second)]++
	}
	busiest := slices.Max(slices.Collect(func(yield func(int) bool) {
		for _, c := range perSecond {
			yield(c)
		}
	}))
	window := life * 5 / 100
	mean := float64(n) / window.Seconds()
	t.Logf("%d rekeys over %d distinct seconds of the %v window: busiest second %d, mean %.1f", n, len(perSecond), window, busiest, mean)
	// Uniform jitter: ~11 a second, the busiest of 90 seconds rarely above 25.
	if float64(busiest) > 3*mean {
		t.Errorf("busiest second has %d rekey starts, want at most 3× the mean %.1f", busiest, mean)
	}
	if len(perSecond) < int(window.Seconds())*8/10 {
		t.Errorf("rekeys in %d distinct seconds, want most of the %v window", len(perSecond), window)
	}
	s.run("every tunnel rekeyed at both ends", time.Minute, func() bool {
		return len(a.k.active()) == n && len(b.k.active()) == n
	})
}

// manyTunnels is n tunnels from local.x.y/32 to remote.x.y/32.
func manyTunnels(t *testing.T, n int, life time.Duration, local, remote string) []model.Tunnel {
	var ts []model.Tunnel
	for i := range n {
		ts = append(ts, model.Tunnel{
			Name:          fmt.Sprintf("t%04d", i),
			LocalSubnets:  []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("%s.%d.%d/32", local, i/256, i%256))},
			RemoteSubnets: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("%s.%d.%d/32", remote, i/256, i%256))},
			Proposals:     mustESP(t, "aes128gcm16"), Lifetime: life, Start: model.StartManual,
		})
	}
	return ts
}
