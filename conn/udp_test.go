package conn

import (
	"bytes"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/internal/testutil"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// inNetNS runs f on a thread inside a new, anonymous network namespace whose loopback
// carries addrA and addrB. Sockets opened by f stay in that namespace; it disappears when
// they are closed.
func inNetNS(tb testing.TB, f func()) {
	tb.Helper()
	testutil.RequireRoot(tb) // creates a network namespace
	errc := make(chan error, 1)
	go func() {
		// This thread is left in the new namespace and discarded (never unlocked).
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		for _, a := range []netip.Addr{addrA, addrB} {
			if err == nil {
				err = netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(a.AsSlice())})
			}
		}
		if err == nil {
			f()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("netns setup: %v", err)
	}
}

func listen(tb testing.TB, opts ListenOptions, addrs ...netip.Addr) *UDPBind {
	tb.Helper()
	var b *UDPBind
	var err error
	inNetNS(tb, func() { b, err = Listen(addrs, opts) })
	if err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func recvIKE(tb testing.TB, b *UDPBind) Packet {
	tb.Helper()
	select {
	case p := <-b.IKE():
		return p
	case <-time.After(5 * time.Second):
		tb.Fatal("no IKE packet received")
	}
	return Packet{}
}

func TestUDPBind(t *testing.T) {
	b := listen(t, ListenOptions{}, addrA, addrB)
	esp := make(chan []byte, 1)
	b.SetESPHandler(func(pkt []byte, local, remote netip.AddrPort) {
		if local.Port() != NATTPort || remote.Port() != NATTPort {
			t.Errorf("ESP on %v from %v, want port 4500", local, remote)
		}
		esp <- append([]byte(nil), pkt...)
	})
	msg := []byte("isakmp message that is long enough")
	tests := []struct {
		name string
		port uint16
	}{
		{"IKE on 500", IKEPort},
		{"IKE on 4500 with non-ESP marker", NATTPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := netip.AddrPortFrom(addrA, tt.port), netip.AddrPortFrom(addrB, tt.port)
			if err := b.SendIKE(msg, from, to); err != nil {
				t.Fatal(err)
			}
			p := recvIKE(t, b)
			if !bytes.Equal(p.Data, msg) || p.Local != to || p.Remote != from {
				t.Errorf("got %q %v<-%v, want %q %v<-%v", p.Data, p.Local, p.Remote, msg, to, from)
			}
		})
	}
	t.Run("ESP on 4500 goes to the handler", func(t *testing.T) {
		pkt := []byte{0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1, 0xaa}
		if err := b.SendESP(pkt, netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-esp:
			if !bytes.Equal(got, pkt) {
				t.Errorf("ESP %x, want %x", got, pkt)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ESP handler not called")
		}
		select {
		case p := <-b.IKE():
			t.Errorf("ESP packet leaked to IKE: %x", p.Data)
		default:
		}
	})
	t.Run("NAT keepalive dropped", func(t *testing.T) {
		if err := b.SendESP([]byte{0xff}, netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)); err != nil {
			t.Fatal(err)
		}
		// A following IKE message arrives first: the keepalive produced nothing.
		if err := b.SendIKE(msg, netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)); err != nil {
			t.Fatal(err)
		}
		if p := recvIKE(t, b); !bytes.Equal(p.Data, msg) {
			t.Errorf("got %x, want the IKE message", p.Data)
		}
		select {
		case got := <-esp:
			t.Errorf("keepalive reached the ESP handler: %x", got)
		default:
		}
	})
	t.Run("unbound local address", func(t *testing.T) {
		if err := b.SendIKE(msg, netip.MustParseAddrPort("192.0.2.9:500"), netip.AddrPortFrom(addrB, IKEPort)); err == nil {
			t.Error("send from an unbound address succeeded")
		}
	})
}

func TestUDPBindKernelESPInUDP(t *testing.T) {
	b := listen(t, ListenOptions{KernelESPInUDP: true}, addrA, addrB)
	// IKE with the marker still reaches user space on an encap socket.
	msg := []byte("isakmp message that is long enough")
	from, to := netip.AddrPortFrom(addrA, NATTPort), netip.AddrPortFrom(addrB, NATTPort)
	if err := b.SendIKE(msg, from, to); err != nil {
		t.Fatal(err)
	}
	if p := recvIKE(t, b); !bytes.Equal(p.Data, msg) {
		t.Errorf("got %q, want %q", p.Data, msg)
	}
}

func TestUDPBindClose(t *testing.T) {
	b := listen(t, ListenOptions{}, addrA)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-b.IKE(); ok {
		t.Error("IKE channel still open after Close")
	}
	if err := b.SendIKE([]byte("x"), netip.AddrPortFrom(addrA, IKEPort), netip.AddrPortFrom(addrA, IKEPort)); err == nil {
		t.Error("send after Close succeeded")
	}
}

func TestListenNoAddress(t *testing.T) {
	if _, err := Listen(nil, ListenOptions{}); err == nil {
		t.Error("Listen without addresses succeeded")
	}
}

func TestClassifyNATT(t *testing.T) {
	tests := []struct {
		in   []byte
		out  []byte
		kind datagramKind
	}{
		{[]byte{0xff}, nil, kindKeepalive},
		{[]byte{0, 0, 0, 0, 1, 2}, []byte{1, 2}, kindIKE},
		{[]byte{0, 0, 0, 0}, []byte{}, kindIKE},
		{[]byte{0, 0, 0, 1, 9}, []byte{0, 0, 0, 1, 9}, kindESP},
		{[]byte{0, 0}, []byte{0, 0}, kindESP},
		{nil, nil, kindESP},
	}
	for _, tt := range tests {
		out, k := classifyNATT(tt.in)
		if k != tt.kind || !bytes.Equal(out, tt.out) {
			t.Errorf("classifyNATT(%x) = %x, %d; want %x, %d", tt.in, out, k, tt.out, tt.kind)
		}
	}
}

func FuzzClassifyNATT(f *testing.F) {
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{1, 2, 3, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, k := classifyNATT(b)
		switch k {
		case kindIKE:
			if len(out) != len(b)-NonESPMarkerLen {
				t.Fatalf("IKE payload length %d from %d", len(out), len(b))
			}
		case kindESP:
			if !bytes.Equal(out, b) {
				t.Fatal("ESP datagram altered")
			}
		}
	})
}

// The IKE sockets get a receive buffer of ikeSocketBuffer (the kernel reports twice what was
// set): a burst of MM2s from 200 peers must not overflow the default 208 KiB.
func TestIKESocketBuffer(t *testing.T) {
	b := listen(t, ListenOptions{}, addrA)
	s := b.sockets[netip.AddrPortFrom(addrA, IKEPort)]
	rc, err := s.c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	rc.Control(func(fd uintptr) { size, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err != nil || size < ikeSocketBuffer {
		t.Errorf("IKE socket SO_RCVBUF = %d, %v; want at least %d", size, err, ikeSocketBuffer)
	}
}
