package racoon

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/config/emit"
)

// Input is a parsed racoon setup.
type Input struct {
	Racoon  []Stmt  // racoon.conf with its includes spliced in
	Setkey  *Setkey // nil without setkey's configuration
	PSKFile string  // the psk.txt to use; "" = racoon.conf's path pre_shared_key
	// Name names the connection when there is one peer; "" or several peers: peer-ADDRESS.
	Name string
	// ServiceInterface, if set, makes a tunnel's single local address that is not the
	// gateway's own the connection's service_address on this interface.
	ServiceInterface string
}

// Result is the converted configuration and what the conversion has to say about it.
type Result struct {
	Connections []emit.Connection
	Notes       []Note
}

// topUnmapped are top-level directives and blocks with no espgw setting, with the reason.
var topUnmapped = map[string]string{
	"log":     "not a configuration setting: run espgw with --log-level debug",
	"timer":   "espgw's retransmission is built in: resends after 1, 3, 7 and 15 s, gives up after 28 s",
	"padding": "espgw's ISAKMP padding is built in; there is nothing to set",
	"privsep": "espgw runs as one process; run it as root",
	"gss_id":  "espgw authenticates with pre-shared keys only",
}

// Convert turns a racoon setup into espgw connections, one per peer.
func Convert(in Input) *Result {
	var ns notes
	var (
		remotes []*remote
		sainfos []*sainfo
		listen  []netip.Addr
		pskPath string
	)
	for _, s := range in.Racoon {
		switch s.Name() {
		case "path":
			switch {
			case len(s.Words) == 3 && s.Words[1] == "pre_shared_key":
				pskPath = s.Words[2]
			case len(s.Words) == 3 && s.Words[1] == "include":
			default:
				ns.unmapped(s, "espgw needs no certificate, script or backup SA paths")
			}
		case "listen":
			listen = append(listen, parseListen(s, &ns)...)
		case "remote":
			if r := parseRemote(s, &ns); r != nil {
				remotes = append(remotes, r)
			}
		case "sainfo":
			if si := parseSainfo(s, &ns); si != nil {
				sainfos = append(sainfos, si)
			}
		default:
			if why, ok := topUnmapped[s.Name()]; ok {
				ns.unmapped(s, "%s", why)
			} else {
				ns.unmapped(s, "unknown directive")
			}
		}
	}
	var policies []Policy
	if in.Setkey != nil {
		ns = append(ns, in.Setkey.Skipped...)
		policies = outbound(in.Setkey.Policies, &ns)
	}
	if in.PSKFile != "" {
		pskPath = in.PSKFile
	}
	b := &builder{in: in, ns: &ns, sainfos: sainfos, listen: listen, pskPath: pskPath}
	res := &Result{}
	for _, pr := range b.peers(remotes, policies) {
		res.Connections = append(res.Connections, b.connection(pr))
	}
	if len(res.Connections) == 1 && in.Name != "" {
		res.Connections[0].Name = in.Name
	}
	for _, si := range sainfos {
		if !si.used && !si.anonymous {
			ns.unmapped(si.stmt, "no peer's policy uses this pair of subnets, so racoon never negotiated it")
		}
	}
	res.Notes = tidy(ns)
	return res
}

func parseListen(s Stmt, ns *notes) []netip.Addr {
	var out []netip.Addr
	for _, d := range s.Block {
		switch d.Name() {
		case "isakmp":
			if len(d.Words) < 2 {
				ns.unmapped(d, "no address")
				continue
			}
			a, port, err := addrPort(d.Words[1:])
			if err != nil {
				ns.unmapped(d, "%v", err)
				continue
			}
			if port != "" && port != "[500]" {
				ns.changed(d, "port %s: espgw listens on UDP 500 and 4500", port)
			}
			out = append(out, a)
		case "isakmp_natt":
			ns.changed(d, "espgw opens UDP 4500 on each local_address itself and floats to it as nat_traversal says")
		case "adminsock":
			ns.unmapped(d, "espgw's control socket is control_socket; espgw status, up and down replace racoonctl")
		case "strict_address":
			ns.changed(d, "espgw binds the local_address of each connection, never the wildcard address")
		default:
			ns.unmapped(d, "unknown listen directive")
		}
	}
	return out
}

// outbound returns the outbound view of the ESP tunnel policies: each out policy, and each
// in policy that has no out policy mirroring it, turned around. fwd policies are left to
// espgw, which installs what a tunnel needs.
func outbound(ps []Policy, ns *notes) []Policy {
	var out []Policy
	for _, p := range ps {
		if p.Dir == "out" {
			out = append(out, p)
		}
	}
	for _, p := range ps {
		if p.Dir != "in" {
			continue
		}
		m := Policy{Pos: p.Pos, Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort, Proto: p.Proto,
			Dir: "out", TunnelSrc: p.TunnelDst, TunnelDst: p.TunnelSrc, Level: p.Level}
		found := false
		for _, o := range out {
			found = found || (o.Src == m.Src && o.Dst == m.Dst && o.SrcPort == m.SrcPort && o.DstPort == m.DstPort &&
				o.Proto == m.Proto && o.TunnelDst == m.TunnelDst)
		}
		if !found {
			*ns = append(*ns, Note{Pos: p.Pos, Directive: "spdadd ... -P in", Kind: Changed,
				Reason: "an inbound policy without its outbound twin: espgw's tunnels protect both directions"})
			out = append(out, m)
		}
	}
	for _, p := range out {
		if p.Level == "use" {
			*ns = append(*ns, Note{Pos: p.Pos, Directive: "spdadd ... /use", Kind: Changed,
				Reason: "level use sent traffic in clear while no SA was up; espgw never does (ebpf.when_sa_down decides only whether the packet waits in the datapath or is dropped)"})
		}
	}
	return out
}

// peer is one connection to build: its remote block and the policies towards it.
type peer struct {
	r        *remote
	addr     netip.Addr
	policies []Policy
}

type builder struct {
	in      Input
	ns      *notes
	sainfos []*sainfo
	listen  []netip.Addr
	pskPath string
}

// peers pairs remote blocks with setkey's policies: a named remote takes the policies
// towards its address, remote anonymous the rest.
func (b *builder) peers(remotes []*remote, policies []Policy) []peer {
	var out []peer
	var anon *remote
	for _, r := range remotes {
		if r.anonymous {
			anon = r
			continue
		}
		p := peer{r: r, addr: r.addr}
		for _, pol := range policies {
			if pol.TunnelDst == r.addr {
				p.policies = append(p.policies, pol)
			}
		}
		out = append(out, p)
	}
	for _, pol := range policies {
		known := false
		for _, p := range out {
			known = known || p.addr == pol.TunnelDst
		}
		if known {
			continue
		}
		if anon == nil {
			b.ns.unmapped(Stmt{Pos: pol.Pos, Words: []string{"spdadd", pol.Src.String(), pol.Dst.String()}},
				"no remote block for peer %v and no remote anonymous", pol.TunnelDst)
			continue
		}
		i := len(out)
		for j, p := range out {
			if p.addr == pol.TunnelDst {
				i = j
			}
		}
		if i == len(out) {
			out = append(out, peer{r: anon, addr: pol.TunnelDst})
		}
		out[i].policies = append(out[i].policies, pol)
	}
	if anon != nil && !anonUsed(out, anon) {
		b.ns.unmapped(anon.stmt, "espgw needs each peer's address: remote anonymous only becomes connections for the peers that setkey's tunnel policies name (give --setkey)")
	}
	return out
}

func anonUsed(ps []peer, anon *remote) bool {
	for _, p := range ps {
		if p.r == anon {
			return true
		}
	}
	return false
}

func (b *builder) connection(p peer) emit.Connection {
	r := p.r
	c := model.Connection{Name: "peer-" + p.addr.String(), RemoteAddress: p.addr}
	c.LocalAddress = b.localAddress(p)
	c.LocalID, c.RemoteID = model.Identity{Kind: model.IDAddr, Addr: c.LocalAddress}, model.Identity{Kind: model.IDAddr, Addr: c.RemoteAddress}
	var err error
	if r.localID != nil {
		if c.LocalID, err = identity(r.localID, c.LocalID); err != nil {
			b.ns.unmapped(r.localPos, "%v", err)
		}
	}
	if r.remoteID != nil {
		if c.RemoteID, err = identity(r.remoteID, c.RemoteID); err != nil {
			b.ns.unmapped(r.remotePos, "%v", err)
		}
	}
	c.IKE = model.IKE{Version: 1, Mode: r.mode, Proposals: r.proposals, Lifetime: r.lifetime, NATTraversal: r.natt, DPDTimeout: config.DefaultDPDTimeout}
	if c.IKE.Lifetime == 0 {
		c.IKE.Lifetime = config.DefaultIKELifetime
		b.ns.changed(r.stmt, "no phase-1 lifetime: espgw's default %s applies", emit.Duration(c.IKE.Lifetime))
	}
	if len(r.proposals) == 0 {
		b.ns.unmapped(r.stmt, "no proposal espgw can use: ike.proposals stays empty")
	}
	if r.dpdDelay > 0 {
		c.IKE.DPDDelay = r.dpdDelay
		c.IKE.DPDTimeout = r.dpdRetry * time.Duration(r.dpdFail)
		b.ns.changed(r.stmt, "DPD: dpd_retry %s × dpd_maxfail %d became dpd_timeout %s: espgw declares the peer dead after that long without an answer",
			emit.Duration(r.dpdRetry), r.dpdFail, emit.Duration(c.IKE.DPDTimeout))
	}
	start := model.StartOnDemand
	if r.passive {
		start = model.StartManual
	}
	if p.policies != nil {
		for _, pol := range p.policies {
			if t, ok := b.tunnel(pol.Pos, pol.Src, pol.Dst, pol.SrcPort, pol.DstPort, pol.Proto, start); ok {
				c.Tunnels = append(c.Tunnels, t)
			}
		}
	} else {
		for _, si := range b.sainfos {
			if si.local.set && si.remote.set {
				if t, ok := b.tunnel(si.stmt.Pos, si.local.prefix, si.remote.prefix, si.local.port, si.remote.port, si.local.proto, start); ok {
					c.Tunnels = append(c.Tunnels, t)
				}
			}
		}
		if len(c.Tunnels) == 0 {
			b.ns.unmapped(r.stmt, "no tunnels: sainfo anonymous takes its subnets from setkey's policies (give --setkey)")
		}
	}
	seen := map[string]bool{}
	for i, t := range c.Tunnels {
		if seen[t.Name] { // two tunnels to one remote subnet, from different local subnets
			c.Tunnels[i].Name = fmt.Sprintf("%s-%d", t.Name, i+1)
		}
		seen[c.Tunnels[i].Name] = true
	}
	c.ServiceAddress = b.serviceAddress(r.stmt, c)
	out := emit.Connection{Connection: c, PSKFile: b.pskPath}
	if b.pskPath == "" {
		out.PSKNote = "no path pre_shared_key in racoon.conf and no --psk: add the key"
		b.ns.unmapped(r.stmt, "no pre-shared key file (give --psk psk.txt)")
	}
	return out
}

// localAddress is the tunnel endpoint setkey's policies name, else the one listen address.
func (b *builder) localAddress(p peer) netip.Addr {
	for _, pol := range p.policies {
		if pol.TunnelSrc.IsValid() {
			return pol.TunnelSrc
		}
	}
	if len(b.listen) == 1 {
		return b.listen[0]
	}
	b.ns.unmapped(p.r.stmt, "cannot tell the local address of peer %v: want exactly one listen { isakmp ADDRESS; } or setkey tunnel policies", p.addr)
	return netip.Addr{}
}

// tunnel builds the tunnel for one pair of subnets from the sainfo that matches it exactly,
// else from sainfo anonymous.
func (b *builder) tunnel(pos Pos, local, remote netip.Prefix, lport, rport uint16, proto uint8, start model.StartAction) (model.Tunnel, bool) {
	var si *sainfo
	for _, s := range b.sainfos {
		if !s.anonymous && s.local.matches(local, lport, proto) && s.remote.matches(remote, rport, proto) {
			si = s
			break
		}
	}
	if si == nil {
		for _, s := range b.sainfos {
			if s.anonymous {
				si = s
				break
			}
		}
	}
	pair := fmt.Sprintf("%v <-> %v", local, remote)
	if si == nil {
		*b.ns = append(*b.ns, Note{Pos: pos, Directive: pair, Kind: Unmapped, Reason: "no sainfo for these subnets and no sainfo anonymous"})
		return model.Tunnel{}, false
	}
	si.used = true
	t := model.Tunnel{
		Name: emit.TunnelName(remote, rport, proto), LocalSubnets: []netip.Prefix{local.Masked()}, RemoteSubnets: []netip.Prefix{remote.Masked()},
		Protocol: proto, LocalPort: lport, RemotePort: rport, Proposals: si.proposals,
		Lifetime: si.lifetime, LifeKilobytes: si.kilobytes, ReplayWindow: config.DefaultReplayWindow, Start: start,
	}
	if t.Lifetime == 0 {
		t.Lifetime = config.DefaultTunnelLifetime
		b.ns.changed(si.stmt, "no lifetime time: espgw's default %s applies to %s", emit.Duration(t.Lifetime), pair)
	}
	return t, true
}

// serviceAddress finds the address the seed put on a secondary IP: a tunnel's local side
// that is a single address other than the gateway's.
func (b *builder) serviceAddress(s Stmt, c model.Connection) *model.ServiceAddress {
	var found netip.Prefix
	for _, t := range c.Tunnels {
		if l := t.LocalSubnets[0]; l.IsSingleIP() && l.Addr() != c.LocalAddress && !found.IsValid() {
			found = l // racoon's tunnels have one subnet per side
		}
	}
	if !found.IsValid() {
		return nil
	}
	if b.in.ServiceInterface == "" {
		b.ns.changed(s, "%v is a tunnel's own address but not the gateway's: racoon needed a secondary IP, a route with src and a static ARP entry for it; espgw adds it as service_address (give --service-interface IF)", found)
		return nil
	}
	return &model.ServiceAddress{Address: found, Interface: b.in.ServiceInterface}
}

// Files names the inputs of Import.
type Files struct {
	RacoonConf, PSK, Setkey string // PSK and Setkey optional
	Name, ServiceInterface  string // see Input
}

// Import reads racoon.conf (with includes), setkey's file and converts them. The psk.txt
// is not read here: the result names it in psk_file, which `espgw config check` reads.
func Import(f Files) (*Result, error) {
	stmts, err := ParseFile(f.RacoonConf, os.ReadFile, filepath.Glob)
	if err != nil {
		return nil, err
	}
	in := Input{Racoon: stmts, Name: f.Name, ServiceInterface: f.ServiceInterface}
	if f.Setkey != "" {
		src, err := os.ReadFile(f.Setkey)
		if err != nil {
			return nil, err
		}
		if in.Setkey, err = ParseSetkey(f.Setkey, src); err != nil {
			return nil, err
		}
	}
	if f.PSK != "" {
		if in.PSKFile, err = filepath.Abs(f.PSK); err != nil {
			return nil, err
		}
	}
	return Convert(in), nil
}

// WriteYAML writes the connections as espgw YAML, the notes as its header comment.
func (r *Result) WriteYAML(w io.Writer, source string) error {
	header := []string{"espgw configuration imported from " + source + " (espgw import racoon)."}
	if len(r.Notes) > 0 {
		header = append(header, "Review these notes:")
		for _, n := range r.Notes {
			header = append(header, "  "+n.String())
		}
	}
	return emit.Write(w, header, r.Connections)
}

// addrPort reads "ADDRESS [PORT]" or "ADDRESS[PORT]"; port keeps its brackets, "" if absent.
func addrPort(words []string) (netip.Addr, string, error) {
	a, port, _ := strings.Cut(words[0], "[")
	if port != "" {
		port = "[" + port
	} else if len(words) > 1 && strings.HasPrefix(words[1], "[") {
		port = words[1]
	}
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("%q is not an address", a)
	}
	return addr, port, nil
}

// tidy sorts notes by file and line and drops repeats (a remote anonymous serves many peers).
func tidy(ns []Note) []Note {
	slices.SortStableFunc(ns, func(a, b Note) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line))
	})
	seen := make(map[Note]bool)
	return slices.DeleteFunc(ns, func(n Note) bool {
		dup := seen[n]
		seen[n] = true
		return dup
	})
}
