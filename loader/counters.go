package loader

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
)

// Counter is a packet and byte count. Bytes are IP bytes (outer IP for ESP, inner for policies).
type Counter struct {
	Packets, Bytes uint64
}

// PolicyCounters is the traffic of one policy, summed over all CPUs.
type PolicyCounters struct {
	Out          Counter // egress traffic sent while the SA was up
	In           Counter // ingress (decrypted) traffic
	SADownDrops  uint64  // egress packets dropped because the SA was down
	SADownPasses uint64  // egress packets passed in the clear while the SA was down (ActionPass)
	MSSRewrites  uint64  // SYN and SYN-ACK segments whose MSS option was lowered
	Events       uint64  // interesting-traffic events sent
}

// Direction is the direction of an SA.
type Direction uint8

const (
	Inbound  Direction = iota + 1 // counted by XDP; known inbound SPIs pass the SPI filter
	Outbound                      // counted by the egress tc program via Policy.OutSPI
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "in"
	case Outbound:
		return "out"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// XDPCounters count what the XDP filters saw, summed over all CPUs.
type XDPCounters struct {
	UnknownSPIDrops, UnknownSPIPasses uint64 // ESP whose SPI was not added with AddSA(Inbound)
	NonPeerDrops, NonPeerPasses       uint64 // IKE (UDP 500/4500) from addresses not in SetPeers
}

// XDPFilters switch the XDP drops off; the zero value drops both kinds of traffic.
type XDPFilters struct {
	PassUnknownSPI bool
	PassNonPeer    bool
}

// Filter bits, as in bpf/xdp.c.
const (
	filterUnknownSPI = 0x1
	filterNonPeer    = 0x2
)

func (f XDPFilters) bits() uint32 {
	var b uint32
	if !f.PassUnknownSPI {
		b |= filterUnknownSPI
	}
	if !f.PassNonPeer {
		b |= filterNonPeer
	}
	return b
}

// SetXDPFilters changes the XDP filters; it takes effect on the next packet.
func (l *Loader) SetXDPFilters(f XDPFilters) error {
	if err := l.xdp.Filters.Set(f.bits()); err != nil {
		return fmt.Errorf("set XDP filters: %w", err)
	}
	return nil
}

// PolicyCounters returns the counters of every policy, keyed by policy ID.
func (l *Loader) PolicyCounters() (map[uint32]PolicyCounters, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint32]PolicyCounters, len(l.policies.slots))
	var perCPU []tcPolicyCounters
	for id, slot := range l.policies.slots {
		if err := l.tc.PolicyStats.Lookup(uint32(slot), &perCPU); err != nil {
			return nil, fmt.Errorf("policy %d: read counters of slot %d: %w", id, slot, err)
		}
		var c PolicyCounters
		for _, v := range perCPU {
			c.Out.Packets += v.Out.Packets
			c.Out.Bytes += v.Out.Bytes
			c.In.Packets += v.In.Packets
			c.In.Bytes += v.In.Bytes
			c.SADownDrops += v.SaDownDrops
			c.SADownPasses += v.SaDownPasses
			c.MSSRewrites += v.MssRewrites
			c.Events += v.Events
		}
		out[id] = c
	}
	return out, nil
}

func (l *Loader) zeroPolicyCounters(slot int) error {
	zero := make([]tcPolicyCounters, ebpf.MustPossibleCPU())
	if err := l.tc.PolicyStats.Update(uint32(slot), zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("zero counters of slot %d: %w", slot, err)
	}
	return nil
}

// XDPCounters returns what the XDP filters counted.
func (l *Loader) XDPCounters() (XDPCounters, error) {
	var vals [4]uint64
	var perCPU []uint64
	for i := range vals {
		if err := l.xdp.XdpStats.Lookup(uint32(i), &perCPU); err != nil {
			return XDPCounters{}, fmt.Errorf("read XDP counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			vals[i] += v
		}
	}
	return XDPCounters{
		UnknownSPIDrops:  vals[0],
		UnknownSPIPasses: vals[1],
		NonPeerDrops:     vals[2],
		NonPeerPasses:    vals[3],
	}, nil
}

// Flow is the traffic of one 5-tuple that matched a policy.
type Flow struct {
	Flow5
	PolicyID uint32
	Counter
}

// TopFlows returns the n flows with the most bytes, most first (n <= 0: all). Flows are kept in
// an LRU table of Options.MaxFlows entries, so long-idle flows may be missing. While traffic
// flows, a flow may briefly miss the packets the kernel is moving from its per-CPU cache into
// that table.
func (l *Loader) TopFlows(n int) ([]Flow, error) {
	byKey := make(map[tcFlow]*Flow)
	add := func(key tcFlow, s tcFlowStats) {
		f := byKey[key]
		if f == nil {
			f = &Flow{Flow5: flowFromKernel(key)}
			byKey[key] = f
		}
		f.Packets += s.C.Packets
		f.Bytes += s.C.Bytes
		if s.C.Packets != 0 {
			f.PolicyID = s.PolicyId
		}
	}
	// The table before the cache: a count moving between them is missed, never counted twice.
	var key tcFlow
	var perCPU []tcFlowStats
	iter := l.tc.Flows.Iterate()
	for iter.Next(&key, &perCPU) {
		for _, v := range perCPU {
			add(key, v)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read flows: %w", err)
	}
	var cached []tcFlowCacheEntry
	for i := uint32(0); i < l.tc.FlowCache.MaxEntries(); i++ {
		if err := l.tc.FlowCache.Lookup(i, &cached); err != nil {
			return nil, fmt.Errorf("read flow cache slot %d: %w", i, err)
		}
		for _, e := range cached {
			if e.S.C.Packets != 0 {
				add(e.Key, e.S)
			}
		}
	}
	flows := make([]Flow, 0, len(byKey))
	for _, f := range byKey {
		flows = append(flows, *f)
	}
	slices.SortFunc(flows, func(a, b Flow) int {
		if a.Bytes != b.Bytes {
			if a.Bytes > b.Bytes {
				return -1
			}
			return 1
		}
		return a.Src.Compare(b.Src)
	})
	if n > 0 && len(flows) > n {
		flows = flows[:n]
	}
	return flows, nil
}
