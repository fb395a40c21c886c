// Package conn carries IKE and ESP-in-UDP datagrams on UDP ports 500 and 4500 (RFC 3947, 3948).
//
// One Bind is shared by the IKE engine and the userspace datapath: after NAT-T floats to port
// 4500, IKE messages and ESP packets use the same socket and are told apart by the 4-byte
// non-ESP marker (zero) that precedes every IKE message there.
package conn

import "net/netip"

// IKEPort and NATTPort are the well-known ISAKMP and NAT-T ports.
const (
	IKEPort  = 500
	NATTPort = 4500
)

// NonESPMarkerLen is the length of the zero marker in front of IKE messages on port 4500.
const NonESPMarkerLen = 4

// Packet is one received IKE message; Data has the non-ESP marker removed.
type Packet struct {
	Data   []byte
	Local  netip.AddrPort // the address and port it arrived on
	Remote netip.AddrPort
}

// ESPHandler receives ESP-in-UDP packets (no marker) that arrive on port 4500.
// It must not keep pkt after returning.
type ESPHandler func(pkt []byte, local, remote netip.AddrPort)

// Bind is the set of UDP sockets the gateway listens on.
type Bind interface {
	// IKE delivers received IKE messages until Close.
	IKE() <-chan Packet
	// SendIKE sends an IKE message; from port 4500 it prepends the non-ESP marker.
	SendIKE(msg []byte, local, remote netip.AddrPort) error
	// SendESP sends an ESP packet in UDP (no marker) from local, normally port 4500.
	SendESP(pkt []byte, local, remote netip.AddrPort) error
	// SendESPBatch sends each of pkts as one ESP-in-UDP datagram from local to remote, in
	// order, in as few system calls as the Bind can (sendmmsg, UDP GSO). The packets are not
	// kept after it returns.
	SendESPBatch(pkts [][]byte, local, remote netip.AddrPort) error
	// BatchSize is how many packets one SendESPBatch call should carry at most; callers
	// split longer runs.
	BatchSize() int
	// SetESPHandler installs the receiver of ESP-in-UDP packets; nil drops them.
	SetESPHandler(h ESPHandler)
	// Close closes every socket.
	Close() error
}
