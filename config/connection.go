package config

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/proposal"
)

// Defaults of a connection and its tunnels.
const (
	DefaultIKELifetime    = 24 * time.Hour
	DefaultDPDTimeout     = 30 * time.Second
	DefaultTunnelLifetime = 8 * time.Hour
	DefaultReplayWindow   = 64
)

var (
	connectionKeys = []string{"local_address", "remote_address", "local_id", "remote_id",
		"psk", "psk_file", "service_address", "ike", "tunnels"}
	ikeKeys = []string{"version", "mode", "proposals", "lifetime", "nat_traversal", "dpd_delay", "dpd_timeout", "quick_modes",
		"cookie_threshold", "fragment_size"}
	serviceKeys = []string{"address", "interface"}
	tunnelKeys  = []string{"local_subnet", "remote_subnet", "protocol", "local_port", "remote_port",
		"proposals", "lifetime", "lifetime_kilobytes", "replay_window", "start"}
)

// protocols are the names accepted for a tunnel's protocol.
var protocols = map[string]uint8{"any": 0, "icmp": 1, "tcp": 6, "udp": 17}

func (d *decoder) connection(path, name string, v any) model.Connection {
	m := d.object(path, v, connectionKeys...)
	c := model.Connection{Name: name}
	c.LocalAddress, _ = d.addr(sub(path, "local_address"), m["local_address"])
	c.RemoteAddress, _ = d.addr(sub(path, "remote_address"), m["remote_address"])
	c.LocalID = d.identity(sub(path, "local_id"), m["local_id"], c.LocalAddress)
	c.RemoteID = d.identity(sub(path, "remote_id"), m["remote_id"], c.RemoteAddress)
	c.PSK = d.psk(path, m, c.RemoteAddress)
	c.ServiceAddress = d.serviceAddress(sub(path, "service_address"), m["service_address"])
	c.IKE = d.ike(sub(path, "ike"), m["ike"])
	tunnels := m["tunnels"]
	for _, tn := range d.names(sub(path, "tunnels"), tunnels, "tunnel") {
		t := d.tunnel(sub(sub(path, "tunnels"), tn), tn, tunnels.(map[string]any)[tn])
		c.Tunnels = append(c.Tunnels, t) // names come sorted
	}
	return c
}

// identity decodes local_id/remote_id; absent, it is the address (when that is valid).
func (d *decoder) identity(path string, v any, addr netip.Addr) model.Identity {
	if v == nil {
		if checkIPv4(addr) != nil {
			d.markReported(path) // the address's error says it all
			return model.Identity{}
		}
		return model.Identity{Kind: model.IDAddr, Addr: addr}
	}
	s, ok := d.str(path, v, "an address, host name, user@fqdn or keyid:<name>")
	if !ok {
		return model.Identity{}
	}
	id, err := ParseIdentity(s)
	if err != nil {
		d.fail(path, "%q %v", s, err)
	}
	return id
}

// psk decodes psk or psk_file. Errors about the key name psk_file or psk, never the key.
func (d *decoder) psk(path string, m map[string]any, peer netip.Addr) model.Secret {
	pskPath, filePath := sub(path, "psk"), sub(path, "psk_file")
	switch {
	case m["psk"] != nil && m["psk_file"] != nil:
		d.fail(filePath, "psk and psk_file are both set (want one of them)")
		d.markReported(pskPath)
		return nil
	case m["psk"] != nil:
		s, ok := m["psk"].(string)
		if !ok {
			d.fail(pskPath, "is not a string (want the key in quotes)")
			return nil
		}
		d.inlinePSK = append(d.inlinePSK, pskPath)
		return model.Secret(s)
	case m["psk_file"] != nil:
		d.markReported(pskPath) // problems are reported on psk_file
		name, ok := d.str(filePath, m["psk_file"], "the path of a racoon psk.txt")
		if !ok || !peer.IsValid() {
			return nil
		}
		if !filepath.IsAbs(name) {
			name = filepath.Join(d.baseDir, name)
		}
		f, err := os.Open(name)
		if err != nil {
			d.failErr(filePath, err, "cannot read the key file")
			return nil
		}
		defer f.Close()
		if err := checkPSKFile(f); err != nil && !d.loosePSK {
			d.failErr(filePath, err, "%q", name)
			return nil
		}
		key, err := LookupPSK(f, peer)
		if err != nil {
			d.failErr(filePath, err, "%q", name)
		}
		return key
	}
	return nil
}

func (d *decoder) serviceAddress(path string, v any) *model.ServiceAddress {
	m := d.object(path, v, serviceKeys...)
	if m == nil {
		return nil
	}
	sa := &model.ServiceAddress{}
	sa.Address, _ = d.prefix(sub(path, "address"), m["address"])
	sa.Interface, _ = d.str(sub(path, "interface"), m["interface"], "an interface name such as eth1")
	return sa
}

func (d *decoder) ike(path string, v any) model.IKE {
	ike := model.IKE{Version: 1, Mode: model.ModeMain, Lifetime: DefaultIKELifetime, NATTraversal: model.NATTAuto, DPDTimeout: DefaultDPDTimeout,
		QuickModes: model.DefaultQuickModes, CookieThreshold: model.DefaultCookieThreshold, FragmentSize: model.DefaultFragmentSize}
	m := d.object(path, v, ikeKeys...)
	if n, ok := d.uint(sub(path, "version"), m["version"], math.MaxUint8, "an IKE version (want 1 or 2)"); ok {
		ike.Version = uint8(n)
	}
	if s, ok := d.str(sub(path, "mode"), m["mode"], "main or aggressive"); ok {
		ike.Mode = model.Mode(s)
	}
	for _, s := range d.proposals(sub(path, "proposals"), m["proposals"]) {
		d.ikeProposals(sub(path, "proposals"), s, &ike)
	}
	if t, ok := d.duration(sub(path, "lifetime"), m["lifetime"]); ok {
		ike.Lifetime = t
	}
	if s, ok := d.str(sub(path, "nat_traversal"), m["nat_traversal"], "auto, force or off"); ok {
		ike.NATTraversal = model.NATTraversal(s)
	}
	if t, ok := d.duration(sub(path, "dpd_delay"), m["dpd_delay"]); ok {
		ike.DPDDelay = t
	}
	if t, ok := d.duration(sub(path, "dpd_timeout"), m["dpd_timeout"]); ok {
		ike.DPDTimeout = t
	}
	if n, ok := d.uint(sub(path, "quick_modes"), m["quick_modes"], math.MaxInt32, "a number of quick modes in flight"); ok {
		ike.QuickModes = int(n)
	}
	if n, ok := d.uint(sub(path, "cookie_threshold"), m["cookie_threshold"], math.MaxInt32, "a number of half-open IKE SAs (0 = always demand a cookie)"); ok {
		ike.CookieThreshold = int(n)
	}
	if n, ok := d.uint(sub(path, "fragment_size"), m["fragment_size"], math.MaxUint16, "a message size in bytes (0 = no IKEv2 fragmentation)"); ok {
		ike.FragmentSize = int(n)
	}
	for _, key := range []string{"cookie_threshold", "fragment_size"} {
		if v, set := m[key]; set && ike.Version == 1 {
			d.fail(sub(path, key), "%v is an IKEv2 setting (want ike.version: 2, or no %s)", v, key)
		}
	}
	return ike
}

// ikeProposals parses s in the syntax of ike's version into its proposals. An IKEv2-only
// proposal (AES-GCM, a prf keyword) under version 1 says which version it needs.
func (d *decoder) ikeProposals(path, s string, ike *model.IKE) {
	if ike.IsV2() {
		ps, err := proposal.ParseIKEv2(s)
		if err != nil {
			d.failErr(path, err, "")
		}
		ike.V2Proposals = append(ike.V2Proposals, ps...)
		return
	}
	ps, err := proposal.ParseIKE(s)
	switch {
	case err == nil:
		ike.Proposals = append(ike.Proposals, ps...)
	case isIKEv2(s):
		d.fail(path, "%q is an IKEv2 proposal (want ike.version: 2, or an IKEv1 proposal without AES-GCM and prf keywords such as aes256-sha256-modp2048)", s)
	default:
		d.failErr(path, err, "")
	}
}

func isIKEv2(s string) bool {
	_, err := proposal.ParseIKEv2(s)
	return err == nil
}

func (d *decoder) tunnel(path, name string, v any) model.Tunnel {
	t := model.Tunnel{Name: name, Lifetime: DefaultTunnelLifetime, ReplayWindow: DefaultReplayWindow, Start: model.StartOnDemand}
	m := d.object(path, v, tunnelKeys...)
	t.LocalSubnets = d.subnets(sub(path, "local_subnet"), m["local_subnet"])
	t.RemoteSubnets = d.subnets(sub(path, "remote_subnet"), m["remote_subnet"])
	t.Protocol = d.protocol(sub(path, "protocol"), m["protocol"])
	const port = "a port number from 1 to 65535 (0 = any)"
	if n, ok := d.uint(sub(path, "local_port"), m["local_port"], math.MaxUint16, port); ok {
		t.LocalPort = uint16(n)
	}
	if n, ok := d.uint(sub(path, "remote_port"), m["remote_port"], math.MaxUint16, port); ok {
		t.RemotePort = uint16(n)
	}
	for _, s := range d.proposals(sub(path, "proposals"), m["proposals"]) {
		ps, err := proposal.ParseESP(s)
		if err != nil {
			d.failErr(sub(path, "proposals"), err, "")
		}
		t.Proposals = append(t.Proposals, ps...)
	}
	if l, ok := d.duration(sub(path, "lifetime"), m["lifetime"]); ok {
		t.Lifetime = l
	}
	if n, ok := d.uint(sub(path, "lifetime_kilobytes"), m["lifetime_kilobytes"], math.MaxUint64/1024, "a number of kilobytes (0 = no limit)"); ok {
		t.LifeKilobytes = n
	}
	if n, ok := d.uint(sub(path, "replay_window"), m["replay_window"], math.MaxUint32, "a number of packets (0 = off)"); ok {
		t.ReplayWindow = uint32(n)
	}
	if s, ok := d.str(sub(path, "start"), m["start"], "on-demand, always or manual"); ok {
		t.Start = model.StartAction(s)
	}
	return t
}

// subnets decodes local_subnet/remote_subnet: one prefix, several separated by commas (as in
// swanctl's local_ts) or a list of them; nil if absent (Validate reports that) or malformed.
func (d *decoder) subnets(path string, v any) []netip.Prefix {
	l, ok := d.list(path, v, "IPv4 prefixes such as 10.10.1.0/24")
	if !ok {
		return nil
	}
	var items []string
	for _, s := range l {
		for _, f := range strings.Split(s, ",") {
			items = append(items, strings.TrimSpace(f))
		}
	}
	out := make([]netip.Prefix, 0, len(items))
	for i, s := range items {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			d.fail(indexed(path, i, len(items)), "%q is not an IPv4 prefix (want e.g. 10.10.1.0/24)", s)
			d.markReported(path)
			return nil
		}
		out = append(out, p)
	}
	return out
}

// indexed is the path of entry i of a list of n at path: path[i], or path alone for one.
func indexed(path string, i, n int) string {
	if n == 1 {
		return path
	}
	return fmt.Sprintf("%s[%d]", path, i)
}

// protocol decodes any, icmp, tcp, udp or an IP protocol number.
func (d *decoder) protocol(path string, v any) uint8 {
	const want = "any, tcp, udp, icmp or an IP protocol number 0-255"
	if s, ok := v.(string); ok {
		if p, ok := protocols[strings.ToLower(s)]; ok {
			return p
		}
		if n, err := strconv.ParseUint(s, 10, 8); err == nil {
			return uint8(n)
		}
		d.fail(path, "%q is not a protocol (want %s)", s, want)
		return 0
	}
	n, _ := d.uint(path, v, math.MaxUint8, want)
	return uint8(n)
}

// proposals returns the proposal strings at path, nil if absent (Validate reports that).
// Each string may itself list proposals separated by commas, as in swanctl.conf.
func (d *decoder) proposals(path string, v any) []string {
	l, _ := d.list(path, v, "proposals such as aes256-sha256-modp2048")
	return l
}
