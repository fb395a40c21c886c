package userspace

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunWriter writes packets to the TUN's file descriptor with writev, one packet per call:
// the virtio header and the pieces of a super-packet are gathered from where they lie, so
// the only copy of the payload is the kernel's. One goroutine owns it.
type tunWriter struct {
	rc     syscall.RawConn
	iovs   []unix.Iovec
	err    error
	writev func(fd uintptr) bool // w.call, bound once so that writes do not allocate
}

// newTUNWriter writes to f, the TUN opened with IFF_VNET_HDR: every packet must start
// with a virtio header.
func newTUNWriter(f *os.File) (*tunWriter, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	w := &tunWriter{rc: rc, iovs: make([]unix.Iovec, 0, groMaxSegs+1)} // as coalescer.appendWrite gathers
	w.writev = w.call
	return w, nil
}

// write sends the concatenation of pieces as one packet.
func (w *tunWriter) write(pieces [][]byte) error {
	w.iovs = w.iovs[:0]
	for _, p := range pieces {
		iov := unix.Iovec{Base: unsafe.SliceData(p)}
		iov.SetLen(len(p))
		w.iovs = append(w.iovs, iov)
	}
	if err := w.rc.Write(w.writev); err != nil {
		return err
	}
	return w.err
}

// call runs writev on fd; it reports false while the TUN is not writable, so that
// syscall.RawConn waits for it.
func (w *tunWriter) call(fd uintptr) bool {
	for {
		_, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.iovs))), uintptr(len(w.iovs)))
		switch errno {
		case 0:
			w.err = nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			w.err = errno
		}
		return true
	}
}
