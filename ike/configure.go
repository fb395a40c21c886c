package ike

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/dh"
)

// validateConnection checks what the engine relies on beyond config's own validation.
func validateConnection(c *model.Connection) error {
	where := fmt.Sprintf("ike: connection %q", c.Name)
	switch {
	case c.Name == "":
		return fmt.Errorf("ike: connection name is empty, want a name")
	case !c.LocalAddress.IsValid():
		return fmt.Errorf("%s: local_address is unset, want the address IKE is sent from", where)
	case !c.RemoteAddress.IsValid():
		return fmt.Errorf("%s: remote_address is unset, want the peer's address", where)
	case len(c.PSK) == 0:
		return fmt.Errorf("%s: psk is empty, want a pre-shared key", where)
	case c.IKE.Version > 2:
		return fmt.Errorf("%s: ike version %d, want 1 or 2", where, c.IKE.Version)
	case c.IKE.Version == 2:
		if err := validateV2(c); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	case len(c.IKE.Proposals) == 0:
		return fmt.Errorf("%s: ike proposals are empty, want at least one", where)
	}
	for _, p := range c.IKE.Proposals {
		if _, err := dh.ByID(p.Group); err != nil {
			return fmt.Errorf("%s: ike proposal %s: %w", where, p, err)
		}
		if c.IKE.Mode == model.ModeAggressive && p.Group != c.IKE.Proposals[0].Group {
			return fmt.Errorf("%s: aggressive mode proposal %s has group %d, want every proposal with group %d (AM1 carries one KE)",
				where, p, p.Group, c.IKE.Proposals[0].Group)
		}
	}
	for _, t := range c.Tunnels {
		switch {
		case !validPrefixes(t.LocalSubnets) || !validPrefixes(t.RemoteSubnets):
			return fmt.Errorf("%s: tunnel %q: local/remote subnets %v/%v, want prefixes", where, t.Name, t.LocalSubnets, t.RemoteSubnets)
		case c.IKE.Version != 2 && (len(t.LocalSubnets) != 1 || len(t.RemoteSubnets) != 1):
			return fmt.Errorf("%s: tunnel %q: %d local and %d remote subnets, want one each with IKEv1 (its proxy IDs carry one subnet per side)",
				where, t.Name, len(t.LocalSubnets), len(t.RemoteSubnets))
		case len(t.Proposals) == 0:
			return fmt.Errorf("%s: tunnel %q: esp proposals are empty, want at least one", where, t.Name)
		}
		for _, p := range t.Proposals {
			if p.Group == 0 {
				continue
			}
			if _, err := dh.ByID(p.Group); err != nil {
				return fmt.Errorf("%s: tunnel %q: esp proposal %s: %w", where, t.Name, p, err)
			}
		}
	}
	return nil
}

// validPrefixes reports whether ps holds at least one prefix and only valid ones.
func validPrefixes(ps []netip.Prefix) bool {
	return len(ps) > 0 && !slices.ContainsFunc(ps, func(p netip.Prefix) bool { return !p.IsValid() })
}

// Configure replaces the set of connections atomically: everything is validated before
// anything changes. It applies the difference to the running state:
//   - a removed connection, or one whose phase-1 settings changed (anything but its tunnels
//     and service address), is torn down with Delete notifications and, if still
//     configured, rebuilt;
//   - in an otherwise unchanged connection, only removed or changed tunnels lose their
//     child SAs; the IKE SA and the other tunnels' child SAs stay;
//   - tunnels with start: always that are down are brought up.
//
// A tunnel's reqid depends only on its connection and tunnel names: it stays the same
// across Configure calls, also when the tunnel or its connection is rebuilt or removed and
// added again.
func (e *Engine) Configure(conns []model.Connection) error {
	names := make(map[string]bool, len(conns))
	for i := range conns {
		if err := validateConnection(&conns[i]); err != nil {
			return err
		}
		if names[conns[i].Name] {
			return fmt.Errorf("ike: configure: connection name %q appears twice, want unique names", conns[i].Name)
		}
		names[conns[i].Name] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, c := range e.conns {
		if !names[name] {
			e.removeConnection(c)
		}
	}
	for i := range conns {
		cfg := conns[i]
		old, ok := e.conns[cfg.Name]
		if ok && samePhase1(&old.cfg, &cfg) {
			e.reconfigureTunnels(old, cfg)
			continue
		}
		if ok {
			e.removeConnection(old)
		}
		e.conns[cfg.Name] = e.newConnection(cfg)
	}
	for i := range conns {
		for _, t := range e.conns[conns[i].Name].sortedTunnels() {
			if t.cfg.Start == model.StartAlways && t.child == nil && t.qm == nil {
				e.startTunnel(t, nil)
			}
		}
	}
	return nil
}

// samePhase1 reports whether two configurations of a connection agree on everything its
// IKE SAs depend on: all but the tunnels and the service address, which IKE does not use.
func samePhase1(a, b *model.Connection) bool {
	x, y := *a, *b
	x.Tunnels, y.Tunnels = nil, nil
	x.ServiceAddress, y.ServiceAddress = nil, nil
	return reflect.DeepEqual(x, y)
}

// reconfigureTunnels applies a new tunnel list to a connection whose phase 1 is unchanged.
func (e *Engine) reconfigureTunnels(c *connection, cfg model.Connection) {
	want := make(map[string]model.Tunnel, len(cfg.Tunnels))
	for _, tc := range cfg.Tunnels {
		want[tc.Name] = tc
	}
	for _, t := range c.sortedTunnels() {
		tc, ok := want[t.cfg.Name]
		switch {
		case ok && sameTunnel(t.cfg, tc):
			t.cfg = tc // at most the start action changed; the child SA does not depend on it
		default:
			e.removeTunnel(t)
		}
	}
	c.cfg = cfg
	for _, tc := range cfg.Tunnels {
		if c.tunnels[tc.Name] == nil {
			e.addTunnel(c, tc)
		}
	}
}

// sameTunnel reports whether a tunnel's child SAs fit both configurations.
func sameTunnel(a, b model.Tunnel) bool {
	a.Start, b.Start = "", ""
	return reflect.DeepEqual(a, b)
}

// tunnelKey names a tunnel across configurations.
type tunnelKey struct{ conn, tunnel string }

// addTunnel creates tunnel tc of c with the reqid its names have, or a new one.
func (e *Engine) addTunnel(c *connection, tc model.Tunnel) *tunnel {
	k := tunnelKey{c.cfg.Name, tc.Name}
	id, ok := e.reqIDs[k]
	if !ok {
		e.nextReqID++
		id = e.nextReqID
		e.reqIDs[k] = id
	}
	t := &tunnel{conn: c, cfg: tc, reqID: id}
	c.tunnels[tc.Name] = t
	return t
}

// removeTunnel deletes t's child SAs (telling the peer), abandons its quick modes and
// forgets it. The connection's IKE SA and other tunnels are not touched.
func (e *Engine) removeTunnel(t *tunnel) {
	t.removed = true
	t.stopRetry(false)
	for _, ch := range e.children {
		if ch.tunnel == t {
			e.deleteChild(ch, true)
		}
	}
	for _, sa := range e.ikeSAs {
		for _, qm := range sa.qms {
			if qm.tunnel == t && !qm.done {
				qm.fail(errRemoved)
			}
		}
	}
	c := t.conn
	c.unqueue(t)
	t.notify(errRemoved)
	delete(c.tunnels, t.cfg.Name)
}

// lookupTunnels returns the named tunnel of the connection, or all its tunnels for "".
func (e *Engine) lookupTunnels(connName, name string) ([]*tunnel, error) {
	c, ok := e.conns[connName]
	if !ok {
		return nil, fmt.Errorf("ike: connection %q is not configured", connName)
	}
	if name == "" {
		return c.sortedTunnels(), nil
	}
	t, ok := c.tunnels[name]
	if !ok {
		return nil, fmt.Errorf("ike: connection %q has no tunnel %q", connName, name)
	}
	return []*tunnel{t}, nil
}
