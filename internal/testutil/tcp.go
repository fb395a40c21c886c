package testutil

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// TCPMaxSeg returns the TCP_MAXSEG of a connected TCP socket: the MSS it sends with, which
// shows whether a middlebox clamped the MSS option of the handshake.
func TCPMaxSeg(c net.Conn) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, fmt.Errorf("TCP_MAXSEG of a %T: want a *net.TCPConn", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	var serr error
	if err := raw.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil {
		return 0, err
	}
	return mss, serr
}
