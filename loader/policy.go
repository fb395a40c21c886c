package loader

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

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
	slots  map[uint32]int                // policy id -> slot
	remote map[netip.Prefix]tcCandidates // what remote_prefixes holds
	gen    uint32                        // what policy_gen holds
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
	if err := l.syncPrefixes(); err != nil {
		return err
	}
	return l.newPolicyGeneration()
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
	return l.newPolicyGeneration()
}

// newPolicyGeneration makes the tc programs classify every flow again; it must follow every
// write to the policies map: the programs cache each flow's policy slot and a copy of the
// policy per policy generation.
func (l *Loader) newPolicyGeneration() error {
	l.policies.gen++
	if err := l.tc.PolicyGen.Set(l.policies.gen); err != nil {
		return fmt.Errorf("set policy generation %d: %w", l.policies.gen, err)
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

// candidateLists maps every remote selector prefix to the slots of the policies whose remote
// prefix contains it, by ascending priority (then slot, so the order is stable). Prefixes
// covering one address form a chain, so the kernel's longest-prefix match then yields every
// policy whose remote prefix contains the address, best first.
func candidateLists(bySlot *[MaxPolicies]*Policy) map[netip.Prefix]tcCandidates {
	lists := make(map[netip.Prefix]tcCandidates)
	for _, p := range bySlot {
		if p == nil {
			continue
		}
		prefix := p.Selector.Remote
		if _, ok := lists[prefix]; ok {
			continue
		}
		var slots []int
		for slot, q := range bySlot {
			if q != nil && q.Selector.Remote.Bits() <= prefix.Bits() && q.Selector.Remote.Contains(prefix.Addr()) {
				slots = append(slots, slot)
			}
		}
		slices.SortStableFunc(slots, func(a, b int) int { return cmp.Compare(bySlot[a].Priority, bySlot[b].Priority) })
		var c tcCandidates
		for i, slot := range slots {
			c.Slot[i] = uint8(slot)
		}
		c.N = uint32(len(slots))
		lists[prefix] = c
	}
	return lists
}

// syncPrefixes brings the remote-prefix LPM trie in line with the policy table. Entries are
// written before stale ones are removed, so a packet never misses a policy that stays.
func (l *Loader) syncPrefixes() error {
	t := &l.policies
	remote := candidateLists(&t.bySlot)
	if err := syncTrie(l.tc.RemotePrefixes, t.remote, remote); err != nil {
		return fmt.Errorf("remote prefixes: %w", err)
	}
	t.remote = remote
	return nil
}

func syncTrie(m *ebpf.Map, old, new map[netip.Prefix]tcCandidates) error {
	for prefix, c := range new {
		if o, ok := old[prefix]; ok && o == c {
			continue
		}
		if err := m.Update(lpmKey(prefix), c, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write %v (%d policies): %w", prefix, c.N, err)
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
