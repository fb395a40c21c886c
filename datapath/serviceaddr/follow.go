package serviceaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nextHop is where the route to the peer leaves: an interface and, unless the peer is
// on-link, a gateway.
type nextHop struct {
	index int
	name  string
	gw    netip.Addr
}

// peerHop asks the kernel how it reaches the peer (ip route get PEER [from LOCAL]).
func (a *Applied) peerHop() (nextHop, error) {
	opts := &netlink.RouteGetOptions{}
	if a.spec.Local.IsValid() {
		opts.SrcAddr = ip(a.spec.Local)
	}
	rs, err := a.h.RouteGetWithOptions(ip(a.spec.Peer), opts)
	if err != nil {
		return nextHop{}, fmt.Errorf("service address %v: route to peer %v from %v: %w", a.spec.Address, a.spec.Peer, a.spec.Local, err)
	}
	if len(rs) == 0 {
		return nextHop{}, fmt.Errorf("service address %v: route to peer %v: the kernel returned none", a.spec.Address, a.spec.Peer)
	}
	link, err := a.h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return nextHop{}, fmt.Errorf("service address %v: route to peer %v: interface index %d: %w", a.spec.Address, a.spec.Peer, rs[0].LinkIndex, err)
	}
	if isLoopback(link) {
		return nextHop{}, fmt.Errorf("service address %v: route to peer %v goes through loopback %s: want the peer reached over a network link", a.spec.Address, a.spec.Peer, link.Attrs().Name)
	}
	hop := nextHop{index: rs[0].LinkIndex, name: link.Attrs().Name}
	if gw, ok := netip.AddrFromSlice(rs[0].Gw); ok {
		hop.gw = gw.Unmap()
	}
	return hop, nil
}

// route is the route to dst through hop, from the service address.
func (a *Applied) route(dst netip.Prefix, hop nextHop) *netlink.Route {
	r := &netlink.Route{
		LinkIndex: hop.index,
		Dst:       ipNet(dst),
		Src:       ip(a.spec.Address.Addr()),
		Table:     a.spec.Table,
		Scope:     netlink.SCOPE_LINK,
	}
	if hop.gw.IsValid() {
		r.Gw = ip(hop.gw)
		r.Scope = netlink.SCOPE_UNIVERSE
	}
	return r
}

func sameRoute(have, want *netlink.Route) bool {
	return have.LinkIndex == want.LinkIndex && have.Src.Equal(want.Src) && have.Gw.Equal(want.Gw)
}

// tableRoutes lists the routes to exactly dst in the service table.
func (a *Applied) tableRoutes(dst netip.Prefix) ([]netlink.Route, error) {
	rs, err := a.h.RouteListFiltered(family(dst.Addr()), &netlink.Route{Table: a.spec.Table, Dst: ipNet(dst)},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("service address %v: list routes to %v in table %d: %w", a.spec.Address, dst, a.spec.Table, err)
	}
	return rs, nil
}

// follow points the routes Apply added at the current way to the peer and puts back any
// the kernel flushed (it drops routes silently when their link goes down). If the peer is
// unreachable the routes stay as they are: without them traffic to the remote subnets would
// pick another source, miss the policy and leave in clear.
func (a *Applied) follow() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.removed {
		return
	}
	hop, err := a.peerHop()
	if err != nil {
		a.log.Warn("cannot follow the route to the peer: routes to the remote subnets kept as they are", "err", err)
		return
	}
	for dst, old := range a.routes {
		want := a.route(dst, hop)
		have, err := a.tableRoutes(dst)
		if err != nil {
			a.log.Warn("cannot check the route to a remote subnet", "remote_subnet", dst, "err", err)
			continue
		}
		if len(have) == 1 && sameRoute(&have[0], want) {
			continue
		}
		if err := a.h.RouteReplace(want); err != nil {
			a.log.Error("cannot move the route to a remote subnet onto the route to the peer", "remote_subnet", dst,
				"dev", hop.name, "via", hop.gw, "err", err)
			continue
		}
		a.routes[dst] = want
		a.log.Info("route to a remote subnet follows the route to the peer", "remote_subnet", dst, "peer", a.spec.Peer,
			"dev", hop.name, "via", hop.gw, "was_dev_index", old.LinkIndex, "was_via", old.Gw)
	}
}

// watcher calls a function after routes, links or addresses change, coalescing bursts:
// at most one call runs and at most one more is pending.
type watcher struct {
	sock *nl.NetlinkSocket
	wg   sync.WaitGroup
	once sync.Once
	done chan struct{}
}

// onStop receives the error that ended the subscription before stop was called.
func startWatcher(ns netns.NsHandle, onChange func(), onStop func(error)) (*watcher, error) {
	sock, err := nl.SubscribeAt(ns, netns.None(), unix.NETLINK_ROUTE,
		unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR)
	if err != nil {
		return nil, fmt.Errorf("subscribe to route updates: %w", err)
	}
	w := &watcher{sock: sock, done: make(chan struct{})}
	kick := make(chan struct{}, 1)
	w.wg.Go(func() {
		defer close(kick)
		for {
			_, _, err := sock.Receive()
			select {
			case <-w.done:
				return
			default:
			}
			// ENOBUFS: updates were lost, which is one more reason to look again.
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				onStop(err)
				return
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	w.wg.Go(func() {
		for range kick {
			onChange()
		}
	})
	return w, nil
}

func (w *watcher) stop() {
	w.once.Do(func() {
		close(w.done)
		w.sock.Close()
	})
	w.wg.Wait()
}

func isLoopback(l netlink.Link) bool { return l.Attrs().RawFlags&unix.IFF_LOOPBACK != 0 }
