package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/ike/proposal"
)

// chooseDatapath resolves cfg.Datapath: auto is xfrm when the kernel can carry every
// configured transform and userspace otherwise; an explicit xfrm fails here, before any
// negotiation, when it cannot.
func (d *daemon) chooseDatapath(ctx context.Context, cfg *config.Config) (string, error) {
	if cfg.Datapath == KindUserspace {
		return KindUserspace, nil
	}
	probe := d.opts.ProbeKernelESP
	if probe == nil {
		if cfg.Datapath == KindXFRM {
			return KindXFRM, nil
		}
		d.log.Info("datapath auto: no kernel ESP probe available, using userspace")
		return KindUserspace, nil
	}
	ts, err := transforms(cfg)
	if err != nil {
		return "", err
	}
	if err := probe(ctx, ts); err != nil {
		if cfg.Datapath == KindXFRM {
			return "", fmt.Errorf("datapath: xfrm: %w (datapath: auto or userspace would use the userspace backend)", err)
		}
		d.log.Info("datapath auto: kernel ESP unavailable, using userspace", "reason", err)
		return KindUserspace, nil
	}
	return KindXFRM, nil
}

// transforms lists the distinct ESP transforms cfg's tunnels may negotiate.
func transforms(cfg *config.Config) ([]Transform, error) {
	var ts []Transform
	for _, c := range cfg.Connections {
		for _, t := range c.Tunnels {
			for _, p := range t.Proposals {
				enc, integ, err := transform(p)
				if err != nil {
					return nil, fmt.Errorf("connections.%s.tunnels.%s.proposals: %w", c.Name, t.Name, err)
				}
				tr := Transform{Enc: enc, Integ: integ, KeyBits: p.KeyBits}
				if !slices.Contains(ts, tr) {
					ts = append(ts, tr)
				}
			}
		}
	}
	return ts, nil
}

// ESPTransform is the datapath transform an ESP proposal negotiates (doctor probes it).
func ESPTransform(p proposal.ESP) (Transform, error) {
	enc, integ, err := transform(p)
	if err != nil {
		return Transform{}, err
	}
	return Transform{Enc: enc, Integ: integ, KeyBits: p.KeyBits}, nil
}

// localAddresses are the distinct local_address values, the addresses IKE listens on.
func localAddresses(cfg *config.Config) []netip.Addr {
	var as []netip.Addr
	for _, c := range cfg.Connections {
		if !slices.Contains(as, c.LocalAddress) {
			as = append(as, c.LocalAddress)
		}
	}
	slices.SortFunc(as, netip.Addr.Compare)
	return as
}

// forwardEvents hands the datapath's acquire and expire events to the engine until ctx ends.
func (d *daemon) forwardEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-d.dp.Events():
			if !ok {
				return
			}
			d.handleEvent(ev)
		}
	}
}

func (d *daemon) handleEvent(ev datapath.Event) {
	switch ev.Kind {
	case datapath.EventAcquire:
		d.mu.Lock()
		t, ok := d.tunnelByReqID(ev.ReqID)
		d.mu.Unlock()
		if !ok {
			d.log.Debug("acquire for an unknown reqid", "reqid", ev.ReqID)
			return
		}
		if t.Start == model.StartManual {
			d.log.Debug("acquire ignored: tunnel has start: manual", "conn", t.Connection, "tunnel", t.Tunnel)
			return
		}
		if d.engine.AcquirePacket(ev.ReqID, ev.PacketSrc, ev.PacketDst) {
			d.log.Info("traffic for tunnel: negotiating", "conn", t.Connection, "tunnel", t.Tunnel, "reqid", ev.ReqID)
		} else { // e.g. a combination its child SA was narrowed away from
			d.log.Debug("acquire ignored: the tunnel has a child SA or a negotiation under way",
				"conn", t.Connection, "tunnel", t.Tunnel, "reqid", ev.ReqID)
		}
	case datapath.EventSoftExpire, datapath.EventHardExpire:
		hard := ev.Kind == datapath.EventHardExpire
		d.log.Info("SA lifetime expired", "spi", fmt.Sprintf("%08x", ev.SPI), "dst", ev.Dst, "hard", hard)
		d.engine.Expire(ev.SPI, hard)
	case datapath.EventOutboundSwitch: // the engine's child SA is installed already
		d.log.Debug("rekeyed tunnel switched to its new outbound SA", "reqid", ev.ReqID, "spi", fmt.Sprintf("%08x", ev.SPI), "dst", ev.Dst)
	default:
		d.log.Warn("unknown datapath event", "kind", ev.Kind)
	}
}
