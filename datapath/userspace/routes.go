package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeTable tracks the routes into the TUN and the policy rules this datapath added, so
// that it removes exactly those. Routes are shared by policies with the same remote prefix.
type routeTable struct {
	refs  map[netip.Prefix]int
	added map[netip.Prefix]*netlink.Route
	rules map[int]*netlink.Rule // by address family
}

// add routes remote into the TUN in table, from src when src is valid, and installs the
// "lookup table" rule for the family on first use.
func (r *routeTable) add(h *netlink.Handle, link netlink.Link, table, prio int, remote netip.Prefix, src netip.Addr) error {
	if r.refs == nil {
		r.refs, r.added, r.rules = map[netip.Prefix]int{}, map[netip.Prefix]*netlink.Route{}, map[int]*netlink.Rule{}
	}
	remote = remote.Masked()
	if r.refs[remote] > 0 {
		r.refs[remote]++
		return nil
	}
	family := unix.AF_INET
	if remote.Addr().Is6() {
		family = unix.AF_INET6
	}
	if _, ok := r.rules[family]; !ok {
		rule := netlink.NewRule()
		rule.Family, rule.Table, rule.Priority = family, table, prio
		if err := h.RuleAdd(rule); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("userspace: ip rule lookup %d priority %d: %w", table, prio, err)
		} else if err == nil {
			r.rules[family] = rule
		} else {
			r.rules[family] = nil // someone else's rule: use it, never delete it
		}
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: remote.Addr().AsSlice(), Mask: net.CIDRMask(remote.Bits(), remote.Addr().BitLen())},
		Table:     table,
		Scope:     netlink.SCOPE_LINK,
	}
	if src.IsValid() {
		route.Src = src.AsSlice()
	}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("userspace: route %v dev %s table %d src %v: %w", remote, link.Attrs().Name, table, src, err)
	}
	r.refs[remote] = 1
	r.added[remote] = route
	return nil
}

// release drops one reference to the route for remote and deletes it with the last one;
// with no routes left the rules go too.
func (r *routeTable) release(h *netlink.Handle, remote netip.Prefix) error {
	remote = remote.Masked()
	if r.refs[remote] == 0 {
		return nil
	}
	if r.refs[remote]--; r.refs[remote] > 0 {
		return nil
	}
	var errs []error
	if err := h.RouteDel(r.added[remote]); err != nil && !errors.Is(err, unix.ESRCH) {
		errs = append(errs, fmt.Errorf("userspace: delete route %v: %w", remote, err))
	}
	delete(r.refs, remote)
	delete(r.added, remote)
	if len(r.refs) == 0 {
		errs = append(errs, r.removeRules(h))
	}
	return errors.Join(errs...)
}

func (r *routeTable) removeRules(h *netlink.Handle) error {
	var errs []error
	for fam, rule := range r.rules {
		if rule != nil {
			if err := h.RuleDel(rule); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("userspace: delete rule lookup %d: %w", rule.Table, err))
			}
		}
		delete(r.rules, fam)
	}
	return errors.Join(errs...)
}

// removeAll deletes every route and rule that add installed.
func (r *routeTable) removeAll(h *netlink.Handle) error {
	var errs []error
	for p, route := range r.added {
		// Routes via the TUN vanish with it; ESRCH/ENODEV then mean "already gone".
		if err := h.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("userspace: delete route %v: %w", p, err))
		}
		delete(r.added, p)
		delete(r.refs, p)
	}
	errs = append(errs, r.removeRules(h))
	return errors.Join(errs...)
}
