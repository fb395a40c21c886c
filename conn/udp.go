package conn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ListenOptions configures Listen.
type ListenOptions struct {
	// IKEPort and NATTPort default to 500 and 4500 when zero.
	IKEPort, NATTPort int
	// KernelESPInUDP sets UDP_ENCAP_ESPINUDP on the NAT-T sockets so that the kernel's XFRM
	// datapath decapsulates ESP-in-UDP itself; only marker-prefixed IKE reaches user space then.
	KernelESPInUDP bool
}

// maxDatagram is the largest UDP payload accepted.
const maxDatagram = 65535

// Linux setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP) values (linux/udp.h).
const (
	solUDP           = 17
	udpEncap         = 100
	udpEncapESPInUDP = 2
)

// UDPBind is a Bind over real UDP sockets: one per (local address, port).
// Sockets are bound to the exact local address so replies leave from the address the
// peer talks to. It is safe for concurrent use.
type UDPBind struct {
	ike      chan Packet
	sockets  map[netip.AddrPort]*udpSocket
	esp      atomic.Pointer[ESPHandler]
	nattPort uint16
	closed   chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

// udpSocket is one bound socket and what its kernel supports.
type udpSocket struct {
	c       *net.UDPConn
	batch   batchConn
	local   netip.AddrPort
	gro     bool        // UDP_GRO on: received buffers may hold several datagrams
	gso     atomic.Bool // UDP_SEGMENT works; cleared when the route refuses it
	senders sync.Pool   // *espSender
}

// batchConn is the recvmmsg/sendmmsg part shared by ipv4.PacketConn and ipv6.PacketConn.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

var _ Bind = (*UDPBind)(nil)

// Listen opens the IKE and NAT-T sockets on every address.
func Listen(addrs []netip.Addr, opts ListenOptions) (*UDPBind, error) {
	if opts.IKEPort == 0 {
		opts.IKEPort = IKEPort
	}
	if opts.NATTPort == 0 {
		opts.NATTPort = NATTPort
	}
	if len(addrs) == 0 {
		return nil, errors.New("conn: listen: no local addresses given, expected at least one")
	}
	b := &UDPBind{
		ike:      make(chan Packet, 256),
		sockets:  make(map[netip.AddrPort]*udpSocket),
		nattPort: uint16(opts.NATTPort),
		closed:   make(chan struct{}),
	}
	for _, a := range addrs {
		for _, port := range []int{opts.IKEPort, opts.NATTPort} {
			ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
			if _, dup := b.sockets[ap]; dup {
				continue
			}
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				b.closeSockets()
				return nil, fmt.Errorf("conn: listen on %v: %w", ap, err)
			}
			s := &udpSocket{c: c, local: ap, batch: ipv4.NewPacketConn(c)}
			if ap.Addr().Is6() {
				s.batch = ipv6.NewPacketConn(c)
			}
			s.senders.New = func() any { return new(espSender) }
			b.sockets[ap] = s
			if port != opts.NATTPort {
				raiseIKEBuffer(c)
				continue
			}
			if opts.KernelESPInUDP {
				if err := setESPInUDP(c); err != nil {
					b.closeSockets()
					return nil, fmt.Errorf("conn: UDP_ENCAP on %v: %w", ap, err)
				}
			}
			// ESP in user space: big buffers, and GRO/GSO unless the kernel decapsulates.
			gro, gso := tuneSocket(c, !opts.KernelESPInUDP)
			s.gro = gro
			s.gso.Store(gso)
		}
	}
	for _, s := range b.sockets {
		b.wg.Add(1)
		go b.receive(s)
	}
	return b, nil
}

func setESPInUDP(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), solUDP, udpEncap, udpEncapESPInUDP)
	}); err != nil {
		return err
	}
	return serr
}

// LocalAddrs lists the bound (address, port) pairs.
func (b *UDPBind) LocalAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(b.sockets))
	for ap := range b.sockets {
		out = append(out, ap)
	}
	return out
}

// receive reads batches of datagrams from s until it is closed. With GRO one buffer holds
// several datagrams of the segment size reported in the control message; each is
// classified on its own, since IKE and ESP of one peer share the flow.
func (b *UDPBind) receive(s *udpSocket) {
	defer b.wg.Done()
	n := 1
	if s.gro {
		n = recvBatch
	}
	msgs := make([]ipv4.Message, n)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
		msgs[i].OOB = make([]byte, groCmsgSpace)
	}
	for {
		k, err := s.batch.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, m := range msgs[:k] {
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			ap := ua.AddrPort()
			remote := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			data := m.Buffers[0][:m.N]
			seg := groSegmentSize(m.OOB[:m.NN])
			if seg <= 0 {
				seg = len(data)
			}
			for len(data) > 0 {
				d := data[:min(seg, len(data))]
				data = data[len(d):]
				if !b.deliver(d, s.local, remote) {
					return
				}
			}
		}
	}
}

// deliver hands one datagram to the ESP handler or the IKE queue; it reports false once
// the Bind is closed.
func (b *UDPBind) deliver(data []byte, local, remote netip.AddrPort) bool {
	if local.Port() == b.nattPort {
		var k datagramKind
		if data, k = classifyNATT(data); k == kindESP {
			if h := b.esp.Load(); h != nil && *h != nil {
				(*h)(data, local, remote)
			}
			return true
		} else if k == kindKeepalive {
			return true
		}
	}
	pkt := Packet{Data: append([]byte(nil), data...), Local: local, Remote: remote}
	select {
	case b.ike <- pkt:
	case <-b.closed:
		return false
	default: // full queue: drop like a congested socket would
	}
	return true
}

// datagramKind is what a datagram on the NAT-T port carries (RFC 3948 2.2, 2.3).
type datagramKind uint8

const (
	kindIKE       datagramKind = iota // non-ESP marker, then an IKE message
	kindESP                           // an ESP packet (its SPI is never zero)
	kindKeepalive                     // the one-octet 0xff NAT-keepalive
)

// classifyNATT tells IKE, ESP and keepalives apart on port 4500 and returns the datagram
// without the non-ESP marker.
func classifyNATT(b []byte) ([]byte, datagramKind) {
	switch {
	case len(b) == 1 && b[0] == 0xff:
		return nil, kindKeepalive
	case len(b) >= NonESPMarkerLen && b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0:
		return b[NonESPMarkerLen:], kindIKE
	}
	return b, kindESP
}

// IKE implements Bind.
func (b *UDPBind) IKE() <-chan Packet { return b.ike }

func (b *UDPBind) socket(local netip.AddrPort) (*udpSocket, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	c, ok := b.sockets[local]
	if !ok {
		return nil, fmt.Errorf("conn: send: local address %v is not bound", local)
	}
	return c, nil
}

// SendIKE implements Bind.
func (b *UDPBind) SendIKE(msg []byte, local, remote netip.AddrPort) error {
	c, err := b.socket(local)
	if err != nil {
		return err
	}
	if local.Port() == b.nattPort {
		msg = append(make([]byte, NonESPMarkerLen, NonESPMarkerLen+len(msg)), msg...)
	}
	if _, err := c.c.WriteToUDPAddrPort(msg, remote); err != nil {
		return fmt.Errorf("conn: send IKE %v -> %v: %w", local, remote, err)
	}
	return nil
}

// SendESP implements Bind.
func (b *UDPBind) SendESP(pkt []byte, local, remote netip.AddrPort) error {
	c, err := b.socket(local)
	if err != nil {
		return err
	}
	if _, err := c.c.WriteToUDPAddrPort(pkt, remote); err != nil {
		return fmt.Errorf("conn: send ESP %v -> %v: %w", local, remote, err)
	}
	return nil
}

// SendESPBatch implements Bind: runs of equal-size packets leave as UDP GSO
// messages where the kernel supports it, and all messages in one sendmmsg. If the route
// refuses GSO (EIO: no checksum offload on the device), the socket stops using it and the
// rest is sent datagram by datagram, still batched.
func (b *UDPBind) SendESPBatch(pkts [][]byte, local, remote netip.AddrPort) error {
	s, err := b.socket(local)
	if err != nil {
		return err
	}
	sd := s.senders.Get().(*espSender)
	defer s.senders.Put(sd)
	ua := sd.udpAddr(remote)
	for len(pkts) > 0 {
		gso := s.gso.Load()
		msgs := sd.build(pkts, ua, gso)
		n, err := s.batch.WriteBatch(msgs, 0)
		for _, m := range msgs[:max(n, 0)] {
			pkts = pkts[len(m.Buffers):]
		}
		switch {
		case err == nil && n > 0:
		case gso && errors.Is(err, unix.EIO):
			s.gso.Store(false)
		case err == nil:
			return fmt.Errorf("conn: send ESP %v -> %v: sendmmsg sent 0 of %d messages", local, remote, len(msgs))
		default:
			return fmt.Errorf("conn: send ESP batch %v -> %v: %w", local, remote, err)
		}
	}
	return nil
}

// BatchSize implements Bind: two full GSO messages, wireguard-go's conn.IdealBatchSize.
// SendESPBatch itself takes any number.
func (b *UDPBind) BatchSize() int { return sendBatch }

// SetESPHandler implements Bind.
func (b *UDPBind) SetESPHandler(h ESPHandler) { b.esp.Store(&h) }

// Close implements Bind. The IKE channel is closed once every receiver has stopped.
func (b *UDPBind) Close() error {
	b.once.Do(func() {
		close(b.closed)
		b.closeSockets()
		b.wg.Wait()
		close(b.ike)
	})
	return nil
}

func (b *UDPBind) closeSockets() {
	for _, s := range b.sockets {
		s.c.Close()
	}
}
