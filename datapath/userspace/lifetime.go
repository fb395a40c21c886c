package userspace

import (
	"sync/atomic"
	"time"

	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/esp"
)

// lifetimeLoop checks every SA's lifetime each Options.LifetimeInterval: soft limits raise
// one EventSoftExpire per SA, hard limits remove the SA and raise EventHardExpire.
func (d *Datapath) lifetimeLoop() {
	t := time.NewTicker(d.opts.LifetimeInterval)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case now := <-t.C:
			for _, in := range d.sad.in.all() {
				d.checkLifetime(now, in.esp, &in.softSent, in.cfg)
			}
			for _, l := range d.sad.out.all() {
				for _, o := range l {
					d.checkLifetime(now, o.esp, &o.softSent, o.cfg)
				}
			}
		}
	}
}

func (d *Datapath) checkLifetime(now time.Time, sa *esp.SA, softSent *atomic.Bool, cfg datapath.SA) {
	switch sa.Expiry(now) {
	case esp.Hard:
		d.mu.Lock()
		removed := d.removeSA(cfg.Dst, cfg.SPI)
		d.mu.Unlock()
		if removed {
			d.emit(saEvent(datapath.EventHardExpire, cfg))
		}
	case esp.Soft:
		if softSent.CompareAndSwap(false, true) {
			d.emit(saEvent(datapath.EventSoftExpire, cfg))
		}
	}
}

// saEvent is an event of kind k about the SA cfg.
func saEvent(k datapath.EventKind, cfg datapath.SA) datapath.Event {
	return datapath.Event{Kind: k, SPI: cfg.SPI, Dst: cfg.Dst, ReqID: cfg.ReqID}
}
