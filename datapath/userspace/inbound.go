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
	// tunWriteOffset is the headroom each inner packet keeps for the TUN's virtio header;
	// the ESP header and IV in front of the inner packet (at least 16 bytes) provide it.
	tunWriteOffset = 16
)

// packetBuf holds one received ESP packet (from the SPI) in data[start:n]; once opened,
// inner is the decrypted inner packet within data.
type packetBuf struct {
	data     []byte
	start, n int
	inner    []byte
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

// receiveUDP is the conn.ESPHandler: it copies the packet (the Bind reuses its buffer) and
// queues it for the worker. With every buffer in use it waits: the Bind's socket buffer
// then absorbs the burst, instead of dropping packets that TCP would have to retransmit.
func (d *Datapath) receiveUDP(pkt []byte, local, remote netip.AddrPort) {
	if len(pkt) > d.bufSize {
		d.drops.inc(DropTooBig)
		return
	}
	select {
	case b := <-d.free:
		b.start, b.n = 0, copy(b.data, pkt)
		d.openAndQueue(b)
	case <-d.done:
	}
}

// openAndQueue decrypts b on the receiving goroutine, so decryption runs in parallel with
// the worker's TUN writes, and queues the survivors for the worker.
func (d *Datapath) openAndQueue(b *packetBuf) {
	if b.inner = d.open(d.state.Load(), b); b.inner == nil {
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
		b.start = start
		d.openAndQueue(b)
		return
	}
	d.free <- b // cannot block: b came from free
}

// inboundWorker writes batches of opened packets to the TUN in one call, so the TUN can
// coalesce TCP segments (GRO).
func (d *Datapath) inboundWorker() {
	batch := make([]*packetBuf, 0, inboundBatch)
	writes := make([][]byte, 0, inboundBatch)
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
			off := len(b.data) - cap(b.inner) // inner starts at b.data[off]
			writes = append(writes, b.data[off-tunWriteOffset:off+len(b.inner)])
		}
		if _, err := d.tun.Write(writes, tunWriteOffset); err != nil && !d.closed.Load() {
			d.drops.inc(DropSend)
		}
		for i, b := range batch {
			b.inner = nil
			d.free <- b
			batch[i] = nil
		}
		batch, writes = batch[:0], writes[:0]
	}
}

// open verifies and decrypts b in place and returns the inner packet, or nil after
// counting the reason it was dropped.
func (d *Datapath) open(st *tables, b *packetBuf) []byte {
	p, err := esp.Parse(b.data[b.start:b.n])
	if err != nil {
		d.drops.inc(DropMalformed)
		return nil
	}
	sa := st.in[p.SPI()]
	if sa == nil {
		d.drops.inc(DropUnknownSPI)
		return nil
	}
	inner, err := sa.esp.Open(p)
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
	if !inboundMatch(&sa.cfg.Selector, &f) {
		d.drops.inc(DropSelector)
		return nil
	}
	return inner
}
