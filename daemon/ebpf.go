package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/datapath"
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

// ebpfProgs is the loaded eBPF programs and the daemon's view of what their maps hold: the
// tunnels' policies and the state of each tunnel's outbound SA.
// Its methods are safe for concurrent use; a nil *ebpfProgs (no eBPF) does nothing.
type ebpfProgs struct {
	l        *loader.Loader
	log      *slog.Logger
	attached []string // "tc egress espgw0", "xdp wan0", for status

	mu       sync.Mutex
	cfg      config.EBPF
	ids      map[datapath.Policy]uint32 // classifier policy ids of the installed policies
	nextID   uint32
	policies map[uint32]ebpfPolicy // by classifier policy id
	sas      map[uint32]ebpfSA     // by reqid: the tunnel's newest outbound SA
	pending  map[uint32]time.Time  // inbound SPIs allocated but not yet installed
}

// ebpfPolicy is one tunnel's policy as handed to the loader.
type ebpfPolicy struct {
	conn, tunnel string
	reqID        uint32
	sel          datapath.Selector
	priority     uint32
}

// ebpfSA is what the MSS clamp of a tunnel depends on, and its outbound SPI.
type ebpfSA struct {
	spiOut uint32
	natt   bool
	enc    datapath.Encryption
	integ  datapath.Integrity
}

// pendingSPITimeout bounds how long an allocated inbound SPI passes the XDP SPI filter
// before its SA is installed: long enough for any quick mode with retransmissions.
const pendingSPITimeout = 2 * time.Minute

// offError says the eBPF programs are off on purpose, not for a failure.
type offError string

func (e offError) Error() string { return string(e) }

// openEBPF loads the programs and attaches them for the datapath d.dp, or returns why it
// could not (an offError if they are off on purpose); then nothing is left attached.
func (d *daemon) openEBPF(cfg *config.Config) (*ebpfProgs, error) {
	if d.opts.OpenLoader == nil {
		return nil, offError("this espgw has no eBPF loader")
	}
	if !cfg.EBPF.Enabled {
		return nil, offError("ebpf.enabled is false")
	}
	l, err := d.opts.OpenLoader(loader.Options{XDP: xdpFilters(cfg.EBPF)})
	if err != nil {
		return nil, err
	}
	e := newEBPFProgs(l, cfg.EBPF, d.log.With("component", "ebpf"))
	if err := errors.Join(e.attach(d.dp, cfg), l.SetPeers(peers(cfg))); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return e, nil
}

// newEBPFProgs wraps an open loader that holds no policies yet.
func newEBPFProgs(l *loader.Loader, cfg config.EBPF, log *slog.Logger) *ebpfProgs {
	return &ebpfProgs{l: l, log: log, cfg: cfg, ids: make(map[datapath.Policy]uint32),
		policies: make(map[uint32]ebpfPolicy), sas: make(map[uint32]ebpfSA), pending: make(map[uint32]time.Time)}
}

// attach puts the programs on the interfaces (see the comment at the top of this file).
func (e *ebpfProgs) attach(dp datapath.Datapath, cfg *config.Config) error {
	wan := cfg.EBPF.WANInterface
	if wan == "" {
		var err error
		if wan, err = routeInterface(cfg.Connections[0].RemoteAddress); err != nil {
			return fmt.Errorf("ebpf.wan_interface is not set and %w", err)
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
			return fmt.Errorf("datapath %s does not name its TUN device", dp.Name())
		}
		hooks = []hook{{tun.TUNName(), loader.HookEgress}, {tun.TUNName(), loader.HookIngress}}
	case KindXFRM:
		hooks = []hook{{wan, loader.HookIngress}}
	default:
		return fmt.Errorf("datapath %s: no attach points known (want %s or %s)", dp.Name(), KindXFRM, KindUserspace)
	}
	for _, h := range hooks {
		if err := e.l.AttachTC(h.ifname, h.hook, loader.TCOptions{}); err != nil {
			return err
		}
		e.attached = append(e.attached, fmt.Sprintf("tc %v %s", h.hook, h.ifname))
	}
	if err := e.l.AttachXDP(wan); err != nil {
		return err
	}
	e.attached = append(e.attached, "xdp "+wan)
	return nil
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

// reconfigure applies a reloaded configuration: peers, XDP filters, the SA-down action and
// the MSS clamp of every policy.
func (e *ebpfProgs) reconfigure(cfg *config.Config) error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = cfg.EBPF
	errs := []error{e.l.SetPeers(peers(cfg)), e.l.SetXDPFilters(xdpFilters(cfg.EBPF))}
	for id := range e.policies {
		errs = append(errs, e.writePolicy(id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	return nil
}

// forwardEvents turns interesting-traffic events into acquires until ctx ends or the
// loader closes.
func (d *daemon) forwardEBPFEvents(ctx context.Context) {
	events := d.ebpf.l.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			f := ev.Flow
			reqID := d.ebpf.reqID(ev.PolicyID)
			d.log.Debug("eBPF: traffic for a tunnel whose SA is down", "reqid", reqID,
				"src", f.Src, "dst", f.Dst, "proto", f.Proto, "sport", f.SrcPort, "dport", f.DstPort)
			d.handleEvent(datapath.Event{Kind: datapath.EventAcquire, ReqID: reqID})
		}
	}
}

// close detaches everything and frees the maps.
func (e *ebpfProgs) close() error {
	if e == nil {
		return nil
	}
	return e.l.Close()
}
