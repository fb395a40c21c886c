package ike

import (
	"net/netip"
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
		got, ok := narrow(tt.ours, []ikev2.TrafficSelector{tt.theirs})
		if s := got.String(); ok != (tt.want != "") || ok && s != tt.want {
			t.Errorf("%s: narrow = %s, %v; want %q", tt.name, s, ok, tt.want)
		}
	}
}

// tsRange is the selector of a prefix, all protocols and ports, or of one protocol.
func tsRange(prefix string, proto uint8) ikev2.TrafficSelector {
	return v2Selector(TrafficSelector{Prefix: netip.MustParsePrefix(prefix), Proto: proto})
}

// TestNarrowList: narrowing against a peer's list of several selectors keeps the widest
// part (RFC 7296 2.9), the peer's order breaking ties.
func TestNarrowList(t *testing.T) {
	ours := TrafficSelector{Prefix: netip.MustParsePrefix("10.20.0.0/24")}
	for _, tt := range []struct {
		name   string
		theirs []string
		proto  uint8 // of the first entry
		want   string
	}{
		{"packet first, then the subnet", []string{"10.20.0.7/32", "10.20.0.0/16"}, 0, "10.20.0.0/24"},
		{"second entry fits", []string{"10.30.0.0/24", "10.20.0.0/24"}, 0, "10.20.0.0/24"},
		{"two parts: the first", []string{"10.20.0.16/28", "10.20.0.32/28"}, 0, "10.20.0.16/28"},
		{"two parts: the wider", []string{"10.20.0.16/28", "10.20.0.64/26"}, 0, "10.20.0.64/26"},
		{"all protocols beat one", []string{"10.20.0.0/24", "10.20.0.0/24"}, 6, "10.20.0.0/24"},
		{"none", []string{"10.30.0.0/24", "10.40.0.0/24"}, 0, ""},
	} {
		var theirs []ikev2.TrafficSelector
		for i, p := range tt.theirs {
			proto := uint8(0)
			if i == 0 {
				proto = tt.proto
			}
			theirs = append(theirs, tsRange(p, proto))
		}
		got, ok := narrow(ours, theirs)
		if ok != (tt.want != "") || ok && got.String() != tt.want {
			t.Errorf("%s: narrow(%v) = %s, %v; want %q", tt.name, tt.theirs, got, ok, tt.want)
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
	} {
		c.tunnels[x.name] = &tunnel{conn: c, cfg: model.Tunnel{Name: x.name,
			LocalSubnet: netip.MustParsePrefix(x.local), RemoteSubnet: netip.MustParsePrefix(x.remote)}}
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
	} {
		tun, lts, rts := matchV2Tunnel(c, list(false, tt.tsi...), list(true, tt.tsr...))
		got := ""
		if tun != nil {
			got = tun.cfg.Name + ": " + lts.String() + " <-> " + rts.String()
		}
		if got != tt.want {
			t.Errorf("%s: TSi %v TSr %v -> %q, want %q", tt.name, tt.tsi, tt.tsr, got, tt.want)
		}
	}
}
