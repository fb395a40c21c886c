package config

import (
	"net/netip"
	"testing"

	"github.com/espgw/espgw/model"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in   string
		want model.Identity
		err  string
	}{
		{"192.0.2.1", model.Identity{Kind: model.IDAddr, Addr: netip.MustParseAddr("192.0.2.1")}, ""},
		{"vpn.example.com", model.Identity{Kind: model.IDFQDN, Name: "vpn.example.com"}, ""},
		{"gateway", model.Identity{Kind: model.IDFQDN, Name: "gateway"}, ""},
		{"ops@vpn.example.com", model.Identity{Kind: model.IDUserFQDN, Name: "ops@vpn.example.com"}, ""},
		{"keyid:partner-17", model.Identity{Kind: model.IDKeyID, Name: "partner-17"}, ""},
		{"2001:db8::1", model.Identity{}, "is IPv6 (want an IPv4 address: IPv4 only for now)"},
		{"0.0.0.0", model.Identity{}, "is not a unicast address (want e.g. 192.0.2.1)"},
		{"192.0.2", model.Identity{}, `ends in the numeric label "2": not an IPv4 address nor a host name (want a host name such as vpn.example.com)`},
		{"-vpn.example.com", model.Identity{}, `has the bad label "-vpn" (want a host name such as vpn.example.com)`},
		{"vpn_1.example.com", model.Identity{}, `has the character '_' in label "vpn_1" (want a host name such as vpn.example.com)`},
		{"", model.Identity{}, "has a host name of 0 characters (want a host name such as vpn.example.com)"},
		{"@example.com", model.Identity{}, "has nothing before the @ (want user@example.com)"},
		{"ops@", model.Identity{}, "has a host name of 0 characters (want a host name such as vpn.example.com)"},
		{"keyid:", model.Identity{}, "has an empty key id (want keyid:<name>)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseIdentity(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseIdentity(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}
