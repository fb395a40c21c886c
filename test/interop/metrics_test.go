package interop

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// metricsAddr is where the gateway serves /metrics, inside its namespace.
const metricsAddr = gwAddr + ":9814"

// TestMetricsStrongSwan is the acceptance test of the metrics for alerting, against
// strongSwan: a scrape shows the tunnel up with traffic after `espgw up` and down after
// `espgw down` (strongSwan's CHILD_SA gone too); a wrong pre-shared key counts as
// psk_mismatch whoever initiates; ESP with a valid SPI and a corrupted ICV counts as an icv
// drop; every metric the dashboard queries is in the scrape, and every espgw metric in it
// is in docs/metrics.md.
func TestMetricsStrongSwan(t *testing.T) {
	t.Parallel()
	set := proposalSets[0]
	l := newLab(t)
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	// A second partner with another key, on its own link.
	other := testutil.NewNetNS(t, "iop-partner2")
	testutil.Veth(t, l.gw, "gw-wan2", "198.51.100.1/24", other, partnerWAN, "198.51.100.2/24")
	testutil.Veth(t, other, "p-int", "10.30.0.1/24", other, "p-int-end", "")
	bad := startSwan(t, other, "198.51.100.2", "198.51.100.1", labPSK, set, "10.30.0.0/24", "10.10.2.1/32")
	badConn := espgwtest.Connection{Name: "wrongkey", Local: "198.51.100.1", Remote: "198.51.100.2", PSK: "not-the-partners-key", IKEProposal: set.ike,
		Tunnels: []espgwtest.Tunnel{{Name: tunnelName, LocalSubnet: "10.10.2.1/32", RemoteSubnet: "10.30.0.0/24", ESPProposal: set.esp, Start: "manual"}}}
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Metrics: metricsAddr,
		Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "manual"), badConn}})
	tun := fmt.Sprintf(`connection="%s",tunnel="%s"`, connName, tunnelName)

	s := scrape(t, l.gw)
	s.require(t, "espgw_tunnel_up{"+tun+"}", eq(0))
	s.require(t, `espgw_ike_sa_up{connection="`+connName+`"}`, eq(0))
	s.require(t, `espgw_ike_negotiations_total{connection="`+connName+`",exchange="main",result="psk_mismatch",role="responder"}`, eq(0))

	t.Run("up", func(t *testing.T) {
		begin := time.Now()
		if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
			t.Fatal(err)
		}
		sw.WaitInstalled(t, "s2s", negotiationTimeout)
		_, sa := g.WaitTunnelUp(t, connName, tunnelName, negotiationTimeout)
		pingBothWays(t, l)
		s := scrape(t, l.gw)
		s.require(t, "espgw_tunnel_up{"+tun+"}", eq(1))
		s.require(t, `espgw_ike_sa_up{connection="`+connName+`"}`, eq(1))
		for _, dir := range []struct{ name, spi string }{{"in", sa.SPIIn}, {"out", sa.SPIOut}} {
			labels := fmt.Sprintf(`{%s,direction="%s",spi="0x%s",tunnel="%s"}`, `connection="`+connName+`"`, dir.name, dir.spi, tunnelName)
			s.require(t, "espgw_sa_packets_total"+labels, atLeast(2*pings))
			s.require(t, "espgw_sa_bytes_total"+labels, atLeast(2*pings*84))
		}
		for _, x := range []string{"main", "quick"} {
			s.require(t, `espgw_ike_negotiations_total{connection="`+connName+`",exchange="`+x+`",result="success",role="initiator"}`, eq(1))
		}
		// The tunnel's lifetime is espgwtest's default 30 m.
		s.require(t, "espgw_tunnel_sa_expiry_timestamp_seconds{"+tun+"}",
			between(unixTime(begin.Add(30*time.Minute-time.Second)), unixTime(time.Now().Add(30*time.Minute+time.Second))))
		s.require(t, "espgw_tunnel_last_inbound_timestamp_seconds{"+tun+"}", between(unixTime(begin), unixTime(time.Now())))
		s.require(t, `espgw_ike_last_received_timestamp_seconds{connection="`+connName+`"}`, between(unixTime(begin), unixTime(time.Now())))
		s.require(t, `espgw_ike_dpd_state{connection="`+connName+`",state="off"}`, eq(1))

		t.Run("dashboard", func(t *testing.T) {
			for _, m := range dashboardMetrics(t) {
				if !s.families[m] {
					t.Errorf("the dashboard queries %s, which the scrape lacks", m)
				}
			}
		})
		t.Run("reference", func(t *testing.T) {
			doc := documentedMetrics(t)
			for m := range s.families {
				if strings.HasPrefix(m, "espgw_") && !doc[m] {
					t.Errorf("the scrape has %s, which docs/metrics.md lacks", m)
				}
			}
		})

		t.Run("bad ICV", func(t *testing.T) {
			before := s.value(t, `espgw_esp_drops_total{reason="icv"}`)
			const n = 3
			injectBadICV(t, l.partner, sa.SPIIn, n)
			err := testutil.Poll(5*time.Second, func() (bool, error) {
				got := scrape(t, l.gw).value(t, `espgw_esp_drops_total{reason="icv"}`)
				if got != before+n {
					return false, fmt.Errorf("icv drops %v, want %v", got, before+n)
				}
				return true, nil
			})
			if err != nil {
				t.Error(err)
			}
			// The tunnel still works: the forged packets did not move the replay window.
			if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 1); err != nil {
				t.Error(err)
			}
		})
	})

	t.Run("down", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), negotiationTimeout)
		defer cancel()
		if _, err := g.CLI(ctx, "down", connName+"/"+tunnelName); err != nil {
			t.Fatal(err)
		}
		err := testutil.Poll(5*time.Second, func() (bool, error) {
			sas, err := sw.ListSAs()
			for _, s := range sas {
				if len(s.Children) > 0 {
					return false, fmt.Errorf("strongSwan still has CHILD_SA %s", s.Children[0].Name)
				}
			}
			return err == nil, err
		})
		if err != nil {
			t.Error(err)
		}
		s := scrape(t, l.gw)
		s.require(t, "espgw_tunnel_up{"+tun+"}", eq(0))
		deletes := func(side string) string {
			return fmt.Sprintf(`espgw_child_sa_deletes_total{connection="%s",side="%s",tunnel="%s"}`, connName, side, tunnelName)
		}
		s.require(t, deletes("local"), eq(1))
		s.require(t, deletes("peer"), eq(0))
		s.require(t, `espgw_ike_sa_up{connection="`+connName+`"}`, eq(1)) // a tunnel's down keeps the IKE SA
		if _, ok := s.series["espgw_tunnel_sa_expiry_timestamp_seconds{"+tun+"}"]; ok {
			t.Errorf("scrape after down still has the SA expiry")
		}
	})

	t.Run("wrong PSK", func(t *testing.T) {
		psk := func(role string) string {
			return `espgw_ike_negotiations_total{connection="wrongkey",exchange="main",result="psk_mismatch",role="` + role + `"}`
		}
		err := g.Up("wrongkey/"+tunnelName, pskFailTimeout+5*time.Second)
		if err == nil {
			t.Fatal("espgw up with a wrong pre-shared key succeeded")
		}
		t.Logf("as initiator: %v", err)
		requireNotEstablished(t, bad)
		s := scrape(t, l.gw)
		s.require(t, psk("initiator"), eq(1))
		s.require(t, `espgw_ike_sa_up{connection="wrongkey"}`, eq(0))

		if err := bad.Initiate("s2s", 2*time.Second); err == nil {
			t.Error("swanctl --initiate with a wrong pre-shared key succeeded")
		}
		err = testutil.Poll(pskFailTimeout, func() (bool, error) {
			got := scrape(t, l.gw).value(t, psk("responder"))
			if got < 1 {
				return false, fmt.Errorf("%s = %v, want at least 1", psk("responder"), got)
			}
			return true, nil
		})
		if err != nil {
			t.Error(err)
		}
		requireNotEstablished(t, bad)
		// Nothing else is counted as a failure of that connection.
		s = scrape(t, l.gw)
		for key, v := range s.series {
			if strings.HasPrefix(key, `espgw_ike_negotiations_total{connection="wrongkey"`) && v != 0 &&
				!strings.Contains(key, `result="psk_mismatch"`) && !strings.Contains(key, `result="aborted"`) {
				t.Errorf("%s = %v, want 0", key, v)
			}
		}
	})
	g.Stop(t)
}

// injectBadICV sends n ESP-in-UDP packets from ns to the gateway's port 4500 with the SPI of
// its inbound SA, sequence numbers far ahead of the window and random bytes where the IV,
// ciphertext and ICV go (3DES-CBC + HMAC-SHA1-96: 8 + 16 + 12 bytes).
func injectBadICV(t *testing.T, ns *testutil.NetNS, spiHex string, n int) {
	t.Helper()
	spi, err := strconv.ParseUint(spiHex, 16, 32)
	if err != nil {
		t.Fatalf("SPI %q: %v", spiHex, err)
	}
	err = ns.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(partnerAddr)})
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			pkt := binary.BigEndian.AppendUint32(nil, uint32(spi))
			pkt = binary.BigEndian.AppendUint32(pkt, 1<<20+uint32(i))
			body, _ := hex.DecodeString("0123456789abcdef" + "00112233445566778899aabbccddeeff" + "deadbeefdeadbeefdeadbeef")
			if _, err := c.WriteToUDPAddrPort(append(pkt, body...), netip.MustParseAddrPort(gwAddr+":4500")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("inject ESP with a bad ICV: %v", err)
	}
}

// scraped is one /metrics scrape: every sample by name{labels} (labels sorted as the
// exposition format writes them) and the metric families present.
type scraped struct {
	series   map[string]float64
	families map[string]bool
	text     string
}

// scrape fetches /metrics from the gateway in ns.
func scrape(t *testing.T, ns *testutil.NetNS) scraped {
	t.Helper()
	return scrapeAt(t, ns, metricsAddr)
}

// scrapeAt fetches /metrics from addr (host:port) in ns.
func scrapeAt(t *testing.T, ns *testutil.NetNS, metricsAddr string) scraped {
	t.Helper()
	body, err := ns.HTTPGet(metricsAddr, "/metrics", 10*time.Second)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	s := scraped{series: make(map[string]float64), families: make(map[string]bool), text: string(body)}
	for _, line := range strings.Split(s.text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			s.families[strings.Fields(f)[0]] = true
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: line %q: %v", line, err)
		}
		s.series[line[:i]] = v
	}
	return s
}

// value returns the sample named key, failing the test if there is none.
func (s scraped) value(t *testing.T, key string) float64 {
	t.Helper()
	v, ok := s.series[key]
	if !ok {
		t.Fatalf("scrape has no %s; espgw series:\n%s", key, grepLines(s.text, "espgw_"))
	}
	return v
}

// require fails the test unless the sample key satisfies cond.
func (s scraped) require(t *testing.T, key string, cond func(float64) error) {
	t.Helper()
	v, ok := s.series[key]
	if !ok {
		t.Errorf("scrape has no %s; espgw series:\n%s", key, grepLines(s.text, strings.SplitN(key, "{", 2)[0]))
		return
	}
	if err := cond(v); err != nil {
		t.Errorf("%s = %v: %v", key, v, err)
	}
}

func eq(want float64) func(float64) error {
	return func(v float64) error {
		if v != want {
			return fmt.Errorf("want %v", want)
		}
		return nil
	}
}

func atLeast(want float64) func(float64) error {
	return func(v float64) error {
		if v < want {
			return fmt.Errorf("want at least %v", want)
		}
		return nil
	}
}

func between(lo, hi float64) func(float64) error {
	return func(v float64) error {
		if v < lo || v > hi {
			return fmt.Errorf("want between %.3f and %.3f", lo, hi)
		}
		return nil
	}
}

func unixTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, "  "+l)
		}
	}
	return strings.Join(out, "\n")
}

var metricName = regexp.MustCompile(`\bespgw_[a-z0-9_]+\b`)

// dashboardMetrics returns the metrics the queries of contrib/grafana/espgw.json use.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../contrib/grafana/espgw.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("contrib/grafana/espgw.json: %v", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			for _, m := range metricName.FindAllString(q.Expr, -1) {
				if !seen[m] {
					seen[m] = true
					out = append(out, m)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("contrib/grafana/espgw.json queries no espgw metric")
	}
	return out
}

// documentedMetrics returns the metrics of docs/metrics.md's table.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(espgw_[a-z0-9_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}
