package daemon

import (
	"errors"
	"fmt"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/loader"
)

// setPolicy mirrors an installed datapath policy into the classifier. Until the tunnel's
// child SA is installed, its traffic is dropped (or passed) and reported. Each datapath
// policy gets its own classifier policy: while a tunnel's policy is replaced, the old and
// the new one (same reqid) are both in.
func (e *ebpfProgs) setPolicy(p datapath.Policy, t ike.TunnelInfo) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.ids[p]
	if !ok {
		e.nextID++
		id = e.nextID
	}
	e.policies[id] = ebpfPolicy{conn: t.Connection, tunnel: t.Tunnel, reqID: p.ReqID, sel: p.Selector, priority: p.Priority}
	if err := e.writePolicy(id); err != nil {
		delete(e.policies, id)
		return fmt.Errorf("ebpf: policy of %s/%s: %w", t.Connection, t.Tunnel, err)
	}
	e.ids[p] = id
	return nil
}

// deletePolicy removes what setPolicy installed for p.
func (e *ebpfProgs) deletePolicy(p datapath.Policy) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.ids[p]
	if !ok {
		return nil
	}
	delete(e.ids, p)
	delete(e.policies, id)
	if err := e.l.DeletePolicy(id); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

// writePolicy hands the loader policy id with its tunnel's SA state. Caller holds e.mu.
func (e *ebpfProgs) writePolicy(id uint32) error {
	p := e.policies[id]
	lp := loader.Policy{ID: id, Selector: p.sel, Priority: p.priority, WhenDown: loader.ActionDrop}
	if e.cfg.WhenSADown == config.SADownPass {
		lp.WhenDown = loader.ActionPass
	}
	if sa, up := e.sas[p.reqID]; up {
		lp.SAUp, lp.OutSPI = true, sa.spiOut
		lp.MSS = e.clampMSS(p, sa)
	}
	return e.l.SetPolicy(lp)
}

// writeTunnel rewrites the policies of the tunnel with reqID. Caller holds e.mu.
func (e *ebpfProgs) writeTunnel(reqID uint32) error {
	var errs []error
	for id, p := range e.policies {
		if p.reqID == reqID {
			errs = append(errs, e.writePolicy(id))
		}
	}
	return errors.Join(errs...)
}

// reqID returns the reqid of the tunnel whose policy has the classifier id, 0 if it is gone.
func (e *ebpfProgs) reqID(id uint32) uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.policies[id].reqID
}

// clampMSS is the MSS for tunnel p with SA sa, or 0 with the clamp off or impossible.
// Caller holds e.mu.
func (e *ebpfProgs) clampMSS(p ebpfPolicy, sa ebpfSA) uint16 {
	if !e.cfg.MSSClamp {
		return 0
	}
	mss, err := loader.ClampMSS(e.cfg.PathMTU, sa.natt, sa.enc, sa.integ)
	if err != nil {
		e.log.Warn("no MSS clamp for this tunnel", "conn", p.conn, "tunnel", p.tunnel, "err", err)
		return 0
	}
	return mss
}

// allocSPI lets ESP for a just allocated inbound SPI pass the XDP SPI filter: the peer may
// send ESP as soon as it has our last quick-mode message, before we have installed the SA.
// Allocations older than pendingSPITimeout whose SA never came are forgotten here.
func (e *ebpfProgs) allocSPI(spi uint32) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	for s, t := range e.pending {
		if now.Sub(t) > pendingSPITimeout {
			delete(e.pending, s)
			if err := e.l.DeleteSA(loader.Inbound, s); err != nil {
				e.log.Warn("cannot forget an unused inbound SPI", "spi", fmt.Sprintf("%08x", s), "err", err)
			}
		}
	}
	if err := e.l.AddSA(loader.Inbound, spi); err != nil {
		e.log.Warn("XDP filter will drop ESP for this SPI", "spi", fmt.Sprintf("%08x", spi), "err", err)
		return
	}
	e.pending[spi] = now
}

// releaseSPI undoes allocSPI for an SPI whose SA will not come; an installed SPI stays.
func (e *ebpfProgs) releaseSPI(spi uint32) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.pending[spi]; !ok {
		return
	}
	delete(e.pending, spi)
	if err := e.l.DeleteSA(loader.Inbound, spi); err != nil {
		e.log.Warn("cannot forget an unused inbound SPI", "spi", fmt.Sprintf("%08x", spi), "err", err)
	}
}

// saInstalled marks the tunnel of sa up with sa as its outbound SA and counts both SPIs.
// A failure is logged: the SA works, only the eBPF view of it is wrong.
func (e *ebpfProgs) saInstalled(sa *ike.ChildSA) {
	if e == nil {
		return
	}
	enc, integ, err := transform(sa.Proposal)
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, sa.SPIIn)
	e.sas[sa.ReqID] = ebpfSA{spiOut: sa.SPIOut, natt: sa.EncapLocalPort != 0, enc: enc, integ: integ}
	err = errors.Join(err,
		e.l.AddSA(loader.Inbound, sa.SPIIn),
		e.l.AddSA(loader.Outbound, sa.SPIOut),
		e.writeTunnel(sa.ReqID))
	if err != nil {
		e.log.Error("eBPF programs do not know the new SA", "sa", sa, "err", err)
	}
}

// saDeleted stops counting sa's SPIs and, if sa was its tunnel's outbound SA, marks the
// tunnel down (a rekeyed tunnel's old SA goes without that).
func (e *ebpfProgs) saDeleted(sa *ike.ChildSA) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if cur, ok := e.sas[sa.ReqID]; ok && cur.spiOut == sa.SPIOut {
		delete(e.sas, sa.ReqID)
		errs = append(errs, e.writeTunnel(sa.ReqID))
	}
	errs = append(errs, e.l.DeleteSA(loader.Inbound, sa.SPIIn), e.l.DeleteSA(loader.Outbound, sa.SPIOut))
	if err := errors.Join(errs...); err != nil {
		e.log.Error("eBPF programs still see a deleted SA", "sa", sa, "err", err)
	}
}
