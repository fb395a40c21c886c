package userspace

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
)

// lastSPI is the SPI of the last ESP packet g sent.
func lastSPI(t *testing.T, g *memGateway) uint32 {
	t.Helper()
	pkts := g.wire.packets()
	if len(pkts) == 0 {
		t.Fatalf("%s sent no ESP", g.tun.Name())
	}
	return spiOf(pkts[len(pkts)-1])
}

// sendsOn passes a packet from one gateway's host to the other's and checks the SPI it
// went under.
func sendsOn(t *testing.T, from, to *memGateway, src, dst netip.Addr, spi uint32, what string) {
	t.Helper()
	through(t, from, to, udpPacket(src, dst, []byte(what)))
	if got := lastSPI(t, from); got != spi {
		t.Fatalf("%s: %s sent on SPI %#x, want %#x", what, from.tun.Name(), got, spi)
	}
}

// nextSwitch returns g's next event, which must be the switch to its outbound SA spi.
func nextSwitch(t *testing.T, g *memGateway, spi uint32, dst netip.Addr) {
	t.Helper()
	select {
	case ev := <-g.dp.Events():
		if ev.Kind != datapath.EventOutboundSwitch || ev.SPI != spi || ev.Dst != dst || ev.ReqID != 1 {
			t.Fatalf("%s: event %+v, want the switch to SPI %#x dst %v reqid 1", g.tun.Name(), ev, spi, dst)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no switch to SPI %#x within 5 s", g.tun.Name(), spi)
	}
}

// noEvent checks that g raised no event.
func noEvent(t *testing.T, g *memGateway) {
	t.Helper()
	select {
	case ev := <-g.dp.Events():
		t.Fatalf("%s: event %+v, want none yet", g.tun.Name(), ev)
	default:
	}
}

// TestInMemoryRekeySwitch re-keys a tunnel in the order of an IKEv1 quick mode we initiate:
// A installs the new pair first (QM2), B later (QM3). A keeps sending on the old outbound
// SA, also while B's traffic still comes on the old pair, and switches at the first packet
// on the new inbound SA; B, to which nothing comes on the new pair while A waits, switches
// after its timeout. Nothing is lost, and each switch is reported once.
func TestInMemoryRekeySwitch(t *testing.T) {
	const timeoutB = 300 * time.Millisecond
	a, b := memLabSwitch(t, time.Hour, timeoutB)
	memTunnel(t, a, b, gcm128, 0x1001, 0x2001, 1, selA)
	sendsOn(t, a, b, hostA, hostB, 0x1001, "old pair")
	sendsOn(t, b, a, hostB, hostA, 0x2001, "old pair back")

	na, nb := tunnelPairs(tdesSHA1, true, 0x3001, 0x4001, 1, selA) // another transform too
	ctx := context.Background()
	if err := a.dp.AddSAPair(ctx, na); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sendsOn(t, a, b, hostA, hostB, 0x1001, fmt.Sprintf("A installed the new pair, B not yet: %d", i))
	}
	sendsOn(t, b, a, hostB, hostA, 0x2001, "B on the old pair")
	sendsOn(t, a, b, hostA, hostB, 0x1001, "A after a packet on the old inbound SA")
	noEvent(t, a)

	installedB := time.Now()
	if err := b.dp.AddSAPair(ctx, nb); err != nil {
		t.Fatal(err)
	}
	nextSwitch(t, b, 0x4001, outerA)
	if took := time.Since(installedB); took < timeoutB {
		t.Fatalf("B switched %v after its install, before its timeout %v", took, timeoutB)
	}
	noEvent(t, a)
	sendsOn(t, a, b, hostA, hostB, 0x1001, "A before anything came on the new pair")
	sendsOn(t, b, a, hostB, hostA, 0x4001, "B after its timeout") // the first on A's new inbound SA
	nextSwitch(t, a, 0x3001, outerB)
	sendsOn(t, a, b, hostA, hostB, 0x3001, "A after B's first packet on the new pair")
	sendsOn(t, b, a, hostB, hostA, 0x4001, "B again")

	wantCounters(t, b, outerB, 0x1001, 6, 0)
	wantCounters(t, b, outerB, 0x3001, 1, 0)
	wantCounters(t, a, outerA, 0x2001, 2, 0)
	wantCounters(t, a, outerA, 0x4001, 2, 0)
	noEvent(t, a)
	noEvent(t, b)
	wantDrops(t, a, nil)
	wantDrops(t, b, nil)
}

// TestInMemoryRekey hands a tunnel over to a new SA pair as the IKE engine does when no
// packet comes on the new pair before the old one is deleted: traffic stays on the old
// SAs, a packet still in flight on the old SA opens, and deleting the old outbound SA
// switches to the new one at once; after that the old SA's packets are unknown.
func TestInMemoryRekey(t *testing.T) {
	a, b := memLabSwitch(t, time.Hour, time.Hour)
	memTunnel(t, a, b, gcm128, 0x1001, 0x2001, 1, selA)
	through(t, a, b, udpPacket(hostA, hostB, []byte("old SA")))
	through(t, b, a, udpPacket(hostB, hostA, []byte("old SA back")))

	a.wire.setHold(func([]byte) bool { return true })
	a.tun.Send(udpPacket(hostA, hostB, []byte("in flight")))
	for len(a.wire.packets()) < 2 {
		time.Sleep(time.Millisecond)
	}
	a.wire.setHold(nil)
	inFlight := a.wire.packets()[1]

	pa, pb := tunnelPairs(tdesSHA1, true, 0x3001, 0x4001, 1, selA)
	addPairs(t, a, b, pa, pb)
	sendsOn(t, a, b, hostA, hostB, 0x1001, "new pair installed")
	sendsOn(t, b, a, hostB, hostA, 0x2001, "new pair installed, back")
	local, remote := netip.AddrPortFrom(outerA, conn.NATTPort), netip.AddrPortFrom(outerB, conn.NATTPort)
	a.bind.SendESP(inFlight, local, remote)
	if got := recvPacket(t, b); !bytes.Contains(got, []byte("in flight")) {
		t.Fatalf("in-flight packet on the old SA: got %x", got)
	}

	ctx := context.Background()
	for _, d := range []struct {
		g   *memGateway
		dst netip.Addr
		spi uint32
	}{{a, outerB, 0x1001}, {a, outerA, 0x2001}, {b, outerB, 0x1001}, {b, outerA, 0x2001}} {
		if err := d.g.dp.DeleteSA(ctx, d.dst, d.spi); err != nil {
			t.Fatal(err)
		}
	}
	nextSwitch(t, a, 0x3001, outerB)
	nextSwitch(t, b, 0x4001, outerA)
	a.bind.SendESP(inFlight, local, remote)
	sendsOn(t, a, b, hostA, hostB, 0x3001, "old pair deleted")
	sendsOn(t, b, a, hostB, hostA, 0x4001, "old pair deleted, back")
	wantDrops(t, b, map[DropReason]uint64{DropUnknownSPI: 1})
	wantCounters(t, b, outerB, 0x3001, 1, 0)
	wantDrops(t, a, nil)
}
