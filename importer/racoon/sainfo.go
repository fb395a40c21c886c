package racoon

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/ike/proposal"
)

// sainfo is a racoon `sainfo` block: phase-2 parameters for one pair of proxy IDs, or for
// any pair (anonymous).
type sainfo struct {
	stmt      Stmt
	anonymous bool // matches any pair
	local     selectorID
	remote    selectorID
	proposals []proposal.ESP
	lifetime  time.Duration
	kilobytes uint64
	used      bool
}

// selectorID is one side of a sainfo: "address 10.10.1.1/32 [port] any"; set is false for
// an anonymous side.
type selectorID struct {
	set    bool
	prefix netip.Prefix
	port   uint16
	proto  uint8
}

func (s selectorID) String() string {
	if !s.set {
		return "anonymous"
	}
	return fmt.Sprintf("%v port %d proto %d", s.prefix, s.port, s.proto)
}

// matches reports whether the sainfo side covers the policy side exactly (racoon compares
// proxy IDs for equality).
func (s selectorID) matches(p netip.Prefix, port uint16, proto uint8) bool {
	return !s.set || (s.prefix == p && s.port == port && s.proto == proto)
}

func parseSainfo(s Stmt, ns *notes) *sainfo {
	si := &sainfo{stmt: s}
	w := s.Words[1:]
	var err error
	if si.local, w, err = sainfoID(w); err != nil {
		ns.unmapped(s, "%v", err)
		return nil
	}
	if len(w) > 0 && (w[0] == "address" || w[0] == "subnet" || w[0] == "anonymous") {
		if si.remote, w, err = sainfoID(w); err != nil {
			ns.unmapped(s, "%v", err)
			return nil
		}
	}
	si.anonymous = !si.local.set && !si.remote.set
	if len(w) > 0 {
		ns.unmapped(s, "%q: espgw picks phase-2 parameters by the tunnel's subnets only (no from/group)", strings.Join(w, " "))
	}
	var (
		ciphers []cipher
		auths   []proposal.Hash
		pfs     uint16
	)
	for _, d := range s.Block {
		args := d.Words[1:]
		switch d.Name() {
		case "encryption_algorithm":
			for _, a := range list(args) {
				c, err := parseCipher(a)
				if err != nil {
					ns.unmapped(d, "%v; left out of the proposals", err)
					continue
				}
				ciphers = append(ciphers, c)
			}
		case "authentication_algorithm":
			for _, a := range list(args) {
				h, ok := espAuths[a]
				if !ok {
					ns.unmapped(d, "%s: espgw's ESP integrity algorithms are hmac_sha1, hmac_sha256, hmac_sha384, hmac_sha512; left out of the proposals", a)
					continue
				}
				auths = append(auths, h)
			}
		case "pfs_group":
			if pfs, err = group(strings.Join(args, " ")); err != nil {
				ns.unmapped(d, "%v", err)
			}
		case "lifetime":
			t, kb, err := lifetimeOf(d)
			switch {
			case err != nil:
				ns.unmapped(d, "%v", err)
			case t != 0:
				si.lifetime = t
			default:
				si.kilobytes = kb
			}
		case "compression_algorithm":
			ns.unmapped(d, "espgw has no IPComp; racoon requires this line but compresses only when a setkey policy asks for ipcomp")
		default:
			ns.unmapped(d, "unknown sainfo directive")
		}
	}
	for _, c := range ciphers {
		for _, h := range auths {
			p := proposal.ESP{Encryption: c.enc, KeyBits: c.bits, Integrity: h, Group: pfs}
			if _, err := proposal.ParseESP(p.String()); err != nil {
				ns.unmapped(s, "%v; left out of the proposals", err)
				continue
			}
			si.proposals = append(si.proposals, p)
		}
	}
	if len(si.proposals) == 0 {
		ns.unmapped(s, "no proposal espgw supports (want encryption_algorithm 3des or aes and authentication_algorithm hmac_sha1 or hmac_sha2)")
	}
	return si
}

// sainfoID reads "anonymous", "address A [port] proto" or "subnet A [port] proto".
func sainfoID(w []string) (selectorID, []string, error) {
	if len(w) == 0 {
		return selectorID{}, nil, fmt.Errorf("no identities (want anonymous or address A any address B any)")
	}
	switch w[0] {
	case "anonymous":
		return selectorID{}, w[1:], nil
	case "address", "subnet":
	default:
		return selectorID{}, nil, fmt.Errorf("identity type %q: espgw tunnels are subnet pairs (want address or subnet)", w[0])
	}
	if len(w) < 3 {
		return selectorID{}, nil, fmt.Errorf("%q: want %s ADDRESS[/PREFIX] [PORT] PROTOCOL", strings.Join(w, " "), w[0])
	}
	p, port, err := selector(w[1])
	if err != nil {
		return selectorID{}, nil, err
	}
	w = w[2:]
	if strings.HasPrefix(w[0], "[") && len(w) > 1 {
		if _, port, err = selector("0.0.0.0" + w[0]); err != nil {
			return selectorID{}, nil, err
		}
		w = w[1:]
	}
	proto, ok := upperProtocols[w[0]]
	if !ok {
		n, err := strconv.ParseUint(w[0], 10, 8)
		if err != nil {
			return selectorID{}, nil, fmt.Errorf("protocol %q: want any, tcp, udp, icmp or a number", w[0])
		}
		proto = uint8(n)
	}
	return selectorID{set: true, prefix: p, port: port, proto: proto}, w[1:], nil
}
