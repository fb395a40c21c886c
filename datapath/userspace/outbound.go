package userspace

import (
	"errors"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// bufOffset is where packets start in outbound buffers: room for the TUN's virtio header
// on read and for the ESP header and IV that Seal writes in front of the packet.
const bufOffset = 64

// acquireInterval rate-limits acquire events per policy.
const acquireInterval = time.Second

// outboundLoop reads batches from the TUN (the TUN splits TSO super-packets into MTU-size
// segments), seals each packet in place and sends the batch with as few system calls as
// the Bind allows. One goroutine: sequence numbers leave in order, and the buffers are
// reused.
func (d *Datapath) outboundLoop() {
	batch := d.tun.BatchSize()
	bufs, sizes := make([][]byte, batch), make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, d.bufSize)
	}
	out := sendQueue{pkts: make([][]byte, 0, batch)}
	if d.raw != nil {
		out.raw = d.raw.newWriter(batch)
	}
	for {
		n, err := d.tun.Read(bufs, sizes, bufOffset)
		st := d.state.Load()
		for i := range n {
			if pkt, o := d.seal(st, bufs[i], sizes[i]); pkt != nil {
				if o != out.sa {
					d.flush(&out)
					out.sa = o
				}
				out.pkts = append(out.pkts, pkt)
			}
		}
		d.flush(&out)
		if err != nil {
			if d.closed.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			d.drops.inc(DropMalformed)
			d.opts.Logger.Warn("userspace datapath: TUN read", "tun", d.name, "err", err)
			if !errors.Is(err, tun.ErrTooManySegments) {
				time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			}
		}
	}
}

// sendQueue collects sealed packets of one outbound SA until they are flushed.
type sendQueue struct {
	sa   *outSA
	pkts [][]byte
	raw  *rawWriter // nil without Options.RawESP
}

// flush sends the queued packets: raw ESP with sendmmsg, ESP in UDP in one batch when the
// Bind can, else one by one.
func (d *Datapath) flush(q *sendQueue) {
	if len(q.pkts) == 0 {
		return
	}
	o := q.sa
	switch bs, ok := d.opts.Bind.(conn.ESPBatchSender); {
	case o.raw != nil:
		d.drops.add(DropSend, uint64(q.raw.write(q.pkts, o.raw)))
	case ok:
		if err := bs.SendESPBatch(q.pkts, o.local, o.remote); err != nil {
			d.drops.add(DropSend, uint64(len(q.pkts)))
		}
	default:
		for _, pkt := range q.pkts {
			if err := d.opts.Bind.SendESP(pkt, o.local, o.remote); err != nil {
				d.drops.inc(DropSend)
			}
		}
	}
	clear(q.pkts)
	q.pkts = q.pkts[:0]
}

// seal protects the n-byte packet at buf[bufOffset:] with its policy's SA and returns the
// ESP packet (within buf) and the SA, or nil after counting why the packet was dropped.
func (d *Datapath) seal(st *tables, buf []byte, n int) ([]byte, *outSA) {
	inner := buf[bufOffset : bufOffset+n]
	f, ok := parseFlow(inner)
	if !ok {
		d.drops.inc(DropMalformed)
		return nil, nil
	}
	pol := st.lookupPolicy(&f)
	if pol == nil {
		d.drops.inc(DropNoPolicy)
		return nil, nil
	}
	o := st.outbound(pol.p.ReqID)
	if o == nil {
		d.drops.inc(DropNoSA)
		d.acquire(pol)
		return nil, nil
	}
	nh := uint8(esp.NextHeaderIPv4)
	if inner[0]>>4 == 6 {
		nh = esp.NextHeaderIPv6
	}
	pkt, err := o.esp.Seal(buf, bufOffset, n, nh)
	switch {
	case errors.Is(err, esp.ErrSeqOverflow), errors.Is(err, esp.ErrHardLifetime):
		d.drops.inc(DropExpired)
		return nil, nil
	case err != nil:
		d.drops.inc(DropTooBig)
		return nil, nil
	}
	return pkt, o
}

// acquire asks the control plane for an SA, at most once per policy per acquireInterval.
// It never blocks the packet path: with the event queue full the request is dropped and
// the next packet retries after the interval.
func (d *Datapath) acquire(p *policy) {
	now := time.Now().UnixNano()
	last := p.lastAcquire.Load()
	if now-last < int64(acquireInterval) || !p.lastAcquire.CompareAndSwap(last, now) {
		return
	}
	select {
	case d.events <- datapath.Event{Kind: datapath.EventAcquire, ReqID: p.p.ReqID, Selector: p.p.Selector}:
	default:
	}
}
