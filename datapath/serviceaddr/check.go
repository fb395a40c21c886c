package serviceaddr

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LoopbackRoutes asks the kernel of ns (zero or netns.None(): the current one) how it
// routes traffic from source to each remote subnet and returns one warning per subnet
// whose route goes through a loopback interface: such packets come back into this host
// and never reach the tunnel. A source that is not configured here is left out of the
// lookup; a subnet without any route is not reported.
func LoopbackRoutes(ns netns.NsHandle, source netip.Addr, remotes []netip.Prefix) ([]string, error) {
	if ns == 0 {
		ns = netns.None()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open route netlink: %w", err)
	}
	defer h.Close()
	opts := &netlink.RouteGetOptions{}
	from := ""
	if source.IsValid() {
		local, err := isLocal(h, source)
		if err != nil {
			return nil, err
		}
		if local {
			opts.SrcAddr = ip(source)
			from = " from " + source.String()
		}
	}
	var warnings []string
	for _, p := range remotes {
		dst := probe(p)
		rs, err := h.RouteGetWithOptions(ip(dst), opts)
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || (err == nil && len(rs) == 0) {
			continue
		}
		if err != nil {
			return warnings, fmt.Errorf("route to remote subnet %v (probe %v)%s: %w", p, dst, from, err)
		}
		link, err := h.LinkByIndex(rs[0].LinkIndex)
		if err != nil {
			return warnings, fmt.Errorf("route to remote subnet %v: interface index %d: %w", p, rs[0].LinkIndex, err)
		}
		if isLoopback(link) || rs[0].Type == unix.RTN_LOCAL {
			warnings = append(warnings, fmt.Sprintf("route to remote subnet %v%s goes through loopback %s (table %d): its packets loop back into this host instead of entering the tunnel",
				p, from, link.Attrs().Name, rs[0].Table))
		}
	}
	return warnings, nil
}

// probe is an address inside p to look up: its first host, or p's only address.
func probe(p netip.Prefix) netip.Addr {
	p = p.Masked()
	if p.Bits() < p.Addr().BitLen()-1 {
		return p.Addr().Next()
	}
	return p.Addr()
}

func isLocal(h *netlink.Handle, a netip.Addr) (bool, error) {
	addrs, err := h.AddrList(nil, family(a))
	if err != nil {
		return false, fmt.Errorf("list addresses: %w", err)
	}
	for _, x := range addrs {
		if x.IP.Equal(ip(a)) {
			return true, nil
		}
	}
	return false, nil
}
