package doctor

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/espgw/espgw/config"
)

// ikePorts are the UDP ports IKE needs (RFC 2408, RFC 3947).
var ikePorts = []uint16{500, 4500}

// udpSocket is one line of /proc/net/udp or /proc/net/udp6.
type udpSocket struct {
	Local netip.AddrPort
	Inode uint64
}

// parseProcNetUDP reads /proc/net/udp or udp6 (the format of the kernel's udp4_format_sock
// and udp6_sock_seq_show): addresses are the in-memory bytes of the address words as hex,
// ports big-endian hex. Malformed lines are skipped.
func parseProcNetUDP(r io.Reader) []udpSocket {
	var out []udpSocket
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[0] == "sl" {
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			continue
		}
		a, ok := procAddr(addr)
		if !ok {
			continue
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, udpSocket{Local: netip.AddrPortFrom(a, uint16(p)), Inode: inode})
	}
	return out
}

// procAddr decodes an address of /proc/net/udp*: 32-bit words printed with %08X from host
// (little-endian here) order.
func procAddr(s string) (netip.Addr, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return a.Unmap(), true
}

// process is a process holding a socket.
type process struct {
	PID  int
	Name string // /proc/PID/comm
}

// socketOwners maps socket inodes to the processes that hold them, by walking /proc/*/fd.
func socketOwners(inodes []uint64) map[uint64][]process {
	want := make(map[string]uint64, len(inodes))
	for _, in := range inodes {
		want[fmt.Sprintf("socket:[%d]", in)] = in
	}
	out := make(map[uint64][]process)
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := make(map[string]bool)
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil {
			continue
		}
		in, ok := want[target]
		if !ok {
			continue
		}
		dir := filepath.Dir(filepath.Dir(fd))
		if seen[dir+target] {
			continue
		}
		seen[dir+target] = true
		pid, _ := strconv.Atoi(filepath.Base(dir))
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		out[in] = append(out[in], process{PID: pid, Name: strings.TrimSpace(string(comm))})
	}
	return out
}

// ikeDaemons names the IKE daemons a port-500 holder may be, by process name.
var ikeDaemons = map[string]struct{ product, stop string }{
	"charon":         {"strongSwan", "systemctl disable --now strongswan (or strongswan-starter / ipsec stop)"},
	"charon-systemd": {"strongSwan", "systemctl disable --now strongswan"},
	"starter":        {"strongSwan", "ipsec stop; systemctl disable strongswan-starter"},
	"pluto":          {"Libreswan", "systemctl disable --now ipsec"},
	"racoon":         {"ipsec-tools", "systemctl disable --now racoon (espgw replaces it; `espgw import racoon` converts its config)"},
	"iked":           {"OpenIKED", "systemctl disable --now iked"},
	"isakmpd":        {"isakmpd", "stop isakmpd"},
}

// checkPorts reports who holds UDP 500 and 4500 on the addresses espgw binds (its
// local_addresses, or any when there is no configuration). espgw itself, the process serving
// the control socket (daemonPID, 0 if none), is expected there while the daemon runs.
func checkPorts(r *report, cfg *config.Config, daemonUp bool, daemonPID int) {
	var socks []udpSocket
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		if fh, err := os.Open(f); err == nil {
			socks = append(socks, parseProcNetUDP(fh)...)
			fh.Close()
		}
	}
	var locals []netip.Addr
	if cfg != nil {
		for _, c := range cfg.Connections {
			if !slices.Contains(locals, c.LocalAddress) {
				locals = append(locals, c.LocalAddress)
			}
		}
	}
	clashes := func(a netip.Addr) bool {
		return a.IsUnspecified() || len(locals) == 0 || slices.Contains(locals, a)
	}
	for _, port := range ikePorts {
		subj := fmt.Sprintf("udp/%d", port)
		var held []udpSocket
		var inodes []uint64
		for _, s := range socks {
			if s.Local.Port() == port && clashes(s.Local.Addr()) {
				held = append(held, s)
				inodes = append(inodes, s.Inode)
			}
		}
		owners := socketOwners(inodes)
		var others, ours []string
		var ike []string
		details := []map[string]any{}
		for _, s := range held {
			ps := owners[s.Inode]
			if len(ps) == 0 {
				others = append(others, fmt.Sprintf("%s (owner unknown, inode %d)", s.Local, s.Inode))
				details = append(details, map[string]any{"address": s.Local.String(), "inode": s.Inode})
				continue
			}
			for _, p := range ps {
				details = append(details, map[string]any{"address": s.Local.String(), "pid": p.PID, "process": p.Name})
				desc := fmt.Sprintf("%s (pid %d) on %s", p.Name, p.PID, s.Local)
				switch _, isIKE := ikeDaemons[p.Name]; {
				case daemonPID != 0 && p.PID == daemonPID, daemonPID == 0 && p.Name == "espgw":
					ours = append(ours, desc)
				case isIKE:
					ike = append(ike, p.Name)
					others = append(others, desc)
				default:
					others = append(others, desc)
				}
			}
		}
		switch {
		case len(ike) > 0:
			d := ikeDaemons[ike[0]]
			r.fail(IDPort, subj, "stop it: "+d.stop,
				"held by %s, the IKE daemon of %s: %s", ike[0], d.product, strings.Join(others, ", ")).Details = map[string]any{"holders": details}
		case len(others) > 0:
			r.fail(IDPort, subj, "stop that process or move it off the port",
				"held by another program: %s", strings.Join(others, ", ")).Details = map[string]any{"holders": details}
		case len(ours) > 0 && daemonUp:
			r.ok(IDPort, subj, "held by espgw: %s", strings.Join(ours, ", ")).Details = map[string]any{"holders": details}
		case len(ours) > 0:
			r.warn(IDPort, subj, "stop the other espgw (or give this configuration other local_address values)",
				"held by an espgw that does not answer on this configuration's control socket: %s", strings.Join(ours, ", ")).Details = map[string]any{"holders": details}
		case daemonUp:
			r.fail(IDPort, subj, "restart espgw and read its log", "espgw runs but nothing listens on UDP %d", port)
		default:
			r.ok(IDPort, subj, "free")
		}
	}
}
