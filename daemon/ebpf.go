package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/ebpfdp"
	"github.com/espgw/espgw/loader"
)

// Where the programs go. With the userspace datapath the TUN device carries the protected
// traffic in clear: its egress sees packets before Go encrypts them (classify, count, fail
// closed, clamp), its ingress the decrypted ones (count, clamp). With XFRM no device sees
// outbound plaintext: the xfrm output transform runs before the packet reaches the WAN
// device, whose egress only ever sees ESP, and the kernel's own policy already drops and
// ACQUIREs traffic without an SA. Decrypted inbound packets do re-enter the stack through
// the WAN device, so its ingress is where the classifier counts and clamps for XFRM. The XDP
// filter always sits on the WAN device.

// offError says the eBPF programs are off on purpose, not for a failure.
type offError string

func (e offError) Error() string { return string(e) }

// openEBPF loads the programs, attaches them for the datapath d.dp and wraps d.dp so that
// they follow what it installs; it returns where they are attached, or why it could not (an
// offError if they are off on purpose); then nothing is left attached.
func (d *daemon) openEBPF(cfg *config.Config) (*ebpfdp.Datapath, []string, error) {
	if d.opts.OpenLoader == nil {
		return nil, nil, offError("this espgw has no eBPF loader")
	}
	if !cfg.EBPF.Enabled {
		return nil, nil, offError("ebpf.enabled is false")
	}
	l, err := d.opts.OpenLoader(loader.Options{XDP: xdpFilters(cfg.EBPF)})
	if err != nil {
		return nil, nil, err
	}
	attached, err := attach(l, d.dp, cfg)
	if err != nil {
		return nil, nil, errors.Join(err, l.Close())
	}
	e, err := ebpfdp.New(d.dp, l, ebpfOptions(cfg), d.log.With("component", "ebpf"))
	if err != nil {
		return nil, nil, errors.Join(err, l.Close())
	}
	return e, attached, nil
}

// ebpfOptions are the settings of the programs in cfg.
func ebpfOptions(cfg *config.Config) ebpfdp.Options {
	o := ebpfdp.Options{Peers: peers(cfg), XDP: xdpFilters(cfg.EBPF), WhenDown: loader.ActionDrop,
		MSSClamp: cfg.EBPF.MSSClamp, PathMTU: cfg.EBPF.PathMTU}
	if cfg.EBPF.WhenSADown == config.SADownPass {
		o.WhenDown = loader.ActionPass
	}
	return o
}

// attach puts the programs on the interfaces (see the comment at the top of this file).
// It returns where they went: "tc egress espgw0", "xdp wan0".
func attach(l *loader.Loader, dp datapath.Datapath, cfg *config.Config) ([]string, error) {
	wan := cfg.EBPF.WANInterface
	if wan == "" {
		var err error
		if wan, err = routeInterface(cfg.Connections[0].RemoteAddress); err != nil {
			return nil, fmt.Errorf("ebpf.wan_interface is not set and %w", err)
		}
	}
	type hook struct {
		ifname string
		hook   loader.Hook
	}
	var hooks []hook
	switch dp.Name() {
	case KindUserspace:
		tun, ok := dp.(interface{ TUNName() string })
		if !ok {
			return nil, fmt.Errorf("datapath %s does not name its TUN device", dp.Name())
		}
		hooks = []hook{{tun.TUNName(), loader.HookEgress}, {tun.TUNName(), loader.HookIngress}}
	case KindXFRM:
		hooks = []hook{{wan, loader.HookIngress}}
	default:
		return nil, fmt.Errorf("datapath %s: no attach points known (want %s or %s)", dp.Name(), KindXFRM, KindUserspace)
	}
	var attached []string
	for _, h := range hooks {
		if err := l.AttachTC(h.ifname, h.hook, loader.TCOptions{}); err != nil {
			return nil, err
		}
		attached = append(attached, fmt.Sprintf("tc %v %s", h.hook, h.ifname))
	}
	if err := l.AttachXDP(wan); err != nil {
		return nil, err
	}
	return append(attached, "xdp "+wan), nil
}

// routeInterface names the interface the kernel routes dst through.
func routeInterface(dst netip.Addr) (string, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return "", fmt.Errorf("no route to the first peer %v: %w", dst, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return "", fmt.Errorf("the route to the first peer %v names no interface", dst)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("interface %d of the route to %v: %w", routes[0].LinkIndex, dst, err)
	}
	return l.Attrs().Name, nil
}

// peers are the remote addresses of cfg, the only sources IKE is accepted from.
func peers(cfg *config.Config) []netip.Addr {
	var as []netip.Addr
	for _, c := range cfg.Connections {
		if !slices.Contains(as, c.RemoteAddress) {
			as = append(as, c.RemoteAddress)
		}
	}
	return as
}

func xdpFilters(c config.EBPF) loader.XDPFilters {
	return loader.XDPFilters{PassUnknownSPI: !c.DropUnknownSPI, PassNonPeer: !c.DropNonPeerIKE}
}
