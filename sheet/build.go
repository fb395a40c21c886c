package sheet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/config/emit"
	"github.com/espgw/espgw/ike/proposal"
)

// build turns the rows read into a connection.
func (im *importer) build(opt Options) *Result {
	res := im.res
	c := model.Connection{Name: opt.Name}
	if c.Name == "" && im.l.header >= 0 {
		c.Name = nameFrom(im.g.Cell(im.l.header, im.l.theirs))
	}
	if c.Name == "" || !validName(c.Name) {
		c.Name = "partner"
	}
	gen := im.fields[secGeneral]
	c.LocalAddress = im.address(gen[fPeerIP], true)
	c.RemoteAddress = im.address(gen[fPeerIP], false)
	c.LocalID = model.Identity{Kind: model.IDAddr, Addr: c.LocalAddress}
	c.RemoteID = model.Identity{Kind: model.IDAddr, Addr: c.RemoteAddress}
	if v, ok := gen[fIdentity]; ok {
		c.LocalID = im.identity(v.row, im.l.ours, v.ours, c.LocalID)
		c.RemoteID = im.identity(v.row, im.l.theirs, v.theirs, c.RemoteID)
	}
	im.check(gen, fAuth, func(s string) error {
		if has(norm(s), "pre shared", "preshared", "psk", "shared secret", "общий ключ", "предварительн", "pre share") {
			return nil
		}
		return fmt.Errorf("espgw authenticates with a pre-shared key only")
	})
	c.IKE = model.IKE{Version: im.version(gen), Mode: model.ModeMain, NATTraversal: model.NATTAuto, DPDTimeout: config.DefaultDPDTimeout,
		Lifetime: config.DefaultIKELifetime}
	im.mode(gen, &c.IKE)
	p1 := im.fields[secPhase1]
	if c.IKE.IsV2() {
		c.IKE.V2Proposals = im.ikev2Proposals(p1)
	} else {
		c.IKE.Proposals = im.ikeProposals(p1)
		if v, ok := p1[fPRF]; ok {
			im.res.Ignored = append(im.res.Ignored, Problem{Addr: im.g.Addr(v.row, im.l.label), Value: im.g.Cell(v.row, im.l.label),
				Reason: "IKEv1 takes its PRF from the hash (row ignored)"})
		}
	}
	if d, _, ok := im.lifetime(p1, "phase 1"); ok {
		c.IKE.Lifetime = d
	} else {
		res.Defaults = append(res.Defaults, "phase 1 lifetime: "+emit.Duration(c.IKE.Lifetime))
	}
	natt := p1[fNATT]
	if !natt.has {
		natt = im.fields[secGeneral][fNATT]
	}
	if natt.has {
		s, col := im.agreed(natt, func(a, b string) bool { return norm(a) == norm(b) })
		if has(norm(s), "force", "always", "принудительн", "всегда") {
			c.IKE.NATTraversal = model.NATTForce
		} else if yes, ok := yesNo(s); ok && !yes {
			c.IKE.NATTraversal = model.NATTOff
		} else if !ok {
			im.problem(natt.row, col, "unknown NAT traversal setting (want yes, no or force)")
		}
	} else {
		res.Defaults = append(res.Defaults, "NAT traversal: auto")
	}
	dpd := p1[fDPD]
	if !dpd.has {
		dpd = im.fields[secGeneral][fDPD]
	}
	if dpd.has {
		s, col := im.agreed(dpd, func(a, b string) bool { return true }) // each side picks its own interval
		if d, err := parseDPD(s); err != nil {
			im.problem(dpd.row, col, "%v", err)
		} else {
			c.IKE.DPDDelay = d
		}
	}
	p2 := im.fields[secPhase2]
	im.check(p2, fProtocol, func(s string) error {
		if has(norm(s), "esp") {
			return nil
		}
		return fmt.Errorf("espgw protects traffic with ESP in tunnel mode only")
	})
	esp := im.espProposals(p2)
	life, kb, ok := im.lifetime(p2, "phase 2")
	if !ok {
		life = config.DefaultTunnelLifetime
		res.Defaults = append(res.Defaults, "phase 2 lifetime: "+emit.Duration(life))
	}
	c.Tunnels = im.tunnels(esp, life, kb, c.IKE.IsV2())
	res.Conn = emit.Connection{Connection: c, PSKNote: "the pre-shared key is sent separately: put it here, or use psk_file"}
	if sa := serviceCandidate(c); sa.IsValid() {
		res.Conn.Comments = append(res.Conn.Comments, fmt.Sprintf("%v is our encryption domain but not our public IP: add\n  service_address: {address: %v, interface: <the LAN or WAN interface>}", sa, sa))
	}
	return res
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return s != "" && len(s) <= 64 && s[0] != '-' && s[0] != '.' && s[0] != '_'
}

// serviceCandidate is our single-address domain that is not our public address.
func serviceCandidate(c model.Connection) netip.Prefix {
	for _, t := range c.Tunnels {
		for _, l := range t.LocalSubnets {
			if l.IsSingleIP() && l.Addr() != c.LocalAddress {
				return l
			}
		}
	}
	return netip.Prefix{}
}

// version reads the IKE version row; a sheet without one is IKEv1's.
func (im *importer) version(gen map[field]value) uint8 {
	v, ok := gen[fVersion]
	if !ok {
		im.res.Defaults = append(im.res.Defaults, "IKE version: IKEv1")
		return 1
	}
	s, col := im.agreed(v, func(a, b string) bool { return versionOf(a) == versionOf(b) })
	n := versionOf(s)
	if n == 0 {
		im.problem(v.row, col, "unknown IKE version (want IKEv1 or IKEv2)")
		return 1
	}
	return n
}

// mode reads the phase 1 mode row. IKEv2 has no modes: its row may say anything but
// aggressive (main, n/a, -).
func (im *importer) mode(gen map[field]value, ike *model.IKE) {
	v, ok := gen[fMode]
	if !ok {
		if !ike.IsV2() {
			im.res.Defaults = append(im.res.Defaults, "phase 1 mode: main")
		}
		return
	}
	s, col := im.agreed(v, func(a, b string) bool { return modeOf(a) == modeOf(b) })
	switch m := modeOf(s); {
	case ike.IsV2() && m == "aggressive":
		im.problem(v.row, col, "aggressive mode is IKEv1 only (want main or no mode with IKEv2)")
	case ike.IsV2():
	case m == "":
		im.problem(v.row, col, "unknown phase 1 mode (want main or aggressive)")
	default:
		ike.Mode = model.Mode(m)
	}
}

func modeOf(s string) string {
	n := norm(s)
	switch {
	case has(n, "main", "основн", "identity protection", "id prot"):
		return "main"
	case has(n, "aggressive", "агрессивн"):
		return "aggressive"
	}
	return ""
}

// check reads a field that only has to be acceptable.
func (im *importer) check(fs map[field]value, f field, ok func(string) error) {
	v, found := fs[f]
	if !found {
		return
	}
	for _, side := range []struct {
		s   string
		col int
	}{{v.ours, im.l.ours}, {v.theirs, im.l.theirs}} {
		if side.s != "" {
			if err := ok(side.s); err != nil {
				im.problem(v.row, side.col, "%v", err)
			}
		}
	}
}

func (im *importer) address(v value, ours bool) netip.Addr {
	s, col, who := v.theirs, im.l.theirs, "the partner's"
	if ours {
		s, col, who = v.ours, im.l.ours, "our"
	}
	if !v.has {
		if !ours { // reported once, for both sides
			return netip.Addr{}
		}
		im.res.Problems = append(im.res.Problems, Problem{Addr: im.g.Name, Reason: "no public IP address row (want e.g. \"Peer IP\" or \"Внешний IP-адрес\")"})
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(stripParens(s))
	if s == "" {
		im.problem(v.row, col, "%s public IP address is empty", who)
	} else if err != nil || !a.Is4() {
		im.problem(v.row, col, "not an IPv4 address (want %s public IP, e.g. 192.0.2.1)", who)
		return netip.Addr{}
	}
	return a
}

func (im *importer) identity(r, c int, s string, def model.Identity) model.Identity {
	if s == "" {
		return def
	}
	id, err := config.ParseIdentity(s)
	if err != nil {
		im.problem(r, c, "IKE identity %v", err)
		return def
	}
	return id
}

// lifetime reads the lifetime of a phase: seconds and, for phase 2, kilobytes.
func (im *importer) lifetime(fs map[field]value, phase string) (time.Duration, uint64, bool) {
	v, ok := fs[fLifetime]
	if !ok {
		return 0, 0, false
	}
	s, col := im.agreed(v, func(a, b string) bool {
		da, ka, e1 := parseLifetime(a)
		db, kb, e2 := parseLifetime(b)
		return e1 != nil || e2 != nil || (da == db && ka == kb)
	})
	d, kb, err := parseLifetime(s)
	switch {
	case err != nil:
		im.problem(v.row, col, "%v", err)
		return 0, 0, false
	case phase == "phase 1" && kb != 0:
		im.problem(v.row, col, "espgw's ISAKMP SA has a time lifetime only (the KB part is left out)")
	case d == 0:
		im.problem(v.row, col, "no time in the %s lifetime (want e.g. 28800 seconds)", phase)
		return 0, 0, false
	}
	return d, kb, true
}

// algos reads a field listing algorithms and parses each; problems name the cell.
func algos[T any](im *importer, fs map[field]value, f field, phase string, parse func(string) (T, error)) ([]T, bool) {
	v, ok := fs[f]
	if !ok {
		im.res.Problems = append(im.res.Problems, Problem{Addr: im.g.Name, Reason: fmt.Sprintf("no %s %s row", phase, fieldNames[f])})
		return nil, false
	}
	s, col := im.agreed(v, func(a, b string) bool { return compact(a) == compact(b) })
	var out []T
	for _, p := range list(s) {
		x, err := parse(p)
		if err != nil {
			im.problem(v.row, col, "%v", err)
			return nil, false
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		im.problem(v.row, col, "%s %s is empty", phase, fieldNames[f])
	}
	return out, len(out) > 0
}

func (im *importer) ikeProposals(fs map[field]value) []proposal.IKE {
	ciphers, ok1 := algos(im, fs, fEncryption, "phase 1", func(s string) (cipher, error) { return parseCipher(s, false, false) })
	hashes, ok2 := algos(im, fs, fHash, "phase 1", func(s string) (proposal.Hash, error) { return parseHash(s, false) })
	groups, ok3 := algos(im, fs, fGroup, "phase 1", parseGroup)
	if !ok1 || !ok2 || !ok3 {
		return nil
	}
	var out []proposal.IKE
	for _, c := range ciphers {
		for _, h := range hashes {
			for _, g := range groups {
				out = append(out, proposal.IKE{Encryption: c.enc, KeyBits: c.bits, Hash: h, Group: g})
			}
		}
	}
	return out
}

// integrity reads the integrity row of a phase whose ciphers may include AES-GCM, which
// needs none: with AES-GCM alone, sheets write "n/a" or "-" there.
func (im *importer) integrity(fs map[field]value, phase string, ciphersOK bool, ciphers []cipher) ([]proposal.Hash, bool) {
	if ciphersOK && !slices.ContainsFunc(ciphers, func(c cipher) bool { return c.enc != proposal.EncAESGCM16 }) {
		return nil, true
	}
	return algos(im, fs, fHash, phase, func(s string) (proposal.Hash, error) { return parseHash(s, phase == "phase 2") })
}

// ikev2Proposals reads IKEv2 SA proposals: every combination of the ciphers, integrity
// algorithms, PRFs and groups. Without a PRF row a CBC proposal takes its integrity
// algorithm's hash (as strongSwan does) and AES-GCM takes HMAC-SHA-256.
func (im *importer) ikev2Proposals(fs map[field]value) []proposal.IKEv2 {
	ciphers, ok1 := algos(im, fs, fEncryption, "phase 1", func(s string) (cipher, error) { return parseCipher(s, false, true) })
	hashes, ok2 := im.integrity(fs, "phase 1", ok1, ciphers)
	groups, ok3 := algos(im, fs, fGroup, "phase 1", parseGroup)
	var prfs []proposal.Hash
	ok4 := true
	if _, found := fs[fPRF]; found {
		prfs, ok4 = algos(im, fs, fPRF, "phase 1", parsePRF)
	} else if slices.ContainsFunc(ciphers, func(c cipher) bool { return c.enc == proposal.EncAESGCM16 }) {
		im.res.Defaults = append(im.res.Defaults, "PRF for AES-GCM: PRF-HMAC-SHA-256")
	}
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil
	}
	var out []proposal.IKEv2
	for _, c := range ciphers {
		integ := hashes
		if c.enc == proposal.EncAESGCM16 {
			integ = []proposal.Hash{proposal.HashNone}
		}
		for _, h := range integ {
			ps := prfs
			switch {
			case len(ps) > 0:
			case h == proposal.HashNone:
				ps = []proposal.Hash{proposal.HashSHA256}
			default:
				ps = []proposal.Hash{h}
			}
			for _, prf := range ps {
				for _, g := range groups {
					out = append(out, proposal.IKEv2{Encryption: c.enc, KeyBits: c.bits, Integrity: h, PRF: prf, Group: g})
				}
			}
		}
	}
	return out
}

func (im *importer) espProposals(fs map[field]value) []proposal.ESP {
	ciphers, ok1 := algos(im, fs, fEncryption, "phase 2", func(s string) (cipher, error) { return parseCipher(s, true, true) })
	hashes, ok2 := im.integrity(fs, "phase 2", ok1, ciphers)
	var pfs uint16
	if v, found := fs[fPFS]; found {
		s, col := im.agreed(v, func(a, b string) bool {
			ga, e1 := parsePFS(a)
			gb, e2 := parsePFS(b)
			return e1 != nil || e2 != nil || ga == gb
		})
		g, err := parsePFS(s)
		if err != nil {
			im.problem(v.row, col, "%v", err)
			return nil
		}
		pfs = g
	} else {
		im.res.Defaults = append(im.res.Defaults, "PFS: no")
	}
	if !ok1 || !ok2 {
		return nil
	}
	var out []proposal.ESP
	for _, c := range ciphers {
		if c.enc == proposal.EncAESGCM16 {
			out = append(out, proposal.ESP{Encryption: c.enc, KeyBits: c.bits, Integrity: proposal.HashNone, Group: pfs})
			continue
		}
		for _, h := range hashes {
			out = append(out, proposal.ESP{Encryption: c.enc, KeyBits: c.bits, Integrity: h, Group: pfs})
		}
	}
	return out
}

// tunnels are the rows of a tunnels table, else the encryption domains: in IKEv2 one tunnel
// with all of our and the partner's subnets (one child SA carries them all), in IKEv1 one
// per pair. A row may list several subnets per side for one IKEv2 child SA.
func (im *importer) tunnels(esp []proposal.ESP, life time.Duration, kb uint64, v2 bool) []model.Tunnel {
	mk := func(name string, local, remote []netip.Prefix, proto uint8, lp, rp uint16) model.Tunnel {
		if name == "" || !validName(name) {
			name = emit.TunnelName(remote[0], rp, proto)
		}
		return model.Tunnel{Name: name, LocalSubnets: local, RemoteSubnets: remote, Protocol: proto, LocalPort: lp, RemotePort: rp,
			Proposals: esp, Lifetime: life, LifeKilobytes: kb, ReplayWindow: config.DefaultReplayWindow, Start: model.StartOnDemand}
	}
	var out []model.Tunnel
	for _, t := range im.table {
		if !v2 && (len(t.local) > 1 || len(t.remote) > 1) {
			im.problem(t.row, im.l.theirs, "an IKEv1 tunnel row with %s <-> %s, but a quick mode carries one subnet per side (want one row per pair, or IKE version 2)",
				model.Prefixes(t.local), model.Prefixes(t.remote))
			continue
		}
		out = append(out, mk(t.name, t.local, t.remote, t.proto, t.localPort, t.remotePort))
	}
	if len(out) == 0 && v2 && len(im.ourNet) > 0 && len(im.theirs) > 0 {
		out = append(out, mk("", im.ourNet, im.theirs, 0, 0, 0))
	}
	if len(out) == 0 {
		for _, l := range im.ourNet {
			for _, r := range im.theirs {
				name := emit.TunnelName(r, 0, 0)
				if len(im.ourNet) > 1 {
					name = strings.ReplaceAll(l.String(), "/", "-") + "-to-" + name
				}
				out = append(out, mk(name, []netip.Prefix{l}, []netip.Prefix{r}, 0, 0, 0))
			}
		}
	}
	if len(out) == 0 {
		im.res.Problems = append(im.res.Problems, Problem{Addr: im.g.Name, Reason: "no encryption domains: want our and the partner's subnets (\"Encryption domain\", \"Сеть клиента\")"})
	}
	slices.SortFunc(out, func(a, b model.Tunnel) int { return strings.Compare(a.Name, b.Name) })
	return out
}
