package conn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Batching and UDP segmentation offload on the NAT-T sockets (Linux).
//
// Receive: UDP_GRO lets the kernel hand several same-size datagrams of one flow to one
// recvmsg as a single buffer plus their segment size; recvmmsg fetches several such
// buffers per system call. Send: UDP_SEGMENT (GSO) sends equal-size datagrams to one peer
// as one buffer that the kernel (or the NIC) splits; sendmmsg sends several of those per
// system call. Both keep ESP datagrams intact: only the UDP payload boundaries matter.

const (
	// socketBuffer is the send and receive buffer of the NAT-T sockets: bursts of a TCP
	// window must not overflow while the datapath decrypts.
	socketBuffer = 8 << 20
	// ikeSocketBuffer is the receive buffer of the IKE (port 500) sockets: 200 peers answer
	// our MM1s at once, and with the default 208 KiB a gateway that waits for a core dropped
	// MM2s (bench/setup, 1,000 tunnels / 200 peers), costing each a retransmission round.
	ikeSocketBuffer = 1 << 20
	// recvBatch is how many (possibly GRO-coalesced) datagrams one recvmmsg returns.
	recvBatch = 8
	// sendBatch is the batch size the Bind reports: two full GSO messages.
	sendBatch = 2 * maxGSOSegments
	// maxGSOSegments is the kernel's UDP_MAX_SEGMENTS limit on one GSO send.
	maxGSOSegments = 64
	// maxGSOPayload bounds the bytes of one GSO send: the UDP length field is 16 bits.
	maxGSOPayload = 65535 - 8 - 40
)

var (
	groCmsgSpace = unix.CmsgSpace(4)
	gsoCmsgSpace = unix.CmsgSpace(2)
)

// tuneSocket raises the socket buffers beyond net.core.{r,w}mem_max when CAP_NET_ADMIN
// allows (SO_*BUFFORCE), else as far as the sysctls permit, and turns on UDP_GRO. It
// reports whether GRO and GSO are available.
func tuneSocket(c *net.UDPConn, offload bool) (gro, gso bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	rc.Control(func(fd uintptr) {
		s := int(fd)
		setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, socketBuffer)
		setBuffer(s, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, socketBuffer)
		if !offload {
			return
		}
		gro = unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		_, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
	})
	return gro, gso
}

// raiseIKEBuffer raises an IKE socket's receive buffer to ikeSocketBuffer, as tuneSocket does.
func raiseIKEBuffer(c *net.UDPConn) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, ikeSocketBuffer) })
	}
}

// setBuffer sets a socket buffer to size through force (beyond net.core.*mem_max, with
// CAP_NET_ADMIN), else through opt as far as the sysctl permits.
func setBuffer(fd, force, opt, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, size)
	}
}

// groSegmentSize returns the segment size from a UDP_GRO control message in oob, or 0
// when the datagram was not coalesced.
func groSegmentSize(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < uint64(unix.CmsgLen(0)) || h.Len > uint64(len(oob)) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && int(h.Len) >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
		}
		next := unix.CmsgSpace(int(h.Len) - unix.CmsgLen(0))
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// putGSO writes a UDP_SEGMENT control message for segment size seg into oob, which must
// have gsoCmsgSpace bytes, and returns it.
func putGSO(oob []byte, seg int) []byte {
	oob = oob[:gsoCmsgSpace]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	return oob
}

// espSender batches ESP datagrams to one peer: runs of equal-size packets become GSO
// messages, all messages go out in one sendmmsg. Each UDPBind socket owns a pool of them.
type espSender struct {
	msgs   []ipv4.Message
	oobs   [][]byte
	remote netip.AddrPort
	addr   *net.UDPAddr
}

// udpAddr converts remote, reusing the previous conversion for the same peer.
func (s *espSender) udpAddr(remote netip.AddrPort) *net.UDPAddr {
	if s.addr == nil || s.remote != remote {
		s.remote, s.addr = remote, net.UDPAddrFromAddrPort(remote)
	}
	return s.addr
}

// build turns pkts into messages to remote; gso chooses segmentation offload. The
// packets are referenced, not copied (the kernel gathers the iovecs).
func (s *espSender) build(pkts [][]byte, remote *net.UDPAddr, gso bool) []ipv4.Message {
	s.msgs = s.msgs[:0]
	for len(pkts) > 0 {
		n := 1
		if gso {
			seg, total := len(pkts[0]), len(pkts[0])
			// Equal sizes; the last segment of a message may be shorter.
			for n < len(pkts) && n < maxGSOSegments && total+len(pkts[n]) <= maxGSOPayload && len(pkts[n]) <= seg {
				total += len(pkts[n])
				n++
				if len(pkts[n-1]) < seg {
					break
				}
			}
		}
		i := len(s.msgs)
		if i == len(s.oobs) {
			s.oobs = append(s.oobs, make([]byte, gsoCmsgSpace))
		}
		s.msgs = append(s.msgs, ipv4.Message{Buffers: pkts[:n:n], Addr: remote})
		if n > 1 {
			s.msgs[i].OOB = putGSO(s.oobs[i], len(pkts[0]))
		}
		pkts = pkts[n:]
	}
	return s.msgs
}
