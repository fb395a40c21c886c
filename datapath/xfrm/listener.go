package xfrm

import (
	"errors"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/datapath"
)

// listen reads the XFRM acquire and expire multicast groups until Close. netlink's own
// XfrmMonitor cannot join the acquire group, hence this socket and its parsers.
func (d *Datapath) listen() {
	defer d.wg.Done()
	for {
		msgs, _, err := d.sub.Receive()
		select {
		case <-d.done:
			return
		default:
		}
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel dropped messages because we fell behind; acquires repeat, expires do not.
			d.log.Warn("xfrm events lost: netlink receive buffer overflowed")
			continue
		}
		if err != nil {
			d.log.Error("xfrm event listener stopped", "err", err)
			return
		}
		for _, m := range msgs {
			ev, ok := d.event(m)
			if !ok {
				continue
			}
			select {
			case d.events <- ev:
			case <-d.done:
				return
			}
		}
	}
}

// event decodes one kernel message and reports whether it concerns this Datapath.
func (d *Datapath) event(m syscall.NetlinkMessage) (datapath.Event, bool) {
	var (
		ev  datapath.Event
		err error
	)
	switch m.Header.Type {
	case nl.XFRM_MSG_ACQUIRE:
		ev, err = parseAcquire(m.Data)
	case nl.XFRM_MSG_EXPIRE:
		ev, err = parseExpire(m.Data)
	default:
		return ev, false
	}
	if errors.Is(err, errLarval) {
		return ev, false
	}
	if err != nil {
		d.log.Warn("undecodable xfrm message", "type", m.Header.Type, "err", err)
		return ev, false
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if ev.Kind == datapath.EventAcquire {
		return ev, d.hasPolicyReqID(ev.ReqID)
	}
	id := saID{dst: ev.Dst, spi: ev.SPI}
	if _, ok := d.sas[id]; !ok {
		return ev, false
	}
	if ev.Kind == datapath.EventHardExpire {
		delete(d.sas, id) // the kernel has removed it
	}
	return ev, true
}
