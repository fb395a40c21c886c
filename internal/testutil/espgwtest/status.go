package espgwtest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// statusTimeout bounds one `espgw status --json`.
const statusTimeout = 10 * time.Second

// Status mirrors the JSON of `espgw status --json` (documented in control/api.go) field by
// field, in types of its own rather than the daemon's, so that a change of the documented
// output breaks the tests that read it.
type Status struct {
	Datapath string        `json:"datapath"`
	IKESAs   []IKESA       `json:"ike_sas"`
	IPsecSAs []IPsecSA     `json:"ipsec_sas"`
	Tunnels  []TunnelState `json:"tunnels"`
	EBPF     EBPF          `json:"ebpf"`
}

// EBPF is the part of ebpf the tests read: whether the programs run, and where.
type EBPF struct {
	Loaded   bool     `json:"loaded"`
	Reason   string   `json:"reason"`
	Attached []string `json:"attached"`
}

// IKESA is one entry of ike_sas: an ISAKMP SA.
type IKESA struct {
	Connection      string `json:"connection"`
	Local           string `json:"local"`
	Peer            string `json:"peer"`
	InitiatorCookie string `json:"initiator_cookie"`
	ResponderCookie string `json:"responder_cookie"`
	State           string `json:"state"`
	Initiator       bool   `json:"initiator"`
	Mode            string `json:"mode"`
	Algorithms      string `json:"algorithms"`
	NATT            bool   `json:"nat_t"`
}

// IPsecSA is one entry of ipsec_sas: an inbound/outbound ESP SA pair.
type IPsecSA struct {
	Connection      string `json:"connection"`
	Tunnel          string `json:"tunnel"`
	SPIIn           string `json:"spi_in"`
	SPIOut          string `json:"spi_out"`
	Algorithms      string `json:"algorithms"`
	Local           string `json:"local"`
	Remote          string `json:"remote"`
	LocalSelector   string `json:"local_selector"`
	RemoteSelector  string `json:"remote_selector"`
	BytesIn         uint64 `json:"bytes_in"`
	BytesOut        uint64 `json:"bytes_out"`
	PacketsIn       uint64 `json:"packets_in"`
	PacketsOut      uint64 `json:"packets_out"`
	EncapLocalPort  uint16 `json:"encap_local_port"`
	EncapRemotePort uint16 `json:"encap_remote_port"`
	CountersError   string `json:"counters_error"`
}

// TunnelState is one entry of tunnels:.
type TunnelState struct {
	Connection    string    `json:"connection"`
	Tunnel        string    `json:"tunnel"`
	State         string    `json:"state"`
	LastError     string    `json:"last_error"`
	LastErrorTime time.Time `json:"last_error_time"`
	OneSidedSince time.Time `json:"one_sided_since"`
}

// Tunnel returns the state of tunnel conn/tun, if listed.
func (s Status) Tunnel(conn, tun string) (TunnelState, bool) {
	for _, t := range s.Tunnels {
		if t.Connection == conn && t.Tunnel == tun {
			return t, true
		}
	}
	return TunnelState{}, false
}

// TunnelSAs returns the IPsec SAs of tunnel conn/tun.
func (s Status) TunnelSAs(conn, tun string) []IPsecSA {
	var out []IPsecSA
	for _, sa := range s.IPsecSAs {
		if sa.Connection == conn && sa.Tunnel == tun {
			out = append(out, sa)
		}
	}
	return out
}

// ConnectionSAs returns the ISAKMP SAs of connection conn.
func (s Status) ConnectionSAs(conn string) []IKESA {
	var out []IKESA
	for _, sa := range s.IKESAs {
		if sa.Connection == conn {
			out = append(out, sa)
		}
	}
	return out
}

// Status runs `espgw status --json` and decodes its output.
func (g *Gateway) Status() (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	out, err := g.CLI(ctx, "status", "--json")
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return Status{}, fmt.Errorf("espgw status --json: %w\n%s", err, out)
	}
	return st, nil
}

// MustStatus is Status, failing the test on error.
func (g *Gateway) MustStatus(tb testing.TB) Status {
	tb.Helper()
	st, err := g.Status()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// WaitTunnelUp waits until the status shows tunnel conn/tun up with an IPsec SA and returns
// the status and the tunnel's first IPsec SA; it fails the test after timeout.
func (g *Gateway) WaitTunnelUp(tb testing.TB, conn, tun string, timeout time.Duration) (Status, IPsecSA) {
	tb.Helper()
	var st Status
	var sa IPsecSA
	testutil.WaitFor(tb, timeout, func() (bool, error) {
		var err error
		if st, err = g.Status(); err != nil {
			return false, err
		}
		ts, ok := st.Tunnel(conn, tun)
		sas := st.TunnelSAs(conn, tun)
		if !ok || ts.State != "up" || len(sas) == 0 {
			return false, fmt.Errorf("espgw in netns %s: tunnel %s/%s: state %q, %d IPsec SAs (last error %q)",
				g.NS.Name(), conn, tun, ts.State, len(sas), ts.LastError)
		}
		sa = sas[0]
		return true, nil
	})
	return st, sa
}
