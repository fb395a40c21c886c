package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Hook says which tc program to attach.
type Hook uint8

const (
	// HookEgress runs on packets about to enter the tunnel: classify (local side = source),
	// count, fail closed while the SA is down, clamp the MSS. Attach it on egress of the
	// interface that carries the protected traffic.
	HookEgress Hook = iota + 1
	// HookIngress runs on packets that came out of the tunnel (local side = destination):
	// classify, count, clamp the MSS. Attach it on ingress of the decrypted side.
	HookIngress
	// HookLANIngress runs HookEgress's program on ingress of a LAN interface: for gateways
	// that forward a protected LAN into kernel XFRM, where packets bound for the tunnel
	// arrive from the LAN (local side = source) and never leave through a device of ours.
	HookLANIngress
)

func (h Hook) String() string {
	switch h {
	case HookEgress:
		return "egress"
	case HookIngress:
		return "ingress"
	case HookLANIngress:
		return "lan-ingress"
	}
	return fmt.Sprintf("Hook(%d)", uint8(h))
}

// TCOptions tune AttachTC.
type TCOptions struct {
	// Legacy attaches through a clsact qdisc and a direct-action cls_bpf filter even where the
	// kernel has TCX (Linux 6.6); without it that path is only taken when TCX is missing.
	Legacy bool
}

// legacyPriority and legacyHandle identify our cls_bpf filter.
const (
	legacyPriority = 0xe5
	legacyHandle   = 0xe5
	legacyName     = "espgw"
)

// attachment is something Close must undo.
type attachment interface {
	detach() error
}

type linkAttachment struct {
	what string
	link link.Link
}

func (a *linkAttachment) detach() error {
	if err := a.link.Close(); err != nil {
		return fmt.Errorf("detach %s: %w", a.what, err)
	}
	return nil
}

// legacyAttachment is a cls_bpf filter and, if we added it, the clsact qdisc.
type legacyAttachment struct {
	what   string
	handle *netlink.Handle // in the attaching thread's network namespace
	filter *netlink.BpfFilter
	qdisc  *netlink.GenericQdisc // nil if it existed before
}

func (a *legacyAttachment) detach() error {
	defer a.handle.Close()
	var errs []error
	if err := a.handle.FilterDel(a.filter); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("detach %s: delete filter: %w", a.what, err))
	}
	if a.qdisc != nil {
		if err := a.handle.QdiscDel(a.qdisc); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detach %s: delete clsact qdisc: %w", a.what, err))
		}
	}
	return errors.Join(errs...)
}

// linkIn resolves ifname in the calling thread's network namespace and returns a netlink handle
// bound to that namespace.
func linkIn(ifname string) (netlink.Link, *netlink.Handle, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, nil, fmt.Errorf("get network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink handle: %w", err)
	}
	lnk, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("interface %q: %w", ifname, err)
	}
	return lnk, h, nil
}

// AttachTC attaches the tc program for hook to ifname. It works in the network namespace of
// the calling thread: callers in another namespace lock their OS thread and enter it first.
// Ethernet and loopback devices get the program that skips a 14-byte Ethernet header, all
// others (TUN) the one that starts at the IP header.
func (l *Loader) AttachTC(ifname string, hook Hook, opts TCOptions) error {
	lnk, h, err := linkIn(ifname)
	if err != nil {
		return err
	}
	l3 := lnk.Attrs().EncapType != "ether" && lnk.Attrs().EncapType != "loopback"
	prog, ingress, err := l.tcProgram(hook, l3)
	if err != nil {
		h.Close()
		return err
	}
	what := fmt.Sprintf("tc %v on %s", hook, ifname)

	l.mu.Lock()
	defer l.mu.Unlock()
	if !opts.Legacy {
		attach := ebpf.AttachTCXEgress
		if ingress {
			attach = ebpf.AttachTCXIngress
		}
		tcx, err := link.AttachTCX(link.TCXOptions{
			Interface: lnk.Attrs().Index,
			Program:   prog,
			Attach:    attach,
		})
		if err == nil {
			h.Close()
			l.attachments = append(l.attachments, &linkAttachment{what: what, link: tcx})
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			h.Close()
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	a, err := attachLegacy(h, lnk, prog, ingress)
	if err != nil {
		h.Close()
		return fmt.Errorf("%s (clsact): %w", what, err)
	}
	a.what = what + " (clsact)"
	l.attachments = append(l.attachments, a)
	return nil
}

// tcProgram returns the program for hook on an L3 (TUN) or Ethernet device and whether it
// runs at ingress.
func (l *Loader) tcProgram(hook Hook, l3 bool) (prog *ebpf.Program, ingress bool, err error) {
	switch {
	case hook == HookEgress && !l3:
		return l.tc.EspgwEgressEth, false, nil
	case hook == HookEgress:
		return l.tc.EspgwEgressL3, false, nil
	case hook == HookIngress && !l3:
		return l.tc.EspgwIngressEth, true, nil
	case hook == HookIngress:
		return l.tc.EspgwIngressL3, true, nil
	case hook == HookLANIngress && !l3:
		return l.tc.EspgwEgressEth, true, nil
	case hook == HookLANIngress:
		return l.tc.EspgwEgressL3, true, nil
	}
	return nil, false, fmt.Errorf("hook %v: want HookEgress, HookIngress or HookLANIngress", hook)
}

func attachLegacy(h *netlink.Handle, lnk netlink.Link, prog *ebpf.Program, ingress bool) (*legacyAttachment, error) {
	a := &legacyAttachment{handle: h}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: lnk.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	switch err := h.QdiscAdd(qdisc); {
	case err == nil:
		a.qdisc = qdisc
	case errors.Is(err, unix.EEXIST):
	default:
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	a.filter = &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: lnk.Attrs().Index,
			Parent:    parent,
			Handle:    legacyHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  legacyPriority,
		},
		Fd:           prog.FD(),
		Name:         legacyName,
		DirectAction: true,
	}
	if err := h.FilterAdd(a.filter); err != nil {
		if a.qdisc != nil {
			h.QdiscDel(a.qdisc)
		}
		return nil, fmt.Errorf("add cls_bpf filter: %w", err)
	}
	return a, nil
}

// AttachXDP attaches the XDP program to ifname (native mode where the driver supports it,
// generic otherwise), in the calling thread's network namespace like AttachTC.
func (l *Loader) AttachXDP(ifname string) error {
	lnk, h, err := linkIn(ifname)
	if err != nil {
		return err
	}
	h.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	x, err := link.AttachXDP(link.XDPOptions{Program: l.xdp.EspgwXdp, Interface: lnk.Attrs().Index})
	if err != nil {
		return fmt.Errorf("XDP on %s: %w", ifname, err)
	}
	l.attachments = append(l.attachments, &linkAttachment{what: "XDP on " + ifname, link: x})
	return nil
}
