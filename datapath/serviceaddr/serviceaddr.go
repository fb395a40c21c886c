// Package serviceaddr gives this host the "service address" a partner expects inside an
// IPsec tunnel, when it differs from the tunnel endpoint address.
//
// Apply adds the address to an interface and, in a routing table of its own consulted by a
// rule, a route per remote subnet with that address as preferred source:
//
//	ip addr add SERVICE dev IFACE
//	ip route add REMOTE dev IFACE [via GW] src SERVICE table 220
//	ip rule add lookup 220 pref 220
//
// Local traffic to a remote subnet thus leaves with the service address as source, matches
// the XFRM out policy (Local = service side) and is encrypted; the XFRM bundle replaces the
// route's next hop, so no neighbour entry for remote hosts is ever needed (which is why the
// static-ARP workaround of route-without-policy setups is unnecessary). Before the SA is up,
// the policy holds the packet and triggers an acquire instead of leaking it in clear.
package serviceaddr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults for Spec.Table and Spec.Priority; 220 is the table strongSwan uses as well.
const (
	DefaultTable    = 220
	DefaultPriority = 220
)

// Spec describes one service address and the remote subnets reached from it.
type Spec struct {
	// Address is the service address with the prefix length to configure (usually /32 or /128).
	Address netip.Prefix
	// Interface receives the address; the routes leave through it (normally the WAN link).
	Interface string
	// Routes are the remote subnets behind the tunnel.
	Routes []netip.Prefix
	// Gateway is an optional next hop on Interface for the routes. Without it the routes are
	// on-link, which suffices when XFRM policies cover every route.
	Gateway netip.Addr
	// Table is the routing table for the routes; zero means DefaultTable.
	Table int
	// Priority is the preference of the rule that looks Table up; zero means DefaultPriority.
	Priority int
}

// Applied is what Apply changed. Its Remove undoes exactly that.
type Applied struct {
	h       *netlink.Handle
	link    netlink.Link
	addr    *netlink.Addr    // nil if the address was already there
	routes  []*netlink.Route // only the routes Apply added
	rule    *netlink.Rule    // nil if the rule was already there
	table   int
	removed bool
}

// Apply configures spec in ns (the zero value or netns.None() mean the current namespace).
// Parts that already exist exactly as wanted are left alone and are not removed later, so
// applying twice is harmless. On error, whatever this call added is removed again.
// The returned Applied keeps a netlink handle open until Remove.
func Apply(ctx context.Context, ns netns.NsHandle, spec Spec) (*Applied, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spec, err := withDefaults(spec)
	if err != nil {
		return nil, err
	}
	if ns == 0 {
		ns = netns.None() // fd 0 is never a namespace we were given
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("service address %v: open route netlink: %w", spec.Address, err)
	}
	a := &Applied{h: h, table: spec.Table}
	if err := a.apply(spec); err != nil {
		return nil, errors.Join(err, a.Remove())
	}
	return a, nil
}

func withDefaults(spec Spec) (Spec, error) {
	if !spec.Address.IsValid() {
		return spec, fmt.Errorf("service address %v: want an address with prefix length", spec.Address)
	}
	if spec.Interface == "" {
		return spec, fmt.Errorf("service address %v: interface is empty: want the link to put it on", spec.Address)
	}
	is4 := spec.Address.Addr().Is4()
	for _, r := range spec.Routes {
		if !r.IsValid() || r.Addr().Is4() != is4 {
			return spec, fmt.Errorf("service address %v: route %v: want a prefix of the address's family", spec.Address, r)
		}
	}
	if spec.Gateway.IsValid() && spec.Gateway.Is4() != is4 {
		return spec, fmt.Errorf("service address %v: gateway %v: want an address of the same family", spec.Address, spec.Gateway)
	}
	if spec.Table == 0 {
		spec.Table = DefaultTable
	}
	if spec.Priority == 0 {
		spec.Priority = DefaultPriority
	}
	if spec.Table < 0 || spec.Priority < 0 {
		return spec, fmt.Errorf("service address %v: table %d priority %d: want non-negative", spec.Address, spec.Table, spec.Priority)
	}
	return spec, nil
}

func (a *Applied) apply(spec Spec) error {
	link, err := a.h.LinkByName(spec.Interface)
	if err != nil {
		return fmt.Errorf("service address %v: interface %q: %w", spec.Address, spec.Interface, err)
	}
	a.link = link
	if err := a.applyAddr(spec); err != nil {
		return err
	}
	for _, r := range spec.Routes {
		if err := a.applyRoute(spec, r); err != nil {
			return err
		}
	}
	return a.applyRule(spec)
}

func (a *Applied) applyAddr(spec Spec) error {
	have, err := a.h.AddrList(a.link, family(spec.Address.Addr()))
	if err != nil {
		return fmt.Errorf("service address %v: list addresses of %s: %w", spec.Address, spec.Interface, err)
	}
	want := ip(spec.Address.Addr())
	for _, h := range have {
		if h.IP.Equal(want) {
			return nil // someone else's: keep it and leave it in place on Remove
		}
	}
	addr := &netlink.Addr{IPNet: ipNet(spec.Address)}
	if spec.Address.Addr().Is6() {
		// A tentative address cannot be a route's source; no DAD for a tunnel-only address.
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := a.h.AddrAdd(a.link, addr); err != nil {
		return fmt.Errorf("service address %v: add to %s: %w", spec.Address, spec.Interface, err)
	}
	a.addr = addr
	return nil
}

func (a *Applied) applyRoute(spec Spec, dst netip.Prefix) error {
	want := &netlink.Route{
		LinkIndex: a.link.Attrs().Index,
		Dst:       ipNet(dst.Masked()),
		Src:       ip(spec.Address.Addr()),
		Table:     spec.Table,
		Scope:     netlink.SCOPE_LINK,
	}
	if spec.Gateway.IsValid() {
		want.Gw = ip(spec.Gateway)
		want.Scope = netlink.SCOPE_UNIVERSE
	}
	have, err := a.h.RouteListFiltered(family(dst.Addr()), &netlink.Route{Table: spec.Table, Dst: want.Dst},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("service address %v: list routes to %v in table %d: %w", spec.Address, dst, spec.Table, err)
	}
	for _, r := range have {
		if r.LinkIndex == want.LinkIndex && r.Src.Equal(want.Src) && r.Gw.Equal(want.Gw) {
			return nil
		}
		return fmt.Errorf("service address %v: route to %v in table %d exists with dev index %d src %v via %v: want dev %s src %v via %v",
			spec.Address, dst, spec.Table, r.LinkIndex, r.Src, r.Gw, spec.Interface, want.Src, want.Gw)
	}
	if err := a.h.RouteAdd(want); err != nil {
		return fmt.Errorf("service address %v: add route to %v dev %s table %d: %w", spec.Address, dst, spec.Interface, spec.Table, err)
	}
	a.routes = append(a.routes, want)
	return nil
}

func (a *Applied) applyRule(spec Spec) error {
	fam := family(spec.Address.Addr())
	if r, err := a.findRule(fam, spec.Priority); err != nil || r != nil {
		return err
	}
	rule := netlink.NewRule()
	rule.Family = fam
	rule.Table = spec.Table
	rule.Priority = spec.Priority
	if err := a.h.RuleAdd(rule); err != nil {
		return fmt.Errorf("service address %v: add rule lookup %d pref %d: %w", spec.Address, spec.Table, spec.Priority, err)
	}
	a.rule = rule
	return nil
}

// findRule returns the plain "lookup table pref priority" rule if it exists.
func (a *Applied) findRule(fam, priority int) (*netlink.Rule, error) {
	filter := &netlink.Rule{Table: a.table, Priority: priority}
	rules, err := a.h.RuleListFiltered(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
	if err != nil {
		return nil, fmt.Errorf("list rules for table %d: %w", a.table, err)
	}
	for _, r := range rules {
		if r.Src == nil && r.Dst == nil && r.Mark == 0 && r.Mask == nil && !r.Invert && r.IifName == "" && r.OifName == "" {
			return &r, nil
		}
	}
	return nil, nil
}

// Remove deletes what Apply added: its routes, then the address. The rule it added goes
// only once its table holds no routes any more, since other Applied values may share it.
// Parts that are already gone are not an error. Remove closes the netlink handle; calling
// it again does nothing.
func (a *Applied) Remove() error {
	if a.removed {
		return nil
	}
	a.removed = true
	defer a.h.Close()
	var errs []error
	for _, r := range a.routes {
		if err := a.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route to %v table %d: %w", r.Dst, r.Table, err))
		}
	}
	if a.rule != nil {
		left, err := a.h.RouteListFiltered(a.rule.Family, &netlink.Route{Table: a.table}, netlink.RT_FILTER_TABLE)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("list routes of table %d: %w", a.table, err))
		case len(left) == 0:
			if err := a.h.RuleDel(a.rule); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete rule lookup %d pref %d: %w", a.table, a.rule.Priority, err))
			}
		}
	}
	if a.addr != nil {
		if err := a.h.AddrDel(a.link, a.addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("delete address %v from %s: %w", a.addr.IPNet, a.link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: ip(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
