package ike

import (
	"fmt"
	"reflect"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/ike/dh"
)

// validateConnection checks what the engine relies on beyond config's own validation.
func validateConnection(c *config.Connection) error {
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
	case len(c.IKE.Proposals) == 0:
		return fmt.Errorf("%s: ike proposals are empty, want at least one", where)
	}
	for _, p := range c.IKE.Proposals {
		if _, err := dh.ByID(p.Group); err != nil {
			return fmt.Errorf("%s: ike proposal %s: %w", where, p, err)
		}
		if c.IKE.Mode == config.ModeAggressive && p.Group != c.IKE.Proposals[0].Group {
			return fmt.Errorf("%s: aggressive mode proposal %s has group %d, want every proposal with group %d (AM1 carries one KE)",
				where, p, p.Group, c.IKE.Proposals[0].Group)
		}
	}
	for _, t := range c.Tunnels {
		switch {
		case !t.LocalSubnet.IsValid() || !t.RemoteSubnet.IsValid():
			return fmt.Errorf("%s: tunnel %q: local/remote subnet unset, want prefixes", where, t.Name)
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

// sameConnection reports whether a reconfiguration leaves c unchanged.
func sameConnection(a, b *config.Connection) bool { return reflect.DeepEqual(a, b) }

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
