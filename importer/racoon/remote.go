package racoon

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config/emit"
	"github.com/espgw/espgw/ike/proposal"
)

// remote is a racoon `remote` block: one peer's phase 1.
type remote struct {
	stmt      Stmt
	anonymous bool
	addr      netip.Addr
	mode      model.Mode
	localID   []string // identifier words, resolved once the local address is known
	localPos  Stmt
	remoteID  []string
	remotePos Stmt
	natt      model.NATTraversal
	dpdDelay  time.Duration
	dpdRetry  time.Duration
	dpdFail   int
	lifetime  time.Duration
	proposals []proposal.IKE
	passive   bool
}

// Racoon's DPD defaults (racoon.conf(5)): 5 s between retries, 5 failures.
const (
	racoonDPDRetry   = 5 * time.Second
	racoonDPDMaxFail = 5
)

// remoteUnmapped are remote directives espgw has no use for, with the reason.
var remoteUnmapped = map[string]string{
	"initial_contact":   "espgw sends INITIAL-CONTACT with its first ISAKMP SA to a peer, as racoon does by default",
	"support_proxy":     "espgw negotiates the tunnel's subnets as proxy IDs in every quick mode",
	"ike_frag":          "espgw has no IKE fragmentation (PSK messages fit in one datagram)",
	"esp_frag":          "espgw has no ESP fragment setting; ebpf.mss_clamp keeps TCP segments inside the path MTU",
	"send_cert":         "espgw authenticates with pre-shared keys only",
	"send_cr":           "espgw authenticates with pre-shared keys only",
	"certificate_type":  "espgw authenticates with pre-shared keys only",
	"peers_certfile":    "espgw authenticates with pre-shared keys only",
	"ca_type":           "espgw authenticates with pre-shared keys only",
	"verify_cert":       "espgw authenticates with pre-shared keys only",
	"mode_cfg":          "espgw is a site-to-site gateway: no mode config",
	"xauth_login":       "espgw is a site-to-site gateway: no XAUTH",
	"script":            "espgw runs no scripts; `espgw status` and /metrics show the SA state",
	"nonce_size":        "espgw sends 32-byte nonces",
	"rekey":             "espgw rekeys an SA before it expires as long as the connection is configured",
	"weak_phase1_check": "espgw always checks",
	"ph1id":             "espgw matches quick modes to connections by peer address",
	"mode_cfg_auth":     "espgw is a site-to-site gateway: no mode config",
}

// parseRemote reads a remote block into r, noting what it does not map.
func parseRemote(s Stmt, ns *notes) *remote {
	r := &remote{stmt: s, mode: model.ModeMain, natt: model.NATTOff, dpdRetry: racoonDPDRetry, dpdFail: racoonDPDMaxFail}
	switch {
	case len(s.Words) < 2:
		ns.unmapped(s, "no peer address (want remote ADDRESS { ... } or remote anonymous { ... })")
		return nil
	case s.Words[1] == "anonymous":
		r.anonymous = true
	default:
		a, port, err := addrPort(s.Words[1:])
		if err != nil {
			ns.unmapped(s, "%v (espgw needs each peer's IPv4 address)", err)
			return nil
		}
		r.addr = a
		if port != "" && port != "[500]" {
			ns.changed(s, "peer port %s: espgw talks to the peer on port 500 (4500 after NAT-T)", port)
		}
	}
	rest := s.Words[2:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "[") {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		ns.unmapped(s, "%q: remote inheritance is not supported; write the settings into this block", strings.Join(rest, " "))
	}
	for _, d := range s.Block {
		r.directive(d, ns)
	}
	if r.passive {
		ns.changed(s, "passive on: the tunnels get start: manual — espgw answers the peer and initiates only on `espgw up`")
	}
	return r
}

func (r *remote) directive(d Stmt, ns *notes) {
	args := d.Words[1:]
	one := func() (string, bool) {
		if len(args) != 1 {
			ns.unmapped(d, "want one value, found %d", len(args))
			return "", false
		}
		return args[0], true
	}
	// count reads the one value as a whole number of at least min (seconds, or retries).
	count := func(min int) (int, bool) {
		v, ok := one()
		if !ok {
			return 0, false
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > math.MaxInt32 {
			ns.unmapped(d, "%q: want a whole number of at least %d", v, min)
			return 0, false
		}
		return n, true
	}
	switch d.Name() {
	case "exchange_mode":
		modes := list(args)
		if len(modes) == 0 {
			ns.unmapped(d, "no mode")
			return
		}
		switch modes[0] {
		case "main", "aggressive":
			r.mode = model.Mode(modes[0])
		default:
			ns.unmapped(d, "mode %s: espgw speaks main and aggressive mode", modes[0])
			return
		}
		if len(modes) > 1 {
			ns.changed(d, "espgw uses only %s mode, as initiator and as responder; racoon also accepted %s", modes[0], strings.Join(modes[1:], ", "))
		}
	case "my_identifier":
		r.localID, r.localPos = args, d
	case "peers_identifier":
		r.remoteID, r.remotePos = args, d
	case "verify_identifier":
		if v, _ := one(); v == "off" {
			ns.changed(d, "espgw always verifies the peer's identity against remote_id")
		}
	case "nat_traversal":
		v, ok := one()
		if !ok {
			return
		}
		switch v {
		case "on":
			r.natt = model.NATTAuto
		case "force":
			r.natt = model.NATTForce
		case "off":
			r.natt = model.NATTOff
		default:
			ns.unmapped(d, "%q: want on, off or force", v)
		}
	case "dpd_delay":
		if n, ok := count(0); ok {
			r.dpdDelay = time.Duration(n) * time.Second
		}
	case "dpd_retry":
		if n, ok := count(1); ok {
			r.dpdRetry = time.Duration(n) * time.Second
		}
	case "dpd_maxfail":
		if n, ok := count(1); ok {
			r.dpdFail = n
		}
	case "lifetime":
		if t, ok := isakmpLifetime(ns, d); ok {
			r.lifetime = t
		}
	case "proposal":
		r.proposal(d, ns)
	case "passive":
		if v, ok := one(); ok {
			r.passive = v == "on"
		}
	case "proposal_check":
		v, _ := one()
		ns.changed(d, "espgw has no proposal_check (racoon: %s): it accepts an offer whose algorithms match one of its proposals; in quick mode it keeps the shorter lifetime and tells the peer (RESPONDER-LIFETIME), like racoon's claim", v)
	case "generate_policy":
		ns.changed(d, "espgw installs policies only for the tunnels in its configuration, never from the peer's proposal (like generate_policy off)")
	default:
		if why, ok := remoteUnmapped[d.Name()]; ok {
			ns.unmapped(d, "%s", why)
			return
		}
		ns.unmapped(d, "unknown remote directive")
	}
}

// proposal reads one phase-1 proposal block.
func (r *remote) proposal(s Stmt, ns *notes) {
	var (
		c        cipher
		h        proposal.Hash
		g        uint16
		ok       = true
		have     [3]bool
		lifetime time.Duration
	)
	for _, d := range s.Block {
		args := d.Words[1:]
		switch d.Name() {
		case "encryption_algorithm":
			var err error
			if c, err = parseCipher(strings.Join(args, " ")); err != nil {
				ns.unmapped(d, "%v; this proposal is left out", err)
				ok = false
			}
			have[0] = true
		case "hash_algorithm":
			var found bool
			if h, found = ikeHashes[strings.Join(args, " ")]; !found {
				ns.unmapped(d, "espgw's phase-1 hashes are md5, sha1, sha256, sha384, sha512; this proposal is left out")
				ok = false
			}
			have[1] = true
		case "dh_group":
			var err error
			if g, err = group(strings.Join(args, " ")); err != nil {
				ns.unmapped(d, "%v; this proposal is left out", err)
				ok = false
			}
			have[2] = true
		case "authentication_method":
			if strings.Join(args, " ") != "pre_shared_key" {
				ns.unmapped(d, "espgw authenticates with pre-shared keys only; this proposal is left out")
				ok = false
			}
		case "lifetime":
			if t, ok := isakmpLifetime(ns, d); ok {
				lifetime = t
			}
		default:
			ns.unmapped(d, "unknown proposal directive")
		}
	}
	if !have[0] || !have[1] || !have[2] {
		ns.unmapped(s, "a proposal needs encryption_algorithm, hash_algorithm and dh_group; this proposal is left out")
		return
	}
	if !ok {
		return
	}
	p := proposal.IKE{Encryption: c.enc, KeyBits: c.bits, Hash: h, Group: g}
	if _, err := proposal.ParseIKE(p.String()); err != nil {
		ns.unmapped(s, "%v; this proposal is left out", err)
		return
	}
	if lifetime != 0 {
		if r.lifetime != 0 && r.lifetime != lifetime {
			ns.changed(s, "espgw has one ISAKMP SA lifetime per connection: %s (the shortest) instead of %s", emit.Duration(shorter(r.lifetime, lifetime)), emit.Duration(lifetime))
		}
		r.lifetime = shorter(r.lifetime, lifetime)
	}
	r.proposals = append(r.proposals, p)
}

func lifetimeOf(d Stmt) (time.Duration, uint64, error) { return lifetime(d.Words[1:]) }

// isakmpLifetime reads the time lifetime of a remote or its proposal; espgw's ISAKMP SA
// has no byte lifetime, so a byte-only lifetime is reported as not mapped.
func isakmpLifetime(ns *notes, d Stmt) (time.Duration, bool) {
	t, _, err := lifetimeOf(d)
	switch {
	case err != nil:
		ns.unmapped(d, "%v", err)
	case t == 0:
		ns.unmapped(d, "espgw's ISAKMP SA has a time lifetime only")
	default:
		return t, true
	}
	return 0, false
}

// shorter is the smaller non-zero duration.
func shorter(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}
