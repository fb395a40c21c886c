// Package bindtest provides an in-memory conn.Bind pair for engine tests.
//
// Two Binds are wired back to back: what one sends from (local, remote) arrives at the other
// as a Packet with Local = remote and Remote = local, ports preserved, so NAT-T port floating
// is visible to the receiver. Delivery never blocks: a full queue drops, like UDP.
package bindtest

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/espgw/espgw/conn"
)

// Filter decides whether a datagram is delivered; returning false drops it.
// isIKE tells IKE from ESP. It runs on the sender's goroutine.
type Filter func(msg []byte, local, remote netip.AddrPort, isIKE bool) bool

// Bind is one end of a pair. It is safe for concurrent use.
type Bind struct {
	peer   *Bind
	ike    chan conn.Packet
	mu     sync.Mutex
	esp    conn.ESPHandler
	filter Filter
	closed bool
	sent   []conn.Packet
}

var _ conn.Bind = (*Bind)(nil)

// BatchSize is what Bind.BatchSize reports: small, so that batches are split in tests.
const BatchSize = 8

// ErrClosed is returned by sends on a closed Bind.
var ErrClosed = errors.New("bindtest: bind closed")

// NewPair returns two connected Binds.
func NewPair() (a, b *Bind) {
	a = &Bind{ike: make(chan conn.Packet, 1024)}
	b = &Bind{ike: make(chan conn.Packet, 1024)}
	a.peer, b.peer = b, a
	return a, b
}

// SetFilter installs f for datagrams sent by this Bind; nil delivers everything.
func (b *Bind) SetFilter(f Filter) {
	b.mu.Lock()
	b.filter = f
	b.mu.Unlock()
}

// Sent returns a copy of every IKE message this Bind sent (delivered or dropped), in order.
func (b *Bind) Sent() []conn.Packet {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]conn.Packet(nil), b.sent...)
}

// Inject delivers msg to this Bind's IKE channel as if it came from remote.
func (b *Bind) Inject(msg []byte, local, remote netip.AddrPort) {
	b.deliverIKE(conn.Packet{Data: append([]byte(nil), msg...), Local: local, Remote: remote})
}

// IKE implements conn.Bind.
func (b *Bind) IKE() <-chan conn.Packet { return b.ike }

func (b *Bind) allow(msg []byte, local, remote netip.AddrPort, isIKE bool) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, ErrClosed
	}
	if isIKE {
		b.sent = append(b.sent, conn.Packet{Data: append([]byte(nil), msg...), Local: local, Remote: remote})
	}
	return b.filter == nil || b.filter(msg, local, remote, isIKE), nil
}

// SendIKE implements conn.Bind.
func (b *Bind) SendIKE(msg []byte, local, remote netip.AddrPort) error {
	ok, err := b.allow(msg, local, remote, true)
	if err != nil || !ok {
		return err
	}
	b.peer.deliverIKE(conn.Packet{Data: append([]byte(nil), msg...), Local: remote, Remote: local})
	return nil
}

func (b *Bind) deliverIKE(p conn.Packet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	select {
	case b.ike <- p:
	default:
	}
}

// SendESP implements conn.Bind.
func (b *Bind) SendESP(pkt []byte, local, remote netip.AddrPort) error {
	ok, err := b.allow(pkt, local, remote, false)
	if err != nil || !ok {
		return err
	}
	b.peer.mu.Lock()
	h := b.peer.esp
	b.peer.mu.Unlock()
	if h != nil {
		h(append([]byte(nil), pkt...), remote, local)
	}
	return nil
}

// SendESPBatch implements conn.Bind: each packet goes as SendESP sends it.
func (b *Bind) SendESPBatch(pkts [][]byte, local, remote netip.AddrPort) error {
	for _, p := range pkts {
		if err := b.SendESP(p, local, remote); err != nil {
			return err
		}
	}
	return nil
}

// BatchSize implements conn.Bind.
func (b *Bind) BatchSize() int { return BatchSize }

// SetESPHandler implements conn.Bind.
func (b *Bind) SetESPHandler(h conn.ESPHandler) {
	b.mu.Lock()
	b.esp = h
	b.mu.Unlock()
}

// Close implements conn.Bind; it closes the IKE channel.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.ike)
	}
	return nil
}
