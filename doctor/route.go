package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/espgw/espgw/model"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/daemon"
	"github.com/espgw/espgw/loader"
)

// checkAddresses checks, per connection, that local_address is on this host, the route to
// the peer with its MTU and the MSS the eBPF clamp will use, and the service address: on
// its interface and the source of the routes into the tunnels while the daemon runs.
func checkAddresses(r *report, cfg *config.Config, st *control.Status) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		r.fail(IDLocalAddress, "", "run espgw doctor as root", "list addresses: %v", err)
		return
	}
	for _, c := range cfg.Connections {
		if link := linkWith(addrs, c.LocalAddress); link == "" {
			r.fail(IDLocalAddress, c.Name, fmt.Sprintf("add it (ip addr add %s/24 dev eth0) or correct connections.%s.local_address", c.LocalAddress, c.Name),
				"local_address %s is on no interface of this host: IKE cannot bind it", c.LocalAddress)
		} else {
			r.ok(IDLocalAddress, c.Name, "local_address %s is on %s", c.LocalAddress, link)
		}
		checkPeerRoute(r, cfg, c, st)
		if c.ServiceAddress != nil {
			checkServiceAddress(r, c, addrs, st != nil)
		}
	}
}

// linkWith returns the name of the interface holding a, "" if none does.
func linkWith(addrs []netlink.Addr, a netip.Addr) string {
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			if l, err := netlink.LinkByIndex(x.LinkIndex); err == nil {
				return l.Attrs().Name
			}
			return fmt.Sprintf("ifindex %d", x.LinkIndex)
		}
	}
	return ""
}

// routeTo is the kernel's route to dst: the device, source and MTU (the route's, else the
// device's).
func routeTo(dst netip.Addr) (dev string, src netip.Addr, mtu int, err error) {
	rs, err := netlink.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return "", netip.Addr{}, 0, err
	}
	if len(rs) == 0 {
		return "", netip.Addr{}, 0, fmt.Errorf("no route")
	}
	rt := rs[0]
	src, _ = netip.AddrFromSlice(rt.Src)
	mtu = rt.MTU
	if l, err := netlink.LinkByIndex(rt.LinkIndex); err == nil {
		dev = l.Attrs().Name
		if mtu == 0 {
			mtu = l.Attrs().MTU
		}
	}
	return dev, src.Unmap(), mtu, nil
}

// checkPeerRoute reports the route to the peer, its MTU and the MSS clamped per tunnel
// (loader.ClampMSS of the tunnel's first proposal, with and without NAT-T when not known).
func checkPeerRoute(r *report, cfg *config.Config, c model.Connection, st *control.Status) {
	dev, src, mtu, err := routeTo(c.RemoteAddress)
	if err != nil {
		r.fail(IDRoute, c.Name, fmt.Sprintf("add a route (ip route add %s via GATEWAY) or a default route", c.RemoteAddress),
			"no route to the peer %s: %v", c.RemoteAddress, err)
		return
	}
	natt := map[bool]bool{} // the NAT-T cases to show
	switch {
	case c.IKE.NATTraversal == model.NATTForce:
		natt[true] = true
	case c.IKE.NATTraversal == model.NATTOff:
		natt[false] = true
	case st != nil && liveNATT(st, c.Name) != nil:
		natt[*liveNATT(st, c.Name)] = true
	default:
		natt[false], natt[true] = true, true
	}
	pathMTU := min(mtu, cfg.EBPF.PathMTU)
	var clamps []string
	mss := map[string]any{}
	for _, t := range c.Tunnels {
		if len(t.Proposals) == 0 {
			continue
		}
		tr, err := daemon.ESPTransform(t.Proposals[0])
		if err != nil {
			continue
		}
		var vals []string
		for _, n := range []bool{false, true} {
			if !natt[n] {
				continue
			}
			v, err := loader.ClampMSS(pathMTU, n, tr.Enc, tr.Integ)
			if err != nil {
				vals = append(vals, err.Error())
				continue
			}
			s := fmt.Sprint(v)
			if n {
				s += " with NAT-T"
				mss[t.Name+"_natt"] = v
			} else {
				mss[t.Name] = v
			}
			vals = append(vals, s)
		}
		clamps = append(clamps, fmt.Sprintf("%s %s", t.Name, strings.Join(vals, ", ")))
	}
	clamp := "MSS clamp " + strings.Join(clamps, "; ")
	if !cfg.EBPF.Enabled || !cfg.EBPF.MSSClamp {
		clamp = "no MSS clamp (ebpf.mss_clamp off): " + clamp + " would fit"
	}
	details := map[string]any{"peer": c.RemoteAddress.String(), "device": dev, "mtu": mtu, "mss": mss}
	if src.IsValid() {
		details["source"] = src.String()
	}
	msg := fmt.Sprintf("to %s via %s (source %v), MTU %d: %s", c.RemoteAddress, dev, src, mtu, clamp)
	if cfg.EBPF.Enabled && cfg.EBPF.MSSClamp && cfg.EBPF.PathMTU > mtu {
		r.warn(IDRoute, c.Name, fmt.Sprintf("set ebpf.path_mtu: %d", mtu),
			"%s; ebpf.path_mtu %d is above the route's MTU %d (clamped with %d here), so the daemon's clamp lets through segments that fragment", msg, cfg.EBPF.PathMTU, mtu, mtu).Details = details
		return
	}
	r.ok(IDRoute, c.Name, "%s", msg).Details = details
}

// liveNATT reports whether the connection's newest ISAKMP SA detected a NAT; nil without one.
func liveNATT(st *control.Status, conn string) *bool {
	var out *bool
	for _, s := range st.IKESAs {
		if s.Connection == conn && s.State == "ESTABLISHED" {
			v := s.NATT
			out = &v
		}
	}
	return out
}

// checkServiceAddress checks the service address: its interface exists, and while espgw runs
// the address is on it and every tunnel whose local subnet holds it routes from it.
func checkServiceAddress(r *report, c model.Connection, addrs []netlink.Addr, daemonUp bool) {
	sa := c.ServiceAddress
	subj := c.Name
	link, err := netlink.LinkByName(sa.Interface)
	if err != nil {
		r.fail(IDServiceAddress, subj, fmt.Sprintf("correct connections.%s.service_address.interface (ip link lists the interfaces)", c.Name),
			"interface %q of service address %s: %v", sa.Interface, sa.Address, err)
		return
	}
	on := linkWith(addrs, sa.Address.Addr())
	switch {
	case !daemonUp && on == "":
		r.ok(IDServiceAddress, subj, "espgw adds %s to %s when it starts", sa.Address, sa.Interface)
		return
	case !daemonUp && on == sa.Interface:
		r.ok(IDServiceAddress, subj, "%s is already on %s; espgw uses it and leaves it there", sa.Address, sa.Interface)
		return
	case !daemonUp:
		r.warn(IDServiceAddress, subj, fmt.Sprintf("remove it there (ip addr del %s dev %s): espgw puts it on %s", sa.Address, on, sa.Interface),
			"%s is on %s, not on %s", sa.Address, on, sa.Interface)
		return
	case on != sa.Interface:
		where := "on no interface"
		if on != "" {
			where = "on " + on + " instead"
		}
		r.fail(IDServiceAddress, subj,
			"restart espgw (it adds the address at start), and keep network scripts (ifupdown, netplan, DHCP clients) from flushing "+sa.Interface+"'s addresses",
			"service address %s is missing from %s (%s): espgw added it at start and something removed it, so the tunnel's traffic has no source address",
			sa.Address, sa.Interface, where).Details = map[string]any{"address": sa.Address.String(), "interface": sa.Interface}
		return
	}
	var bad []string
	for _, t := range c.Tunnels {
		if !slices.ContainsFunc(t.LocalSubnets, func(p netip.Prefix) bool { return p.Contains(sa.Address.Addr()) }) {
			continue
		}
		for _, remote := range t.RemoteSubnets {
			dst := remote.Addr().Next()
			if remote.Bits() >= 31 {
				dst = remote.Addr()
			}
			dev, src, _, err := routeTo(dst)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: no route to %s: %v", t.Name, dst, err))
			case src != sa.Address.Addr():
				bad = append(bad, fmt.Sprintf("%s: traffic to %s leaves via %s from %v, not from %s", t.Name, dst, dev, src, sa.Address.Addr()))
			}
		}
	}
	if len(bad) > 0 {
		r.fail(IDServiceAddress, subj, "look for a route or rule in front of espgw's (ip rule; ip route get ADDRESS), or restart espgw",
			"%s is on %s but %s", sa.Address, link.Attrs().Name, strings.Join(bad, "; "))
		return
	}
	r.ok(IDServiceAddress, subj, "%s is on %s and the tunnels' traffic leaves from it", sa.Address, sa.Interface)
}
