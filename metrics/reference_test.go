package metrics

import (
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/espgw/espgw/datapath/userspace"
	"github.com/espgw/espgw/ike"
)

// everything is a source with one entry of every kind, so that every metric has a series.
// Its times are fixed: two scrapes give the same answer.
type everything struct{}

var someTime = time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)

func (everything) SAStats() ([]SAStat, error) {
	return []SAStat{{"c", "t", 1, "in", 100, 1}, {"c", "t", 2, "out", 100, 1}}, nil
}
func (everything) PolicyStats() ([]PolicyStat, error) {
	return []PolicyStat{{"c", "t", 1, 0, 2, 3}}, nil
}
func (everything) FilterStats() (FilterStats, error) { return FilterStats{1, 0, 2, 0}, nil }
func (everything) TopFlows(int) ([]FlowStat, error) {
	a := netip.MustParseAddr("10.1.0.1")
	return []FlowStat{{"c", "t", a, a, 6, 1, 2, 3, 4}}, nil
}
func (everything) TunnelStates() ([]TunnelState, error) {
	return []TunnelState{{"c", "t", true, someTime.Add(time.Hour), someTime, true}}, nil
}
func (everything) ConnStates() ([]ConnState, error) {
	return []ConnState{{"c", true, "alive", someTime}}, nil
}
func (everything) DropCounts() (map[string]uint64, error) { return map[string]uint64{"icv": 1}, nil }

// fullRegistry registers what the daemon serves, fed by everything.
func fullRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	for _, c := range allSources() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// allSources are the daemon's sources fed by everything, with an odd connection name.
func allSources() []Source {
	var results []string
	for _, r := range ike.Results {
		results = append(results, string(r))
	}
	ev := NewEvents(results)
	ev.Configure([]ConnTunnels{{Connection: "c", Exchange: "main", Tunnels: []string{"t"}},
		{Connection: "odd \"name\"\\\n", Exchange: "main", Tunnels: []string{"ü"}}})
	ev.Received("c", someTime)
	return []Source{NewCollector(everything{}, everything{}, 10), NewStateCollector(everything{}, everything{}), ev}
}

// referenceRow matches a row of docs/metrics.md's metric table: | `name` | type | `l1`, `l2` | ... |
var referenceRow = regexp.MustCompile("^\\| `(espgw_[a-z0-9_]+)` \\| (counter|gauge) \\| ([^|]*) \\|")

type documented struct {
	typ    string
	labels []string
}

func readReference(t *testing.T) (map[string]documented, string) {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := make(map[string]documented)
	for _, line := range strings.Split(string(b), "\n") {
		m := referenceRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		doc[m[1]] = documented{m[2], labels}
	}
	return doc, string(b)
}

// TestReferenceMatchesRegistry: docs/metrics.md lists exactly the metrics the daemon's
// collectors export, with their types and label names, and the label values of the fixed sets.
func TestReferenceMatchesRegistry(t *testing.T) {
	doc, text := readReference(t)
	reg := fullRegistry(t)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, f := range families {
		name := f.GetName()
		seen[name] = true
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s is exported but not in docs/metrics.md", name)
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); typ != d.typ {
			t.Errorf("%s: type %s, docs/metrics.md says %s", name, typ, d.typ)
		}
		for _, m := range f.GetMetric() {
			if got := labelNames(m); !slices.Equal(got, d.labels) {
				t.Errorf("%s: labels %v, docs/metrics.md says %v", name, got, d.labels)
				break
			}
		}
	}
	for name := range doc {
		if !seen[name] {
			t.Errorf("docs/metrics.md lists %s, which no collector exports", name)
		}
	}
	var values []string
	for _, r := range ike.Results {
		values = append(values, string(r))
	}
	values = append(values, ESPDropReasons...)
	values = append(values, DPDStates...)
	for _, v := range values {
		if !strings.Contains(text, "`"+v+"`") {
			t.Errorf("docs/metrics.md does not document the label value %q", v)
		}
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) != 0 {
		t.Errorf("metric lint: %v %v", probs, err)
	}
}

func labelNames(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName())
	}
	slices.Sort(out)
	return out
}

func TestDPDStatesAreIKEs(t *testing.T) {
	var want []string
	for _, s := range ike.DPDStates {
		want = append(want, string(s))
	}
	if !slices.Equal(DPDStates, want) {
		t.Errorf("metrics.DPDStates = %v, ike.DPDStates = %v", DPDStates, want)
	}
}

// TestEventsConfigure: series of configured connections start at zero; a reload that removes
// a connection removes its series.
func TestEventsConfigure(t *testing.T) {
	ev := NewEvents([]string{"success", "timeout"})
	ev.Configure([]ConnTunnels{{Connection: "a", Exchange: "main", Tunnels: []string{"t"}}, {Connection: "b", Exchange: "aggressive"}})
	ev.Negotiation("a", "quick", RoleInitiator, "success")
	ev.Delete("a", "t", SidePeer)
	ev.Rekey("b", "")
	if n := testutil.CollectAndCount(ev, "espgw_ike_negotiations_total"); n != 2*2*2*2 {
		t.Errorf("%d negotiation series, want 16 (2 connections x 2 exchanges x 2 roles x 2 results)", n)
	}
	if v := ev.negotiations.value("a", "quick", RoleInitiator, "success"); v != 1 {
		t.Errorf("a quick initiator success = %v, want 1", v)
	}
	ev.Configure([]ConnTunnels{{Connection: "b", Exchange: "aggressive"}})
	if n := testutil.CollectAndCount(ev, "espgw_ike_negotiations_total"); n != 2*2*2 {
		t.Errorf("after removing a: %d negotiation series, want 8", n)
	}
	if n := testutil.CollectAndCount(ev, "espgw_child_sa_deletes_total"); n != 0 {
		t.Errorf("after removing a: %d child delete series, want 0", n)
	}
	if v := ev.ikeRekeys.value("b"); v != 1 {
		t.Errorf("b IKE rekeys = %v, want 1 (kept across reloads)", v)
	}
}

// TestConnectionInfo: one espgw_connection_info series per connection, with the IKE version
// of the last Configure.
func TestConnectionInfo(t *testing.T) {
	ev := NewEvents([]string{"success"})
	ev.Configure([]ConnTunnels{{Connection: "a", Exchange: "main"}, {Connection: "b", IKEVersion: 2, Exchange: "IKE_SA_INIT"}})
	ev.Configure([]ConnTunnels{{Connection: "a", IKEVersion: 2, Exchange: "IKE_SA_INIT"}, {Connection: "b", IKEVersion: 1, Exchange: "main"}})
	want := `
# HELP espgw_connection_info 1 for each configured connection, labelled with the IKE version it speaks (1 or 2).
# TYPE espgw_connection_info gauge
espgw_connection_info{connection="a",ike_version="2"} 1
espgw_connection_info{connection="b",ike_version="1"} 1
`
	if err := testutil.CollectAndCompare(ev, strings.NewReader(want), "espgw_connection_info"); err != nil {
		t.Error(err)
	}
}

func TestESPDropReasonsCoverUserspace(t *testing.T) {
	c, err := new(userspace.Datapath).DropCounts()
	if err != nil {
		t.Fatal(err)
	}
	for r := range c {
		if !slices.Contains(ESPDropReasons, r) {
			t.Errorf("the userspace datapath drops for reason %q, which ESPDropReasons lacks (it would count as other)", r)
		}
	}
}
