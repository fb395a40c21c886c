package userspace

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw ESP (IP protocol 50, RFC 4303 without UDP encapsulation) on an IPv4 raw socket.
// Both directions move a batch per system call: recvmmsg fetches every queued packet up
// to rawRecvBatch, sendmmsg sends an outbound batch of one SA. There is no segmentation
// offload for raw sockets, so unlike ESP in UDP each packet stays one message. The message
// headers and iovecs are allocated once per loop and point into the packet buffers.

const (
	// rawRecvBatch is how many packets one recvmmsg may return; the receiver holds that
	// many buffers of the inbound pool while it waits.
	rawRecvBatch = 64
	// rawSocketBuffer absorbs bursts while the receiving goroutine decrypts. It matters more
	// than for UDP: since Linux 6.x a packet that finds the raw socket full counts as
	// undelivered, and with no kernel ESP the host then answers it with ICMP protocol
	// unreachable. The send side gets the same size so that a whole TUN batch fits.
	rawSocketBuffer = 4 << 20
)

// rawESP is the IPv4 raw socket for IP protocol 50. The kernel hands every received
// protocol 50 packet to it, outer IPv4 header included.
type rawESP struct {
	conn *net.IPConn
	rc   syscall.RawConn
}

// listenRawESP opens the socket in the calling thread's network namespace.
func listenRawESP() (*rawESP, error) {
	c, err := net.ListenIP("ip4:50", nil)
	if err != nil {
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	r := &rawESP{conn: c, rc: rc}
	r.growBuffers()
	return r, nil
}

func (r *rawESP) Close() error { return r.conn.Close() }

// growBuffers raises the socket buffers past net.core.{r,w}mem_max when allowed
// (SO_*BUFFORCE needs CAP_NET_ADMIN), else as far as the sysctls permit.
func (r *rawESP) growBuffers() {
	r.rc.Control(func(fd uintptr) {
		s := int(fd)
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rawSocketBuffer) != nil {
			unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rawSocketBuffer)
		}
		if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rawSocketBuffer) != nil {
			unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, rawSocketBuffer)
		}
	})
}

// mmsg is a reusable recvmmsg/sendmmsg vector: one message with one iovec per packet.
type mmsg struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	n    int   // messages transferred by the last call
	err  error // its error
}

func newMmsg(size int) mmsg {
	m := mmsg{hdrs: make([]unix.Mmsghdr, size), iovs: make([]unix.Iovec, size)}
	for i := range m.hdrs {
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.Iovlen = 1
	}
	return m
}

// setBuf points message i at b.
func (m *mmsg) setBuf(i int, b []byte) {
	m.iovs[i].Base = unsafe.SliceData(b)
	m.iovs[i].SetLen(len(b))
}

// call runs recvmmsg or sendmmsg (trap) on fd over hdrs; it reports false when the socket
// is not ready, so that syscall.RawConn waits for it.
func (m *mmsg) call(fd uintptr, trap uintptr, hdrs []unix.Mmsghdr) bool {
	for {
		n, _, errno := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(hdrs))), uintptr(len(hdrs)), 0, 0, 0)
		switch errno {
		case 0:
			m.n, m.err = int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			m.n, m.err = 0, errno
		}
		return true
	}
}

// rawReader receives batches of ESP packets; one goroutine owns it.
type rawReader struct {
	rc   syscall.RawConn
	m    mmsg
	want int
	recv func(fd uintptr) bool // m.call for recvmmsg, bound once so that reads do not allocate
}

func (r *rawESP) newReader() *rawReader {
	rd := &rawReader{rc: r.rc, m: newMmsg(rawRecvBatch)}
	rd.recv = func(fd uintptr) bool { return rd.m.call(fd, unix.SYS_RECVMMSG, rd.m.hdrs[:rd.want]) }
	return rd
}

// read waits for at least one packet and receives up to len(bufs) (at most rawRecvBatch)
// into bufs[i].data, setting bufs[i].n to the packet length including the outer IPv4
// header. It returns how many it received.
func (rd *rawReader) read(bufs []*packetBuf) (int, error) {
	rd.want = min(len(bufs), rawRecvBatch)
	for i, b := range bufs[:rd.want] {
		rd.m.setBuf(i, b.data)
		rd.m.hdrs[i].Hdr.Flags = 0
	}
	if err := rd.rc.Read(rd.recv); err != nil {
		return 0, err
	}
	if rd.m.err != nil {
		return 0, rd.m.err
	}
	for i, b := range bufs[:rd.m.n] {
		b.n = int(rd.m.hdrs[i].Len)
	}
	return rd.m.n, nil
}

// truncated reports whether packet i of the last read did not fit its buffer.
func (rd *rawReader) truncated(i int) bool { return rd.m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 }

// rawWriter sends batches of ESP packets to one peer; one goroutine owns it.
type rawWriter struct {
	rc      syscall.RawConn
	m       mmsg
	pending []unix.Mmsghdr
	send    func(fd uintptr) bool // m.call for sendmmsg over pending, bound once
}

func (r *rawESP) newWriter(size int) *rawWriter {
	w := &rawWriter{rc: r.rc, m: newMmsg(size)}
	w.send = func(fd uintptr) bool { return w.m.call(fd, unix.SYS_SENDMMSG, w.pending) }
	return w
}

// rawDest is where an outbound raw ESP SA sends: the peer's address and an IP_PKTINFO
// control message that selects the SA's source address.
type rawDest struct {
	addr    unix.RawSockaddrInet4
	pktinfo []byte
}

func newRawDest(src, dst netip.Addr) *rawDest {
	d := &rawDest{
		addr:    unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()},
		pktinfo: make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo)),
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&d.pktinfo[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&d.pktinfo[unix.CmsgLen(0)]))
	info.Spec_dst = src.As4()
	return d
}

// write sends pkts to dst, in order, and returns how many could not be sent. A packet the
// kernel refuses is skipped; the rest still go out.
func (w *rawWriter) write(pkts [][]byte, dst *rawDest) (failed int) {
	for len(pkts) > 0 {
		n := min(len(pkts), len(w.m.hdrs))
		for i, p := range pkts[:n] {
			w.m.setBuf(i, p)
			h := &w.m.hdrs[i].Hdr
			h.Name = (*byte)(unsafe.Pointer(&dst.addr))
			h.Namelen = unix.SizeofSockaddrInet4
			h.Control = &dst.pktinfo[0]
			h.SetControllen(len(dst.pktinfo))
		}
		pkts = pkts[n:]
		for w.pending = w.m.hdrs[:n]; len(w.pending) > 0; {
			if err := w.rc.Write(w.send); err != nil { // closed
				return failed + len(w.pending) + len(pkts)
			}
			if w.m.err != nil { // the first pending message was refused
				failed++
				w.m.n = 1
			}
			w.pending = w.pending[w.m.n:]
		}
	}
	return failed
}

// ipv4PayloadOffset returns where the payload of the received IPv4 packet pkt starts, or
// false if the version or header length (RFC 791) is implausible for its length.
func ipv4PayloadOffset(pkt []byte) (int, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return 0, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	return ihl, ihl >= 20 && ihl <= len(pkt)
}
