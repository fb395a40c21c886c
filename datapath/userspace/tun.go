package userspace

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/espgw/espgw/datapath"
)

// TUN is the device inner packets leave and arrive through, as wireguard-go's tun.Device
// is for its device. The default, made by New, is a kernel TUN opened with IFF_VNET_HDR;
// tests inject a channel TUN (datapath/userspace/tuntest) and run whole tunnels without
// root. The datapath owns it: Close closes it.
type TUN interface {
	// Name names the device in logs and routes.
	Name() string
	// BatchSize is the most packets one Read returns.
	BatchSize() int
	// Read reads up to len(bufs) packets, packet i into bufs[i][offset:] and its length into
	// sizes[i]; a kernel TUN splits TSO super-packets into segments here. After Close it
	// returns an error.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write writes one packet, the concatenation of pieces: pieces[0] is its 10-byte struct
	// virtio_net_hdr (host byte order; it may make the packet a TCP GSO super-packet or ask
	// for checksum completion), the rest its IP header and payload. Write does not keep
	// pieces.
	Write(pieces [][]byte) error
	// Close closes the device and unblocks Read.
	Close() error
}

// Routes points the remote prefix of every policy at the TUN. AddPolicy and DeletePolicy
// call it under the datapath's policy lock (not the one AllocSPI takes).
type Routes interface {
	// Add routes the remote prefix of each selector into the TUN; an address configured on
	// the host inside its local prefix becomes the route's source. errs[i] is sels[i]'s
	// outcome. Routes are reference-counted per remote prefix.
	Add(sels []datapath.Selector) (errs []error)
	// Release drops one reference taken by Add and removes the route with the last one.
	Release(remote netip.Prefix) error
	// Close removes every route Add installed.
	Close() error
}

// noRoutes is the Routes of an injected TUN: its owner routes traffic into it.
type noRoutes struct{}

func (noRoutes) Add(sels []datapath.Selector) []error { return make([]error, len(sels)) }
func (noRoutes) Release(remote netip.Prefix) error    { return nil }
func (noRoutes) Close() error                         { return nil }

// kernelTUN is the default TUN: a Linux TUN device, read through wireguard-go (which
// splits TSO super-packets) and written with writev (tunwrite.go).
type kernelTUN struct {
	dev  tun.Device
	name string
	w    *tunWriter
}

// createTUN creates the TUN device name with mtu in the calling thread's network namespace.
func createTUN(name string, mtu int) (_ *kernelTUN, err error) {
	t := &kernelTUN{}
	if t.dev, err = tun.CreateTUN(name, mtu); err != nil {
		return nil, fmt.Errorf("userspace: create TUN %q: %w", name, err)
	}
	defer func() {
		if err != nil {
			t.dev.Close()
		}
	}()
	if t.name, err = t.dev.Name(); err != nil {
		return nil, fmt.Errorf("userspace: TUN name: %w", err)
	}
	if t.w, err = newTUNWriter(t.dev.File()); err != nil {
		return nil, fmt.Errorf("userspace: TUN %q writer: %w", t.name, err)
	}
	go func() {
		for range t.dev.Events() { // link state is not used; the channel closes with the device
		}
	}()
	return t, nil
}

func (t *kernelTUN) Name() string   { return t.name }
func (t *kernelTUN) BatchSize() int { return t.dev.BatchSize() }
func (t *kernelTUN) Close() error   { return t.dev.Close() }

func (t *kernelTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return t.dev.Read(bufs, sizes, offset)
}

func (t *kernelTUN) Write(pieces [][]byte) error { return t.w.write(pieces) }

// netlinkRoutes is the default Routes: routes into the kernel TUN in a policy routing table.
type netlinkRoutes struct {
	h           *netlink.Handle
	link        netlink.Link
	table, prio int
	routes      routeTable
}

// newNetlinkRoutes brings the TUN named dev up and routes into it through table, looked up
// by a rule of priority prio, in the calling thread's network namespace.
func newNetlinkRoutes(dev string, table, prio int) (_ *netlinkRoutes, err error) {
	r := &netlinkRoutes{table: table, prio: prio}
	if r.h, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("userspace: netlink: %w", err)
	}
	defer func() {
		if err != nil {
			r.h.Close()
		}
	}()
	if r.link, err = r.h.LinkByName(dev); err != nil {
		return nil, fmt.Errorf("userspace: TUN %q: %w", dev, err)
	}
	if err = r.h.LinkSetUp(r.link); err != nil {
		return nil, fmt.Errorf("userspace: set TUN %q up: %w", dev, err)
	}
	return r, nil
}

// Add lists the host's addresses once for all of sels: listing them per route made
// installing n policies O(n²) with an address per policy (1,000 policies: 2.7 s of a 3.4 s
// start, bench/setup BenchmarkStart). The selectors of one remote prefix (a tunnel's local
// subnets) share its route, whose source is the first of their local sides that holds an
// address of this host.
func (r *netlinkRoutes) Add(sels []datapath.Selector) []error {
	addrs, _ := r.h.AddrList(nil, 0) // without them the routes go without a source
	srcs := make(map[netip.Prefix]netip.Addr)
	for _, sel := range sels {
		if src := localSource(addrs, sel.Local); src.IsValid() && !srcs[sel.Remote.Masked()].IsValid() {
			srcs[sel.Remote.Masked()] = src
		}
	}
	errs := make([]error, len(sels))
	for i, sel := range sels {
		errs[i] = r.routes.add(r.h, r.link, r.table, r.prio, sel.Remote, srcs[sel.Remote.Masked()])
	}
	return errs
}

func (r *netlinkRoutes) Release(remote netip.Prefix) error { return r.routes.release(r.h, remote) }

func (r *netlinkRoutes) Close() error {
	err := r.routes.removeAll(r.h)
	r.h.Close()
	return err
}

// localSource returns an address configured on an interface here that lies inside the local
// selector (the service address, or the gateway's own address in its LAN): the route then
// makes the kernel pick it as the source of the host's own traffic, which the selector
// matches. Without one the kernel would pick the WAN address, which no selector matches.
func localSource(addrs []netlink.Addr, local netip.Prefix) netip.Addr {
	if !local.IsValid() {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && local.Contains(ip.Unmap()) {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
