package userspace

import (
	"errors"
	"net/netip"

	"github.com/espgw/espgw/datapath/esp"
)

const (
	// inboundBuffers bounds the packets queued between the receivers and the decrypting
	// worker; with all in use, new packets are dropped like a full socket buffer would.
	inboundBuffers = 1024
	inboundBatch   = 128
)

// packetBuf is a pool buffer: raw ESP receives the outer IPv4 packet into data[:n] and
// opens it in place; ESP in UDP is decrypted into data. inner is the decrypted inner
// packet within data.
type packetBuf struct {
	data  []byte
	n     int
	inner []byte
}

func (d *Datapath) startInbound() {
	d.inQueue = make(chan *packetBuf, inboundBuffers)
	d.free = make(chan *packetBuf, inboundBuffers)
	for range inboundBuffers {
		d.free <- &packetBuf{data: make([]byte, d.bufSize)}
	}
	d.start(d.inboundWorker)
	if d.raw != nil {
		d.start(d.rawReceiveLoop)
	}
}

// receiveUDP is the conn.ESPHandler: it decrypts the packet out of the Bind's buffer
// (which the Bind reuses) into a pool buffer and queues it for the worker. With every
// buffer in use it waits: the Bind's socket buffer then absorbs the burst, instead of
// dropping packets that TCP would have to retransmit.
func (d *Datapath) receiveUDP(pkt []byte, local, remote netip.AddrPort) {
	if len(pkt) > d.bufSize {
		d.drops.inc(DropTooBig)
		return
	}
	select {
	case b := <-d.free:
		b.inner = d.open(pkt, b.data)
		d.queue(b)
	case <-d.done:
	}
}

// queue hands an opened buffer to the worker, or returns it to the pool when the packet
// was dropped. Decryption happens on the receiving goroutines, in parallel with the
// worker's TUN writes.
func (d *Datapath) queue(b *packetBuf) {
	if b.inner == nil {
		d.free <- b // cannot block: b came from free
		return
	}
	d.inQueue <- b // cannot block: the queue holds every buffer
}

// rawReceiveLoop reads IP protocol 50 in batches (recvmmsg) and opens each packet. It
// keeps up to rawRecvBatch buffers of the pool while it waits for the socket and takes
// more only as the previous ones are used.
func (d *Datapath) rawReceiveLoop() {
	rd := d.raw.newReader()
	bufs := make([]*packetBuf, 0, rawRecvBatch)
	for {
		if len(bufs) == 0 { // wait for one buffer, then take what is free
			select {
			case b := <-d.free:
				bufs = append(bufs, b)
			case <-d.done:
				return
			}
		}
	fill:
		for len(bufs) < cap(bufs) {
			select {
			case b := <-d.free:
				bufs = append(bufs, b)
			default:
				break fill
			}
		}
		n, err := rd.read(bufs)
		if err != nil {
			if d.closed.Load() {
				return
			}
			d.drops.inc(DropMalformed)
			continue
		}
		for i, b := range bufs[:n] {
			d.openRaw(b, rd.truncated(i))
		}
		bufs = bufs[:copy(bufs, bufs[n:])]
	}
}

// openRaw removes the outer IPv4 header from the received packet b and opens and queues
// it, or drops it.
func (d *Datapath) openRaw(b *packetBuf, truncated bool) {
	start, ok := ipv4PayloadOffset(b.data[:b.n])
	switch {
	case truncated:
		d.drops.inc(DropTooBig)
	case !ok:
		d.drops.inc(DropMalformed)
	default:
		b.inner = d.open(b.data[start:b.n], nil)
		d.queue(b)
		return
	}
	d.free <- b // cannot block: b came from free
}

// inboundWorker takes batches of opened packets, coalesces the TCP segments of each batch
// into super-packets (gro.go) and writes them to the TUN, one write per (super-)packet.
func (d *Datapath) inboundWorker() {
	batch := make([]*packetBuf, 0, inboundBatch)
	pkts := make([][]byte, 0, inboundBatch)
	pieces := make([][]byte, 0, groMaxSegs+1)
	var gro coalescer
	for {
		select {
		case b := <-d.inQueue:
			batch = append(batch, b)
		case <-d.done:
			return
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case b := <-d.inQueue:
				batch = append(batch, b)
			default:
				break fill
			}
		}
		for _, b := range batch {
			pkts = append(pkts, b.inner)
		}
		gro.coalesce(pkts)
		for i := range gro.items {
			pieces = gro.appendWrite(pieces[:0], i)
			if err := d.tun.Write(pieces); err != nil && !d.closed.Load() {
				d.drops.add(DropSend, uint64(gro.items[i].segs))
			}
		}
		for i, b := range batch {
			b.inner = nil
			d.free <- b
			batch[i] = nil
		}
		clear(pkts)
		batch, pkts = batch[:0], pkts[:0]
	}
}

// open verifies and decrypts the ESP packet pkt into dst, or in place when dst is nil, and
// returns the inner packet, or nil after counting the reason it was dropped.
func (d *Datapath) open(pkt, dst []byte) []byte {
	p, err := esp.Parse(pkt)
	if err != nil {
		d.drops.inc(DropMalformed)
		return nil
	}
	sa, _ := d.sad.in.load(p.SPI())
	if sa == nil {
		d.drops.inc(DropUnknownSPI)
		return nil
	}
	inner, err := sa.esp.OpenTo(dst, p)
	switch {
	case err == nil:
	case errors.Is(err, esp.ErrReplay):
		d.drops.inc(DropReplay)
		return nil
	case errors.Is(err, esp.ErrAuth):
		d.drops.inc(DropAuth)
		return nil
	case errors.Is(err, esp.ErrPadding), errors.Is(err, esp.ErrNextHeader):
		d.drops.inc(DropTrailer)
		return nil
	case errors.Is(err, esp.ErrHardLifetime):
		d.drops.inc(DropExpired)
		return nil
	default:
		d.drops.inc(DropMalformed)
		return nil
	}
	f, ok := parseFlow(inner)
	if !ok {
		d.drops.inc(DropMalformed)
		return nil
	}
	if !carries(sa.cfg.Selectors, &f, inboundMatch) {
		d.drops.inc(DropSelector)
		return nil
	}
	if sa.pending != nil { // the peer sends on the new pair: it can open what we send on it
		d.switchTo(sa.pending)
	}
	return inner
}
