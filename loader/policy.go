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
	bySlot  [MaxPolicies]*Policy
	slots   map[uint32]int              // policy id -> slot
	remotes map[netip.Prefix]*remoteSet // remote selector prefix -> its policies and lists
	ids     []uint32                    // free remote ids below nextID
	nextID  uint32
	locals  int          // entries in local_prefixes
	lens    tcPrefixLens // what the current entry of remote_lens holds
	lensCur uint32       // what remote_lens_cur holds
	gen     uint32       // what policy_gen holds
}

// remoteSet is one remote selector prefix: the policies that have it, what remote_prefixes
// holds for it (once written) and what local_prefixes holds under its id.
type remoteSet struct {
	slots   []int
	value   tcRemote
	written bool
	lists   map[netip.Prefix]tcCandidates
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
	slot, ok := t.slots[p.ID]
	if !ok {
		slot = slices.Index(t.bySlot[:], nil)
		if slot < 0 {
			return fmt.Errorf("policy %d: %w (all %d in use)", p.ID, errNoSlot, MaxPolicies)
		}
	}
	if p.OutSPI != 0 {
		if _, err := l.outboundIndex(p.OutSPI); err != nil {
			return fmt.Errorf("policy %d: %w", p.ID, err)
		}
	}
	if err := l.applyPolicy(slot, &p, !ok); err != nil {
		return fmt.Errorf("policy %d: %w", p.ID, err)
	}
	return nil
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
	if err := l.applyPolicy(slot, nil, false); err != nil {
		return fmt.Errorf("policy %d: %w", id, err)
	}
	return nil
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
		Id:       p.ID,
		Priority: p.Priority,
		SaOut:    l.outSAs.index[p.OutSPI],
		Lport:    p.Selector.LocalPort,
		Rport:    p.Selector.RemotePort,
		Mss:      p.MSS,
		Proto:    p.Selector.Proto,
		Flags:    policyValid,
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

// applyPolicy puts p into slot (nil: empties it) and rewrites the classification maps where
// the change shows: under every remote prefix that the old or the new remote selector
// contains. The new lists are computed before anything is written, so a policy that does not
// fit leaves the maps as they were. Writes go in an order in which no packet misses a policy
// that stays: a slot is written before lists name it and cleared after; lists are written
// before a remote prefix leads to them and removed after it no longer does.
func (l *Loader) applyPolicy(slot int, p *Policy, isNew bool) error {
	t := &l.policies
	old := t.bySlot[slot]
	if old != nil && p != nil && old.Selector == p.Selector && old.Priority == p.Priority {
		// The lists stay as they are (an SA coming up or going, a new MSS).
		if err := l.writePolicy(slot, p); err != nil {
			return err
		}
		t.bySlot[slot] = p
		return l.newPolicyGeneration()
	}
	t.place(slot, p)
	changed := make(map[netip.Prefix]map[netip.Prefix]tcCandidates)
	locals := t.locals
	for prefix, rs := range t.remotes {
		if !(old != nil && contains(old.Selector.Remote, prefix)) && !(p != nil && contains(p.Selector.Remote, prefix)) {
			continue
		}
		var lists map[netip.Prefix]tcCandidates
		if len(rs.slots) > 0 {
			var err error
			if lists, err = t.candidateLists(prefix); err != nil {
				t.place(slot, old)
				return err
			}
		}
		changed[prefix] = lists
		locals += len(lists) - len(rs.lists)
	}
	if max := int(l.tc.LocalPrefixes.MaxEntries()); locals > max {
		t.place(slot, old)
		return fmt.Errorf("the policies' selectors need %d remote and local prefix pairs, at most %d fit", locals, max)
	}

	if p != nil {
		if isNew {
			if err := l.zeroPolicyCounters(slot); err != nil {
				return err
			}
		}
		if err := l.writePolicy(slot, p); err != nil {
			return err
		}
		if t.slots == nil {
			t.slots = make(map[uint32]int)
		}
		t.slots[p.ID] = slot
	}
	for prefix, lists := range changed {
		if lists == nil {
			continue
		}
		if err := l.writeRemote(prefix, t.remotes[prefix], lists); err != nil {
			return fmt.Errorf("remote prefix %v: %w", prefix, err)
		}
	}
	if err := l.writeRemoteLens(); err != nil {
		return err
	}
	for prefix, lists := range changed {
		if lists != nil {
			continue
		}
		if err := l.deleteRemote(prefix, t.remotes[prefix]); err != nil {
			return fmt.Errorf("remote prefix %v: %w", prefix, err)
		}
	}
	if p == nil {
		delete(t.slots, old.ID)
		if err := l.tc.Policies.Update(uint32(slot), tcPolicy{}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("clear slot %d: %w", slot, err)
		}
	}
	return l.newPolicyGeneration()
}

// contains tells whether prefix outer contains prefix inner.
func contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// place puts p into slot in the shadow table only (nil: empties it).
func (t *policyTable) place(slot int, p *Policy) {
	if q := t.bySlot[slot]; q != nil {
		rs := t.remotes[q.Selector.Remote]
		rs.slots = slices.DeleteFunc(rs.slots, func(s int) bool { return s == slot })
		if len(rs.slots) == 0 && !rs.written {
			delete(t.remotes, q.Selector.Remote)
		}
	}
	t.bySlot[slot] = p
	if p == nil {
		return
	}
	if t.remotes == nil {
		t.remotes = make(map[netip.Prefix]*remoteSet)
	}
	rs := t.remotes[p.Selector.Remote]
	if rs == nil {
		rs = &remoteSet{}
		t.remotes[p.Selector.Remote] = rs
	}
	rs.slots = append(rs.slots, slot)
}

// supernets calls f with prefix and every shorter prefix containing it, longest first.
func supernets(prefix netip.Prefix, f func(netip.Prefix)) {
	for bits := prefix.Bits(); bits >= 0; bits-- {
		f(netip.PrefixFrom(prefix.Addr(), bits).Masked())
	}
}

// candidateLists returns what local_prefixes must hold under the remote prefix remote: for
// every local prefix of the policies whose remote prefix contains remote, the policies whose
// local prefix contains it, by ascending priority (then slot, so the order is stable), up to
// and including the first that leaves nothing to the protocol and port checks.
func (t *policyTable) candidateLists(remote netip.Prefix) (map[netip.Prefix]tcCandidates, error) {
	byLocal := make(map[netip.Prefix][]int)
	supernets(remote, func(r netip.Prefix) {
		if rs := t.remotes[r]; rs != nil {
			for _, slot := range rs.slots {
				local := t.bySlot[slot].Selector.Local
				byLocal[local] = append(byLocal[local], slot)
			}
		}
	})
	lists := make(map[netip.Prefix]tcCandidates, len(byLocal))
	for local := range byLocal {
		var slots []int
		supernets(local, func(l netip.Prefix) { slots = append(slots, byLocal[l]...) })
		slices.SortFunc(slots, func(a, b int) int {
			return cmp.Or(cmp.Compare(t.bySlot[a].Priority, t.bySlot[b].Priority), cmp.Compare(a, b))
		})
		if i := slices.IndexFunc(slots, func(s int) bool {
			sel := t.bySlot[s].Selector
			return sel.Proto == 0 && sel.LocalPort == 0 && sel.RemotePort == 0
		}); i >= 0 {
			slots = slots[:i+1]
		}
		var c tcCandidates
		if len(slots) > len(c.Slot) {
			ids := make([]uint32, len(slots))
			for i, s := range slots {
				ids[i] = t.bySlot[s].ID
			}
			return nil, fmt.Errorf("remote %v, local %v: policies %v overlap with protocol or port selectors, at most %d fit in front of one without",
				remote, local, ids, len(c.Slot))
		}
		for i, s := range slots {
			c.Slot[i] = uint16(s)
		}
		c.N = uint32(len(slots))
		lists[local] = c
	}
	return lists, nil
}

// prefixLens returns the distinct lengths of prefixes, longest first.
func prefixLens[V any](prefixes map[netip.Prefix]V, keep func(V) bool) tcPrefixLens {
	var seen [33]bool
	for prefix, v := range prefixes {
		if keep(v) {
			seen[prefix.Bits()] = true
		}
	}
	var lens tcPrefixLens
	for bits := 32; bits >= 0; bits-- {
		if seen[bits] {
			lens.Len[lens.N] = uint8(bits)
			lens.N++
		}
	}
	return lens
}

// writeRemote makes remote_prefixes and local_prefixes hold lists for the remote prefix of
// rs: the lists first, then the prefix that leads to them, then the removal of stale lists.
func (l *Loader) writeRemote(prefix netip.Prefix, rs *remoteSet, lists map[netip.Prefix]tcCandidates) error {
	t := &l.policies
	if !rs.written && rs.lists == nil {
		if n := len(t.ids); n > 0 {
			rs.value.Id, t.ids = t.ids[n-1], t.ids[:n-1]
		} else {
			rs.value.Id, t.nextID = t.nextID, t.nextID+1
		}
		rs.lists = make(map[netip.Prefix]tcCandidates)
	}
	for local, c := range lists {
		if o, ok := rs.lists[local]; ok && o == c {
			continue
		}
		if err := l.tc.LocalPrefixes.Update(localKey(rs.value.Id, local), c, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write local %v (%d policies): %w", local, c.N, err)
		}
		if _, ok := rs.lists[local]; !ok {
			t.locals++
		}
		rs.lists[local] = c
	}
	value := tcRemote{Id: rs.value.Id, Locals: prefixLens(lists, func(tcCandidates) bool { return true })}
	if !rs.written || value != rs.value {
		if err := l.tc.RemotePrefixes.Update(remoteKey(prefix), value, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		rs.value, rs.written = value, true
	}
	for local := range rs.lists {
		if _, ok := lists[local]; !ok {
			if err := l.deleteLocal(rs, local); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeRemoteLens brings remote_lens in line with the remote prefixes that have policies: it
// writes the entry not in use and then switches to it.
func (l *Loader) writeRemoteLens() error {
	t := &l.policies
	lens := prefixLens(t.remotes, func(rs *remoteSet) bool { return len(rs.slots) > 0 })
	if lens == t.lens {
		return nil
	}
	next := t.lensCur ^ 1
	if err := l.tc.RemoteLens.Update(next, lens, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write remote prefix lengths: %w", err)
	}
	if err := l.tc.RemoteLensCur.Set(next); err != nil {
		return fmt.Errorf("switch remote prefix lengths: %w", err)
	}
	t.lens, t.lensCur = lens, next
	return nil
}

// deleteRemote removes the remote prefix of rs, which has no policies left, and its lists.
func (l *Loader) deleteRemote(prefix netip.Prefix, rs *remoteSet) error {
	t := &l.policies
	if rs.written {
		if err := l.tc.RemotePrefixes.Delete(remoteKey(prefix)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	for local := range rs.lists {
		if err := l.deleteLocal(rs, local); err != nil {
			return err
		}
	}
	if rs.written || rs.lists != nil {
		t.ids = append(t.ids, rs.value.Id)
	}
	delete(t.remotes, prefix)
	return nil
}

func (l *Loader) deleteLocal(rs *remoteSet, local netip.Prefix) error {
	if err := l.tc.LocalPrefixes.Delete(localKey(rs.value.Id, local)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete local %v: %w", local, err)
	}
	delete(rs.lists, local)
	l.policies.locals--
	return nil
}

func remoteKey(p netip.Prefix) tcRemoteKey {
	return tcRemoteKey{Addr: addrToKernel(p.Addr()), Len: uint32(p.Bits())}
}

func localKey(remoteID uint32, local netip.Prefix) tcLocalKey {
	return tcLocalKey{RemoteId: remoteID, Addr: addrToKernel(local.Addr()), Len: uint32(local.Bits())}
}
