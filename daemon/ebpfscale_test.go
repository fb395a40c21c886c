package daemon

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// TestEBPFManyTunnels installs loader.MaxPolicies tunnels' policies through the daemon's
// classifier glue, brings SAs up on a sample, reloads with when_sa_down: pass, and checks
// each sample's packets through the loaded tc program: up tunnels pass and count per SA,
// down ones are dropped, then passed after the reload. One tunnel more is refused.
func TestEBPFManyTunnels(t *testing.T) {
	testutil.RequireRoot(t)
	l, err := loader.Open(loader.Options{EventInterval: time.Hour})
	if err != nil {
		t.Fatalf("loader.Open: %v", err)
	}
	e := newEBPFProgs(l, config.DefaultEBPF, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	})
	at := func(base uint32) netip.Addr {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base)
		return netip.AddrFrom4(a)
	}
	// Tunnel i: 10.64.0.0/16 split into /28s ⇄ 10.128.0.0/12 split into /24s.
	local := func(i int) netip.Addr { return at(0x0a400000 + 16*uint32(i)) }
	remote := func(i int) netip.Addr { return at(0x0a800000 + 256*uint32(i)) }
	policy := func(i int) (datapath.Policy, ike.TunnelInfo) {
		sel := datapath.Selector{Local: netip.PrefixFrom(local(i), 28), Remote: netip.PrefixFrom(remote(i), 24)}
		return datapath.Policy{Selector: sel, ReqID: uint32(1 + i), Priority: policyPriority},
			ike.TunnelInfo{Connection: fmt.Sprintf("peer%d", i/5), Tunnel: fmt.Sprintf("t%d", i%5)}
	}
	start := time.Now()
	for i := range loader.MaxPolicies {
		if err := e.setPolicy(policy(i)); err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	t.Logf("%d policies installed in %v", loader.MaxPolicies, time.Since(start))
	if err := e.setPolicy(policy(loader.MaxPolicies)); err == nil {
		t.Fatal("a policy beyond loader.MaxPolicies was accepted")
	}

	samples := []int{0, 1, 777, 2048, loader.MaxPolicies - 1}
	for _, i := range samples[:3] {
		e.allocSPI(uint32(0x10000 + i))
		e.saInstalled(&ike.ChildSA{ReqID: uint32(1 + i), SPIIn: uint32(0x10000 + i), SPIOut: uint32(0x20000 + i),
			Proposal: proposal.ESP{Encryption: proposal.EncAESGCM16, KeyBits: 128}})
	}
	send := func(i int) uint32 {
		t.Helper()
		frame := pkttest.IPv4{Src: local(i).Next(), Dst: remote(i).Next(), Proto: pkttest.ProtoUDP}.Frame(pkttest.UDP(1, 2, nil))
		ret, err := l.Programs().TCEgress.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	check := func(step string, downVerdict uint32) {
		t.Helper()
		for k, i := range samples {
			want := downVerdict
			if k < 3 {
				want = tcActOK
			}
			if got := send(i); got != want {
				t.Errorf("%s: tunnel %d: verdict %d, want %d", step, i, got, want)
			}
		}
		out, err := l.SACounters(loader.Outbound)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range samples[:3] {
			if out[uint32(0x20000+i)].Packets == 0 {
				t.Errorf("%s: outbound SA of tunnel %d counted nothing", step, i)
			}
		}
	}
	check("installed", tcActShot)
	start = time.Now()
	passCfg := config.DefaultEBPF
	passCfg.WhenSADown = config.SADownPass
	if err := e.reconfigure(&config.Config{EBPF: passCfg}); err != nil {
		t.Fatal(err)
	}
	t.Logf("reload rewrote %d policies in %v", loader.MaxPolicies, time.Since(start))
	check("after reload with when_sa_down: pass", tcActOK)
}
