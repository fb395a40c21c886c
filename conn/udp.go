package conn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
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
	sockets  map[netip.AddrPort]*net.UDPConn
	esp      atomic.Pointer[ESPHandler]
	nattPort uint16
	closed   chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
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
		sockets:  make(map[netip.AddrPort]*net.UDPConn),
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
			b.sockets[ap] = c
			if port == opts.NATTPort && opts.KernelESPInUDP {
				if err := setESPInUDP(c); err != nil {
					b.closeSockets()
					return nil, fmt.Errorf("conn: UDP_ENCAP on %v: %w", ap, err)
				}
			}
		}
	}
	for ap, c := range b.sockets {
		b.wg.Add(1)
		go b.receive(c, ap)
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

func (b *UDPBind) receive(c *net.UDPConn, local netip.AddrPort) {
	defer b.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, remote, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		data := buf[:n]
		if local.Port() == b.nattPort {
			var k datagramKind
			if data, k = classifyNATT(data); k == kindESP {
				if h := b.esp.Load(); h != nil && *h != nil {
					(*h)(data, local, remote)
				}
				continue
			} else if k == kindKeepalive {
				continue
			}
		}
		pkt := Packet{Data: append([]byte(nil), data...), Local: local, Remote: remote}
		select {
		case b.ike <- pkt:
		case <-b.closed:
			return
		default: // full queue: drop like a congested socket would
		}
	}
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

func (b *UDPBind) socket(local netip.AddrPort) (*net.UDPConn, error) {
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
	if _, err := c.WriteToUDPAddrPort(msg, remote); err != nil {
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
	if _, err := c.WriteToUDPAddrPort(pkt, remote); err != nil {
		return fmt.Errorf("conn: send ESP %v -> %v: %w", local, remote, err)
	}
	return nil
}

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
	for _, c := range b.sockets {
		c.Close()
	}
}
