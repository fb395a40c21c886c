package testutil

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// pingTimeout is how long Ping waits for each echo reply.
const pingTimeout = time.Second

// Ping sends count ICMP echo requests from src to dst (IPv4) inside ns, one after the other,
// each waiting up to one second for its reply. It returns an error naming how many replies
// were missing. It uses a raw socket in ns, so it needs root but no ping binary.
func Ping(ns *NetNS, src, dst string, count int) error {
	s, err := netip.ParseAddr(src)
	if err != nil || !s.Is4() {
		return fmt.Errorf("ping source %q: want an IPv4 address", src)
	}
	d, err := netip.ParseAddr(dst)
	if err != nil || !d.Is4() {
		return fmt.Errorf("ping destination %q: want an IPv4 address", dst)
	}
	var c net.PacketConn
	err = ns.Do(func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", s.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s -> %s in netns %s: open raw socket: %w", src, dst, ns.name, err)
	}
	defer c.Close()

	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	received := 0
	var lastErr error
	for seq := 1; seq <= count; seq++ {
		if err := echo(c, d, id, uint16(seq)); err != nil {
			lastErr = err
			continue
		}
		received++
	}
	if received != count {
		return fmt.Errorf("ping %s -> %s in netns %s: %d of %d echo replies received: %w", src, dst, ns.name, received, count, lastErr)
	}
	return nil
}

// echo sends one ICMP echo request and waits for the matching reply.
func echo(c net.PacketConn, dst netip.Addr, id, seq uint16) error {
	if _, err := c.WriteTo(echoRequest(id, seq), &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("send echo seq %d: %w", seq, err)
	}
	deadline := time.Now().Add(pingTimeout)
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("echo seq %d: no reply: %w", seq, err)
		}
		if got, ok := echoReply(buf[:n], from, dst, id); ok && got == seq {
			return nil
		}
	}
}

// echoRequest is an ICMP echo request with a 56-byte payload.
func echoRequest(id, seq uint16) []byte {
	req := make([]byte, 8+56)
	req[0] = 8 // echo request
	binary.BigEndian.PutUint16(req[4:], id)
	binary.BigEndian.PutUint16(req[6:], seq)
	for i := 8; i < len(req); i++ {
		req[i] = byte(i)
	}
	binary.BigEndian.PutUint16(req[2:], icmpChecksum(req))
	return req
}

// echoReply returns the sequence number of r if it is an echo reply from dst to our id.
// The kernel strips the IPv4 header for "ip4:icmp" connections.
func echoReply(r []byte, from net.Addr, dst netip.Addr, id uint16) (uint16, bool) {
	if len(r) < 8 || r[0] != 0 || binary.BigEndian.Uint16(r[4:]) != id {
		return 0, false
	}
	if a, ok := from.(*net.IPAddr); !ok || !a.IP.Equal(dst.AsSlice()) {
		return 0, false
	}
	return binary.BigEndian.Uint16(r[6:]), true
}

// Flow is the outcome of PingFlow.
type Flow struct {
	Sent, Received int
	Lost           []time.Duration // when each lost request was sent, from the start
}

// PingFlow sends count echo requests from src to dst inside ns, one every interval without
// waiting for replies (a steady flow, as traffic through a tunnel under rekey would be),
// then waits a second for the last replies. A reply counts once, whenever it comes.
func PingFlow(ns *NetNS, src, dst string, interval time.Duration, count int) (Flow, error) {
	s, err := netip.ParseAddr(src)
	if err != nil || !s.Is4() {
		return Flow{}, fmt.Errorf("ping source %q: want an IPv4 address", src)
	}
	d, err := netip.ParseAddr(dst)
	if err != nil || !d.Is4() {
		return Flow{}, fmt.Errorf("ping destination %q: want an IPv4 address", dst)
	}
	var c net.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", s.String())
		return err
	}); err != nil {
		return Flow{}, fmt.Errorf("ping %s -> %s in netns %s: open raw socket: %w", src, dst, ns.name, err)
	}
	defer c.Close()
	if count > 1<<16 {
		return Flow{}, fmt.Errorf("ping flow of %d requests: at most 65536 (16-bit sequence numbers)", count)
	}
	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	replied := make([]bool, count)
	done := make(chan struct{})
	go func() { // reads until the socket closes or the deadline below passes
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if seq, ok := echoReply(buf[:n], from, d, id); ok && int(seq) < count {
				replied[seq] = true
			}
		}
	}()
	begin := time.Now()
	sentAt := make([]time.Duration, count)
	f := Flow{}
	for seq := range count {
		time.Sleep(time.Until(begin.Add(time.Duration(seq) * interval)))
		sentAt[seq] = time.Since(begin)
		if _, err := c.WriteTo(echoRequest(id, uint16(seq)), &net.IPAddr{IP: d.AsSlice()}); err == nil {
			f.Sent++
		}
	}
	c.SetReadDeadline(time.Now().Add(pingTimeout))
	<-done
	for seq, ok := range replied {
		if ok {
			f.Received++
		} else {
			f.Lost = append(f.Lost, sentAt[seq].Round(time.Millisecond))
		}
	}
	return f, nil
}

// icmpChecksum is the RFC 1071 Internet checksum.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
