package ike

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/espgw/espgw/ike/ikev2"
	"github.com/espgw/espgw/model"
)

// TestNarrow: traffic selector narrowing (RFC 7296 2.9) of one of our selectors against the
// peer's.
func TestNarrow(t *testing.T) {
	sel := func(start, end string, proto uint8, lo, hi uint16) ikev2.TrafficSelector {
		return ikev2.TrafficSelector{Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end), Protocol: proto, StartPort: lo, EndPort: hi}
	}
	ours := TrafficSelector{Prefix: netip.MustParsePrefix("10.20.0.0/24")}
	for _, tt := range []struct {
		name   string
		ours   TrafficSelector
		theirs ikev2.TrafficSelector
		want   string // "" = no overlap
	}{
		{"equal", ours, sel("10.20.0.0", "10.20.0.255", 0, 0, 65535), "10.20.0.0/24"},
		{"theirs wider", ours, sel("0.0.0.0", "255.255.255.255", 0, 0, 65535), "10.20.0.0/24"},
		{"theirs narrower", ours, sel("10.20.0.16", "10.20.0.31", 0, 0, 65535), "10.20.0.16/28"},
		{"host", ours, sel("10.20.0.7", "10.20.0.7", 0, 0, 65535), "10.20.0.7/32"},
		{"disjoint", ours, sel("10.30.0.0", "10.30.0.255", 0, 0, 65535), ""},
		{"range that is no prefix", ours, sel("10.20.0.3", "10.20.0.9", 0, 0, 65535), ""},
		{"protocol narrowed", ours, sel("10.20.0.0", "10.20.0.255", 6, 0, 65535), "10.20.0.0/24[6/0]"},
		{"port narrowed", ours, sel("10.20.0.0", "10.20.0.255", 6, 443, 443), "10.20.0.0/24[6/443]"},
		{"port range", ours, sel("10.20.0.0", "10.20.0.255", 6, 1000, 2000), ""},
		{"our port inside", TrafficSelector{Prefix: ours.Prefix, Proto: 17, Port: 53}, sel("10.20.0.0", "10.20.0.255", 0, 0, 65535), "10.20.0.0/24[17/53]"},
		{"our protocol differs", TrafficSelector{Prefix: ours.Prefix, Proto: 17}, sel("10.20.0.0", "10.20.0.255", 6, 0, 65535), ""},
		{"IPv6", ours, sel("2001:db8::", "2001:db8::ffff", 0, 0, 65535), ""},
	} {
		got, ok := narrowOne(tt.ours, tt.theirs)
		if s := got.String(); ok != (tt.want != "") || ok && s != tt.want {
			t.Errorf("%s: narrowOne = %s, %v; want %q", tt.name, s, ok, tt.want)
		}
	}
}

// tsRange is the selector of a prefix, all protocols and ports, or of one protocol.
func tsRange(prefix string, proto uint8) ikev2.TrafficSelector {
	return v2Selector(TrafficSelector{Prefix: netip.MustParsePrefix(prefix), Proto: proto})
}

// selectorsOf is our selectors for prefixes, all protocols and ports.
func selectorsOf(prefixes ...string) []TrafficSelector {
	var out []TrafficSelector
	for _, p := range prefixes {
		out = append(out, TrafficSelector{Prefix: netip.MustParsePrefix(p)})
	}
	return out
}

// rangesOf is the peer's selectors for prefixes, the first of protocol proto.
func rangesOf(proto uint8, prefixes ...string) []ikev2.TrafficSelector {
	var out []ikev2.TrafficSelector
	for i, p := range prefixes {
		if i > 0 {
			proto = 0
		}
		out = append(out, tsRange(p, proto))
	}
	return out
}

// TestNarrowList: the responder answers the intersections of our selectors with each of
// the peer's (RFC 7296 2.9, a subset of what was offered), less those another one covers.
func TestNarrowList(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ours   []string
		theirs []string
		proto  uint8 // of the peer's first entry
		want   string
	}{
		{"packet first, then the subnet", []string{"10.20.0.0/24"}, []string{"10.20.0.7/32", "10.20.0.0/16"}, 0, "10.20.0.0/24"},
		{"second entry fits", []string{"10.20.0.0/24"}, []string{"10.30.0.0/24", "10.20.0.0/24"}, 0, "10.20.0.0/24"},
		{"two parts of ours: both", []string{"10.20.0.0/24"}, []string{"10.20.0.16/28", "10.20.0.32/28"}, 0, "10.20.0.16/28,10.20.0.32/28"},
		{"all protocols cover one", []string{"10.20.0.0/24"}, []string{"10.20.0.0/24", "10.20.0.0/24"}, 6, "10.20.0.0/24"},
		{"twice the same", []string{"10.20.0.0/24"}, []string{"10.20.0.0/24", "10.20.0.0/16"}, 0, "10.20.0.0/24"},
		{"none", []string{"10.20.0.0/24"}, []string{"10.30.0.0/24", "10.40.0.0/24"}, 0, ""},
		{"several of ours, one of theirs covering them", []string{"10.1.0.0/24", "10.3.0.0/24"}, []string{"10.0.0.0/8"}, 0, "10.1.0.0/24,10.3.0.0/24"},
		{"several of ours, theirs a subset", []string{"10.1.0.0/24", "10.3.0.0/24"}, []string{"10.3.0.0/24"}, 0, "10.3.0.0/24"},
		{"several of both, the peer's order", []string{"10.1.0.0/24", "10.3.0.0/24"}, []string{"10.3.0.0/25", "10.1.0.0/24", "10.9.0.0/24"}, 0,
			"10.3.0.0/25,10.1.0.0/24"},
	} {
		got := JoinTS(narrow(selectorsOf(tt.ours...), rangesOf(tt.proto, tt.theirs...)))
		if got != tt.want {
			t.Errorf("%s: narrow(%v, %v) = %q; want %q", tt.name, tt.ours, tt.theirs, got, tt.want)
		}
	}
}

// TestWithinOffer: the initiator takes a responder's selectors only if each lies within one
// it offered (RFC 7296 2.9: narrowed, never widened).
func TestWithinOffer(t *testing.T) {
	offer := selectorsOf("10.1.0.0/24", "10.3.0.0/24")
	for _, tt := range []struct {
		name   string
		answer []ikev2.TrafficSelector
		want   string // "" = refused
	}{
		{"all", rangesOf(0, "10.1.0.0/24", "10.3.0.0/24"), "10.1.0.0/24,10.3.0.0/24"},
		{"one of two", rangesOf(0, "10.3.0.0/24"), "10.3.0.0/24"},
		{"narrower", rangesOf(0, "10.1.0.128/25"), "10.1.0.128/25"},
		{"one protocol", rangesOf(6, "10.1.0.0/24"), "10.1.0.0/24[6/0]"},
		{"wider", rangesOf(0, "10.1.0.0/23"), ""},
		{"one outside", rangesOf(0, "10.1.0.0/24", "10.2.0.0/24"), ""},
		{"none", nil, ""},
	} {
		got, ok := withinOffer(offer, tt.answer)
		if ok != (tt.want != "") || JoinTS(got) != tt.want && ok {
			t.Errorf("%s: withinOffer = %q, %v; want %q", tt.name, JoinTS(got), ok, tt.want)
		}
	}
}

// TestMatchV2Tunnel: the responder's choice of a tunnel, and of the one selector pair it
// answers and installs, for a peer's TSi and TSr lists (matchV2Tunnel's rule).
func TestMatchV2Tunnel(t *testing.T) {
	c := &connection{tunnels: map[string]*tunnel{}}
	for _, x := range []struct{ name, local, remote string }{
		{"a", "10.1.0.0/24", "10.20.0.0/24"},
		{"b", "10.1.0.0/24", "10.21.0.0/24"},
		{"c", "10.2.0.0/24", "10.20.0.0/24"},
		{"d", "10.3.0.0/24", "10.20.0.0/24"},
		{"e", "10.4.0.0/24,10.5.0.0/24", "10.30.0.0/24,10.31.0.0/24"},
	} {
		tc := model.Tunnel{Name: x.name}
		for _, p := range strings.Split(x.local, ",") {
			tc.LocalSubnets = append(tc.LocalSubnets, netip.MustParsePrefix(p))
		}
		for _, p := range strings.Split(x.remote, ",") {
			tc.RemoteSubnets = append(tc.RemoteSubnets, netip.MustParsePrefix(p))
		}
		c.tunnels[x.name] = &tunnel{conn: c, cfg: tc}
	}
	c.tunnels["d"].removed = true
	list := func(responder bool, ps ...string) *ikev2.TrafficSelectors {
		l := &ikev2.TrafficSelectors{Responder: responder}
		for _, p := range ps {
			l.Selectors = append(l.Selectors, tsRange(p, 0))
		}
		return l
	}
	for _, tt := range []struct {
		name     string
		tsi, tsr []string // the peer's side (our remote), ours
		want     string   // tunnel: local <-> remote, or "" for none
	}{
		{"the peer's first TSi entry decides", []string{"10.21.0.0/24", "10.20.0.0/24"}, []string{"10.1.0.0/24"}, "b: 10.1.0.0/24 <-> 10.21.0.0/24"},
		{"the peer's first TSr entry decides", []string{"10.20.0.0/24"}, []string{"10.2.0.0/24", "10.1.0.0/24"}, "c: 10.2.0.0/24 <-> 10.20.0.0/24"},
		{"second entries on both sides", []string{"10.99.0.0/24", "10.20.0.0/24"}, []string{"10.98.0.0/24", "10.2.0.0/24"}, "c: 10.2.0.0/24 <-> 10.20.0.0/24"},
		{"triggering packet first, narrowed to the whole tunnel", []string{"10.20.0.5/32", "10.20.0.0/16"}, []string{"10.1.0.9/32", "10.0.0.0/8"},
			"a: 10.1.0.0/24 <-> 10.20.0.0/24"},
		{"several tunnels fit: the first by name", []string{"10.20.0.0/16"}, []string{"10.0.0.0/8"}, "a: 10.1.0.0/24 <-> 10.20.0.0/24"},
		{"narrower than the tunnel", []string{"10.20.0.128/25", "10.77.0.0/24"}, []string{"10.1.0.0/28"}, "a: 10.1.0.0/28 <-> 10.20.0.128/25"},
		{"removed tunnel", []string{"10.20.0.0/24"}, []string{"10.3.0.0/24"}, ""},
		{"nothing fits", []string{"10.99.0.0/24"}, []string{"10.1.0.0/24"}, ""},
		{"several subnets per side: all", []string{"10.30.0.0/24", "10.31.0.0/24"}, []string{"10.4.0.0/24", "10.5.0.0/24"},
			"e: 10.4.0.0/24,10.5.0.0/24 <-> 10.30.0.0/24,10.31.0.0/24"},
		{"several subnets per side: one wide entry each", []string{"10.30.0.0/15"}, []string{"10.4.0.0/15"},
			"e: 10.4.0.0/24,10.5.0.0/24 <-> 10.30.0.0/24,10.31.0.0/24"},
		{"several subnets per side: the peer has a subset", []string{"10.31.0.0/24"}, []string{"10.5.0.0/24", "10.99.0.0/24"},
			"e: 10.5.0.0/24 <-> 10.31.0.0/24"},
	} {
		tun, lts, rts := matchV2Tunnel(c, list(false, tt.tsi...), list(true, tt.tsr...))
		got := ""
		if tun != nil {
			got = tun.cfg.Name + ": " + JoinTS(lts) + " <-> " + JoinTS(rts)
		}
		if got != tt.want {
			t.Errorf("%s: TSi %v TSr %v -> %q, want %q", tt.name, tt.tsi, tt.tsr, got, tt.want)
		}
	}
}
