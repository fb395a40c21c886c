package userspace

import (
	"errors"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// bufOffset is where packets start in outbound buffers: room for the TUN's virtio header
// on read and for the ESP header and IV that Seal writes in front of the packet.
const bufOffset = 64

// acquireInterval rate-limits acquire events per policy.
const acquireInterval = time.Second

// outboundLoop reads batches from the TUN, seals each packet in place and sends it.
// One goroutine: sequence numbers leave in order, and the buffers are reused.
func (d *Datapath) outboundLoop() {
	batch := d.tun.BatchSize()
	bufs, sizes := make([][]byte, batch), make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, d.bufSize)
	}
	for {
		n, err := d.tun.Read(bufs, sizes, bufOffset)
		st := d.state.Load()
		for i := range n {
			d.sendOne(st, bufs[i], sizes[i])
		}
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

// sendOne protects the n-byte packet at buf[bufOffset:] and sends it to its SA's peer.
func (d *Datapath) sendOne(st *tables, buf []byte, n int) {
	inner := buf[bufOffset : bufOffset+n]
	f, ok := parseFlow(inner)
	if !ok {
		d.drops.inc(DropMalformed)
		return
	}
	pol := st.lookupPolicy(&f)
	if pol == nil {
		d.drops.inc(DropNoPolicy)
		return
	}
	o := st.outbound(pol.p.ReqID)
	if o == nil {
		d.drops.inc(DropNoSA)
		d.acquire(pol)
		return
	}
	nh := uint8(esp.NextHeaderIPv4)
	if inner[0]>>4 == 6 {
		nh = esp.NextHeaderIPv6
	}
	pkt, err := o.esp.Seal(buf, bufOffset, n, nh)
	switch {
	case errors.Is(err, esp.ErrSeqOverflow), errors.Is(err, esp.ErrHardLifetime):
		d.drops.inc(DropExpired)
		return
	case err != nil:
		d.drops.inc(DropTooBig)
		return
	}
	if o.rawDst != nil {
		_, _, err = d.raw.WriteMsgIP(pkt, o.rawOOB, o.rawDst)
	} else {
		err = d.opts.Bind.SendESP(pkt, o.local, o.remote)
	}
	if err != nil {
		d.drops.inc(DropSend)
	}
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
