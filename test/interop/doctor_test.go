package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// cliTimeout bounds one doctor or ping run (ping -c 3 takes 3 s without replies).
const cliTimeout = 90 * time.Second

// doctorReport mirrors the JSON of `espgw doctor --json` as docs/doctor.md documents it, in
// types of its own, so that a change of the documented schema breaks this test.
type doctorReport struct {
	Version int    `json:"version"`
	Config  string `json:"config"`
	Daemon  bool   `json:"daemon"`
	Checks  []struct {
		ID      string         `json:"id"`
		Level   string         `json:"level"`
		Subject string         `json:"subject"`
		Message string         `json:"message"`
		Fix     string         `json:"fix"`
		Details map[string]any `json:"details"`
	} `json:"checks"`
	Summary struct{ OK, Warn, Fail int } `json:"summary"`
}

// failed returns the FAIL checks as "id subject: message".
func (r doctorReport) failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Level == "FAIL" {
			out = append(out, c.ID+" "+c.Subject+": "+c.Message)
		}
	}
	return out
}

// espgwRun runs espgw in ns and returns its result, failing the test if it did not run.
func espgwRun(t *testing.T, ns *testutil.NetNS, args ...string) espgwtest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	r, err := espgwtest.Run(ctx, ns, args...)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, r.Stdout, r.Stderr)
	}
	return r
}

// gwRun runs espgw in g's namespace with g's configuration and control socket.
func gwRun(t *testing.T, g *espgwtest.Gateway, args ...string) espgwtest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	r, err := g.RunIn(ctx, args...)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, r.Stdout, r.Stderr)
	}
	return r
}

// doctorJSON runs `espgw doctor --json` with args and decodes the report.
func doctorJSON(t *testing.T, ns *testutil.NetNS, args ...string) doctorReport {
	t.Helper()
	r := espgwRun(t, ns, append([]string{"doctor", "--json"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("espgw doctor --json: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	if rep.Version != 1 || len(rep.Checks) != rep.Summary.OK+rep.Summary.Warn+rep.Summary.Fail {
		t.Errorf("doctor report version %d, %d checks, summary %+v: want version 1 and a summary that counts every check", rep.Version, len(rep.Checks), rep.Summary)
	}
	if (r.Code == 1) != (rep.Summary.Fail > 0) {
		t.Errorf("espgw doctor --json exited %d with %d FAIL checks: want 1 exactly when a check fails", r.Code, rep.Summary.Fail)
	}
	return rep
}

// requireLines fails the test unless every pattern matches a line of out.
func requireLines(t *testing.T, what, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile("(?m)" + p).MatchString(out) {
			t.Errorf("%s: no line matches %q in:\n%s", what, p, out)
			return
		}
	}
}

// TestDoctorWithoutDaemon: before espgw runs, doctor names a charon that holds UDP 500 and
// 4500 (with its PID) and a psk_file others can read, with FAIL lines, JSON and exit status 1.
func TestDoctorWithoutDaemon(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	set := proposalSets[0]
	sw := startSwan(t, l.gw, gwAddr, partnerAddr, labPSK, set, localSubnet, remoteSubnet) // the old IKE daemon, still running

	dir, err := os.MkdirTemp("", "doctor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	psk := filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(psk, []byte(partnerAddr+" "+labPSK+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(psk, 0o644); err != nil { // past the umask: the loose file racoon would refuse
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "espgw.yaml")
	yaml := fmt.Sprintf(`control_socket: %s/ctl.sock
datapath: userspace
connections:
  %s:
    local_address: %s
    remote_address: %s
    psk_file: psk.txt
    service_address: {address: %s/32, interface: %s}
    ike: {proposals: [%s]}
    tunnels:
      %s: {local_subnet: %s, remote_subnet: %s, proposals: [%s], start: on-demand}
`, dir, connName, gwAddr, partnerAddr, serviceAddr, gwWAN, set.ike, tunnelName, localSubnet, remoteSubnet, set.esp)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	r := espgwRun(t, l.gw, "doctor", "-c", conf)
	if r.Code != 1 {
		t.Errorf("espgw doctor exited %d, want 1", r.Code)
	}
	charon := fmt.Sprintf(`charon \(pid %d\) on 0\.0\.0\.0:`, sw.PID())
	requireLines(t, "espgw doctor", r.Stdout,
		`^FAIL +config +`+regexp.QuoteMeta(conf)+`: connections\.megatelecom\.psk_file: .*mode 0644 gives group or others access`,
		`^FAIL +psk +connections\.megatelecom\.psk_file: .*mode 0644 .* -> fix: chmod 600 `+regexp.QuoteMeta(psk),
		`^FAIL +port +udp/500: held by charon, the IKE daemon of strongSwan: .*`+charon+`500.* -> fix: stop it: systemctl disable --now strongswan`,
		`^FAIL +port +udp/4500: held by charon, .*`+charon+`4500`,
		`^OK +daemon +.*espgw is not running`,
		`^OK +kernel\.esp +`,
		`^OK +kernel\.tun +`,
		`^OK +local_address +megatelecom: local_address 192\.0\.2\.1 is on gw-wan`,
		`^OK +route +megatelecom: to 192\.0\.2\.2 via gw-wan .*MTU 1500: MSS clamp api 1403, 1395 with NAT-T`,
		`^OK +service_address +megatelecom: espgw adds 10\.10\.1\.1/32 to gw-wan when it starts`,
		`^\d+ OK, \d+ WARN, 4 FAIL$`)
	if strings.Contains(r.Stdout+r.Stderr, labPSK) {
		t.Error("espgw doctor printed the pre-shared key")
	}

	rep := doctorJSON(t, l.gw, "-c", conf)
	if rep.Daemon || rep.Summary.Fail != 4 {
		t.Errorf("doctor --json: daemon %v, FAIL %v; want no daemon and 4 FAIL", rep.Daemon, rep.failed())
	}
	for _, c := range rep.Checks {
		if c.ID != "port" {
			continue
		}
		holders, _ := c.Details["holders"].([]any)
		h, _ := holders[0].(map[string]any)
		if c.Level != "FAIL" || h["process"] != "charon" || h["pid"] != float64(sw.PID()) || c.Fix == "" {
			t.Errorf("doctor --json port check %+v: want FAIL naming charon pid %d with a fix", c, sw.PID())
		}
	}
}

// TestDoctorOneSidedTunnel drops the partner's ESP with nftables on espgw's host: the tunnel
// comes up (IKE passes), `espgw ping` gets no reply and sees ESP leave but none come back,
// strongSwan counts our ESP and its answers, and doctor, after the service address was
// removed as well, fails both with the causes and fixes.
func TestDoctorOneSidedTunnel(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "nft", "nftables")
	l := newLab(t)
	set := proposalSets[0]
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "manual")}})
	if err := g.Up(connName+"/"+tunnelName, negotiationTimeout); err != nil {
		t.Fatal(err)
	}
	sw.WaitInstalled(t, "s2s", negotiationTimeout)
	// ESP in UDP 4500 starts with its non-zero SPI where IKE has the zero non-ESP marker.
	nft := l.gw.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet onesided {
	chain in { type filter hook input priority -10; udp dport 4500 @th,64,32 != 0 drop; meta l4proto esp drop; }
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}

	r := gwRun(t, g, "ping", connName+"/"+tunnelName, hostAddr, "-c", "3")
	if r.Code != 1 {
		t.Errorf("espgw ping through the one-sided tunnel exited %d, want 1", r.Code)
	}
	requireLines(t, "espgw ping", r.Stdout,
		`^PING 10\.20\.0\.10 from 10\.10\.1\.1 through megatelecom/api \(up, `,
		`^icmp_seq=3: no reply`,
		`^--- 10\.20\.0\.10: 0 of 3 replies; tunnel ESP packets out \+3, in \+0$`,
		`^no reply, and no ESP came back although ESP left`)
	_, child := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if child.PacketsIn < 3 || child.PacketsOut < 3 {
		t.Errorf("strongSwan's CHILD_SA counted %d packets in, %d out: want our 3 echo requests in and its 3 replies out", child.PacketsIn, child.PacketsOut)
	}

	l.gw.Exec(t, "ip", "addr", "del", serviceAddr+"/32", "dev", gwWAN)
	r = gwRun(t, g, "doctor", "-c", g.ConfigPath())
	if r.Code != 1 {
		t.Errorf("espgw doctor exited %d, want 1", r.Code)
	}
	requireLines(t, "espgw doctor", r.Stdout,
		`^OK +daemon +.*espgw is running \(datapath userspace\)`,
		`^OK +port +udp/500: held by espgw: \S+ \(pid \d+\) on 192\.0\.2\.1:500`,
		`^OK +ike +megatelecom: ISAKMP-SA established 192\.0\.2\.1\[(500|4500)\]-192\.0\.2\.2\[(500|4500)\] 3des-sha1-modp1024 .*; last IKE message from the peer \S+ ago`,
		`^FAIL +service_address +megatelecom: service address 10\.10\.1\.1/32 is missing from gw-wan .* -> fix: restart espgw`,
		`^FAIL +tunnel +megatelecom/api: packets go out but nothing comes back: .*in 0 B \(0 packets\), out \S+ \S+ \(3 packets\).*likely: the partner's ESP in UDP 4500 arrives \(3 packets with SPI \w+ seen by XDP .*a firewall rule .* -> fix: allow inbound ESP in UDP 4500 from 192\.0\.2\.2`)

	rep := doctorJSON(t, l.gw, "-c", g.ConfigPath())
	if !rep.Daemon || rep.Summary.Fail != 2 {
		t.Errorf("doctor --json: daemon %v, FAIL %q; want the daemon and 2 FAIL (service address, tunnel)", rep.Daemon, rep.failed())
	}
	for _, c := range rep.Checks {
		if c.ID == "tunnel" && (c.Details["packets_in"] != 0.0 || c.Details["packets_out"] != 3.0 || c.Details["xdp_packets_in"] != 3.0) {
			t.Errorf("doctor --json tunnel details %v: want packets_in 0, packets_out 3, xdp_packets_in 3", c.Details)
		}
	}
}

// TestPingLiveTunnel: `espgw ping` brings an on-demand tunnel up to strongSwan, gets every
// reply and sees ESP both ways; strongSwan counts the same. Then doctor is green, the log has
// racoon's milestone lines, and `status --watch` piped prints a line per tunnel and refresh.
func TestPingLiveTunnel(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	set := proposalSets[0]
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, set, remoteSubnet, localSubnet)
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{gwConn(set.ike, set.esp, "on-demand")}})

	r := gwRun(t, g, "ping", tunnelName)
	if r.Code != 0 {
		t.Errorf("espgw ping exited %d, want 0; stderr:\n%s", r.Code, r.Stderr)
	}
	requireLines(t, "espgw ping", r.Stdout,
		`^tunnel megatelecom/api is down: bringing it up \(start: on-demand\)$`,
		`^PING 10\.20\.0\.1 from 10\.10\.1\.1 through megatelecom/api \(up, 10\.10\.1\.1/32 <-> 10\.20\.0\.0/24\): 3 echo requests$`,
		`^\d+ bytes from 10\.20\.0\.1: icmp_seq=3 time=`,
		`^--- 10\.20\.0\.1: 3 of 3 replies; tunnel ESP packets out \+3, in \+3$`,
		`^the tunnel works$`)
	_, child := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	if child.PacketsIn != 3 || child.PacketsOut != 3 {
		t.Errorf("strongSwan's CHILD_SA counted %d packets in, %d out: want the 3 echo requests and 3 replies", child.PacketsIn, child.PacketsOut)
	}

	rep := doctorJSON(t, l.gw, "-c", g.ConfigPath())
	if rep.Summary.Fail != 0 || !rep.Daemon {
		t.Errorf("doctor on a working tunnel: daemon %v, FAIL %q; want none", rep.Daemon, rep.failed())
	}
	r = gwRun(t, g, "doctor", "-c", g.ConfigPath())
	requireLines(t, "espgw doctor", r.Stdout,
		`^OK +tunnel +megatelecom/api: up, esp 3des-sha1 pfs modp1024, SA \S+ old, \S+ left, in \S+ \S+ \(3 packets\), out \S+ \S+ \(3 packets\)$`)

	requireLines(t, "espgw log", g.Log(),
		`msg="ISAKMP-SA established 192\.0\.2\.1\[(500|4500)\]-192\.0\.2\.2\[(500|4500)\] spi:[0-9a-f]{16}:[0-9a-f]{16}" .*conn=megatelecom`,
		`msg="IPsec-SA established: ESP/Tunnel 192\.0\.2\.2\[4500\]->192\.0\.2\.1\[4500\] spi=\d+\(0x[0-9a-f]+\)" .*dir=in`,
		`msg="IPsec-SA established: ESP/Tunnel 192\.0\.2\.1\[4500\]->192\.0\.2\.2\[4500\] spi=\d+\(0x[0-9a-f]+\)" .*dir=out`)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	w, _ := g.RunIn(ctx, "status", "--watch", "-n", "0.4")
	lines := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\S+ megatelecom/api up in \d+ B/s [\d.]+ pkt/s out \d+ B/s [\d.]+ pkt/s$`).FindAllString(w.Stdout, -1)
	if len(lines) < 2 {
		t.Errorf("espgw status --watch -n 0.4 piped for 1.5 s: %d tunnel lines, want at least 2:\n%s%s", len(lines), w.Stdout, w.Stderr)
	}
}

// TestDoctorProposalMismatch: strongSwan initiates with proposals espgw does not accept;
// doctor shows the failed negotiation with both sides' offers in swanctl syntax and the fix,
// and `espgw ping` through the tunnel, which is down and starts manually, sees no ESP leave.
func TestDoctorProposalMismatch(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	theirs := proposalSets[1]
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, labPSK, theirs, remoteSubnet, localSubnet)
	ours := proposalSets[0]
	g := espgwtest.Start(t, l.gw, espgwtest.Config{Datapath: "userspace", Connections: []espgwtest.Connection{gwConn(ours.ike, ours.esp, "manual")}})
	if err := sw.Initiate("s2s", 10*time.Second); err == nil {
		t.Fatal("strongSwan negotiated although the proposals differ")
	}

	r := gwRun(t, g, "doctor", "-c", g.ConfigPath())
	if r.Code != 1 {
		t.Errorf("espgw doctor exited %d, want 1", r.Code)
	}
	requireLines(t, "espgw doctor", r.Stdout,
		`^FAIL +negotiation +megatelecom: phase 1 with 192\.0\.2\.2:500: no proposal chosen: we accept 3des-sha1-modp1024, peer offered aes256-sha256-modp2048 \[ours: 3des-sha1-modp1024\] \[theirs: aes256-sha256-modp2048\] \(once, last \S+ ago\) -> fix: add one of the partner's proposals \(aes256-sha256-modp2048\) to connections\.megatelecom\.ike\.proposals, or ask the partner to offer 3des-sha1-modp1024$`,
		`^FAIL +tunnel +megatelecom/api: down: phase 1 with 192\.0\.2\.2:500: no proposal chosen: .* -> fix: see the connection's negotiation lines$`)
	rep := doctorJSON(t, l.gw, "-c", g.ConfigPath())
	found := false
	for _, c := range rep.Checks {
		if c.ID == "negotiation" {
			found = c.Level == "FAIL" && c.Details["ours"] == "3des-sha1-modp1024" && c.Details["theirs"] == "aes256-sha256-modp2048"
		}
	}
	if !found {
		t.Errorf("doctor --json: no FAIL negotiation check with ours/theirs details in %+v", rep.Checks)
	}

	r = gwRun(t, g, "ping", connName+"/"+tunnelName, "-c", "1")
	if r.Code != 1 {
		t.Errorf("espgw ping through a down manual tunnel exited %d, want 1", r.Code)
	}
	requireLines(t, "espgw ping", r.Stdout,
		`^tunnel megatelecom/api is down and starts manually: not bringing it up \(espgw up megatelecom/api\)$`,
		`^--- 10\.20\.0\.1: 0 of 1 replies; tunnel ESP packets out \+0, in \+0$`,
		`^no ESP left: the tunnel has no SA \(state down, last error: phase 1 with 192\.0\.2\.2:500: no proposal chosen`)
}
