package xfrm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// AllocSPI reserves an inbound SPI (remote -> local) with XFRM_MSG_ALLOCSPI. The kernel
// keeps a larval state for it until AddSAPair installs the real SA with XFRM_MSG_UPDSA
// (NEWSA would fail with EEXIST), or until net.core.xfrm_acq_expires seconds pass; then it
// reports a hard expire for the SPI.
func (d *Datapath) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !local.IsValid() || !remote.IsValid() || local.Is4() != remote.Is4() {
		return 0, fmt.Errorf("allocate SPI for %v -> %v: want two addresses of one family", remote, local)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, errClosed
	}
	var got *netlink.XfrmState
	// netlink offers ALLOCSPI only on its package handle, which works in the thread's netns.
	err := inNetns(d.ns, func() (err error) {
		got, err = netlink.XfrmStateAllocSpi(&netlink.XfrmState{
			Src:   ip(remote),
			Dst:   ip(local),
			Proto: netlink.XFRM_PROTO_ESP,
			Mode:  netlink.XFRM_MODE_TUNNEL,
		})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("allocate SPI for %v -> %v: %w", remote, local, err)
	}
	spi := uint32(got.Spi)
	d.sas[saID{dst: local.Unmap(), spi: spi}] = saLarval
	return spi, nil
}

// AddSAPair installs p.In and p.Out, or neither. On failure the SPI reservation for p.In
// is released as well, so nothing of the pair is left in the kernel.
func (d *Datapath) AddSAPair(ctx context.Context, p datapath.SAPair) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in, err := stateFor(p.In, dirIn)
	if err != nil {
		return fmt.Errorf("inbound SA: %w", err)
	}
	defer wipe(in)
	out, err := stateFor(p.Out, dirOut)
	if err != nil {
		return fmt.Errorf("outbound SA: %w", err)
	}
	defer wipe(out)

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	inID := saID{dst: p.In.Dst.Unmap(), spi: p.In.SPI}
	outID := saID{dst: p.Out.Dst.Unmap(), spi: p.Out.SPI}
	add := d.h.XfrmStateAdd
	if d.sas[inID] == saLarval {
		add = d.h.XfrmStateUpdate // replaces the larval state of the reserved SPI
	}
	if err := add(in); err != nil {
		err = fmt.Errorf("install inbound SA %v: %w", inID, err)
		if d.sas[inID] == saLarval {
			err = errors.Join(err, d.deleteState(inID))
			delete(d.sas, inID)
		}
		return err
	}
	if err := d.h.XfrmStateAdd(out); err != nil {
		err = fmt.Errorf("install outbound SA %v: %w", outID, err)
		err = errors.Join(err, d.deleteState(inID))
		delete(d.sas, inID)
		return err
	}
	d.sas[inID] = saInstalled
	d.sas[outID] = saInstalled
	return nil
}

// DeleteSA removes the ESP SA (dst, spi); one that does not exist is not an error.
func (d *Datapath) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	id := saID{dst: dst.Unmap(), spi: spi}
	delete(d.sas, id)
	return d.deleteState(id)
}

// deleteState removes one ESP state from the kernel; ESRCH (already gone) is success.
func (d *Datapath) deleteState(id saID) error {
	err := d.h.XfrmStateDel(&netlink.XfrmState{Dst: ip(id.dst), Proto: netlink.XFRM_PROTO_ESP, Spi: int(id.spi)})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete SA %v: %w", id, err)
	}
	return nil
}

// Counters reads the kernel's lifetime and replay statistics of the ESP SA (dst, spi).
func (d *Datapath) Counters(dst netip.Addr, spi uint32) (datapath.Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return datapath.Counters{}, errClosed
	}
	id := saID{dst: dst.Unmap(), spi: spi}
	st, err := d.h.XfrmStateGet(&netlink.XfrmState{Dst: ip(id.dst), Proto: netlink.XFRM_PROTO_ESP, Spi: int(spi)})
	if err != nil {
		return datapath.Counters{}, fmt.Errorf("read SA %v: %w", id, err)
	}
	s := st.Statistics
	return datapath.Counters{
		Bytes:        s.Bytes,
		Packets:      s.Packets,
		ReplayDrops:  uint64(s.ReplayWindow) + uint64(s.Replay), // outside the window + replayed
		AuthFailures: uint64(s.Failed),
		Installed:    time.Unix(int64(s.AddTime), 0),
	}, nil
}

// inNetns runs fn on a thread switched into ns (or in place if ns is none). If the thread
// cannot be switched back it stays locked, so the runtime discards it with this goroutine.
func inNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %v: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to netns %v: %w", orig, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
