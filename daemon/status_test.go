package daemon

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath/datapathtest"
	"github.com/espgw/espgw/ike"
)

// TestIKESAVersion: the control protocol carries each IKE SA's version; IKEv2's mode is
// "ikev2" (it has no main or aggressive mode).
func TestIKESAVersion(t *testing.T) {
	for _, tt := range []struct {
		in      ike.IKESAStatus
		version int
		mode    string
	}{
		{ike.IKESAStatus{Version: 1}, 1, "main"},
		{ike.IKESAStatus{Version: 1, Aggressive: true}, 1, "aggressive"},
		{ike.IKESAStatus{Version: 2}, 2, "ikev2"},
	} {
		if got := ikeSA(tt.in); got.Version != tt.version || got.Mode != tt.mode {
			t.Errorf("ikeSA(%+v): version %d, mode %q; want %d, %q", tt.in, got.Version, got.Mode, tt.version, tt.mode)
		}
	}
}

// TestStatusJSON: the raw status a client prints for `status --json` decodes to the
// daemon's status (here 50 tunnels up between two daemons).
func TestStatusJSON(t *testing.T) {
	ba, bb := bindtest.NewPair()
	a := startDaemon(t, "A", manyTunnelsYAML("192.0.2.1", "192.0.2.2", 50, ""), ba, datapathtest.New(0x1000))
	startDaemon(t, "B", manyTunnelsYAML("192.0.2.2", "192.0.2.1", 50, ""), bb, datapathtest.New(0x2000))
	if err := a.client.Up(context.Background(), "mega", ""); err != nil {
		t.Fatal(err)
	}
	raw, err := a.client.StatusJSON(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st control.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.IPsecSAs) != 50 || len(st.Tunnels) != 50 || st.Datapath != a.status(t).Datapath {
		t.Errorf("raw status: %d IPsec SAs, %d tunnels, datapath %q; want 50, 50, %q",
			len(st.IPsecSAs), len(st.Tunnels), st.Datapath, a.status(t).Datapath)
	}
}

// TestStatusSummary: above the asked number of tunnels the daemon answers `status` with
// the summary that the client would make of its whole status (as it does for an older
// daemon), a line per connection, in a fraction of the bytes; a request without
// summary_above (an older client) still gets the whole status; `status NAME` gets what
// the client would select from the whole status.
func TestStatusSummary(t *testing.T) {
	ba, bb := bindtest.NewPair()
	idle := "  idle:\n    local_address: 192.0.2.1\n    remote_address: 192.0.2.9\n    psk: \"SUPERPASSWORD\"\n" +
		"    ike: {proposals: [aes128-sha256-modp2048]}\n    tunnels:\n" +
		"      db: {local_subnet: 10.30.0.0/24, remote_subnet: 10.40.0.0/24, proposals: [aes128gcm16], start: manual}\n"
	a := startDaemon(t, "A", manyTunnelsYAML("192.0.2.1", "192.0.2.2", 30, "")+idle, ba, datapathtest.New(0x1000))
	startDaemon(t, "B", manyTunnelsYAML("192.0.2.2", "192.0.2.1", 30, ""), bb, datapathtest.New(0x2000))
	ctx := context.Background()
	if err := a.client.Up(ctx, "mega", ""); err != nil {
		t.Fatal(err)
	}
	st, sum, err := a.client.Overview(ctx, 20)
	if err != nil || st != nil {
		t.Fatalf("Overview(20) of 31 tunnels = %v, %v; want a summary", st, err)
	}
	full := a.status(t)
	if want := full.Summary(); !reflect.DeepEqual(sum, want) {
		t.Errorf("the daemon's summary\n%+v\nthe summary of its status\n%+v", sum, want)
	}
	if len(sum.Connections) != 2 || sum.Connections[1].Connection != "mega" || sum.Connections[1].TunnelsUp != 30 ||
		sum.Connections[0].Tunnels != 1 || sum.Connections[0].TunnelsUp != 0 || sum.IPsecSAs != 30 {
		t.Errorf("summary %+v; want idle 0/1 and mega 30/30 up with 30 IPsec SAs", sum)
	}
	summaryJSON, _ := json.Marshal(sum)
	statusJSON, _ := json.Marshal(full)
	if len(summaryJSON)*20 > len(statusJSON) {
		t.Errorf("summary %d bytes of JSON, status %d: want a small fraction", len(summaryJSON), len(statusJSON))
	}
	one, err := a.client.StatusOf(ctx, "IDLE") // the daemon selects it, matching the case
	if err != nil {
		t.Fatal(err)
	}
	want, _ := full.Connection("idle")
	want.Errors = one.Errors // Connection leaves them out, the daemon sends none
	if len(one.Errors) != 0 || !reflect.DeepEqual(one, want) {
		t.Errorf("status idle\n%+v\nwant\n%+v", one, want)
	}
	if _, err := a.client.StatusOf(ctx, "nobody"); err == nil || err.Error() != `no connection "nobody" (configured: idle, mega)` {
		t.Errorf("status nobody: %v", err)
	}
	if resp := a.handleRaw(t, `{"command": "status"}`); resp.Status == nil || resp.Summary != nil || len(resp.Status.Tunnels) != 31 {
		t.Errorf("an older client's status request got %+v; want the whole status", resp)
	}
}
