package daemon

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/datapathtest"
	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/datapath/xfrm"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/metrics"
)

// Both real datapaths report ESP drops (the daemon finds them by type assertion).
var (
	_ metrics.DropSource = (*xfrm.Datapath)(nil)
	_ metrics.DropSource = (*userspace.Datapath)(nil)
)

// TestTunnelStates: every configured tunnel is reported, up with the newest SA's expiry
// while one is installed; the last inbound time moves only when the packet count rises.
func TestTunnelStates(t *testing.T) {
	dp := datapathtest.New(0x1000)
	k := newKernel(dp)
	k.configure(&config.Config{Connections: []model.Connection{{Name: "c", Tunnels: []model.Tunnel{{Name: "a"}, {Name: "b"}}}}})
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := dp.AddSAPair(context.Background(), datapath.SAPair{In: datapath.SA{SPI: 1, Dst: local}, Out: datapath.SA{SPI: 2, Dst: remote}}); err != nil {
		t.Fatal(err)
	}
	k.installed[1] = installedSA{conn: "c", tunnel: "a", local: local, remote: remote, spiIn: 1, spiOut: 2, expiry: exp}
	eng := &fakeEngineState{tunnels: []ike.TunnelInfo{{Connection: "c", Tunnel: "a"}, {Connection: "c", Tunnel: "b"}}}
	s := &stateSource{k: k, engine: eng, inPackets: make(map[uint32]uint64), lastIn: make(map[tunnelKey]time.Time)}

	first, err := s.TunnelStates()
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || !first[0].Up || !first[0].Expiry.Equal(exp) || first[0].LastInbound.IsZero() || first[1].Up || !first[1].LastInbound.IsZero() {
		t.Fatalf("TunnelStates() = %+v, want c/a up until %v with a last inbound time (the fake counts 1 packet), c/b down", first, exp)
	}
	time.Sleep(10 * time.Millisecond)
	second, err := s.TunnelStates()
	if err != nil {
		t.Fatal(err)
	}
	if !second[0].LastInbound.Equal(first[0].LastInbound) {
		t.Errorf("last inbound moved from %v to %v although the packet count stayed 1", first[0].LastInbound, second[0].LastInbound)
	}
	if second[0].OneSided || second[1].OneSided {
		t.Errorf("TunnelStates() = %+v, want nothing one-sided", second)
	}
	// The engine finds c/a and c/b one-sided; only c/a is up, so only c/a is reported.
	for i := range eng.tunnels {
		eng.tunnels[i].OneSidedSince = time.Now()
	}
	third, err := s.TunnelStates()
	if err != nil {
		t.Fatal(err)
	}
	if !third[0].OneSided || third[1].OneSided {
		t.Errorf("TunnelStates() = %+v, want c/a one-sided, c/b (down) not", third)
	}
}

// fakeEngineState is the engine as the metrics see it.
type fakeEngineState struct{ tunnels []ike.TunnelInfo }

func (f *fakeEngineState) Tunnels() []ike.TunnelInfo { return f.tunnels }
func (f *fakeEngineState) Liveness() []ike.Liveness  { return nil }
