package isakmp

import (
	"fmt"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	tests := []struct {
		v    fmt.Stringer
		want string
	}{
		{ExchangeIdentityProtection, "Main Mode"},
		{ExchangeQuickMode, "Quick Mode"},
		{ExchangeType(99), "ExchangeType(99)"},
		{PayloadSA, "SA"},
		{PayloadNATDDraft, "NAT-D(draft)"},
		{PayloadType(132), "PayloadType(132)"},
		{ProtoESP, "ESP"},
		{ProtocolID(9), "ProtocolID(9)"},
		{IDIPv4AddrSubnet, "ID_IPV4_ADDR_SUBNET"},
		{IDType(0), "IDType(0)"},
		{NotifyNoProposalChosen, "NO-PROPOSAL-CHOSEN"},
		{NotifyPayloadMalformed, "PAYLOAD-MALFORMED"},
		{NotifyInvalidSPI, "INVALID-SPI"},
		{NotifyRUThereAck, "R-U-THERE-ACK"},
		{NotifyType(40000), "NotifyType(40000)"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%T(%v).String() = %q, want %q", tt.v, tt.v, got, tt.want)
		}
	}
}

// TestNotifyNamesComplete checks that every RFC 2408 error type 1-30 has a name.
func TestNotifyNamesComplete(t *testing.T) {
	for n := NotifyType(1); n <= 30; n++ {
		if s := n.String(); strings.HasPrefix(s, "NotifyType(") {
			t.Errorf("notify type %d has no name", n)
		}
		if !n.IsError() {
			t.Errorf("%v.IsError() = false", n)
		}
	}
	for _, n := range []NotifyType{NotifyConnected, NotifyInitialContact, NotifyRUThere} {
		if n.IsError() {
			t.Errorf("%v.IsError() = true", n)
		}
	}
}
