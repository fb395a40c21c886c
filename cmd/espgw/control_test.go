package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
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

// TestStatusSummaryOldAndNewDaemon: `espgw status` of many tunnels prints the same table
// whether the daemon sends the summary (it knows summary_above) or its whole status (an
// older daemon); with NAME it asks for that connection.
func TestStatusSummaryOldAndNewDaemon(t *testing.T) {
	st := &control.Status{Datapath: "userspace", EBPF: control.EBPFStatus{Loaded: true, NonPeerDrops: 3},
		IKESAs:   []control.IKESA{{Connection: "b", Peer: netip.MustParseAddrPort("192.0.2.7:4500"), State: "ESTABLISHED", Version: 2}},
		IPsecSAs: []control.IPsecSA{{Connection: "b", Tunnel: "t1", BytesIn: 10, BytesOut: 20}}}
	for i := range 25 {
		ts := control.TunnelState{Connection: string(rune('a' + i%2)), Tunnel: "t" + strconv.Itoa(i), State: control.TunnelUp}
		if i%5 == 0 {
			ts.State, ts.LastError, ts.Policy = control.TunnelDown, "timeout", &control.PolicyCounters{SADownDrops: 4}
		}
		st.Tunnels = append(st.Tunnels, ts)
	}
	var asked []control.Request
	answers := map[string]func(control.Request) control.Response{
		"old": func(control.Request) control.Response { return control.Response{Status: st} },
		"new": func(req control.Request) control.Response {
			if req.SummaryAbove > 0 && len(st.Tunnels) > req.SummaryAbove {
				return control.Response{Summary: st.Summary()}
			}
			return control.Response{Status: st}
		},
	}
	out := map[string]string{}
	for name, answer := range answers {
		sock := fakeDaemon(t, func(req control.Request) *control.Response {
			asked = append(asked, req)
			resp := answer(req)
			return &resp
		})
		code, stdout, stderr := espgw("status", "--socket", sock)
		if code != 0 {
			t.Fatalf("%s daemon: exit %d, %s", name, code, stderr)
		}
		out[name] = stdout
	}
	if out["old"] != out["new"] || !strings.Contains(out["new"], "2 connections, 20 of 25 tunnels up, 1 IPsec SAs.") {
		t.Errorf("from an older daemon:\n%s\nfrom a new one:\n%s", out["old"], out["new"])
	}
	for _, req := range asked {
		if req.Command != control.CmdStatus || req.SummaryAbove != 20 || req.Connection != "" {
			t.Errorf("status asked %+v; want status with summary_above 20", req)
		}
	}
	asked = nil
	sock := fakeDaemon(t, func(req control.Request) *control.Response {
		asked = append(asked, req)
		one, _ := st.Connection(req.Connection)
		return &control.Response{Status: one}
	})
	if code, stdout, stderr := espgw("status", "b", "--socket", sock); code != 0 || len(asked) != 1 || asked[0].Connection != "b" ||
		!strings.Contains(stdout, "192.0.2.7") {
		t.Errorf("status b: exit %d, asked %+v, output\n%s%s; want the daemon asked for b only", code, asked, stdout, stderr)
	}
}

// fakeDaemon answers control requests on a unix socket until the test ends, one per
// connection as the daemon does, and returns the socket's path. A nil answer hangs up.
func fakeDaemon(t *testing.T, answer func(control.Request) *control.Response) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "espgw.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req control.Request
			if err := json.NewDecoder(c).Decode(&req); err == nil {
				if resp := answer(req); resp != nil {
					json.NewEncoder(c).Encode(resp)
				}
			}
			c.Close()
		}
	}()
	return sock
}
