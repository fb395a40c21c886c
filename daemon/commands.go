package daemon

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/espgw/espgw/control"
)

// handle executes one control request.
func (d *daemon) handle(ctx context.Context, req control.Request) control.Response {
	var err error
	switch req.Command {
	case control.CmdStatus:
		return control.Response{Status: d.status()}
	case control.CmdFlows:
		return control.Response{Flows: d.flowReport(req.Limit)}
	case control.CmdUp:
		err = d.up(ctx, req.Connection, req.Tunnel)
	case control.CmdDown:
		if err = d.checkTarget(req.Connection, req.Tunnel); err == nil {
			err = d.engine.Down(ctx, req.Connection, req.Tunnel)
		}
	case control.CmdReload:
		err = d.reloadNotify(ctx)
	default:
		err = fmt.Errorf("unknown command %q (want %s, %s, %s, %s or %s)",
			req.Command, control.CmdStatus, control.CmdUp, control.CmdDown, control.CmdReload, control.CmdFlows)
	}
	if err != nil {
		d.log.Warn("control command failed", "command", req.Command, "conn", req.Connection, "tunnel", req.Tunnel, "err", err)
		return control.Response{Error: err.Error()}
	}
	d.log.Info("control command done", "command", req.Command, "conn", req.Connection, "tunnel", req.Tunnel)
	return control.Response{}
}

// up negotiates and waits, marking the tunnels connecting meanwhile.
func (d *daemon) up(ctx context.Context, conn, tunnel string) error {
	if err := d.checkTarget(conn, tunnel); err != nil {
		return err
	}
	var keys []tunnelKey
	d.mu.Lock()
	for _, t := range d.cfgTunnels() {
		if t.conn == conn && (tunnel == "" || t.tunnel == tunnel) {
			keys = append(keys, t)
			d.upping[t]++
		}
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		for _, k := range keys {
			if d.upping[k]--; d.upping[k] == 0 {
				delete(d.upping, k)
			}
		}
		d.mu.Unlock()
	}()
	return d.engine.Up(ctx, conn, tunnel)
}

// checkTarget reports a connection or tunnel name that is not configured.
func (d *daemon) checkTarget(conn, tunnel string) error {
	if conn == "" {
		return fmt.Errorf("no connection named (want NAME or NAME/TUNNEL)")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, c := range d.cfg.Connections {
		if c.Name != conn {
			names = append(names, c.Name)
			continue
		}
		if tunnel == "" {
			return nil
		}
		var tunnels []string
		for _, t := range c.Tunnels {
			if t.Name == tunnel {
				return nil
			}
			tunnels = append(tunnels, t.Name)
		}
		return fmt.Errorf("connection %q has no tunnel %q (it has: %v)", conn, tunnel, tunnels)
	}
	return fmt.Errorf("no connection %q (configured: %v)", conn, names)
}

// cfgTunnels lists the configured tunnels, sorted. Caller holds d.mu.
func (d *daemon) cfgTunnels() []tunnelKey {
	var ks []tunnelKey
	for _, c := range d.cfg.Connections {
		for _, t := range c.Tunnels {
			ks = append(ks, tunnelKey{c.Name, t.Name})
		}
	}
	return ks
}

// flowReport lists the limit top flows (0: ebpf.top_flows) and the installed policies.
func (d *daemon) flowReport(limit int) *control.FlowReport {
	r := &control.FlowReport{TopFlows: []control.TopFlow{}, Policies: d.flows()}
	if d.ebpf == nil {
		r.EBPFOff = d.ebpfOff
		return r
	}
	if limit <= 0 {
		d.mu.Lock()
		limit = d.cfg.EBPF.TopFlows
		d.mu.Unlock()
	}
	fs, err := d.topFlows(limit)
	if err != nil {
		r.EBPFOff = err.Error()
		return r
	}
	if fs != nil {
		r.TopFlows = fs
	}
	return r
}

// flows lists the installed policies, sorted by connection and tunnel.
func (d *daemon) flows() []control.Flow {
	d.mu.Lock()
	defer d.mu.Unlock()
	fs := make([]control.Flow, 0, len(d.policies))
	for _, t := range d.policies {
		fs = append(fs, control.Flow{
			Connection: t.Connection, Tunnel: t.Tunnel, ReqID: t.ReqID,
			LocalSelector: t.LocalTS.String(), RemoteSelector: t.RemoteTS.String(),
			Local: t.LocalAddr, Remote: t.RemoteAddr,
		})
	}
	slices.SortFunc(fs, func(a, b control.Flow) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Tunnel, b.Tunnel))
	})
	return fs
}
