package userspace

import (
	"iter"
	"net/netip"
	"slices"
	"sync"
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

// sad is the security association database. The packet path reads its maps without locks;
// writers hold Datapath.mu and change one entry at a time, so an install or a delete costs
// the same next to 10 or 1,000 tunnels (issue 13: copying the whole table per install made
// a setup quadratic).
type sad struct {
	in       syncMap[uint32, *inSA]    // by SPI
	out      syncMap[uint32, []*outSA] // by reqid, oldest first, never changed once stored: the newest carrying one carries traffic
	outReqID syncMap[outKey, uint32]   // the reqid of each outbound SA: counters are read per SA
}

// outKey names an outbound SA.
type outKey struct {
	dst netip.Addr
	spi uint32
}

// spd is an immutable snapshot of the SPD, by ascending priority value: the packet path
// loads it with one atomic read; writers copy, modify and swap under Datapath.mu. Policies
// change in batches (PolicyBatcher), so a copy per batch is cheap.
type spd []*policy

// lookup returns the first policy whose selector matches an outbound flow.
func (s spd) lookup(f *flow) *policy {
	for _, p := range s {
		if outboundMatch(&p.p.Selector, f) {
			return p
		}
	}
	return nil
}

// outbound returns the SA that carries traffic for reqid, or nil: the newest one that may.
func (s *sad) outbound(reqid uint32) *outSA {
	l, _ := s.out.load(reqid)
	return carrier(l)
}

// carrier returns the newest SA of l that may carry traffic, or nil.
func carrier(l []*outSA) *outSA {
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].carrying.Load() {
			return l[i]
		}
	}
	return nil
}

// findOut returns the outbound SA (dst, spi), or nil.
func (s *sad) findOut(dst netip.Addr, spi uint32) *outSA {
	reqid, ok := s.outReqID.load(outKey{dst, spi})
	if !ok {
		return nil
	}
	l, _ := s.out.load(reqid)
	if i := slices.IndexFunc(l, func(o *outSA) bool { return o.cfg.SPI == spi && o.cfg.Dst == dst }); i >= 0 {
		return l[i]
	}
	return nil
}

// addOut installs o as its reqid's newest outbound SA.
func (s *sad) addOut(o *outSA) {
	l, _ := s.out.load(o.cfg.ReqID)
	s.outReqID.store(outKey{o.cfg.Dst, o.cfg.SPI}, o.cfg.ReqID)
	s.out.store(o.cfg.ReqID, append(slices.Clip(l), o)) // a new array: readers may hold l
}

// removeOut deletes the outbound SA o; before, rest (its reqid's other SAs) is handed to
// handOn, which must make one of them carry if o did.
func (s *sad) removeOut(o *outSA, handOn func(rest []*outSA)) {
	l, _ := s.out.load(o.cfg.ReqID)
	rest := slices.DeleteFunc(slices.Clone(l), func(x *outSA) bool { return x == o })
	handOn(rest)
	if len(rest) == 0 {
		s.out.delete(o.cfg.ReqID)
	} else {
		s.out.store(o.cfg.ReqID, rest)
	}
	s.outReqID.delete(outKey{o.cfg.Dst, o.cfg.SPI})
}

// syncMap is a typed sync.Map: loads take no lock and stores and deletes cost O(1).
type syncMap[K comparable, V any] struct{ m sync.Map }

func (s *syncMap[K, V]) load(k K) (V, bool) {
	v, ok := s.m.Load(k)
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

func (s *syncMap[K, V]) store(k K, v V) { s.m.Store(k, v) }
func (s *syncMap[K, V]) delete(k K)     { s.m.Delete(k) }

// all yields every entry, as sync.Map.Range does.
func (s *syncMap[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		s.m.Range(func(k, v any) bool { return yield(k.(K), v.(V)) })
	}
}
