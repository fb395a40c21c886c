package daemon

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/datapathtest"
)

// v2YAML is peerYAML in IKEv2 with lists of subnets.
func v2YAML(local, remote, localNets, remoteNets string) string {
	y := peerYAML(local, remote, "["+localNets+"]", "["+remoteNets+"]", "SUPERPASSWORD")
	return strings.Replace(y, "ike: {proposals: [3des-sha1-modp1024]}", "ike: {version: 2, proposals: [aes128-sha256-modp2048]}", 1)
}

// TestDaemonSeveralSubnets: a tunnel with two subnets per side gets one policy per
// combination, all with its reqid, and one SA pair whose selectors are the four
// combinations; status lists the subnets comma-separated. A reload that replaces one remote
// subnet adds the new combinations before it removes the old ones and leaves the others.
func TestDaemonSeveralSubnets(t *testing.T) {
	const aNets, bNets = "10.10.1.0/24, 10.11.0.0/24", "10.20.0.0/24, 10.21.0.0/24"
	ba, bb := bindtest.NewPair()
	a := startDaemon(t, "A", v2YAML("192.0.2.1", "192.0.2.2", aNets, bNets), ba, datapathtest.New(0x1000))
	b := startDaemon(t, "B", v2YAML("192.0.2.2", "192.0.2.1", bNets, aNets), bb, datapathtest.New(0x2000))
	ctx := context.Background()
	report, err := a.client.Flows(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, f := range report.Policies {
		pairs = append(pairs, f.LocalSelector+" "+f.RemoteSelector)
		if f.ReqID != report.Policies[0].ReqID {
			t.Errorf("flow %+v: reqid %d, want the tunnel's one reqid %d", f, f.ReqID, report.Policies[0].ReqID)
		}
	}
	want := []string{"10.10.1.0/24 10.20.0.0/24", "10.10.1.0/24 10.21.0.0/24", "10.11.0.0/24 10.20.0.0/24", "10.11.0.0/24 10.21.0.0/24"}
	if !slices.Equal(pairs, want) {
		t.Errorf("A's policies %q, want %q", pairs, want)
	}

	a.dp.Send(datapath.Event{Kind: datapath.EventAcquire, ReqID: report.Policies[0].ReqID})
	waitFor(t, "tunnel up on both sides", func() bool {
		return tunnelState(a.status(t), "mega", "api").State == control.TunnelUp && tunnelState(b.status(t), "mega", "api").State == control.TunnelUp
	})
	st := a.status(t)
	if len(st.IPsecSAs) != 1 || st.IPsecSAs[0].LocalSelector != "10.10.1.0/24,10.11.0.0/24" || st.IPsecSAs[0].RemoteSelector != "10.20.0.0/24,10.21.0.0/24" {
		t.Errorf("A's IPsec SAs %+v, want one with both subnets per side", st.IPsecSAs)
	}
	if ts := tunnelState(st, "mega", "api"); ts.LocalSelector != "10.10.1.0/24,10.11.0.0/24" || ts.RemoteSelector != "10.20.0.0/24,10.21.0.0/24" {
		t.Errorf("A's tunnel %+v, want both subnets per side", ts)
	}
	sas, _, _ := a.dp.Snapshot()
	for k, sa := range sas {
		var got []string
		for _, s := range sa.Selectors {
			got = append(got, s.Local.String()+" "+s.Remote.String())
		}
		if sa.Dst.String() == "192.0.2.2" && !slices.Equal(got, want) {
			t.Errorf("outbound SA %v selectors %q, want %q", k, got, want)
		}
	}

	before := len(a.dp.PolicyOps())
	a.writeConfig(t, v2YAML("192.0.2.1", "192.0.2.2", aNets, "10.20.0.0/24, 10.22.0.0/24"))
	if err := a.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	ops := a.dp.PolicyOps()[before:]
	firstDel := slices.IndexFunc(ops, func(op string) bool { return strings.HasPrefix(op, "del") })
	adds, dels := slices.Clone(ops[:max(firstDel, 0)]), slices.Clone(ops[max(firstDel, 0):])
	slices.Sort(adds)
	slices.Sort(dels)
	wantAdds := []string{"add 10.10.1.0/24 10.22.0.0/24 reqid 1 prio 1000", "add 10.11.0.0/24 10.22.0.0/24 reqid 1 prio 1000"}
	wantDels := []string{"del 10.10.1.0/24 10.21.0.0/24 reqid 1 prio 1000", "del 10.11.0.0/24 10.21.0.0/24 reqid 1 prio 1000"}
	if firstDel < 0 || !slices.Equal(adds, wantAdds) || !slices.Equal(dels, wantDels) {
		t.Errorf("policy changes on reload:\n%s\nwant the adds\n%s\nbefore the removals\n%s",
			strings.Join(ops, "\n"), strings.Join(wantAdds, "\n"), strings.Join(wantDels, "\n"))
	}
}
