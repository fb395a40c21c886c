package userspace

import (
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// inSA is an installed inbound SA.
type inSA struct {
	cfg      datapath.SA
	esp      *esp.SA
	softSent atomic.Bool
}

// outSA is an installed outbound SA with its precomputed destination.
type outSA struct {
	cfg           datapath.SA
	esp           *esp.SA
	softSent      atomic.Bool
	local, remote netip.AddrPort // ESP in UDP
	raw           *rawDest       // raw ESP
}

// policy is an installed SPD entry.
type policy struct {
	p           datapath.Policy
	lastAcquire atomic.Int64 // unix nanoseconds
}

// tables is an immutable snapshot of the SAD and SPD: the packet path loads it with one
// atomic read; writers copy, modify and swap under Datapath.mu.
type tables struct {
	in       map[uint32]*inSA    // by SPI
	out      map[uint32][]*outSA // by reqid, oldest first: the newest carries traffic
	policies []*policy           // by ascending priority value
}

func (t *tables) clone() *tables {
	out := make(map[uint32][]*outSA, len(t.out))
	for k, v := range t.out {
		out[k] = slices.Clone(v)
	}
	return &tables{in: maps.Clone(t.in), out: out, policies: slices.Clone(t.policies)}
}

// lookupPolicy returns the first policy whose selector matches an outbound flow.
func (t *tables) lookupPolicy(f *flow) *policy {
	for _, p := range t.policies {
		if outboundMatch(&p.p.Selector, f) {
			return p
		}
	}
	return nil
}

// outbound returns the SA that carries traffic for reqid, or nil.
func (t *tables) outbound(reqid uint32) *outSA {
	if l := t.out[reqid]; len(l) > 0 {
		return l[len(l)-1]
	}
	return nil
}

func (t *tables) findOut(dst netip.Addr, spi uint32) (reqid uint32, i int, ok bool) {
	for r, l := range t.out {
		for i, o := range l {
			if o.cfg.SPI == spi && o.cfg.Dst == dst {
				return r, i, true
			}
		}
	}
	return 0, 0, false
}
