package ebpfdp

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// TestManyTunnels installs loader.MaxPolicies tunnels' policies through the decorator in one
// batch, brings SAs up on a sample, reconfigures with when_sa_down: pass, and checks each
// sample's packets through the loaded tc program: up tunnels pass and count per SA,
// down ones are dropped, then passed. One tunnel more is refused by the classifier only.
func TestManyTunnels(t *testing.T) {
	ctx := context.Background()
	d, b, l := open(t, 0, loader.Options{EventInterval: time.Hour})
	at := func(base uint32) netip.Addr {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base)
		return netip.AddrFrom4(a)
	}
	// Tunnel i: 10.64.0.0/16 split into /28s ⇄ 10.128.0.0/12 split into /24s.
	local := func(i int) netip.Addr { return at(0x0a400000 + 16*uint32(i)) }
	remote := func(i int) netip.Addr { return at(0x0a800000 + 256*uint32(i)) }
	policy := func(i int) datapath.Policy {
		sel := datapath.Selector{Local: netip.PrefixFrom(local(i), 28), Remote: netip.PrefixFrom(remote(i), 24)}
		return datapath.Policy{Selector: sel, ReqID: uint32(1 + i), Priority: 1000}
	}
	var policies []datapath.Policy
	for i := range loader.MaxPolicies + 1 {
		policies = append(policies, policy(i))
	}
	start := time.Now()
	errs := d.AddPolicies(ctx, policies) // one batch, as the daemon installs them at start
	t.Logf("%d policies installed in %v", loader.MaxPolicies, time.Since(start))
	for i, err := range errs[:loader.MaxPolicies] {
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	var pe *ProgramError
	if err := errs[loader.MaxPolicies]; !errors.As(err, &pe) {
		t.Fatalf("a policy beyond loader.MaxPolicies: %v, want a *ProgramError (in the backend, not in the classifier)", err)
	}
	if _, policies, _ := b.Snapshot(); len(policies) != loader.MaxPolicies+1 {
		t.Errorf("backend holds %d policies, want %d", len(policies), loader.MaxPolicies+1)
	}

	samples := []int{0, 1, 777, 2048, loader.MaxPolicies - 1}
	for _, i := range samples[:3] {
		p := pair(uint32(1+i), uint32(0x10000+i), uint32(0x20000+i), datapath.EncAESGCM16, datapath.IntegNone, false)
		if err := d.AddSAPair(ctx, p); err != nil {
			t.Fatal(err)
		}
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
	pass := defaults
	pass.WhenDown = loader.ActionPass
	if err := d.Reconfigure(pass); err != nil {
		t.Fatal(err)
	}
	t.Logf("Reconfigure rewrote %d policies in %v", loader.MaxPolicies, time.Since(start))
	check("after Reconfigure with when_sa_down: pass", tcActOK)
}
