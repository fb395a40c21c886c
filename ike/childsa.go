package ike

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/espgw/espgw/ike/proposal"
)

// TrafficSelector is one side of a quick-mode proxy ID: a prefix, an IP protocol (0 = any)
// and a port (0 = any).
type TrafficSelector struct {
	Prefix netip.Prefix
	Proto  uint8
	Port   uint16
}

// JoinTS formats selectors comma-separated, as status shows them.
func JoinTS(ts []TrafficSelector) string {
	s := make([]string, len(ts))
	for i, x := range ts {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (ts TrafficSelector) String() string {
	s := ts.Prefix.String()
	if ts.Proto != 0 || ts.Port != 0 {
		s += fmt.Sprintf("[%d/%d]", ts.Proto, ts.Port)
	}
	return s
}

// ChildSA is a negotiated pair of ESP SAs, handed to Kernel.InstallChildSA.
// Its keys are never logged: LogValue omits them.
type ChildSA struct {
	Connection, Tunnel string
	ReqID              uint32
	Local, Remote      netip.Addr // tunnel endpoints
	// EncapLocalPort/EncapRemotePort are the UDP ports of ESP-in-UDP (RFC 3948); 0 = raw ESP.
	EncapLocalPort, EncapRemotePort uint16
	Proposal                        proposal.ESP
	SPIIn, SPIOut                   uint32
	// Keys per direction; for AES-GCM the encryption key is followed by its 4-byte salt.
	EncKeyIn, EncKeyOut, IntegKeyIn, IntegKeyOut []byte
	// LocalTS and RemoteTS are the negotiated selectors: the SA pair carries every
	// (local, remote) combination of them.
	LocalTS, RemoteTS []TrafficSelector
	Lifetime          time.Duration
	LifeKilobytes     uint64
	Established       time.Time
	Initiator         bool
}

// zeroKeys overwrites the four keys, once the datapath no longer holds the SA.
func (sa *ChildSA) zeroKeys() {
	for _, b := range [][]byte{sa.EncKeyIn, sa.EncKeyOut, sa.IntegKeyIn, sa.IntegKeyOut} {
		clear(b)
	}
}

// LogValue implements slog.LogValuer without key material.
func (sa *ChildSA) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("conn", sa.Connection),
		slog.String("tunnel", sa.Tunnel),
		slog.Uint64("reqid", uint64(sa.ReqID)),
		slog.String("spi_in", fmt.Sprintf("%08x", sa.SPIIn)),
		slog.String("spi_out", fmt.Sprintf("%08x", sa.SPIOut)),
		slog.String("proposal", sa.Proposal.String()),
		slog.String("local_ts", JoinTS(sa.LocalTS)),
		slog.String("remote_ts", JoinTS(sa.RemoteTS)),
	)
}
