package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// maxOutboundSAs is the size of sa_out_stats; index 0 means "no SA".
const maxOutboundSAs = 2 * MaxPolicies

// inboundSAs records which inbound SA holds each slot of sa_in_slots (slot = SPI % size); SAs
// whose slot is taken are kept in sa_in_stats. Guarded by Loader.mu.
type inboundSAs struct {
	bySlot map[uint32]uint32 // slot -> SPI
}

// outboundSAs maps outbound SPIs to their index in sa_out_stats. Guarded by Loader.mu.
type outboundSAs struct {
	index map[uint32]uint32 // SPI -> index
	used  [maxOutboundSAs]bool
}

// AddSA starts counting the SA with the given SPI (host order) from zero; an SA that is
// already counted keeps its counters. Inbound SPIs become known to the XDP SPI filter.
// SetPolicy adds the outbound SA it names by itself.
func (l *Loader) AddSA(d Direction, spi uint32) error {
	switch d {
	case Inbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.addInbound(spi)
	case Outbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		_, err := l.outboundIndex(spi)
		return err
	}
	return fmt.Errorf("direction %d: want Inbound or Outbound", d)
}

// addInbound puts spi into its slot of sa_in_slots if that is free and spi is not already in
// sa_in_stats, and into sa_in_stats otherwise.
func (l *Loader) addInbound(spi uint32) error {
	t := &l.inSAs
	slot := spi % l.xdp.SaInSlots.MaxEntries()
	owner, taken := t.bySlot[slot]
	if taken && owner == spi {
		return nil
	}
	var perCPU []tcCounter
	if !taken {
		err := l.xdp.SaInStats.Lookup(spi, &perCPU)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			vals := make([]xdpSaSlot, ebpf.MustPossibleCPU())
			for i := range vals {
				vals[i] = xdpSaSlot{Spi: spi, Used: 1}
			}
			if err := l.xdp.SaInSlots.Update(slot, vals, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("add inbound SA %#08x: write slot %d: %w", spi, slot, err)
			}
			if t.bySlot == nil {
				t.bySlot = make(map[uint32]uint32)
			}
			t.bySlot[slot] = spi
			return nil
		case err != nil:
			return fmt.Errorf("add inbound SA %#08x: %w", spi, err)
		}
		return nil // counted in sa_in_stats since its slot was taken
	}
	zero := make([]tcCounter, ebpf.MustPossibleCPU())
	err := l.xdp.SaInStats.Update(spi, zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("add inbound SA %#08x: %w", spi, err)
	}
	return nil
}

// outboundIndex returns the index of spi, allocating and zeroing one if needed.
func (l *Loader) outboundIndex(spi uint32) (uint32, error) {
	t := &l.outSAs
	if i, ok := t.index[spi]; ok {
		return i, nil
	}
	for i := uint32(1); i < maxOutboundSAs; i++ {
		if t.used[i] {
			continue
		}
		zero := make([]tcCounter, ebpf.MustPossibleCPU())
		if err := l.tc.SaOutStats.Update(i, zero, ebpf.UpdateAny); err != nil {
			return 0, fmt.Errorf("add outbound SA %#08x: zero index %d: %w", spi, i, err)
		}
		if t.index == nil {
			t.index = make(map[uint32]uint32)
		}
		t.used[i] = true
		t.index[spi] = i
		return i, nil
	}
	return 0, fmt.Errorf("add outbound SA %#08x: all %d counters in use", spi, maxOutboundSAs-1)
}

// DeleteSA stops counting an SA; deleting an unknown SA is not an error. Policies still naming
// a deleted outbound SA keep working but no longer count per SA.
func (l *Loader) DeleteSA(d Direction, spi uint32) error {
	switch d {
	case Inbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		slot := spi % l.xdp.SaInSlots.MaxEntries()
		if owner, ok := l.inSAs.bySlot[slot]; ok && owner == spi {
			zero := make([]xdpSaSlot, ebpf.MustPossibleCPU())
			if err := l.xdp.SaInSlots.Update(slot, zero, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("delete inbound SA %#08x: clear slot %d: %w", spi, slot, err)
			}
			delete(l.inSAs.bySlot, slot)
			return nil
		}
		if err := l.xdp.SaInStats.Delete(spi); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete inbound SA %#08x: %w", spi, err)
		}
		return nil
	case Outbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		i, ok := l.outSAs.index[spi]
		if !ok {
			return nil
		}
		delete(l.outSAs.index, spi)
		rewritten := false
		for slot, p := range l.policies.bySlot {
			if p != nil && p.OutSPI == spi {
				if err := l.writePolicy(slot, p); err != nil {
					return err
				}
				rewritten = true
			}
		}
		if rewritten {
			// Cached flows keep a policy's SA index until the generation changes; the
			// index may go to another SA next.
			if err := l.newPolicyGeneration(); err != nil {
				return err
			}
		}
		l.outSAs.used[i] = false
		return nil
	}
	return fmt.Errorf("direction %d: want Inbound or Outbound", d)
}

// SACounters returns the counters of every SA added in direction d, keyed by SPI.
func (l *Loader) SACounters(d Direction) (map[uint32]Counter, error) {
	out := make(map[uint32]Counter)
	var perCPU []tcCounter
	sum := func(spi uint32) {
		var c Counter
		for _, v := range perCPU {
			c.Packets += v.Packets
			c.Bytes += v.Bytes
		}
		out[spi] = c
	}
	switch d {
	case Inbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		var slotPerCPU []xdpSaSlot
		for slot, spi := range l.inSAs.bySlot {
			if err := l.xdp.SaInSlots.Lookup(slot, &slotPerCPU); err != nil {
				return nil, fmt.Errorf("read inbound SA %#08x counters: %w", spi, err)
			}
			var c Counter
			for _, v := range slotPerCPU {
				c.Packets += v.C.Packets
				c.Bytes += v.C.Bytes
			}
			out[spi] = c
		}
		var spi uint32
		iter := l.xdp.SaInStats.Iterate()
		for iter.Next(&spi, &perCPU) {
			sum(spi)
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("read inbound SA counters: %w", err)
		}
	case Outbound:
		l.mu.Lock()
		defer l.mu.Unlock()
		for spi, i := range l.outSAs.index {
			if err := l.tc.SaOutStats.Lookup(i, &perCPU); err != nil {
				return nil, fmt.Errorf("read outbound SA %#08x counters: %w", spi, err)
			}
			sum(spi)
		}
	default:
		return nil, fmt.Errorf("direction %d: want Inbound or Outbound", d)
	}
	return out, nil
}
