package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/proposal"
)

// Limits checked by Validate.
const (
	maxReplayWindow = 4096
	maxSocketPath   = 107 // sun_path holds 108 bytes including the terminating NUL
	maxIfName       = 15  // IFNAMSIZ - 1
)

// namePattern is what connection and tunnel names may look like; they appear in CLI
// arguments as NAME/TUNNEL and in log lines.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports every problem of c as joined FieldErrors; nil means c is usable.
// Parse and Load already call it.
func (c *Config) Validate() error { return join(c.check()) }

func (c *Config) check() []*FieldError {
	var v validator
	if c.ControlSocket == "" || !filepath.IsAbs(c.ControlSocket) || len(c.ControlSocket) > maxSocketPath {
		v.add("control_socket", "%q is not an absolute path of at most %d bytes (want e.g. %s)", c.ControlSocket, maxSocketPath, DefaultControlSocket)
	}
	switch c.Datapath {
	case "auto", "xfrm", "userspace":
	default:
		v.add("datapath", "%q is not a datapath (want auto, xfrm or userspace)", c.Datapath)
	}
	if c.SaveKeys != "" && !filepath.IsAbs(c.SaveKeys) {
		v.add("save_keys", "%q is not an absolute directory path (want e.g. /var/lib/espgw/keys, or \"\" for off)", c.SaveKeys)
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || !validPort(port) {
			v.add("metrics.listen", "%q is not host:port (want e.g. 127.0.0.1:9814, or \"\" for off)", c.MetricsListen)
		}
	}
	v.ebpf("ebpf", &c.EBPF)
	if len(c.Connections) == 0 {
		v.add("connections", "none defined (want at least one connection)")
	}
	names := make(map[string]bool)
	peers := make(map[[2]netip.Addr]string)
	for i := range c.Connections {
		conn := &c.Connections[i]
		path := sub("connections", conn.Name)
		if names[conn.Name] {
			v.add(path, "connection name used twice (want unique names)")
		}
		names[conn.Name] = true
		pair := [2]netip.Addr{conn.LocalAddress, conn.RemoteAddress}
		if other, dup := peers[pair]; dup && conn.RemoteAddress.IsValid() {
			v.add(sub(path, "remote_address"), "%v is also the peer of connection %q from the same local_address (want one connection per peer)", conn.RemoteAddress, other)
		}
		peers[pair] = conn.Name
		v.connection(path, conn)
	}
	v.overlaps(c.Connections)
	return v.errs
}

// validator collects FieldErrors.
type validator struct{ errs []*FieldError }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// value adds "<value> <err>" for a check that failed; an unset value reads "is missing ...".
func (v *validator) value(path string, value fmt.Stringer, err error) {
	if err == nil {
		return
	}
	if x, ok := value.(interface{ IsValid() bool }); (ok && !x.IsValid()) || value.String() == "" {
		v.add(path, "%v", err)
		return
	}
	v.add(path, "%v %v", value, err)
}

func (v *validator) connection(path string, c *model.Connection) {
	if !namePattern.MatchString(c.Name) {
		v.add(path, "%q is not a connection name (want letters, digits, '.', '_', '-', at most 64)", c.Name)
	}
	v.value(sub(path, "local_address"), c.LocalAddress, checkIPv4(c.LocalAddress))
	v.value(sub(path, "remote_address"), c.RemoteAddress, checkIPv4(c.RemoteAddress))
	if c.LocalAddress.IsValid() && c.LocalAddress == c.RemoteAddress {
		v.add(sub(path, "remote_address"), "%v is also the local_address (want the peer's address)", c.RemoteAddress)
	}
	v.value(sub(path, "local_id"), c.LocalID, checkIdentity(c.LocalID))
	v.value(sub(path, "remote_id"), c.RemoteID, checkIdentity(c.RemoteID))
	if len(c.PSK) == 0 {
		v.add(sub(path, "psk"), "is missing (want psk: \"<key>\" or psk_file: <path>)")
	}
	v.ike(sub(path, "ike"), &c.IKE)
	if sa := c.ServiceAddress; sa != nil {
		v.serviceAddress(sub(path, "service_address"), sa, c.Tunnels)
		for _, t := range c.Tunnels {
			// The routes to the remote subnets leave the way the route to the peer does; one
			// of them covering the peer would make that way its own.
			for _, r := range t.RemoteSubnets {
				if r.Contains(c.RemoteAddress) {
					v.add(sub(path, "remote_address"), "%v is inside tunnel %s's remote_subnet %v while service_address is set (want the peer outside the remote subnets: their routes follow the route to it)",
						c.RemoteAddress, t.Name, r)
				}
			}
		}
	}
	if len(c.Tunnels) == 0 {
		v.add(sub(path, "tunnels"), "none defined (want at least one tunnel)")
	}
	tunnels := make(map[string]bool)
	for i := range c.Tunnels {
		t := &c.Tunnels[i]
		tpath := sub(sub(path, "tunnels"), t.Name)
		if tunnels[t.Name] {
			v.add(tpath, "tunnel name used twice (want unique names)")
		}
		tunnels[t.Name] = true
		v.tunnel(tpath, t)
		if !c.IKE.IsV2() {
			oneSubnet(v, sub(tpath, "local_subnet"), t.LocalSubnets)
			oneSubnet(v, sub(tpath, "remote_subnet"), t.RemoteSubnets)
		}
		// IKEv2 may offer several: a responder wanting another group answers the KE with
		// INVALID_KE_PAYLOAD naming it, and the initiator retries (RFC 7296 1.3).
		if !c.IKE.IsV2() {
			oneGroup(v, sub(tpath, "proposals"), "quick mode", t.Proposals, func(p proposal.ESP) uint16 { return p.Group })
		}
	}
}

func (v *validator) ike(path string, ike *model.IKE) {
	switch ike.Version {
	case 0, 1, 2: // 0 is the model's IKEv1
	default:
		v.add(sub(path, "version"), "%d (want 1 or 2)", ike.Version)
	}
	switch {
	case ike.IsV2() && ike.Mode == model.ModeAggressive:
		v.add(sub(path, "mode"), "%s is IKEv1 only (want main or no mode with version 2)", ike.Mode)
	case ike.Mode == model.ModeMain, ike.Mode == model.ModeAggressive:
	case ike.IsV2() && ike.Mode == "":
	default:
		v.add(sub(path, "mode"), "%q is not a phase-1 mode (want main or aggressive)", ike.Mode)
	}
	if len(ike.Proposals) == 0 && len(ike.V2Proposals) == 0 {
		v.add(sub(path, "proposals"), "is missing (want e.g. [aes256-sha256-modp2048])")
	}
	if ike.Mode == model.ModeAggressive && !ike.IsV2() {
		oneGroup(v, sub(path, "proposals"), "aggressive mode", ike.Proposals, func(p proposal.IKE) uint16 { return p.Group })
	}
	if ike.Lifetime <= 0 {
		v.add(sub(path, "lifetime"), "%v is not positive (want e.g. 24h)", ike.Lifetime)
	}
	switch ike.NATTraversal {
	case model.NATTAuto, model.NATTForce, model.NATTOff:
	default:
		v.add(sub(path, "nat_traversal"), "%q is not a NAT traversal policy (want auto, force or off)", ike.NATTraversal)
	}
	if ike.DPDDelay < 0 {
		v.add(sub(path, "dpd_delay"), "%v is negative (want e.g. 30s, or 0s for off)", ike.DPDDelay)
	}
	if ike.DPDDelay > 0 && ike.DPDTimeout <= 0 {
		v.add(sub(path, "dpd_timeout"), "%v is not positive while dpd_delay is on (want e.g. 30s)", ike.DPDTimeout)
	}
	if ike.QuickModes < 1 || ike.QuickModes > model.MaxQuickModes {
		v.add(sub(path, "quick_modes"), "%d is not from 1 to %d (want e.g. %d: strongSwan keeps the state of only 3 exchanges per ISAKMP SA)",
			ike.QuickModes, model.MaxQuickModes, model.DefaultQuickModes)
	}
	if ike.FragmentSize != 0 && ike.FragmentSize < model.MinFragmentSize {
		v.add(sub(path, "fragment_size"), "%d is below %d bytes (want e.g. %d, or 0 for no IKEv2 fragmentation)",
			ike.FragmentSize, model.MinFragmentSize, model.DefaultFragmentSize)
	}
}

// oneGroup reports proposals that differ in their Diffie-Hellman group (PFS or not):
// in aggressive mode and in quick mode with PFS the initiator sends its key exchange
// payload together with the proposals, before the responder picks one.
func oneGroup[P fmt.Stringer](v *validator, path, exchange string, ps []P, group func(P) uint16) {
	for _, p := range ps[min(1, len(ps)):] {
		if group(p) != group(ps[0]) {
			v.add(path, "%s sends its key exchange with the proposals, so all must use one DH group (found %v and %v)", exchange, ps[0], p)
			return
		}
	}
}

func (v *validator) serviceAddress(path string, sa *model.ServiceAddress, tunnels []model.Tunnel) {
	a := sa.Address.Addr()
	if err := checkIPv4(a); err != nil {
		v.value(sub(path, "address"), sa.Address, err)
	} else {
		covered := false
		for _, t := range tunnels {
			covered = covered || slices.ContainsFunc(t.LocalSubnets, func(p netip.Prefix) bool { return p.Contains(a) })
		}
		if !covered {
			v.add(sub(path, "address"), "%v is in no tunnel's local_subnet (want an address the tunnels protect)", sa.Address)
		}
	}
	if n := sa.Interface; !validIfName(n) {
		v.add(sub(path, "interface"), "%q is not an interface name (want e.g. eth1)", n)
	}
}

func (v *validator) tunnel(path string, t *model.Tunnel) {
	if !namePattern.MatchString(t.Name) {
		v.add(path, "%q is not a tunnel name (want letters, digits, '.', '_', '-', at most 64)", t.Name)
	}
	v.subnets(sub(path, "local_subnet"), t.LocalSubnets)
	v.subnets(sub(path, "remote_subnet"), t.RemoteSubnets)
	if (t.LocalPort != 0 || t.RemotePort != 0) && !hasPorts(t.Protocol) {
		v.add(sub(path, "protocol"), "%s has no ports but local_port/remote_port are set (want tcp or udp)", protocolName(t.Protocol))
	}
	if len(t.Proposals) == 0 {
		v.add(sub(path, "proposals"), "is missing (want e.g. [aes256-sha256-modp2048])")
	}
	for _, p := range t.Proposals {
		if p.Integrity == proposal.HashMD5 {
			v.add(sub(path, "proposals"), "%v: ESP integrity md5 is not supported by the datapath; use sha1 or sha2", p)
			break
		}
	}
	if t.Lifetime <= 0 {
		v.add(sub(path, "lifetime"), "%v is not positive (want e.g. 8h)", t.Lifetime)
	}
	if t.ReplayWindow > maxReplayWindow {
		v.add(sub(path, "replay_window"), "%d is above %d (want e.g. 64, or 0 for off)", t.ReplayWindow, maxReplayWindow)
	}
	switch t.Start {
	case model.StartOnDemand, model.StartAlways, model.StartManual:
	default:
		v.add(sub(path, "start"), "%q is not a start action (want on-demand, always or manual)", t.Start)
	}
}

// subnets checks one side's subnets: each an IPv4 prefix (so one family per side and per
// pair), none overlapping another.
func (v *validator) subnets(path string, ps []netip.Prefix) {
	if len(ps) == 0 {
		v.value(path, netip.Prefix{}, checkSubnet(netip.Prefix{}))
	}
	for i, p := range ps {
		ipath := indexed(path, i, len(ps))
		if err := checkSubnet(p); err != nil {
			v.value(ipath, p, err)
			continue
		}
		field := path[strings.LastIndexByte(path, '.')+1:]
		for j, q := range ps[:i] {
			if checkSubnet(q) == nil && p.Overlaps(q) {
				v.add(ipath, "%v overlaps %s %v (want disjoint subnets)", p, indexed(field, j, len(ps)), q)
			}
		}
	}
}

// oneSubnet refuses several subnets on one side of an IKEv1 tunnel: a quick mode's IDci/IDcr
// carry one subnet each (RFC 2409 5.5).
func oneSubnet(v *validator, path string, ps []netip.Prefix) {
	if len(ps) > 1 {
		v.add(path, "%s lists %d subnets, but an IKEv1 quick mode carries one subnet per side (want one, write one tunnel per pair, or ike.version: 2)",
			model.Prefixes(ps), len(ps))
	}
}

// validIfName reports whether n can name a network interface.
func validIfName(n string) bool {
	return n != "" && len(n) <= maxIfName && !strings.ContainsAny(n, "/: \t")
}

// checkSubnet accepts an IPv4 prefix without host bits.
func checkSubnet(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("is missing (want an IPv4 prefix such as 10.10.1.0/24)")
	case !p.Addr().Is4():
		return fmt.Errorf("is IPv6 (want an IPv4 prefix: IPv4 only for now)")
	case p.Masked() != p:
		return fmt.Errorf("has host bits set (want %v)", p.Masked())
	}
	return nil
}

// hasPorts reports whether protocol p has ports a selector can match: TCP, UDP, SCTP.
func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 }

func protocolName(p uint8) string {
	for name, n := range protocols {
		if n == p {
			return name
		}
	}
	return "protocol " + strconv.Itoa(int(p))
}

func validPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}
