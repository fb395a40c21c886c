package ebpfdp

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/loader/pkttest"
)

// deferring is a backend that switches a rekeyed tunnel's outbound SA later, as the
// userspace datapath does; the test raises its EventOutboundSwitch.
type deferring struct{ *backend }

func (deferring) SwitchTimeout() time.Duration { return time.Second }

// TestDeferredSwitch: with a datapath.SwitchDeferrer behind it, the programs count a
// rekeyed tunnel's traffic on its old outbound SA, with the old SA's MSS clamp, until the
// backend reports the switch; a rekey whose old SA is deleted before the switch hands the
// tunnel to the new SA at the deletion; a late switch event changes nothing. The tunnel
// stays up throughout.
func TestDeferredSwitch(t *testing.T) {
	ctx := context.Background()
	d, b, l := openAs(t, 0xff, loader.Options{}, func(b *backend) datapath.Datapath { return deferring{b} })
	const reqID = 3
	pol := datapath.Policy{Selector: datapath.Selector{Local: netip.MustParsePrefix("10.10.1.0/24"),
		Remote: netip.MustParsePrefix("10.20.0.0/24")}, ReqID: reqID, Priority: 1000}
	b.probe = func() uint32 { v, _ := egress(t, l); return v }
	// send passes one SYN through tc egress and returns the outbound SPI that counted it
	// and its MSS.
	send := func(step string) (uint32, uint16) {
		before, err := l.SACounters(loader.Outbound)
		if err != nil {
			t.Fatal(err)
		}
		verdict, out := egress(t, l)
		if verdict != tcActOK {
			t.Fatalf("%s: verdict %d, want %d", step, verdict, tcActOK)
		}
		after, err := l.SACounters(loader.Outbound)
		if err != nil {
			t.Fatal(err)
		}
		var counted []uint32
		for spi, c := range after {
			if c.Packets != before[spi].Packets {
				counted = append(counted, spi)
			}
		}
		if len(counted) != 1 {
			t.Fatalf("%s: the SYN was counted on outbound SAs %x, want one", step, counted)
		}
		mss, _, _ := pkttest.MSSOf(out)
		return counted[0], mss
	}
	mss := func(p datapath.SAPair) uint16 {
		m, err := loader.ClampMSS(defaults.PathMTU, p.Out.EncapDstPort != 0, p.Out.Enc, p.Out.Integ)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	switched := func(p datapath.SAPair) {
		ev := datapath.Event{Kind: datapath.EventOutboundSwitch, ReqID: reqID, SPI: p.Out.SPI, Dst: p.Out.Dst}
		b.Send(ev)
		select {
		case got := <-d.Events(): // forwarded once the decorator followed it
			if got != ev {
				t.Fatalf("event %+v, want %+v passed on", got, ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("switch event %+v not passed on", ev)
		}
	}
	first := pair(reqID, 0x100, 0x200, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96, false)
	second := pair(reqID, 0x101, 0x201, datapath.EncAESGCM16, datapath.IntegNone, true)
	third := pair(reqID, 0x102, 0x202, datapath.EncAESCBC, datapath.IntegHMACSHA256_128, true)

	steps := []struct {
		name string
		do   func()
		want datapath.SAPair // whose outbound SA counts the tunnel's traffic
	}{
		{"first pair", func() { must(t, d.AddPolicy(ctx, pol), d.AddSAPair(ctx, first)) }, first},
		{"rekeyed, not switched", func() { must(t, d.AddSAPair(ctx, second)) }, first},
		{"switch reported", func() { switched(second) }, second},
		{"old pair deleted", func() { must(t, deletePair(ctx, d, first)) }, second},
		{"rekeyed again, not switched", func() { must(t, d.AddSAPair(ctx, third)) }, second},
		{"old pair deleted before the switch", func() { must(t, deletePair(ctx, d, second)) }, third},
		{"late switch event", func() { switched(third) }, third},
	}
	for _, s := range steps {
		s.do()
		if spi, m := send(s.name); spi != s.want.Out.SPI || m != mss(s.want) {
			t.Errorf("%s: counted on %x with MSS %d, want %x with %d", s.name, spi, m, s.want.Out.SPI, mss(s.want))
		}
	}
	if v := b.verdict[first.Out.SPI]; v != tcActOK {
		t.Errorf("verdict while the old SA %08x was deleted: %d, want %d", first.Out.SPI, v, tcActOK)
	}
	if v := b.verdict[second.Out.SPI]; v != tcActOK {
		t.Errorf("verdict while the SA %08x was deleted before its successor's switch: %d, want %d", second.Out.SPI, v, tcActOK)
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
