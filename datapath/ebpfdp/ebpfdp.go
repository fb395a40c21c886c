// Package ebpfdp keeps the eBPF programs (loader) in step with a datapath: Datapath wraps a
// datapath.Datapath and, around each SA and policy it installs or removes, programs the
// classifier's policy slots, the SA counters and the MSS clamp, in one order:
//
//   - an SA pair goes into the datapath first, then the programs count it and mark its
//     tunnel up; on delete the programs mark the tunnel down first, then the SA goes;
//   - a tunnel's outbound SA in the programs is the one the datapath sends on: the newest,
//     or, with a datapath.SwitchDeferrer, the newest it reported (EventOutboundSwitch) or
//     that carried the tunnel from its install;
//   - a policy goes into the datapath first, then into the classifier (fail closed until
//     the tunnel's SA is up); on delete the datapath's policy goes first as well, so the
//     classifier never lacks a policy the datapath still steers by.
//
// It owns the one record of what the programs hold; the control plane programs it as any
// datapath and needs no eBPF calls of its own.
package ebpfdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/loader"
)

// Options are the settings of the programs that may change while they run.
type Options struct {
	Peers    []netip.Addr      // the only sources IKE is accepted from
	XDP      loader.XDPFilters // what the XDP filter drops
	WhenDown loader.Action     // what the classifier does with a tunnel's traffic while its SA is down
	MSSClamp bool              // clamp the MSS of TCP SYNs through the tunnels
	PathMTU  int               // the MTU the clamp is computed from
}

// Datapath is a datapath.Datapath whose eBPF programs follow what it installs. Its methods
// are safe for concurrent use.
type Datapath struct {
	datapath.Datapath
	l      *loader.Loader
	log    *slog.Logger
	events chan datapath.Event
	done   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	opts     Options
	ids      map[datapath.Policy]uint32 // classifier policy ids of the installed policies
	nextID   uint32
	policies map[uint32]datapath.Policy // by classifier policy id
	outs     map[uint32][]outSA         // by reqid: the tunnel's outbound SAs, oldest first
	defers   bool                       // the backend is a datapath.SwitchDeferrer
	sas      map[saKey]sa               // installed SAs, both directions
	pending  map[uint32]time.Time       // inbound SPIs allocated but not yet installed
}

type saKey struct {
	dst netip.Addr
	spi uint32
}

// sa is an installed SA as the programs know it.
type sa struct {
	reqID uint32
	dir   loader.Direction
}

// outSA is what the MSS clamp of a tunnel depends on, and its outbound SPI.
type outSA struct {
	spi     uint32
	natt    bool
	enc     datapath.Encryption
	integ   datapath.Integrity
	waiting bool // installed on a rekey; the backend does not send on it yet
}

// pendingSPITimeout bounds how long an allocated inbound SPI passes the XDP SPI filter
// before its SA is installed: long enough for any quick mode with retransmissions.
const pendingSPITimeout = 2 * time.Minute

// ProgramError says the datapath installed or removed what it was asked to, but the eBPF
// programs could not follow: the caller should treat the change as made and report err.
type ProgramError struct{ Err error }

func (e *ProgramError) Error() string { return "ebpf: " + e.Err.Error() }
func (e *ProgramError) Unwrap() error { return e.Err }

// New wraps dp with the open loader l, which holds no policies yet, and applies opts' peers
// and XDP filters. Close closes both. log (nil discards) gets what the programs could not
// follow.
func New(dp datapath.Datapath, l *loader.Loader, opts Options, log *slog.Logger) (*Datapath, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(l.SetPeers(opts.Peers), l.SetXDPFilters(opts.XDP)); err != nil {
		return nil, fmt.Errorf("ebpf: %w", err)
	}
	d := &Datapath{Datapath: dp, l: l, log: log, events: make(chan datapath.Event), done: make(chan struct{}), opts: opts,
		ids: make(map[datapath.Policy]uint32), policies: make(map[uint32]datapath.Policy),
		outs: make(map[uint32][]outSA), sas: make(map[saKey]sa), pending: make(map[uint32]time.Time)}
	_, d.defers = dp.(datapath.SwitchDeferrer)
	d.wg.Go(d.forwardEvents)
	return d, nil
}

// Backend is the wrapped datapath.
func (d *Datapath) Backend() datapath.Datapath { return d.Datapath }

// Reconfigure applies changed settings: peers, XDP filters, the SA-down action and the MSS
// clamp of every policy.
func (d *Datapath) Reconfigure(opts Options) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts = opts
	errs := []error{d.l.SetPeers(opts.Peers), d.l.SetXDPFilters(opts.XDP)}
	for id := range d.policies {
		errs = append(errs, d.writePolicy(id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

// AllocSPI lets ESP for the allocated inbound SPI pass the XDP SPI filter: the peer may
// send ESP as soon as it has our last quick-mode message, before the SA is installed.
// Allocations older than pendingSPITimeout whose SA never came are forgotten here.
func (d *Datapath) AllocSPI(ctx context.Context, local, remote netip.Addr) (uint32, error) {
	spi, err := d.Datapath.AllocSPI(ctx, local, remote)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for s, t := range d.pending {
		if now.Sub(t) > pendingSPITimeout {
			d.forgetPending(s)
		}
	}
	if err := d.l.AddSA(loader.Inbound, spi); err != nil {
		d.log.Warn("XDP filter will drop ESP for this SPI", "spi", fmt.Sprintf("%08x", spi), "err", err)
		return spi, nil
	}
	d.pending[spi] = now
	return spi, nil
}

// forgetPending undoes AllocSPI's filter entry. Caller holds d.mu.
func (d *Datapath) forgetPending(spi uint32) {
	delete(d.pending, spi)
	if err := d.l.DeleteSA(loader.Inbound, spi); err != nil {
		d.log.Warn("cannot forget an unused inbound SPI", "spi", fmt.Sprintf("%08x", spi), "err", err)
	}
}

// AddSAPair installs p, then counts both SPIs and makes p.Out its tunnel's outbound SA, on a
// rekey through a SwitchDeferrer only once that reports the switch. A failure of the
// programs is logged: the SA works, only the eBPF view of it is wrong.
func (d *Datapath) AddSAPair(ctx context.Context, p datapath.SAPair) error {
	if err := d.Datapath.AddSAPair(ctx, p); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	reqID := p.Out.ReqID
	delete(d.pending, p.In.SPI)
	d.sas[saKey{p.In.Dst, p.In.SPI}] = sa{reqID, loader.Inbound}
	d.sas[saKey{p.Out.Dst, p.Out.SPI}] = sa{reqID, loader.Outbound}
	_, up := d.current(reqID)
	d.outs[reqID] = append(d.outs[reqID], outSA{spi: p.Out.SPI, natt: p.Out.EncapDstPort != 0, enc: p.Out.Enc, integ: p.Out.Integ,
		waiting: up && d.defers})
	err := errors.Join(
		d.l.AddSA(loader.Inbound, p.In.SPI),
		d.l.AddSA(loader.Outbound, p.Out.SPI),
		d.writeTunnel(reqID))
	if err != nil {
		d.log.Error("eBPF programs do not know the new SA", "reqid", reqID,
			"spi_in", fmt.Sprintf("%08x", p.In.SPI), "spi_out", fmt.Sprintf("%08x", p.Out.SPI), "err", err)
	}
	return nil
}

// DeleteSA stops counting the SA and, if it is its tunnel's outbound SA, hands the tunnel
// to its next newest outbound SA or, with none left, marks it down (a rekeyed tunnel's old
// SA goes without either, unless the new one still waits for its switch: then it switches
// now, as the backend does), then deletes it from the datapath: the guard stops the
// traffic before the SA goes. The newest SA can go first when two ends negotiated the
// tunnel at once and it lost. An allocated SPI leaves the XDP filter.
func (d *Datapath) DeleteSA(ctx context.Context, dst netip.Addr, spi uint32) error {
	d.mu.Lock()
	k := saKey{dst, spi}
	if s, ok := d.sas[k]; ok {
		delete(d.sas, k)
		var errs []error
		if s.dir == loader.Outbound && d.dropOut(s.reqID, spi) {
			errs = append(errs, d.writeTunnel(s.reqID))
		}
		errs = append(errs, d.l.DeleteSA(s.dir, spi))
		if err := errors.Join(errs...); err != nil {
			d.log.Error("eBPF programs still see a deleted SA", "reqid", s.reqID, "spi", fmt.Sprintf("%08x", spi), "err", err)
		}
	} else if _, ok := d.pending[spi]; ok {
		d.forgetPending(spi)
	}
	d.mu.Unlock()
	return d.Datapath.DeleteSA(ctx, dst, spi)
}

// AddPolicy installs p, then gives it its own classifier policy: until the tunnel's SA is
// up its traffic is dropped (or passed) and reported. While a tunnel's policy is replaced,
// the old and the new one (same reqid) are both in. A *ProgramError says p is installed
// in the datapath but not in the classifier.
func (d *Datapath) AddPolicy(ctx context.Context, p datapath.Policy) error {
	if err := d.Datapath.AddPolicy(ctx, p); err != nil {
		return err
	}
	return d.classify(p)
}

// AddPolicies implements datapath.PolicyBatcher: the backend installs ps in one batch if it
// can, then the classifier gets those it installed, as AddPolicy does.
func (d *Datapath) AddPolicies(ctx context.Context, ps []datapath.Policy) []error {
	errs := datapath.AddPolicies(ctx, d.Datapath, ps)
	for i, p := range ps {
		if errs[i] == nil {
			errs[i] = d.classify(p)
		}
	}
	return errs
}

// classify gives the installed policy p its classifier policy, or a *ProgramError.
func (d *Datapath) classify(p datapath.Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.ids[p]
	if !ok {
		d.nextID++
		id = d.nextID
	}
	d.policies[id] = p
	if err := d.writePolicy(id); err != nil {
		delete(d.policies, id)
		return &ProgramError{err}
	}
	d.ids[p] = id
	return nil
}

// DeletePolicy removes p from the datapath, then from the classifier. A *ProgramError says
// it is gone from the datapath but not from the classifier.
func (d *Datapath) DeletePolicy(ctx context.Context, p datapath.Policy) error {
	if err := d.Datapath.DeletePolicy(ctx, p); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id, ok := d.ids[p]
	if !ok {
		return nil
	}
	delete(d.ids, p)
	delete(d.policies, id)
	if err := d.l.DeletePolicy(id); err != nil {
		return &ProgramError{err}
	}
	return nil
}

// dropOut forgets the outbound SA spi of the tunnel reqID and reports whether the SA
// carrying the tunnel changed: spi carried it, or was the last that could. Caller holds d.mu.
func (d *Datapath) dropOut(reqID, spi uint32) bool {
	outs := d.outs[reqID]
	i := slices.IndexFunc(outs, func(o outSA) bool { return o.spi == spi })
	if i < 0 {
		return false
	}
	was, _ := d.current(reqID)
	if outs = slices.Delete(outs, i, i+1); len(outs) == 0 {
		delete(d.outs, reqID)
		return true
	}
	d.outs[reqID] = outs
	if _, up := d.current(reqID); !up {
		outs[len(outs)-1].waiting = false // the backend switches to its newest SA now
	}
	return was.spi == spi
}

// switched marks the tunnel's outbound SA that the backend reported it switched to
// (EventOutboundSwitch) as carrying and rewrites the tunnel if its SA changed.
func (d *Datapath) switched(ev datapath.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	outs := d.outs[ev.ReqID]
	i := slices.IndexFunc(outs, func(o outSA) bool { return o.spi == ev.SPI })
	if i < 0 || !outs[i].waiting {
		return nil // deleted meanwhile, or carrying since its deletion handed it the tunnel
	}
	was, _ := d.current(ev.ReqID)
	outs[i].waiting = false
	if now, _ := d.current(ev.ReqID); now.spi == was.spi {
		return nil
	}
	return d.writeTunnel(ev.ReqID)
}

// current is the outbound SA carrying the tunnel reqID: its newest that is not waiting for
// its switch. Caller holds d.mu.
func (d *Datapath) current(reqID uint32) (outSA, bool) {
	outs := d.outs[reqID]
	for i := len(outs) - 1; i >= 0; i-- {
		if !outs[i].waiting {
			return outs[i], true
		}
	}
	return outSA{}, false
}

// writePolicy hands the loader policy id with its tunnel's SA state. Caller holds d.mu.
func (d *Datapath) writePolicy(id uint32) error {
	p := d.policies[id]
	lp := loader.Policy{ID: id, Selector: p.Selector, Priority: p.Priority, WhenDown: d.opts.WhenDown}
	if sa, up := d.current(p.ReqID); up {
		lp.SAUp, lp.OutSPI = true, sa.spi
		lp.MSS = d.clampMSS(p, sa)
	}
	return d.l.SetPolicy(lp)
}

// writeTunnel rewrites the policies of the tunnel with reqID. Caller holds d.mu.
func (d *Datapath) writeTunnel(reqID uint32) error {
	var errs []error
	for id, p := range d.policies {
		if p.ReqID == reqID {
			errs = append(errs, d.writePolicy(id))
		}
	}
	return errors.Join(errs...)
}

// clampMSS is the MSS for policy p with outbound SA sa, or 0 with the clamp off or
// impossible. Caller holds d.mu.
func (d *Datapath) clampMSS(p datapath.Policy, sa outSA) uint16 {
	if !d.opts.MSSClamp {
		return 0
	}
	mss, err := loader.ClampMSS(d.opts.PathMTU, sa.natt, sa.enc, sa.integ)
	if err != nil {
		d.log.Warn("no MSS clamp for this tunnel", "reqid", p.ReqID,
			"local", p.Selector.Local, "remote", p.Selector.Remote, "err", err)
		return 0
	}
	return mss
}

// reqID returns the reqid of the policy with the classifier id, 0 if it is gone.
func (d *Datapath) reqID(id uint32) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policies[id].ReqID
}

// Events delivers the backend's events (having followed its outbound switches) and, as
// acquires, the classifier's reports of traffic for a tunnel whose SA is down.
func (d *Datapath) Events() <-chan datapath.Event { return d.events }

// forwardEvents merges the backend's and the classifier's events until Close.
func (d *Datapath) forwardEvents() {
	defer close(d.events)
	backend, classifier := d.Datapath.Events(), d.l.Events()
	for backend != nil || classifier != nil {
		var ev datapath.Event
		select {
		case <-d.done:
			return
		case e, ok := <-backend:
			if !ok {
				backend = nil
				continue
			}
			ev = e
			if ev.Kind == datapath.EventOutboundSwitch {
				if err := d.switched(ev); err != nil {
					d.log.Error("eBPF programs count a rekeyed tunnel on its old SA", "reqid", ev.ReqID, "spi", fmt.Sprintf("%08x", ev.SPI), "err", err)
				}
			}
		case e, ok := <-classifier:
			if !ok {
				classifier = nil
				continue
			}
			f := e.Flow
			ev = datapath.Event{Kind: datapath.EventAcquire, ReqID: d.reqID(e.PolicyID), PacketSrc: f.Src, PacketDst: f.Dst}
			d.log.Debug("eBPF: traffic for a tunnel whose SA is down", "reqid", ev.ReqID,
				"src", f.Src, "dst", f.Dst, "proto", f.Proto, "sport", f.SrcPort, "dport", f.DstPort)
		}
		select {
		case d.events <- ev:
		case <-d.done:
			return
		}
	}
}

// Close detaches the programs and frees their maps, then closes the backend.
func (d *Datapath) Close() error {
	close(d.done)
	d.wg.Wait()
	var errs []error
	if err := d.l.Close(); err != nil {
		errs = append(errs, fmt.Errorf("detach eBPF programs: %w", err))
	}
	return errors.Join(append(errs, d.Datapath.Close())...)
}
