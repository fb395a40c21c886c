package userspace

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/espgw/espgw/internal/testutil"
)

// TestTUNWriterGathers writes pieces into a pipe and reads them back as one packet, and
// checks that a write allocates nothing.
func TestTUNWriterGathers(t *testing.T) {
	r, wf, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wf.Close()
	w, err := newTUNWriter(wf)
	if err != nil {
		t.Fatal(err)
	}
	pieces := [][]byte{[]byte("virtio-hdr"), []byte("head packet "), {}, []byte("payload 1 "), []byte("payload 2")}
	want := bytes.Join(pieces, nil)
	got := make([]byte, len(want))
	if err := w.write(pieces); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %q (%v), want %q", got, err, want)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := w.write(pieces); err != nil {
			t.Fatal(err)
		}
		io.ReadFull(r, got)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write, want 0", allocs)
	}
}

// TestKernelAcceptsWrites writes coalesced super-packets into a real TUN, to TCP
// listeners behind it, and checks that they receive the payload intact: the kernel takes
// the virtio headers, lengths and partial checksums as written. One listener is local; the
// other is in a second namespace, reached over a veth without TX checksum offload, so the
// forwarding kernel splits each super-packet and completes every checksum in software, and
// the listener's kernel verifies them.
func TestKernelAcceptsWrites(t *testing.T) {
	gw, host := testutil.NewNetNS(t, "espgro"), testutil.NewNetNS(t, "espgroh")
	var dev tun.Device
	gw.In(t, func() (err error) {
		dev, err = tun.CreateTUN("gro0", DefaultMTU)
		return err
	})
	t.Cleanup(func() { dev.Close() })
	testutil.Veth(t, gw, "fw0", "10.78.0.1/24", host, "fw1", "10.78.0.2/24")
	for _, c := range []struct {
		ns   *testutil.NetNS
		argv []string
	}{
		{gw, []string{"ip", "addr", "add", "10.77.0.1/24", "dev", "gro0"}},
		{gw, []string{"ip", "-6", "addr", "add", "2001:db8:77::1/64", "dev", "gro0", "nodad"}},
		{gw, []string{"ip", "link", "set", "gro0", "up"}},
		{gw, []string{"ip", "-6", "addr", "add", "2001:db8:78::1/64", "dev", "fw0", "nodad"}},
		{gw, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}},
		{host, []string{"ip", "-6", "addr", "add", "2001:db8:78::2/64", "dev", "fw1", "nodad"}},
		{host, []string{"ip", "route", "add", "10.77.0.0/24", "via", "10.78.0.1"}},
		{host, []string{"ip", "-6", "route", "add", "2001:db8:77::/64", "via", "2001:db8:78::1"}},
	} {
		c.ns.Exec(t, c.argv...)
	}
	_, noEthtool := exec.LookPath("ethtool")
	if noEthtool == nil {
		gw.Exec(t, "ethtool", "-K", "fw0", "tx", "off")
	}
	w, err := newTUNWriter(dev.File())
	if err != nil {
		t.Fatal(err)
	}
	fromTUN := readTUN(dev)
	variants := []struct {
		name string
		v6   bool
		mod  func(i, n int, s *seg)
	}{
		{"IPv4 counting IDs", false, nil},
		{"IPv4 fixed ID, shorter last segment with PSH", false, func(i, n int, s *seg) {
			s.id = 7
			if i == n-1 {
				s.payload, s.flags = s.payload[:333], s.flags|tcpPSH
			}
		}},
		{"IPv4 CWR on the first segment", false, func(i, n int, s *seg) {
			if i == 0 {
				s.flags |= tcpCWR
			}
		}},
		{"IPv6", true, nil},
	}
	sport := uint16(40000)
	for _, dest := range []struct {
		name           string
		ns             *testutil.NetNS
		local4, local6 string
	}{
		{"local", gw, "10.77.0.1", "2001:db8:77::1"},
		{"forwarded", host, "10.78.0.2", "2001:db8:78::2"},
	} {
		for _, v := range variants {
			sport++
			t.Run(dest.name+"/"+v.name, func(t *testing.T) {
				if dest.ns == host && noEthtool != nil { // to turn TX checksum offload off on the forwarding veth
					testutil.RequireTool(t, "ethtool", "ethtool")
				}
				local, peer := dest.local4, "10.77.0.2"
				if v.v6 {
					local, peer = dest.local6, "2001:db8:77::2"
				}
				base := seg{src: netip.MustParseAddr(peer), dst: netip.MustParseAddr(local), v6: v.v6, sport: sport, window: 65535}
				got, want := transferThroughTUN(t, w, fromTUN, dest.ns, base, v.mod)
				if !bytes.Equal(got, want) {
					t.Fatalf("listener received %d bytes, not the %d sent", len(got), len(want))
				}
			})
		}
	}
}

// transferThroughTUN opens a TCP connection from base's source (a peer behind the TUN) to a
// listener on base's destination in namespace ns, sends one super-packet of 1000-byte
// segments (each changed by mod if not nil) and returns what the listener received and
// what was sent.
func transferThroughTUN(t *testing.T, w *tunWriter, fromTUN <-chan []byte, ns *testutil.NetNS, base seg, mod func(i, n int, s *seg)) (got, want []byte) {
	t.Helper()
	var ln net.Listener
	ns.In(t, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(base.dst, 0).String())
		return err
	})
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	base.dport = uint16(ln.Addr().(*net.TCPAddr).Port)
	send := func(segs ...seg) int {
		var c coalescer
		c.coalesce(buildAll(segs))
		for i := range c.items {
			if err := w.write(c.appendWrite(nil, i)); err != nil {
				t.Fatalf("write %d of %d: %v", i, len(c.items), err)
			}
		}
		return len(c.items)
	}
	syn := base
	syn.seq, syn.flags, syn.opts = 1000, tcpSYN, []byte{2, 4, 0x05, 0x78} // MSS 1400
	// Retransmit the SYN as TCP would: the first packet forwarded over the fresh veth can
	// be lost while neighbour discovery runs.
	var synAck []byte
	for try := 1; synAck == nil; try++ {
		if try > 5 {
			t.Fatalf("no SYN-ACK to port %d after %d SYNs", base.sport, try-1)
		}
		send(syn)
		synAck = awaitTCP(fromTUN, base.sport, tcpSYN|tcpACK, time.Second)
	}
	isn, wnd := binary.BigEndian.Uint32(synAck[4:]), int(binary.BigEndian.Uint16(synAck[14:]))
	ack := base
	ack.seq, ack.ack, ack.flags = 1001, isn+1, tcpACK
	send(ack)

	n := min(40, wnd/1000)
	if n < 2 {
		t.Fatalf("listener offers a window of %d bytes, too small for a super-packet of 1000-byte segments", wnd)
	}
	segs := tcpFlow(n, 1000, func(i int, s *seg) {
		s.src, s.dst, s.v6, s.sport, s.dport, s.window = base.src, base.dst, base.v6, base.sport, base.dport, base.window
		s.seq, s.ack = 1001+uint32(i*1000), isn+1
		if mod != nil {
			mod(i, n, s)
		}
	})
	for _, s := range segs {
		want = append(want, s.payload...)
	}
	if writes := send(segs...); writes != 1 {
		t.Fatalf("%d segments coalesced into %d writes, want 1", n, writes)
	}
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("listener accepted no connection")
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got = make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil {
		t.Logf("listener read: %v", err)
	}
	return got[:n], want
}

// readTUN delivers the transport header and payload of every TCP packet the kernel sends
// into the TUN, until the TUN is closed; it drops what finds the channel full.
func readTUN(dev tun.Device) <-chan []byte {
	out := make(chan []byte, 64)
	bufs, sizes := make([][]byte, dev.BatchSize()), make([]int, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	go func() {
		defer close(out)
		for {
			n, err := dev.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				if s := parseSegment(bufs[i][:sizes[i]]); s.tcp {
					select {
					case out <- bytes.Clone(s.pkt[s.ipLen:]):
					default: // nobody waits for it
					}
				}
			}
		}
	}()
	return out
}

// awaitTCP returns the next TCP packet to port carrying flags, or nil after wait.
func awaitTCP(from <-chan []byte, port uint16, flags uint8, wait time.Duration) []byte {
	timeout := time.After(wait)
	for {
		select {
		case p, ok := <-from:
			if ok && binary.BigEndian.Uint16(p[2:]) == port && p[13] == flags {
				return p
			}
			if !ok {
				return nil
			}
		case <-timeout:
			return nil
		}
	}
}
