package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// peerSlot returns the slot of peer_slots for an address in kernel order: its last byte.
func peerSlot(k uint32) uint32 { return k >> 24 }

// SetPeers replaces the set of IKE peers the XDP filter lets through. A peer goes into the slot
// of its address's last byte, or into the peers hash when another peer holds that slot. New
// entries are written before stale ones are removed, so a peer that stays is never dropped.
func (l *Loader) SetPeers(peers []netip.Addr) error {
	keys := make([]uint32, 0, len(peers))
	for _, a := range peers {
		if !a.Is4() {
			return fmt.Errorf("peer %v: want an IPv4 address", a)
		}
		keys = append(keys, addrToKernel(a))
	}
	slices.Sort(keys) // the same set always gets the same layout
	keys = slices.Compact(keys)
	slots := make(map[uint32]uint32, len(keys))
	hashed := make(map[uint32]bool)
	for _, k := range keys {
		if _, taken := slots[peerSlot(k)]; taken {
			hashed[k] = true
		} else {
			slots[peerSlot(k)] = k
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for slot, k := range slots {
		if old, ok := l.peerSlots[slot]; ok && old == k {
			continue
		}
		if err := l.xdp.PeerSlots.Update(slot, xdpPeerSlot{Addr: k, Used: 1}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add peer %v: write slot %d: %w", addrFromKernel(k), slot, err)
		}
	}
	for k := range hashed {
		if err := l.xdp.Peers.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add peer %v: %w", addrFromKernel(k), err)
		}
	}
	for slot, k := range l.peerSlots {
		if _, ok := slots[slot]; ok {
			continue
		}
		if err := l.xdp.PeerSlots.Update(slot, xdpPeerSlot{}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("delete peer %v: clear slot %d: %w", addrFromKernel(k), slot, err)
		}
	}
	l.peerSlots = slots
	var k uint32
	var v uint8
	var stale []uint32
	iter := l.xdp.Peers.Iterate()
	for iter.Next(&k, &v) {
		if !hashed[k] {
			stale = append(stale, k)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list peers: %w", err)
	}
	for _, k := range stale {
		if err := l.xdp.Peers.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete peer %v: %w", addrFromKernel(k), err)
		}
	}
	return nil
}
