package userspace

import (
	"sync"
	"time"

	"github.com/espgw/espgw/datapath"
)

// Make before break. A rekey installs the new SA pair at both ends, but not at the same
// moment: as IKEv1 quick-mode initiator we install before QM3 leaves and the peer installs
// on QM3, so what we sent on the new outbound SA at once could arrive before the peer knows
// its SPI. So a rekeyed tunnel keeps sending on its older outbound SA (still installed at
// both ends) and switches to the new one at the first packet opened on the new pair's
// inbound SA — the peer sends on the pair, so it has installed it — or after
// Options.SwitchTimeout, so that traffic only we send switches too, or when the older SAs
// are deleted, whichever comes first. The switch is reported (EventOutboundSwitch) for
// those that mirror the tunnel's outbound SA (ebpfdp).

// DefaultSwitchTimeout is Options.SwitchTimeout's default: several times what a peer under
// load takes to install a pair after our last message, and well inside the margin between
// the soft and the hard lifetime of the older SA.
const DefaultSwitchTimeout = 2 * time.Second

// SwitchTimeout implements datapath.SwitchDeferrer.
func (d *Datapath) SwitchTimeout() time.Duration { return d.opts.SwitchTimeout }

// armSwitch decides whether the outbound SA o of the pair (in, o) that is being installed
// carries its tunnel at once (it is the only one) or waits for in's first packet or the
// timeout. d.mu is held; neither SA is installed yet.
func (d *Datapath) armSwitch(in *inSA, o *outSA) {
	if d.sad.outbound(o.cfg.ReqID) == nil {
		o.carrying.Store(true)
		return
	}
	in.pending = o
	o.timeout = time.AfterFunc(d.opts.SwitchTimeout, func() { d.switchTo(o) })
}

// outboundRemoved stops the timeout of the outbound SA o that is being removed and, if no
// SA of its tunnel that may carry traffic is left in rest (its other SAs), switches to the
// newest one: an older SA's deletion hands the tunnel on, before the packet path misses o.
// d.mu is held.
func (d *Datapath) outboundRemoved(o *outSA, rest []*outSA) {
	if o.timeout != nil {
		o.timeout.Stop()
	}
	if len(rest) > 0 && carrier(rest) == nil {
		d.switchTo(rest[len(rest)-1])
	}
}

// switchTo lets o carry its tunnel's traffic (the newest SA that may does) and reports it
// once. It runs on the packet path: it neither blocks nor takes d.mu.
func (d *Datapath) switchTo(o *outSA) {
	if o.carrying.Load() || !o.carrying.CompareAndSwap(false, true) {
		return
	}
	d.switches.push(saEvent(datapath.EventOutboundSwitch, o.cfg))
}

// eventQueue holds events for the control plane without blocking who raises them.
type eventQueue struct {
	mu    sync.Mutex
	evs   []datapath.Event
	ready chan struct{} // holds a token while evs is not empty
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(ev datapath.Event) {
	q.mu.Lock()
	q.evs = append(q.evs, ev)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() []datapath.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.evs
	q.evs = nil
	return evs
}

// reportSwitches delivers the queued switch events until Close.
func (d *Datapath) reportSwitches() {
	for {
		select {
		case <-d.switches.ready:
			for _, ev := range d.switches.take() {
				d.emit(ev)
			}
		case <-d.done:
			return
		}
	}
}

// stopSwitchTimeouts stops the timeouts of the SAs still waiting, at Close.
func (d *Datapath) stopSwitchTimeouts() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.sad.out.all() {
		for _, o := range l {
			if o.timeout != nil {
				o.timeout.Stop()
			}
		}
	}
}
