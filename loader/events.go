package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/cilium/ebpf/ringbuf"
)

// Flow5 is the 5-tuple of a packet as it appeared on the wire. Ports are zero for protocols
// without ports, non-first fragments and truncated transport headers.
type Flow5 struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// Event reports traffic that matched a policy whose SA is down: the control plane should
// negotiate it (start: on-demand). Events of one policy are at most one per
// Options.EventInterval.
type Event struct {
	PolicyID uint32
	Flow     Flow5
}

// Events delivers interesting-traffic events until Close, which closes the channel. Events
// that arrive while the channel is full are dropped; the tc program sends them again after
// the event interval while the traffic continues.
func (l *Loader) Events() <-chan Event { return l.events }

func (l *Loader) readEvents() {
	defer close(l.done)
	defer close(l.events)
	var rec ringbuf.Record
	for {
		if err := l.ring.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		var ev tcEvent
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
			continue // a record shorter than struct event cannot come from bpf/tc.c
		}
		select {
		case l.events <- Event{PolicyID: ev.PolicyId, Flow: flowFromKernel(ev.Flow)}:
		default:
		}
	}
}

// flowFromKernel converts a struct flow (addresses in network order, ports in host order).
func flowFromKernel(f tcFlow) Flow5 {
	return Flow5{
		Src:     addrFromKernel(f.Saddr),
		Dst:     addrFromKernel(f.Daddr),
		Proto:   f.Proto,
		SrcPort: f.Sport,
		DstPort: f.Dport,
	}
}

// addrFromKernel converts an IPv4 address the kernel stored in network order in a __u32.
func addrFromKernel(a uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}

// addrToKernel is the inverse of addrFromKernel.
func addrToKernel(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}
