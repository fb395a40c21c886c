package ike

import (
	"net/netip"
	"testing"

	"github.com/espgw/espgw/ike/ikev2"
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
