// Package tuntest provides a channel TUN for the userspace datapath (userspace.TUN), as
// wireguard-go's tun/tuntest does for its device: with it and conn/bindtest, whole tunnels
// run in memory, without root, devices or namespaces.
package tuntest

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// virtioNetHdrLen is the size of the struct virtio_net_hdr that starts every write.
const virtioNetHdrLen = 10

// TUN is an in-memory TUN device. The host side (the test) sends inner packets with Send,
// which the datapath reads, and receives what the datapath writes on Received. It is safe
// for concurrent use.
type TUN struct {
	name   string
	in     chan []byte // host → datapath
	out    chan []byte // datapath → host
	closed chan struct{}
	once   sync.Once
}

// ErrClosed is returned by Read and Write after Close; it wraps os.ErrClosed.
var ErrClosed = fmt.Errorf("tuntest: %w", os.ErrClosed)

// batchSize is what BatchSize reports.
const batchSize = 16

// New returns a TUN named name whose queues hold up to depth packets each way.
func New(name string, depth int) *TUN {
	return &TUN{name: name, in: make(chan []byte, depth), out: make(chan []byte, depth), closed: make(chan struct{})}
}

// Send queues a copy of pkt as if the host routed it into the TUN; it blocks while the
// queue is full and reports false once the TUN is closed.
func (t *TUN) Send(pkt []byte) bool {
	select {
	case <-t.closed:
		return false
	default:
	}
	select {
	case t.in <- append([]byte(nil), pkt...):
		return true
	case <-t.closed:
		return false
	}
}

// Received delivers the packets the datapath wrote, virtio header removed. TCP super-packets
// that the datapath coalesced arrive as written, not split.
func (t *TUN) Received() <-chan []byte { return t.out }

// Name implements userspace.TUN.
func (t *TUN) Name() string { return t.name }

// BatchSize implements userspace.TUN.
func (t *TUN) BatchSize() int { return batchSize }

// Read implements userspace.TUN: it waits for one packet, then takes what else is queued.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-t.in:
	case <-t.closed:
		return 0, ErrClosed
	}
	n := 0
	for {
		if len(p) > len(bufs[n])-offset {
			return n, fmt.Errorf("tuntest: packet of %d bytes, buffer holds %d", len(p), len(bufs[n])-offset)
		}
		sizes[n] = copy(bufs[n][offset:], p)
		if n++; n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-t.in:
		default:
			return n, nil
		}
	}
}

// Write implements userspace.TUN. It blocks while Received is full, like a TUN whose host
// does not read.
func (t *TUN) Write(pieces [][]byte) error {
	if len(pieces) == 0 || len(pieces[0]) != virtioNetHdrLen {
		return errors.New("tuntest: write without a 10-byte virtio_net_hdr first")
	}
	var pkt []byte
	for _, p := range pieces[1:] {
		pkt = append(pkt, p...)
	}
	select {
	case t.out <- pkt:
		return nil
	case <-t.closed:
		return ErrClosed
	}
}

// Close implements userspace.TUN.
func (t *TUN) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}
