package xfrm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

var (
	local  = netip.MustParseAddr("192.0.2.1")
	remote = netip.MustParseAddr("192.0.2.2")
)

func TestAllocSPI(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	d := newDatapath(t, ns)
	ctx := context.Background()
	spi1, err := d.AllocSPI(ctx, local, remote)
	if err != nil {
		t.Fatalf("AllocSPI: %v", err)
	}
	spi2, err := d.AllocSPI(ctx, local, remote)
	if err != nil {
		t.Fatalf("AllocSPI: %v", err)
	}
	if spi1 < 0x100 || spi2 < 0x100 || spi1 == spi2 {
		t.Fatalf("SPIs 0x%08x 0x%08x: want two distinct SPIs >= 0x100", spi1, spi2)
	}

	h := ns.Handle()
	states, err := h.XfrmStateList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for _, s := range states {
		seen[uint32(s.Spi)] = true
		if !s.Dst.Equal(net.IP(local.AsSlice())) || !s.Src.Equal(net.IP(remote.AsSlice())) || s.Proto != netlink.XFRM_PROTO_ESP {
			t.Errorf("larval state %v, want esp %v -> %v", s, remote, local)
		}
	}
	if len(states) != 2 || !seen[spi1] || !seen[spi2] {
		t.Fatalf("kernel holds %v, want larval states for 0x%08x and 0x%08x", states, spi1, spi2)
	}

	c, err := d.Counters(local, spi1)
	if err != nil {
		t.Fatalf("Counters on larval state: %v", err)
	}
	if c.Bytes != 0 || c.Packets != 0 || time.Since(c.Installed) > time.Minute || time.Since(c.Installed) < 0 {
		t.Errorf("Counters = %+v, want zero traffic installed just now", c)
	}
	if _, err := d.Counters(local, 0x1234); !errors.Is(err, unix.ESRCH) {
		t.Errorf("Counters of unknown SA: err = %v, want ESRCH", err)
	}

	if err := d.DeleteSA(ctx, local, spi1); err != nil {
		t.Fatalf("DeleteSA: %v", err)
	}
	// A released reservation leaves the kernel at once, not after xfrm_acq_expires.
	if states, err = h.XfrmStateList(netlink.FAMILY_V4); err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || uint32(states[0].Spi) != spi2 {
		t.Fatalf("after DeleteSA(0x%08x) the kernel holds %v, want only the larval state of 0x%08x", spi1, states, spi2)
	}
	d.mu.Lock()
	_, tracked := d.sas[saID{dst: local, spi: spi1}]
	d.mu.Unlock()
	if tracked {
		t.Errorf("Datapath still tracks SPI 0x%08x after DeleteSA", spi1)
	}
	if err := d.DeleteSA(ctx, local, spi1); err != nil {
		t.Fatalf("DeleteSA of a deleted SA: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertNoXfrm(t, ns)
}

func testPair(inSPI uint32) datapath.SAPair {
	sa := datapath.SA{
		Enc:       datapath.EncAESCBC,
		EncKey:    seq(16),
		Integ:     datapath.IntegHMACSHA1_96,
		IntegKey:  seq(20),
		ReqID:     9,
		Selectors: []datapath.Selector{{Local: netip.MustParsePrefix("10.1.0.0/24"), Remote: netip.MustParsePrefix("10.2.0.0/24")}},
	}
	in, out := sa, sa
	in.SPI, in.Src, in.Dst, in.ReplayWindow = inSPI, remote, local, 32
	out.SPI, out.Src, out.Dst = 0xabcd0001, local, remote
	return datapath.SAPair{In: in, Out: out}
}

// Without kernel ESP (this machine) AddSAPair must fail and leave nothing behind,
// including the SPI reservation it was meant to replace.
func TestAddSAPairWithoutESP(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	if err := Probe(context.Background(), ns.NsHandle()); !errors.Is(err, unix.EPROTONOSUPPORT) {
		testutil.NotApplicable(t, "kernel ESP is available here (probe: %v); this test covers its absence", err)
	}
	d := newDatapath(t, ns)
	ctx := context.Background()
	spi, err := d.AllocSPI(ctx, local, remote)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pair datapath.SAPair
	}{
		{"reserved inbound SPI", testPair(spi)},
		{"unreserved inbound SPI", testPair(0xabcd0002)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.AddSAPair(ctx, tt.pair)
			if !errors.Is(err, unix.EPROTONOSUPPORT) {
				t.Fatalf("AddSAPair: err = %v, want EPROTONOSUPPORT", err)
			}
			assertNoXfrm(t, ns)
		})
	}
}

// An SPI reservation that AddSAPair never fills expires in the kernel; the Datapath reports
// it as a hard expire of that SPI and forgets it.
func TestAllocSPIExpires(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	ns.Sysctl(t, "net.core.xfrm_acq_expires", "1")
	d := newDatapath(t, ns)
	spi, err := d.AllocSPI(context.Background(), local, remote)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-d.Events():
		want := datapath.Event{Kind: datapath.EventHardExpire, SPI: spi, Dst: local}
		if ev != want {
			t.Fatalf("event %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no hard expire for SPI 0x%08x within 5 s", spi)
	}
	d.mu.Lock()
	n := len(d.sas)
	d.mu.Unlock()
	if n != 0 {
		t.Errorf("Datapath still tracks %d SAs after the hard expire", n)
	}
	assertNoXfrm(t, ns)
}

// Run with -race: concurrent callers share one Datapath.
func TestConcurrentUse(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	d := newDatapath(t, ns)
	ctx := context.Background()
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			spi, err := d.AllocSPI(ctx, local, remote)
			if err == nil {
				_, err = d.Counters(local, spi)
			}
			if err == nil && i%2 == 0 {
				err = d.DeleteSA(ctx, local, spi)
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertNoXfrm(t, ns)
}
