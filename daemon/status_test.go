package daemon

import (
	"context"
	"encoding/json"
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
