package userspace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

func randomUint32() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// AddSAPair implements datapath.Datapath: both SAs are validated and keyed before either is
// installed. The outbound SA becomes the one its reqid's policies use, at once for a new
// tunnel, on a rekey once the peer has the pair (switch.go); the old SA stays installed
// until deleted, so packets in flight on it still open.
func (d *Datapath) AddSAPair(ctx context.Context, p datapath.SAPair) error {
	now := time.Now()
	in, err := esp.NewSA(p.In, esp.Inbound, now)
	if err != nil {
		return fmt.Errorf("userspace: inbound SA: %w", err)
	}
	out, err := esp.NewSA(p.Out, esp.Outbound, now)
	if err != nil {
		return fmt.Errorf("userspace: outbound SA: %w", err)
	}
	o := &outSA{cfg: p.Out, esp: out}
	if p.Out.EncapSrcPort != 0 {
		if d.opts.Bind == nil {
			return fmt.Errorf("userspace: outbound SA %#08x: UDP encapsulation %d->%d without a Bind", p.Out.SPI, p.Out.EncapSrcPort, p.Out.EncapDstPort)
		}
		o.local = netip.AddrPortFrom(p.Out.Src, p.Out.EncapSrcPort)
		o.remote = netip.AddrPortFrom(p.Out.Dst, p.Out.EncapDstPort)
	} else {
		if d.raw == nil {
			return fmt.Errorf("userspace: outbound SA %#08x: raw ESP to %v needs Options.RawESP", p.Out.SPI, p.Out.Dst)
		}
		if !p.Out.Dst.Is4() || !p.Out.Src.Is4() {
			return fmt.Errorf("userspace: outbound SA %#08x: raw ESP addresses %v->%v, expected IPv4", p.Out.SPI, p.Out.Src, p.Out.Dst)
		}
		o.raw = newRawDest(p.Out.Src, p.Out.Dst)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.sad.in.load(p.In.SPI); dup {
		return fmt.Errorf("userspace: inbound SA SPI %#08x: already installed", p.In.SPI)
	}
	if d.sad.findOut(p.Out.Dst, p.Out.SPI) != nil {
		return fmt.Errorf("userspace: outbound SA %v SPI %#08x: already installed", p.Out.Dst, p.Out.SPI)
	}
	i := &inSA{cfg: p.In, esp: in}
	d.armSwitch(i, o)
	d.sad.addOut(o) // before i: a packet on i may switch to o at once
	d.sad.in.store(p.In.SPI, i)
	delete(d.reserved, p.In.SPI)
	return nil
}

// DeleteSA implements datapath.Datapath. It also releases an inbound SPI that AllocSPI
// reserved for dst and no SA was installed under, so a failed negotiation frees it.
func (d *Datapath) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if local, ok := d.reserved[spi]; ok && local == dst.Unmap() {
		delete(d.reserved, spi)
	}
	d.removeSA(dst, spi)
	return nil
}

// removeSA deletes the inbound or outbound SA (dst, spi); d.mu must be held.
func (d *Datapath) removeSA(dst netip.Addr, spi uint32) bool {
	if in, ok := d.sad.in.load(spi); ok && in.cfg.Dst == dst {
		d.sad.in.delete(spi)
		delete(d.reserved, spi)
		return true
	}
	if o := d.sad.findOut(dst, spi); o != nil {
		d.sad.removeOut(o, func(rest []*outSA) { d.outboundRemoved(o, rest) })
		return true
	}
	return false
}

// Counters implements datapath.Datapath.
func (d *Datapath) Counters(dst netip.Addr, spi uint32) (datapath.Counters, error) {
	if in, ok := d.sad.in.load(spi); ok && in.cfg.Dst == dst {
		return in.esp.Counters(), nil
	}
	if o := d.sad.findOut(dst, spi); o != nil {
		return o.esp.Counters(), nil
	}
	return datapath.Counters{}, fmt.Errorf("userspace: SA dst %v SPI %#08x: %w", dst, spi, ErrNoSA)
}
