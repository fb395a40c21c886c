package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/control"
)

const liveConfig = `connections:
  bank:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    psk: "k"
    ike: {proposals: [aes256-sha256-modp2048]}
    tunnels:
      api: {local_subnet: 10.10.1.1/32, remote_subnet: 10.20.0.0/24, proposals: [3des-sha1-modp1024], start: always}
`

// TestCheckLive feeds status snapshots as the daemon reports them and checks the verdicts the
// acceptance tests cannot produce cheaply: the one-sided tunnel without XDP evidence, unknown
// SPIs, a quick-mode proposal mismatch and a start: always tunnel without an ISAKMP SA.
func TestCheckLive(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader(liveConfig))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	zero := uint64(0)
	upTunnel := []control.TunnelState{{Connection: "bank", Tunnel: "api", State: control.TunnelUp, Start: "always"}}
	tests := []struct {
		name string
		st   control.Status
		want []string // substrings of "LEVEL id subject: message -> fix", one per check
	}{{
		name: "one-sided, nothing arrived, unknown SPIs dropped",
		st: control.Status{
			IKESAs: []control.IKESA{{Connection: "bank", State: "ESTABLISHED", Established: now.Add(-time.Minute), LastReceived: now.Add(-5 * time.Second)}},
			IPsecSAs: []control.IPsecSA{{Connection: "bank", Tunnel: "api", SPIIn: "c1", SPIOut: "c2", Established: now.Add(-time.Minute),
				PacketsOut: 9, BytesOut: 900, XDPPacketsIn: &zero, LocalSelector: "10.10.1.1/32", RemoteSelector: "10.20.0.0/24"}},
			Tunnels: upTunnel,
			EBPF:    control.EBPFStatus{UnknownSPIDrops: 4},
		},
		want: []string{
			"OK ike bank: ISAKMP-SA established", "last IKE message from the peer 5s ago",
			"OK dpd bank: off",
			"FAIL tunnel bank/api: packets go out but nothing comes back", "no ESP with SPI c1 reached the WAN interface at all",
			"XDP dropped 4 ESP packets with SPIs we did not negotiate", "its host has no route back to 10.10.1.1/32",
			"-> fix: ask the partner whether their SA with SPI c2 counts our packets",
		},
	}, {
		name: "quick mode proposal mismatch, start always without ISAKMP SA",
		st: control.Status{
			Errors: []control.NegotiationError{
				{Connection: "bank", Time: now.Add(-2 * time.Minute), Error: "quick mode for tunnel api: no proposal chosen: we accept 3des-sha1-modp1024, peer offered aes128-sha1", Ours: "3des-sha1-modp1024", Theirs: "aes128-sha1"},
				{Connection: "bank", Time: now.Add(-time.Minute), Error: "quick mode for tunnel api: no proposal chosen: we accept 3des-sha1-modp1024, peer offered aes128-sha1", Ours: "3des-sha1-modp1024", Theirs: "aes128-sha1"},
				{Connection: "bank", Time: now.Add(-time.Hour), Error: "too old to matter"},
			},
			Tunnels: []control.TunnelState{{Connection: "bank", Tunnel: "api", State: control.TunnelDown, Start: "always"}},
		},
		want: []string{
			"FAIL ike bank: no ISAKMP-SA although a tunnel has start: always",
			"FAIL negotiation bank: quick mode for tunnel api: no proposal chosen", "(2 times, last 1m0s ago)",
			"-> fix: add one of the partner's proposals (aes128-sha1) to connections.bank.tunnels.api.proposals, or ask the partner to offer 3des-sha1-modp1024",
			"FAIL tunnel bank/api: down although start: always",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &report{}
			checkLive(r, cfg, &tt.st, now)
			var lines []string
			for _, c := range r.checks {
				l := string(c.Level) + " " + c.ID + " " + c.Subject + ": " + c.Message
				if c.Fix != "" {
					l += " -> fix: " + c.Fix
				}
				lines = append(lines, l)
			}
			all := strings.Join(lines, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no check contains %q in:\n%s", w, all)
				}
			}
			if strings.Contains(all, "too old to matter") {
				t.Errorf("an error older than %s was reported:\n%s", recentErrors, all)
			}
		})
	}
}

// TestCheckLiveIKEv2: an IKEv2 connection's SA is named as such, and a proposal mismatch of
// its IKE SA points at ike.proposals whatever the error's wording.
func TestCheckLiveIKEv2(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader(strings.Replace(liveConfig, "ike: {proposals:", "ike: {version: 2, proposals:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	st := control.Status{Errors: []control.NegotiationError{{Connection: "bank", Time: now.Add(-time.Minute),
		Error: "IKE_SA_INIT: no proposal chosen", Ours: "aes256-sha256-prfsha256-modp2048", Theirs: "aes128-sha1-prfsha1-modp1024"}}}
	requireChecks(t, cfg, st, now, "bank: no IKEv2 IKE SA although a tunnel has start: always",
		"to connections.bank.ike.proposals, or ask the partner to offer aes256-sha256-prfsha256-modp2048")
	// A CHILD_SA's: the partner's ESP proposals as a tunnel's proposals take them.
	st.Errors[0] = control.NegotiationError{Connection: "bank", Time: now.Add(-time.Minute),
		Error: "CHILD_SA of api: no proposal chosen", Ours: "3des-sha1-modp1024", Theirs: "esp:aes128-sha1, esp:aes128-sha1-modp1024"}
	requireChecks(t, cfg, st, now, "add one of the partner's proposals (aes128-sha1, aes128-sha1-modp1024) to connections.bank.tunnels.api.proposals")

	// Its dead peer detection is RFC 7296's liveness check, which every peer answers.
	sa := control.IKESA{Connection: "bank", State: "ESTABLISHED", Established: now.Add(-time.Hour)}
	for _, tt := range []struct {
		dpd  control.DPD
		want string
	}{
		{control.DPD{}, "OK liveness bank: off (ike.dpd_delay not set)"},
		{control.DPD{DelaySeconds: 10, PeerSupports: true, Running: true, LastAck: now.Add(-3 * time.Second)},
			"OK liveness bank: every 10s, last message from the peer 3s ago"},
		{control.DPD{DelaySeconds: 10, PeerSupports: true, Running: true, LastAck: now.Add(-25 * time.Second)},
			"WARN liveness bank: no message from the peer for 25s (every 10s); the peer is declared dead at dpd_timeout -> check that UDP 500/4500"},
	} {
		sa.DPD = tt.dpd
		requireChecks(t, cfg, control.Status{IKESAs: []control.IKESA{sa}}, now, tt.want)
	}
}

// requireChecks runs checkLive on st and requires a check line ("LEVEL id subject: message
// -> fix") to contain each of want; none may have the id dpd (IKEv1's name).
func requireChecks(t *testing.T, cfg *config.Config, st control.Status, now time.Time, want ...string) {
	t.Helper()
	r := &report{}
	checkLive(r, cfg, &st, now)
	var lines []string
	for _, c := range r.checks {
		lines = append(lines, string(c.Level)+" "+c.ID+" "+c.Subject+": "+c.Message+" -> "+c.Fix)
		if c.ID == IDDPD {
			t.Errorf("IKEv2 connection checked as %s: %s", IDDPD, c.Message)
		}
	}
	all := strings.Join(lines, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("no check contains %q in:\n%s", w, all)
		}
	}
}
