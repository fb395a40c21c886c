package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/daemon"
	"github.com/espgw/espgw/datapath/xfrm"
)

// Datapath names as in the configuration.
const (
	dpAuto      = "auto"
	dpXFRM      = daemon.KindXFRM
	dpUserspace = daemon.KindUserspace
)

// espTransform is one configured ESP transform and how the proposals write it.
type espTransform struct {
	name string // "3des-sha1", "aes256gcm16"
	t    daemon.Transform
}

// espTransforms lists cfg's distinct ESP transforms (without DH groups).
func espTransforms(cfg *config.Config) []espTransform {
	var out []espTransform
	for _, c := range cfg.Connections {
		for _, t := range c.Tunnels {
			for _, p := range t.Proposals {
				tr, err := daemon.ESPTransform(p)
				if err != nil {
					continue // config validation rejects these
				}
				p.Group = 0
				if !slices.ContainsFunc(out, func(e espTransform) bool { return e.t == tr }) {
					out = append(out, espTransform{name: p.String(), t: tr})
				}
			}
		}
	}
	return out
}

// checkKernel probes what the datapaths and eBPF programs need: ESP and every configured
// algorithm (the probe the daemon's datapath: auto uses), XFRM, TUN, BPF and TCX. What the
// chosen datapath does not need is reported OK with the reason.
func checkKernel(ctx context.Context, r *report, cfg *config.Config) {
	dp := dpAuto
	if cfg != nil {
		dp = cfg.Datapath
	}
	needXFRM := dp == dpXFRM
	checkXFRM(r, needXFRM)
	espOK := checkESP(ctx, r, cfg, dp)
	checkTUN(r, dp == dpUserspace || (dp == dpAuto && !espOK))
	if cfg == nil || cfg.EBPF.Enabled {
		checkBPF(r)
	}
}

func checkXFRM(r *report, needed bool) {
	h, err := netlink.NewHandle(unix.NETLINK_XFRM)
	if err == nil {
		_, err = h.XfrmPolicyList(netlink.FAMILY_V4)
		h.Close()
	}
	switch {
	case err == nil:
		r.ok(IDKernelXFRM, "", "the kernel has XFRM (CONFIG_XFRM_USER)")
	case needed:
		r.fail(IDKernelXFRM, "", "a kernel with CONFIG_XFRM_USER, or datapath: userspace", "datapath xfrm needs XFRM netlink: %v", err)
	default:
		r.ok(IDKernelXFRM, "", "no XFRM netlink (%v): not needed by the userspace datapath", err)
	}
}

// checkESP probes ESP and each configured transform and reports whether the xfrm datapath
// could carry them all.
func checkESP(ctx context.Context, r *report, cfg *config.Config, dp string) bool {
	var ts []espTransform
	if cfg != nil {
		ts = espTransforms(cfg)
	}
	if len(ts) == 0 {
		ts = []espTransform{{name: "aes128-sha1", t: daemon.Transform{Enc: xfrm.DefaultTransform.Enc, Integ: xfrm.DefaultTransform.Integ}}}
	}
	noESP := ""
	var missing []string
	for _, et := range ts {
		err := xfrm.Probe(ctx, netns.None(), xfrm.Transform{Enc: et.t.Enc, Integ: et.t.Integ, KeyBits: et.t.KeyBits})
		var ue *xfrm.ESPUnavailableError
		switch {
		case err == nil:
			r.ok(IDKernelAlg, et.name, "the kernel can carry ESP %s", et.name)
		case errors.As(err, &ue) && errors.Is(err, unix.ENOSYS):
			missing = append(missing, et.name)
			fix := "a kernel with that option, or datapath: userspace (does " + et.name + " in Go)"
			if dp == dpXFRM {
				r.fail(IDKernelAlg, et.name, fix, "%v", err)
			} else {
				r.ok(IDKernelAlg, et.name, "%v: the userspace datapath does it in Go", err)
			}
		case errors.As(err, &ue):
			noESP = err.Error()
			r.ok(IDKernelAlg, et.name, "the kernel has the algorithms of ESP %s", et.name)
		default:
			noESP = err.Error()
		}
	}
	if noESP == "" && len(missing) == len(ts) {
		// Every configured transform lacks an algorithm, which the kernel checks before ESP
		// itself: ask about ESP with algorithms kernels have.
		if err := xfrm.Probe(ctx, netns.None()); err != nil {
			noESP = err.Error()
		}
	}
	ok := noESP == "" && len(missing) == 0
	switch {
	case ok:
		r.ok(IDKernelESP, "", "the kernel carries every configured ESP transform: datapath %s uses xfrm", dp)
	case dp == dpXFRM:
		r.fail(IDKernelESP, "", "a kernel with CONFIG_INET_ESP and the algorithms above, or datapath: auto / userspace",
			"datapath xfrm cannot work: %s", strings.Join(append(nonEmpty(noESP), missingAlgs(missing)...), "; "))
	case dp == dpAuto:
		r.ok(IDKernelESP, "", "%s: datapath auto uses userspace ESP", strings.Join(append(nonEmpty(noESP), missingAlgs(missing)...), "; "))
	default:
		r.ok(IDKernelESP, "", "datapath userspace does ESP in Go; kernel ESP not needed")
	}
	return ok
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func missingAlgs(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	return []string{"no kernel algorithms for " + strings.Join(names, ", ")}
}

func checkTUN(r *report, needed bool) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		r.ok(IDKernelTUN, "/dev/net/tun", "TUN devices available (CONFIG_TUN)")
		return
	}
	if needed {
		r.fail(IDKernelTUN, "/dev/net/tun", "a kernel with CONFIG_TUN (modprobe tun), or kernel ESP with datapath: xfrm",
			"the userspace datapath needs a TUN device: %v", err)
		return
	}
	r.ok(IDKernelTUN, "/dev/net/tun", "no TUN (%v): not needed by the xfrm datapath", err)
}

// checkBPF asks the kernel for tc and XDP program types, BTF and TCX. Without them espgw runs
// without its eBPF programs (it says so in its log), so these are warnings.
func checkBPF(r *report) {
	const effect = "espgw then runs without eBPF: no MSS clamp, no fail-closed guard, no flow counters"
	var missing []string
	if err := features.HaveProgramType(ebpf.SchedCLS); err != nil {
		missing = append(missing, fmt.Sprintf("tc programs (CONFIG_BPF_SYSCALL, CONFIG_NET_CLS_BPF): %v", err))
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		missing = append(missing, fmt.Sprintf("XDP programs: %v", err))
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		missing = append(missing, "kernel BTF (CONFIG_DEBUG_INFO_BTF)")
	}
	if len(missing) > 0 {
		r.warn(IDKernelBPF, "", "a kernel with those options, or ebpf: {enabled: false} to silence this",
			"missing %s; %s", strings.Join(missing, ", "), effect)
		return
	}
	r.ok(IDKernelBPF, "", "tc and XDP programs and BTF available")
	// BPF_PROG_QUERY of TCX fails on kernels before 6.6; loopback is ifindex 1 everywhere.
	if _, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress}); err != nil {
		r.ok(IDKernelTCX, "", "no TCX (Linux 6.6+): espgw attaches classic tc (cls_bpf) instead")
		return
	}
	r.ok(IDKernelTCX, "", "TCX available")
}
