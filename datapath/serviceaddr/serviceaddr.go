// Package serviceaddr gives this host the "service address" a partner expects inside an
// IPsec tunnel, when it differs from the tunnel endpoint address.
//
// Apply adds the address to an interface and, in a routing table of its own consulted by a
// rule, a route per remote subnet with that address as preferred source:
//
//	ip addr add SERVICE dev HOME
//	ip route add REMOTE dev OUT [via GW] src SERVICE table 220
//	ip rule add lookup 220 pref 220
//
// HOME is only where the address lives: the WAN link, a dummy interface or lo. OUT and GW
// are what `ip route get PEER from LOCAL` answers, the way the tunnel's ESP leaves, and
// follow it when routing changes (Applied watches route, link and address updates). A
// route "dev lo" would black-hole the tunnel: the packets would loop back into this host
// instead of reaching the XFRM output path.
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
	"log/slog"
	"net"
	"net/netip"
	"sync"

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
	// Interface receives the address. It does not decide where the routes go: lo or a
	// dummy interface are fine homes.
	Interface string
	// Routes are the remote subnets behind the tunnel.
	Routes []netip.Prefix
	// Peer is the tunnel's remote endpoint: the routes leave through the interface and
	// next hop of the route to Peer. Required with Routes.
	Peer netip.Addr
	// Local is the source of that lookup (the tunnel's local endpoint), so that source
	// policy routing is honoured as for the ESP packets themselves; may be zero.
	Local netip.Addr
	// Table is the routing table for the routes; zero means DefaultTable.
	Table int
	// Priority is the preference of the rule that looks Table up; zero means DefaultPriority.
	Priority int
}

// Applied is what Apply changed. Its Remove undoes exactly that.
type Applied struct {
	h    *netlink.Handle
	spec Spec
	log  *slog.Logger
	link netlink.Link
	addr *netlink.Addr // nil if the address was already there
	rule *netlink.Rule // nil if the rule was already there

	mu      sync.Mutex                      // guards routes and removed against the watcher
	routes  map[netip.Prefix]*netlink.Route // only the routes Apply added, as installed now
	removed bool

	watch *watcher // nil when Apply added no routes
}

// Apply configures spec in ns (the zero value or netns.None() mean the current namespace).
// Parts that already exist exactly as wanted are left alone and are not removed later, so
// applying twice is harmless. On error, whatever this call added is removed again.
// The routes Apply adds follow the route to spec.Peer until Remove; log receives what
// that background work changes or fails to change (nil discards).
func Apply(ctx context.Context, ns netns.NsHandle, spec Spec, log *slog.Logger) (*Applied, error) {
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("service address %v: open route netlink: %w", spec.Address, err)
	}
	a := &Applied{h: h, spec: spec, log: log.With("service_address", spec.Address), routes: make(map[netip.Prefix]*netlink.Route)}
	err = a.apply()
	if err == nil && len(a.routes) > 0 {
		a.watch, err = startWatcher(ns, a.follow, func(err error) {
			a.log.Error("route updates lost: routes to the remote subnets no longer follow the route to the peer", "err", err)
		})
		if err != nil {
			err = fmt.Errorf("service address %v: watch the route to peer %v: %w", spec.Address, spec.Peer, err)
		}
	}
	if err != nil {
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
	if len(spec.Routes) > 0 && (!spec.Peer.IsValid() || spec.Peer.Is4() != is4) {
		return spec, fmt.Errorf("service address %v: peer %v: want the tunnel's remote endpoint, of the address's family, to route the remote subnets towards", spec.Address, spec.Peer)
	}
	if spec.Local.IsValid() && spec.Local.Is4() != spec.Peer.Is4() {
		return spec, fmt.Errorf("service address %v: local %v: want an address of peer %v's family", spec.Address, spec.Local, spec.Peer)
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

func (a *Applied) apply() error {
	link, err := a.h.LinkByName(a.spec.Interface)
	if err != nil {
		return fmt.Errorf("service address %v: interface %q: %w", a.spec.Address, a.spec.Interface, err)
	}
	a.link = link
	if err := a.applyAddr(); err != nil {
		return err
	}
	if len(a.spec.Routes) == 0 {
		return nil // the userspace datapath routes into its TUN itself
	}
	hop, err := a.peerHop()
	if err != nil {
		return err
	}
	for _, r := range a.spec.Routes {
		if err := a.applyRoute(r.Masked(), hop); err != nil {
			return err
		}
	}
	return a.applyRule()
}

func (a *Applied) applyAddr() error {
	spec := a.spec
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

func (a *Applied) applyRoute(dst netip.Prefix, hop nextHop) error {
	want := a.route(dst, hop)
	have, err := a.tableRoutes(dst)
	if err != nil {
		return err
	}
	for _, r := range have {
		if sameRoute(&r, want) {
			return nil // someone else's (an earlier Apply): theirs to follow and remove
		}
		return fmt.Errorf("service address %v: route to %v in table %d exists with dev index %d src %v via %v: want dev %s src %v via %v",
			a.spec.Address, dst, a.spec.Table, r.LinkIndex, r.Src, r.Gw, hop.name, want.Src, want.Gw)
	}
	if err := a.h.RouteAdd(want); err != nil {
		return fmt.Errorf("service address %v: add route to %v dev %s via %v table %d: %w", a.spec.Address, dst, hop.name, want.Gw, a.spec.Table, err)
	}
	a.routes[dst] = want
	return nil
}

func (a *Applied) applyRule() error {
	fam := family(a.spec.Address.Addr())
	if r, err := a.findRule(fam); err != nil || r != nil {
		return err
	}
	rule := netlink.NewRule()
	rule.Family = fam
	rule.Table = a.spec.Table
	rule.Priority = a.spec.Priority
	if err := a.h.RuleAdd(rule); err != nil {
		return fmt.Errorf("service address %v: add rule lookup %d pref %d: %w", a.spec.Address, a.spec.Table, a.spec.Priority, err)
	}
	a.rule = rule
	return nil
}

// findRule returns the plain "lookup table pref priority" rule if it exists.
func (a *Applied) findRule(fam int) (*netlink.Rule, error) {
	filter := &netlink.Rule{Table: a.spec.Table, Priority: a.spec.Priority}
	rules, err := a.h.RuleListFiltered(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
	if err != nil {
		return nil, fmt.Errorf("list rules for table %d: %w", a.spec.Table, err)
	}
	for _, r := range rules {
		if r.Src == nil && r.Dst == nil && r.Mark == 0 && r.Mask == nil && !r.Invert && r.IifName == "" && r.OifName == "" {
			return &r, nil
		}
	}
	return nil, nil
}

// Remove stops following the peer's route and deletes what Apply added: its routes, then
// the address. The rule it added goes only once its table holds no routes any more, since
// other Applied values (and the userspace datapath) may share it. Parts that are already
// gone are not an error. Remove closes the netlink handle; calling it again does nothing.
func (a *Applied) Remove() error {
	if a.watch != nil {
		a.watch.stop() // before taking mu: a follow in progress finishes first
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.removed {
		return nil
	}
	a.removed = true
	defer a.h.Close()
	var errs []error
	for dst, r := range a.routes {
		if err := a.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route to %v table %d: %w", dst, r.Table, err))
		}
	}
	if a.rule != nil {
		left, err := a.h.RouteListFiltered(a.rule.Family, &netlink.Route{Table: a.spec.Table}, netlink.RT_FILTER_TABLE)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("list routes of table %d: %w", a.spec.Table, err))
		case len(left) == 0:
			if err := a.h.RuleDel(a.rule); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete rule lookup %d pref %d: %w", a.spec.Table, a.rule.Priority, err))
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
