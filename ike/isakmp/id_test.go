package isakmp

import (
	"net/netip"
	"testing"
)

func TestIDPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		typ    IDType
		data   string
	}{
		{"192.0.2.1/32", IDIPv4Addr, `c0000201`},
		{"10.0.0.0/8", IDIPv4AddrSubnet, `0a000000 ff000000`},
		{"198.51.100.0/23", IDIPv4AddrSubnet, `c6336400 fffffe00`},
		{"0.0.0.0/0", IDIPv4AddrSubnet, `00000000 00000000`},
		{"2001:db8::1/128", IDIPv6Addr, `20010db8000000000000000000000001`},
		{"2001:db8::/33", IDIPv6AddrSubnet, `20010db8000000000000000000000000 ffffffff800000000000000000000000`},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			p := netip.MustParsePrefix(tt.prefix)
			id := IDFromPrefix(p)
			if id.IDType != tt.typ || string(id.Data) != string(unhex(tt.data)) || id.ProtocolID != 0 || id.Port != 0 {
				t.Fatalf("IDFromPrefix = %v %x, want %v %s", id.IDType, id.Data, tt.typ, tt.data)
			}
			got, err := id.Prefix()
			if err != nil || got != p {
				t.Errorf("Prefix() = %v, %v; want %v", got, err, p)
			}
		})
	}
}

func TestIDPrefixErrors(t *testing.T) {
	tests := []struct {
		name  string
		id    Identification
		field string
		value any
	}{
		{"FQDN", Identification{IDType: IDFQDN, Data: []byte("gw")}, "ID type", IDFQDN},
		{"range", Identification{IDType: IDIPv4AddrRange, Data: make([]byte, 8)}, "ID type", IDIPv4AddrRange},
		{"short address", Identification{IDType: IDIPv6Addr, Data: make([]byte, 4)}, "ID_IPV6_ADDR data length", 4},
		{"holey mask", Identification{IDType: IDIPv4AddrSubnet, Data: unhex(`0a000000 ff00ff00`)}, "ID_IPV4_ADDR_SUBNET mask", "ff00ff00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.id.Prefix()
			checkParseError(t, err, tt.field, tt.value, NotifyInvalidIDInformation)
		})
	}
}

// TestIDPrefixMasksHostBits checks that address bits outside the mask are ignored.
func TestIDPrefixMasksHostBits(t *testing.T) {
	id := &Identification{IDType: IDIPv4AddrSubnet, Data: unhex(`0a010203 ff000000`)}
	if got, err := id.Prefix(); err != nil || got != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("Prefix() = %v, %v; want 10.0.0.0/8", got, err)
	}
}
