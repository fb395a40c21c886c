package xfrm

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
)

// writeTestdata makes TestAcquireLive refresh testdata/ with the kernel messages it sees.
var writeTestdata = os.Getenv("ESPGW_WRITE_TESTDATA") == "1"

// setupAcquireNetNS gives ns a veth pair (veth0 192.0.2.1/24 up) and the inner source
// 10.1.0.1 with a route to 10.2.0.0/24 over veth0.
func setupAcquireNetNS(tb testing.TB, ns *testutil.NetNS) {
	tb.Helper()
	testutil.Veth(tb, ns, "veth0", "192.0.2.1/24", ns, "veth1", "")
	ns.AddAddr(tb, "veth0", "10.1.0.1/32")
	v0, err := ns.Handle().LinkByName("veth0")
	if err != nil {
		tb.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("10.2.0.0/24")
	if err := ns.Handle().RouteAdd(&netlink.Route{LinkIndex: v0.Attrs().Index, Dst: dst, Src: net.ParseIP("10.1.0.1")}); err != nil {
		tb.Fatalf("add route: %v", err)
	}
}

// sendUDP sends one datagram from 10.1.0.1 to dst inside ns.
func sendUDP(tb testing.TB, ns *testutil.NetNS, dst string) {
	tb.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("10.1.0.1")})
		if err != nil {
			return err
		}
		defer c.Close()
		// The kernel drops the packet (no SA yet); the write may or may not report it.
		c.WriteToUDPAddrPort([]byte("acquire me"), netip.MustParseAddrPort(dst))
		return nil
	})
	if err != nil {
		tb.Fatalf("send UDP to %s: %v", dst, err)
	}
}

func TestAcquireLive(t *testing.T) {
	ns := testutil.NewNetNS(t, "xfrm")
	setupAcquireNetNS(t, ns)
	ns.Sysctl(t, "net.core.xfrm_acq_expires", "1") // the larval state then expires within the test
	d := newDatapath(t, ns)

	// A second listener proves the kernel really sent what the Datapath must ignore.
	raw, err := nl.SubscribeAt(ns.NsHandle(), netns.None(), unix.NETLINK_XFRM, nl.XFRMNLGRP_ACQUIRE, nl.XFRMNLGRP_EXPIRE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	raw.SetReceiveTimeout(&unix.Timeval{Sec: 5})

	p := datapath.Policy{
		Selector: datapath.Selector{
			Local:  netip.MustParsePrefix("10.1.0.0/24"),
			Remote: netip.MustParsePrefix("10.2.0.0/24"),
			Proto:  unix.IPPROTO_UDP,
		},
		TunnelLocal:  local,
		TunnelRemote: remote,
		ReqID:        77,
		Priority:     100,
	}
	if err := d.AddPolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, ns, "10.2.0.5:9999")

	select {
	case ev := <-d.Events():
		// The packet's addresses too: the IKEv2 initiator offers them first (RFC 7296 2.9).
		want := datapath.Event{Kind: datapath.EventAcquire, ReqID: 77, Selector: p.Selector,
			PacketSrc: netip.MustParseAddr("10.1.0.1"), PacketDst: netip.MustParseAddr("10.2.0.5")}
		if ev != want {
			t.Fatalf("event %+v, want %+v", ev, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no acquire within 3 s")
	}

	var sawAcquire, sawLarvalExpire bool
	for !sawLarvalExpire {
		msgs, _, err := raw.Receive()
		if errors.Is(err, unix.EAGAIN) {
			t.Fatal("the kernel sent no expire for the larval state within 5 s")
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case nl.XFRM_MSG_ACQUIRE:
				sawAcquire = true
				saveTestdata(t, "acquire-udp.bin", m.Data)
			case nl.XFRM_MSG_EXPIRE:
				if _, err := parseExpire(m.Data); errors.Is(err, errLarval) {
					sawLarvalExpire = true
					saveTestdata(t, "expire-larval.bin", m.Data)
				}
			}
		}
	}
	if !sawAcquire {
		t.Error("the raw listener saw no acquire")
	}
	// The Datapath's listener saw the same expire; it must not surface as an event.
	select {
	case ev := <-d.Events():
		t.Fatalf("unexpected event after the larval state expired: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

func saveTestdata(tb testing.TB, name string, b []byte) {
	tb.Helper()
	if !writeTestdata {
		return
	}
	if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
		tb.Fatal(err)
	}
}
