package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/espgw/espgw/control"
)

// TestRawJSONAsDecoded: `status --json` prints the daemon's JSON re-indented, byte for byte
// what decoding it into a Status and encoding that again printed.
func TestRawJSONAsDecoded(t *testing.T) {
	n := uint64(7)
	at := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.FixedZone("", 3600))
	st := &control.Status{Datapath: "userspace",
		IKESAs: []control.IKESA{{Connection: "a<b>&c", Local: netip.MustParseAddrPort("192.0.2.1:500"), Established: at}},
		IPsecSAs: []control.IPsecSA{{Connection: "a", Tunnel: "t", SPIIn: "c0000001", XDPPacketsIn: &n,
			Local: netip.MustParseAddr("192.0.2.1"), Established: at}},
		Tunnels: []control.TunnelState{{Connection: "a", Tunnel: "t", State: control.TunnelUp, LastError: "no \"proposal\" <chosen>\n"}},
		Errors:  []control.NegotiationError{{Connection: "a", Time: at, Error: "timeout"}}}
	var sent bytes.Buffer
	if err := json.NewEncoder(&sent).Encode(control.Response{Status: st}); err != nil { // as the daemon does
		t.Fatal(err)
	}
	var resp struct{ Status json.RawMessage }
	if err := json.Unmarshal(sent.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	var decoded control.Response
	if err := json.Unmarshal(sent.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	var want, got bytes.Buffer
	cmd := &cobra.Command{}
	cmd.SetOut(&want)
	if err := writeJSON(cmd, decoded.Status); err != nil {
		t.Fatal(err)
	}
	cmd.SetOut(&got)
	if err := writeRawJSON(cmd, resp.Status); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("raw:\n%s\ndecoded:\n%s", got.String(), want.String())
	}
}
