package racoon

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Policy is one `spdadd` of setkey's configuration (ipsec-tools.conf) that protects traffic
// with ESP in tunnel mode: src/dst selectors, direction and tunnel endpoints.
type Policy struct {
	Pos                  Pos
	Src, Dst             netip.Prefix
	SrcPort, DstPort     uint16 // 0 = any
	Proto                uint8  // 0 = any
	Dir                  string // in, out or fwd
	TunnelSrc, TunnelDst netip.Addr
	Level                string // require, unique, use (with ":N" cut off)
}

// Setkey is what ParseSetkey understood and every statement it could not turn into a Policy.
type Setkey struct {
	Policies []Policy
	Skipped  []Note
}

// upperProtocols are setkey's upperspec names.
var upperProtocols = map[string]uint8{"any": 0, "icmp": 1, "tcp": 6, "udp": 17}

// ParseSetkey reads setkey's configuration. Statements other than ESP tunnel policies are
// listed in Skipped with the reason; statements holding keys (add, update) are named by
// their SPI only, never shown.
func ParseSetkey(name string, src []byte) (*Setkey, error) {
	stmts, err := Parse(name, src)
	if err != nil {
		return nil, err
	}
	sk := &Setkey{}
	for _, s := range stmts {
		switch s.Name() {
		case "spdadd", "spdupdate":
			p, err := parsePolicy(s)
			if err != nil {
				sk.Skipped = append(sk.Skipped, Note{Pos: s.Pos, Directive: s.Text(), Kind: Unmapped, Reason: err.Error()})
				continue
			}
			sk.Policies = append(sk.Policies, p)
		case "add", "update":
			sk.Skipped = append(sk.Skipped, Note{Pos: s.Pos, Directive: s.Name() + " (a manually keyed SA, not shown)", Kind: Unmapped,
				Reason: "manual keying: espgw negotiates every SA's keys with IKE and never uses fixed keys"})
		case "flush", "spdflush":
			sk.Skipped = append(sk.Skipped, Note{Pos: s.Pos, Directive: s.Text(), Kind: Changed,
				Reason: "not needed: espgw removes the SAs and policies it installed when it stops, and leaves others' alone"})
		default:
			sk.Skipped = append(sk.Skipped, Note{Pos: s.Pos, Directive: s.Text(), Kind: Unmapped,
				Reason: "not an SPD entry espgw can take over (want spdadd ... -P out ipsec esp/tunnel/A-B/require)"})
		}
	}
	return sk, nil
}

// parsePolicy reads "spdadd SRC DST UPPER -P DIR [priority N] ipsec esp/tunnel/A-B/LEVEL".
func parsePolicy(s Stmt) (Policy, error) {
	p := Policy{Pos: s.Pos}
	w := s.Words[1:]
	for len(w) > 0 && strings.HasPrefix(w[0], "-") && w[0] != "-P" {
		w = w[1:] // -4, -6, -n
	}
	if len(w) < 5 {
		return p, fmt.Errorf("want spdadd SRC DST UPPERSPEC -P DIRECTION POLICY, found %d words", len(s.Words))
	}
	var err error
	if p.Src, p.SrcPort, err = selector(w[0]); err != nil {
		return p, err
	}
	if p.Dst, p.DstPort, err = selector(w[1]); err != nil {
		return p, err
	}
	proto, ok := upperProtocols[w[2]]
	if !ok {
		n, err := strconv.ParseUint(w[2], 10, 8)
		if err != nil {
			return p, fmt.Errorf("upper-layer protocol %q: want any, tcp, udp, icmp or a number", w[2])
		}
		proto = uint8(n)
	}
	p.Proto = proto
	w = w[3:]
	if w[0] != "-P" {
		return p, fmt.Errorf("%q: want -P DIRECTION after the selectors (labels and contexts are not supported)", w[0])
	}
	p.Dir = w[1]
	if p.Dir != "in" && p.Dir != "out" && p.Dir != "fwd" {
		return p, fmt.Errorf("direction %q: want in, out or fwd", p.Dir)
	}
	w = w[2:]
	if len(w) >= 2 && (w[0] == "priority" || w[0] == "prio") {
		w = w[2:] // espgw orders its own policies
	}
	if len(w) == 0 {
		return p, fmt.Errorf("no policy after -P %s (want ipsec esp/tunnel/A-B/require)", p.Dir)
	}
	switch w[0] {
	case "discard", "none", "entrust", "bypass":
		return p, fmt.Errorf("policy %q: espgw only installs ipsec policies for its tunnels; other traffic follows the routing table", w[0])
	case "ipsec":
	default:
		return p, fmt.Errorf("policy %q: want ipsec", w[0])
	}
	if len(w) != 2 {
		return p, fmt.Errorf("%d requests after ipsec: espgw applies exactly one (esp in tunnel mode); AH and IPComp bundles are not supported", len(w)-1)
	}
	return p, p.request(w[1])
}

// request reads "esp/tunnel/A-B/level[:id]".
func (p *Policy) request(r string) error {
	parts := strings.Split(r, "/")
	if len(parts) != 4 {
		return fmt.Errorf("request %q: want esp/tunnel/LOCAL-PEER/require", r)
	}
	if parts[0] != "esp" {
		return fmt.Errorf("request %q: protocol %s; espgw supports only esp", r, parts[0])
	}
	if parts[1] != "tunnel" {
		return fmt.Errorf("request %q: mode %s; espgw supports only tunnel mode", r, parts[1])
	}
	a, b, ok := strings.Cut(parts[2], "-")
	if !ok {
		return fmt.Errorf("request %q: tunnel endpoints %q: want LOCAL-PEER", r, parts[2])
	}
	var err1, err2 error
	p.TunnelSrc, err1 = netip.ParseAddr(a)
	p.TunnelDst, err2 = netip.ParseAddr(b)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("request %q: tunnel endpoints %q: want two IPv4 addresses", r, parts[2])
	}
	p.Level, _, _ = strings.Cut(parts[3], ":")
	switch p.Level {
	case "require", "unique", "use":
		return nil
	}
	return fmt.Errorf("request %q: level %q: want require, unique or use", r, p.Level)
}

// selector reads "10.10.1.0/24", "10.10.1.1", "10.20.0.0/24[80]" or "any".
func selector(s string) (netip.Prefix, uint16, error) {
	var port uint16
	if i := strings.IndexByte(s, '['); i >= 0 && strings.HasSuffix(s, "]") {
		ps := s[i+1 : len(s)-1]
		if ps != "any" {
			n, err := strconv.ParseUint(ps, 10, 16)
			if err != nil {
				return netip.Prefix{}, 0, fmt.Errorf("selector %q: port %q: want a number or any", s, ps)
			}
			port = uint16(n)
		}
		s = s[:i]
	}
	if s == "any" || s == "0.0.0.0/0" {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), port, nil
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, 0, fmt.Errorf("selector %q: want an address or prefix", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), port, nil
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, 0, fmt.Errorf("selector %q: want an address or prefix", s)
	}
	return pf, port, nil
}
