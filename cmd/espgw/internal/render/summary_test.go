package render

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/espgw/espgw/control"
)

func TestRenderSummary(t *testing.T) {
	var b bytes.Buffer
	if err := Summary(&b, seedStatus.Summary()); err != nil {
		t.Fatal(err)
	}
	golden(t, "status-summary.golden", b.Bytes())
}

// TestRenderSummaryManyTunnels renders 200 connections of 5 tunnels: one line each, sorted.
func TestRenderSummaryManyTunnels(t *testing.T) {
	st := &control.Status{Datapath: "userspace"}
	for c := range 200 {
		for tn := range 5 {
			state := control.TunnelUp
			if c == 7 && tn == 3 {
				state = control.TunnelDown
			}
			st.Tunnels = append(st.Tunnels, control.TunnelState{Connection: fmt.Sprintf("peer%03d", c), Tunnel: fmt.Sprintf("t%d", tn), State: state})
		}
	}
	var b bytes.Buffer
	if err := Summary(&b, st.Summary()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "peer") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 200 || !strings.HasPrefix(rows[0], "peer000 ") || !strings.HasPrefix(rows[199], "peer199 ") {
		t.Fatalf("%d connection rows (first %q), want 200 sorted:\n%s", len(rows), rows[0], b.String())
	}
	if f := strings.Fields(rows[7]); f[3] != "4/5" {
		t.Errorf("peer007 tunnels up %q, want 4/5: %q", f[3], rows[7])
	}
	if !strings.Contains(b.String(), "200 connections, 999 of 1000 tunnels up") {
		t.Errorf("no totals line:\n%s", b.String())
	}
}
