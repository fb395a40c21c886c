package userspace

import (
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// inSA is an installed inbound SA.
type inSA struct {
	cfg      datapath.SA
	esp      *esp.SA
	softSent atomic.Bool
	// pending is the outbound SA installed with this one while it waits to carry its
	// tunnel (switch.go); nil if it carried it from the start.
	pending *outSA
}

// outSA is an installed outbound SA with its precomputed destination.
type outSA struct {
	cfg           datapath.SA
	esp           *esp.SA
	softSent      atomic.Bool
	local, remote netip.AddrPort // ESP in UDP
	raw           *rawDest       // raw ESP
	carrying      atomic.Bool    // may carry the tunnel's traffic (switch.go)
	timeout       *time.Timer    // switches to it while it waits; written and stopped under Datapath.mu
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
	out      map[uint32][]*outSA // by reqid, oldest first: the newest carrying one carries traffic
	outReqID map[outKey]uint32   // the reqid of each outbound SA: counters are read per SA
	policies []*policy           // by ascending priority value
}

// outKey names an outbound SA.
type outKey struct {
	dst netip.Addr
	spi uint32
}

func (t *tables) clone() *tables {
	out := make(map[uint32][]*outSA, len(t.out))
	for k, v := range t.out {
		out[k] = slices.Clone(v)
	}
	return &tables{in: maps.Clone(t.in), out: out, outReqID: maps.Clone(t.outReqID), policies: slices.Clone(t.policies)}
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

// outbound returns the SA that carries traffic for reqid, or nil: the newest one that may.
func (t *tables) outbound(reqid uint32) *outSA {
	l := t.out[reqid]
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].carrying.Load() {
			return l[i]
		}
	}
	return nil
}

func (t *tables) findOut(dst netip.Addr, spi uint32) (reqid uint32, i int, ok bool) {
	reqid, ok = t.outReqID[outKey{dst, spi}]
	if !ok {
		return 0, 0, false
	}
	i = slices.IndexFunc(t.out[reqid], func(o *outSA) bool { return o.cfg.SPI == spi && o.cfg.Dst == dst })
	return reqid, i, i >= 0
}

// addOut installs o as reqid's newest outbound SA.
func (t *tables) addOut(reqid uint32, o *outSA) {
	t.out[reqid] = append(t.out[reqid], o)
	t.outReqID[outKey{o.cfg.Dst, o.cfg.SPI}] = reqid
}

// removeOut deletes the i-th outbound SA of reqid.
func (t *tables) removeOut(reqid uint32, i int) {
	o := t.out[reqid][i]
	delete(t.outReqID, outKey{o.cfg.Dst, o.cfg.SPI})
	t.out[reqid] = slices.Delete(t.out[reqid], i, i+1)
	if len(t.out[reqid]) == 0 {
		delete(t.out, reqid)
	}
}
