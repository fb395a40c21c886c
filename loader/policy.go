package loader

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/espgw/espgw/datapath"
)

// Action is what the egress program does with traffic of a policy whose SA is down.
type Action uint8

const (
	ActionDrop Action = iota // fail closed (default)
	ActionPass               // let it through in the clear
)

// Policy is one protected-traffic selector and the state of its outbound SA, as the tc
// programs see it. Selector.Local is this side: the source on egress, the destination on
// ingress. Only IPv4 selectors are supported.
type Policy struct {
	ID       uint32
	Selector datapath.Selector
	Priority uint32 // lower wins when selectors overlap; equal priorities are resolved arbitrarily
	SAUp     bool   // the outbound SA is installed; otherwise egress traffic triggers events
	OutSPI   uint32 // outbound SA whose counters egress traffic adds to; 0 = none
	MSS      uint16 // clamp the TCP MSS of SYN and SYN-ACK to this; 0 = no clamp (see ClampMSS)
	WhenDown Action
}

// Policy flags, as in bpf/tc.c.
const (
	policyValid = 0x1
	policySAUp  = 0x2
	policyPass  = 0x4
)

// policyTable is the Go-side shadow of the policy maps: policies keep their slot (and with it
// their counters) for as long as they exist.
type policyTable struct {
	bySlot [MaxPolicies]*Policy
	slots  map[uint32]int          // policy id -> slot
	remote map[netip.Prefix]uint64 // what remote_prefixes holds
}

var errNoSlot = errors.New("no free policy slot")

func validateSelector(s datapath.Selector) error {
	for _, f := range []struct {
		name string
		p    netip.Prefix
	}{{"Local", s.Local}, {"Remote", s.Remote}} {
		if !f.p.IsValid() || !f.p.Addr().Is4() {
			return fmt.Errorf("selector %s %v: want an IPv4 prefix", f.name, f.p)
		}
		if f.p != f.p.Masked() {
			return fmt.Errorf("selector %s %v: want a masked prefix (%v)", f.name, f.p, f.p.Masked())
		}
	}
	if (s.LocalPort != 0 || s.RemotePort != 0) && s.Proto != 6 && s.Proto != 17 {
		return fmt.Errorf("selector ports %d/%d with protocol %d: ports need TCP (6) or UDP (17)",
			s.LocalPort, s.RemotePort, s.Proto)
	}
	return nil
}

// SetPolicy adds the policy or replaces the one with the same ID. A new policy starts with
// zero counters; a replaced one keeps them. A non-zero OutSPI is added as an outbound SA.
func (l *Loader) SetPolicy(p Policy) error {
	if err := validateSelector(p.Selector); err != nil {
		return fmt.Errorf("policy %d: %w", p.ID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &l.policies
	if t.slots == nil {
		t.slots = make(map[uint32]int)
	}
	slot, ok := t.slots[p.ID]
	if !ok {
		slot = -1
		for i, q := range t.bySlot {
			if q == nil {
				slot = i
				break
			}
		}
		if slot < 0 {
			return fmt.Errorf("policy %d: %w (all %d in use)", p.ID, errNoSlot, MaxPolicies)
		}
		if err := l.zeroPolicyCounters(slot); err != nil {
			return err
		}
	}
	if p.OutSPI != 0 {
		if _, err := l.outboundIndex(p.OutSPI); err != nil {
			return fmt.Errorf("policy %d: %w", p.ID, err)
		}
	}
	if err := l.writePolicy(slot, &p); err != nil {
		return err
	}
	t.slots[p.ID] = slot
	t.bySlot[slot] = &p
	return l.syncPrefixes()
}

// SetSAState marks the outbound SA of policy id up (with its SPI) or down.
func (l *Loader) SetSAState(id uint32, up bool, outSPI uint32) error {
	l.mu.Lock()
	slot, ok := l.policies.slots[id]
	var p Policy
	if ok {
		p = *l.policies.bySlot[slot]
	}
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("policy %d: %w", id, ebpf.ErrKeyNotExist)
	}
	p.SAUp, p.OutSPI = up, outSPI
	return l.SetPolicy(p)
}

// DeletePolicy removes a policy; deleting an unknown policy is not an error.
func (l *Loader) DeletePolicy(id uint32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	slot, ok := l.policies.slots[id]
	if !ok {
		return nil
	}
	delete(l.policies.slots, id)
	l.policies.bySlot[slot] = nil
	// Prefixes first, so no packet is classified into the slot while it is cleared.
	if err := l.syncPrefixes(); err != nil {
		return err
	}
	if err := l.tc.Policies.Update(uint32(slot), tcPolicy{}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("policy %d: clear slot %d: %w", id, slot, err)
	}
	return nil
}

// writePolicy writes p into its slot of the policies map.
func (l *Loader) writePolicy(slot int, p *Policy) error {
	k := tcPolicy{
		Id:        p.ID,
		Priority:  p.Priority,
		SaOut:     l.outSAs.index[p.OutSPI],
		Local:     addrToKernel(p.Selector.Local.Addr()),
		LocalMask: addrToKernel(maskOf(p.Selector.Local)),
		Lport:     p.Selector.LocalPort,
		Rport:     p.Selector.RemotePort,
		Mss:       p.MSS,
		Proto:     p.Selector.Proto,
		Flags:     policyValid,
	}
	if p.SAUp {
		k.Flags |= policySAUp
	}
	if p.WhenDown == ActionPass {
		k.Flags |= policyPass
	}
	if err := l.tc.Policies.Update(uint32(slot), k, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("policy %d: write slot %d: %w", p.ID, slot, err)
	}
	return nil
}

// maskOf returns the netmask of an IPv4 prefix as an address.
func maskOf(p netip.Prefix) netip.Addr {
	m := ^uint32(0)
	if p.Bits() < 32 {
		m = ^(m >> p.Bits())
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
}

// prefixSets maps every selector prefix on one side to the set of slots whose prefix on that
// side contains it. Prefixes covering one address form a chain, so the kernel's longest-prefix
// match then yields every policy whose prefix contains the address.
func prefixSets(bySlot *[MaxPolicies]*Policy, side func(*Policy) netip.Prefix) map[netip.Prefix]uint64 {
	sets := make(map[netip.Prefix]uint64)
	for _, p := range bySlot {
		if p != nil {
			sets[side(p)] = 0
		}
	}
	for prefix := range sets {
		for slot, p := range bySlot {
			if p != nil && side(p).Bits() <= prefix.Bits() && side(p).Contains(prefix.Addr()) {
				sets[prefix] |= 1 << slot
			}
		}
	}
	return sets
}

// syncPrefixes brings the remote-prefix LPM trie in line with the policy table. Entries are
// written before stale ones are removed, so a packet never misses a policy that stays.
func (l *Loader) syncPrefixes() error {
	t := &l.policies
	remote := prefixSets(&t.bySlot, func(p *Policy) netip.Prefix { return p.Selector.Remote })
	if err := syncTrie(l.tc.RemotePrefixes, t.remote, remote); err != nil {
		return fmt.Errorf("remote prefixes: %w", err)
	}
	t.remote = remote
	return nil
}

func syncTrie(m *ebpf.Map, old, new map[netip.Prefix]uint64) error {
	for prefix, set := range new {
		if old[prefix] == set {
			if _, ok := old[prefix]; ok {
				continue
			}
		}
		if err := m.Update(lpmKey(prefix), set, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write %v (%d policies): %w", prefix, bits.OnesCount64(set), err)
		}
	}
	for prefix := range old {
		if _, ok := new[prefix]; ok {
			continue
		}
		if err := m.Delete(lpmKey(prefix)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %v: %w", prefix, err)
		}
	}
	return nil
}

func lpmKey(p netip.Prefix) tcLpmKey {
	return tcLpmKey{Prefixlen: uint32(p.Bits()), Addr: addrToKernel(p.Addr())}
}
