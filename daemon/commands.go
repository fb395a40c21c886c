package daemon

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/model"
)

// handle executes one control request.
func (d *daemon) handle(ctx context.Context, req control.Request) control.Response {
	var err error
	switch req.Command {
	case control.CmdStatus:
		return d.statusAnswer(req)
	case control.CmdFlows:
		return control.Response{Flows: d.flowReport(req.Limit)}
	case control.CmdUp:
		err = d.up(ctx, req.Connection, req.Tunnel)
	case control.CmdDown:
		var conn, tunnel string
		if conn, tunnel, err = d.resolveTarget(req.Connection, req.Tunnel); err == nil {
			err = d.engine.Down(ctx, conn, tunnel)
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

// statusAnswer is the whole status, a connection's (as the operator named it) or, above
// req.SummaryAbove tunnels, the summary.
func (d *daemon) statusAnswer(req control.Request) control.Response {
	if req.Connection != "" {
		conn, _, err := d.resolveTarget(req.Connection, "")
		if err != nil {
			return control.Response{Error: err.Error()}
		}
		st := d.status(conn)
		d.addXDPPackets(st)
		return control.Response{Status: st}
	}
	st := d.status("")
	if req.SummaryAbove > 0 && len(st.Tunnels) > req.SummaryAbove {
		return control.Response{Summary: st.Summary()}
	}
	d.addXDPPackets(st)
	return control.Response{Status: st}
}

// up negotiates and waits, marking the tunnels connecting meanwhile.
func (d *daemon) up(ctx context.Context, conn, tunnel string) error {
	conn, tunnel, err := d.resolveTarget(conn, tunnel)
	if err != nil {
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

// resolveTarget finds the configured connection and tunnel an operator named, matching
// case only where two names differ in nothing else (model.MatchName).
func (d *daemon) resolveTarget(conn, tunnel string) (string, string, error) {
	if conn == "" {
		return "", "", fmt.Errorf("no connection named (want NAME or NAME/TUNNEL)")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, len(d.cfg.Connections))
	for i, c := range d.cfg.Connections {
		names[i] = c.Name
	}
	conn, err := model.MatchName("connection", conn, names)
	if err != nil || tunnel == "" {
		return conn, "", err
	}
	c := d.cfg.Connections[slices.Index(names, conn)]
	tunnels := make([]string, len(c.Tunnels))
	for i, t := range c.Tunnels {
		tunnels[i] = t.Name
	}
	tunnel, err = model.MatchName("tunnel", tunnel, tunnels)
	if err != nil {
		return "", "", fmt.Errorf("connection %s: %w", conn, err)
	}
	return conn, tunnel, nil
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
	for p, t := range d.policies {
		local := ike.TrafficSelector{Prefix: p.Selector.Local, Proto: p.Selector.Proto, Port: p.Selector.LocalPort}
		remote := ike.TrafficSelector{Prefix: p.Selector.Remote, Proto: p.Selector.Proto, Port: p.Selector.RemotePort}
		fs = append(fs, control.Flow{
			Connection: t.Connection, Tunnel: t.Tunnel, ReqID: t.ReqID,
			LocalSelector: local.String(), RemoteSelector: remote.String(),
			Local: t.LocalAddr, Remote: t.RemoteAddr,
		})
	}
	slices.SortFunc(fs, func(a, b control.Flow) int {
		return cmp.Or(cmp.Compare(a.Connection, b.Connection), cmp.Compare(a.Tunnel, b.Tunnel),
			cmp.Compare(a.LocalSelector, b.LocalSelector), cmp.Compare(a.RemoteSelector, b.RemoteSelector))
	})
	return fs
}
