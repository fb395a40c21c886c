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

// outboundLoop reads batches from the TUN (the TUN splits TSO super-packets into MTU-size
// segments), seals each run of packets that share an SA in place with one SealBatch and
// sends it with as few system calls as the Bind allows. One goroutine: sequence numbers
// leave in order, and the buffers are reused.
func (d *Datapath) outboundLoop() {
	batch := d.tun.BatchSize()
	bufs, sizes := make([][]byte, batch), make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, d.bufSize)
	}
	out := sendQueue{seals: make([]esp.Sealing, 0, batch), pkts: make([][]byte, 0, batch)}
	if d.raw != nil {
		out.raw = d.raw.newWriter(batch)
	}
	for {
		n, err := d.tun.Read(bufs, sizes, bufOffset)
		pols := *d.spd.Load()
		for i := range n {
			if o, nh := d.classify(pols, bufs[i][bufOffset:bufOffset+sizes[i]]); o != nil {
				if o != out.sa {
					d.flush(&out)
					out.sa = o
				}
				out.seals = append(out.seals, esp.Sealing{Buf: bufs[i], Off: bufOffset, N: sizes[i], NextHeader: nh})
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

// sendQueue collects the packets of one outbound SA until they are flushed.
type sendQueue struct {
	sa    *outSA
	seals []esp.Sealing // payloads to seal
	pkts  [][]byte      // the ESP packets that came out
	raw   *rawWriter    // nil without Options.RawESP
}

// flush seals the queued payloads and sends them: raw ESP with sendmmsg, ESP in UDP in
// batches of the Bind's BatchSize.
func (d *Datapath) flush(q *sendQueue) {
	if len(q.seals) == 0 {
		return
	}
	o := q.sa
	o.esp.SealBatch(q.seals)
	for i := range q.seals {
		switch err := q.seals[i].Err; {
		case err == nil:
			q.pkts = append(q.pkts, q.seals[i].Pkt)
		case errors.Is(err, esp.ErrSeqOverflow), errors.Is(err, esp.ErrHardLifetime):
			d.drops.inc(DropExpired)
		default:
			d.drops.inc(DropTooBig)
		}
	}
	clear(q.seals)
	q.seals = q.seals[:0]
	if len(q.pkts) == 0 {
		return
	}
	if o.raw != nil {
		d.drops.add(DropSend, uint64(q.raw.write(q.pkts, o.raw)))
	} else {
		for pkts := q.pkts; len(pkts) > 0; {
			n := min(len(pkts), d.bindBatch)
			if err := d.opts.Bind.SendESPBatch(pkts[:n], o.local, o.remote); err != nil {
				d.drops.add(DropSend, uint64(n))
			}
			pkts = pkts[n:]
		}
	}
	clear(q.pkts)
	q.pkts = q.pkts[:0]
}

// classify finds the outbound SA for the inner packet and its ESP next header, or returns
// nil after counting why the packet is dropped (and asking for an SA when a policy has none).
func (d *Datapath) classify(pols spd, inner []byte) (*outSA, uint8) {
	f, ok := parseFlow(inner)
	if !ok {
		d.drops.inc(DropMalformed)
		return nil, 0
	}
	pol := pols.lookup(&f)
	if pol == nil {
		d.drops.inc(DropNoPolicy)
		return nil, 0
	}
	o := d.sad.outbound(pol.p.ReqID)
	if o == nil {
		d.drops.inc(DropNoSA)
		d.acquire(pol, &f)
		return nil, 0
	}
	if !carries(o.cfg.Selectors, &f, outboundMatch) {
		// The tunnel's policy covers the flow, but the peer narrowed the SA to less.
		d.drops.inc(DropSelector)
		return nil, 0
	}
	if inner[0]>>4 == 6 {
		return o, esp.NextHeaderIPv6
	}
	return o, esp.NextHeaderIPv4
}

// acquire asks the control plane for an SA for packet f, at most once per policy per
// acquireInterval. It never blocks the packet path: with the event queue full the request
// is dropped and the next packet retries after the interval.
func (d *Datapath) acquire(p *policy, f *flow) {
	now := time.Now().UnixNano()
	last := p.lastAcquire.Load()
	if now-last < int64(acquireInterval) || !p.lastAcquire.CompareAndSwap(last, now) {
		return
	}
	select {
	case d.events <- datapath.Event{Kind: datapath.EventAcquire, ReqID: p.p.ReqID, Selector: p.p.Selector, PacketSrc: f.src, PacketDst: f.dst}:
	default:
	}
}
