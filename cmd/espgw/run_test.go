package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/loader"
)

// Every gateway serves metrics here, inside its own namespace, and clamps the MSS for a
// path MTU below the TUN's, so that the clamp is what limits the segments.
const (
	metricsAddr = "127.0.0.1:9814"
	testPathMTU = 1300
)

// gatewayYAML configures one end of the seed's tunnel with the userspace datapath, the
// service address on wan0, metrics, eBPF and the control socket and key files in dir;
// extra lines go into the connection's tunnels.
func gatewayYAML(dir, local, remote, service, localNet, remoteNet, extra string) string {
	return fmt.Sprintf(`control_socket: %s/espgw.sock
datapath: userspace
save_keys: %s/keys
metrics: {listen: "`+metricsAddr+`"}
ebpf: {path_mtu: %d}
connections:
  MegaTelecom:
    local_address: %s
    remote_address: %s
    psk: "SUPERPASSWORD"
    service_address: {address: %s, interface: wan0}
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels:
      API: {local_subnet: %s, remote_subnet: %s, proposals: [3des-sha1-modp1024]}
%s`, dir, dir, testPathMTU, local, remote, service, localNet, remoteNet, extra)
}

// gateway is `espgw run` (this test binary, see TestMain) in a network namespace.
type gateway struct {
	dir, cfg, sock string
	args           []string // of gatewayYAML after dir
	proc           *testutil.Process
}

// startGateway runs a gateway configured by gatewayYAML(dir, args..., "") inside ns.
func startGateway(t *testing.T, ns *testutil.NetNS, args ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{dir: dir, cfg: filepath.Join(dir, "espgw.yaml"), sock: filepath.Join(dir, "espgw.sock"), args: args}
	g.writeConfig(t, "")
	g.proc = testutil.StartProcess(t, ns, filepath.Join(dir, "espgw.log"), os.Args[0], "run", "-c", g.cfg, "--log-level", "debug")
	testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
		if done, err := g.proc.Exited(); done {
			return false, fmt.Errorf("espgw run exited: %v\n%s", err, g.proc.Log())
		}
		_, err := control.Dial(context.Background(), g.sock)
		return err == nil, nil
	})
	return g
}

func (g *gateway) writeConfig(t *testing.T, extra string) {
	t.Helper()
	yaml := gatewayYAML(g.dir, g.args[0], g.args[1], g.args[2], g.args[3], g.args[4], extra)
	if err := os.WriteFile(g.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// status runs `espgw status --json`.
func (g *gateway) status(t *testing.T) (*control.Status, error) {
	code, out, errOut := espgw("status", "--json", "--socket", g.sock)
	if code != 0 {
		return nil, fmt.Errorf("espgw status: %s", errOut)
	}
	var st control.Status
	return &st, json.Unmarshal([]byte(out), &st)
}

// TestRunPair runs two gateways in two network namespaces joined by a veth link. A ping
// from the service address brings the tunnel up on demand: the eBPF guard on the TUN drops
// it and asks for negotiation. Then it checks the traffic through the tunnel with status,
// flows, metrics and the MSS clamp, the XDP filter, reload and a shutdown that leaves
// nothing behind.
func TestRunPair(t *testing.T) {
	testutil.RequireFile(t, "/sys/kernel/btf/vmlinux", "kernel BTF for the eBPF programs", "linux-image-amd64")
	left := testutil.NewNetNS(t, "espgw-cmd-l")
	right := testutil.NewNetNS(t, "espgw-cmd-r")
	testutil.Veth(t, left, "wan0", "192.0.2.1/24", right, "wan0", "192.0.2.2/24")
	t.Setenv("ESPGW_TEST_MAIN", "1") // the children run execute(), not the tests

	l := startGateway(t, left, "192.0.2.1", "192.0.2.2", "10.10.1.1/32", "10.10.1.1/32", "10.20.0.0/24")
	r := startGateway(t, right, "192.0.2.2", "192.0.2.1", "10.20.0.1/32", "10.20.0.0/24", "10.10.1.1/32")

	st, err := l.status(t)
	if err != nil {
		t.Fatal(err)
	}
	wantAttached := []string{"tc egress espgw0", "tc ingress espgw0", "xdp wan0"}
	if !st.EBPF.Loaded || !slices.Equal(st.EBPF.Attached, wantAttached) {
		t.Fatalf("eBPF = %+v, want loaded and attached at %v", st.EBPF, wantAttached)
	}
	if n := len(attachments(t, left, "wan0")) + len(attachments(t, left, "espgw0")); n != 3 {
		t.Errorf("the kernel lists %d programs on wan0 and espgw0, want 3: %v %v", n,
			attachments(t, left, "wan0"), attachments(t, left, "espgw0"))
	}

	// No `espgw up`: traffic starts the tunnel (start: on-demand). The first echo request
	// meets the guard and is dropped; the later ones pass once the SAs are in.
	testutil.Ping(left, "10.10.1.1", "10.20.0.1", 1)
	testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
		st, err := r.status(t)
		return err == nil && len(st.IPsecSAs) == 1, err
	})
	if err := testutil.Ping(left, "10.10.1.1", "10.20.0.1", 3); err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}
	if code, out, errOut := espgw("up", "megatelecom/api", "--socket", l.sock); code != 0 || out != "megatelecom/api: up\n" {
		t.Errorf("espgw up of a tunnel that is up = %d %q %q", code, out, errOut)
	}

	code, out, errOut := espgw("status", "--socket", l.sock)
	for _, want := range []string{"Datapath: userspace", "ESTABLISHED", "3des-sha1-modp1024", "esp 3des-sha1 pfs modp1024",
		"10.10.1.1/32 <-> 10.20.0.0/24", "MegaTelecom/API  up", "eBPF: tc egress espgw0, tc ingress espgw0, xdp wan0"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("espgw status (%d, %s) lacks %q:\n%s", code, errOut, want, out)
		}
	}
	if code, out, errOut := espgw("status", "megatelecom", "--socket", l.sock); code != 0 || !strings.Contains(out, "MegaTelecom/API  up") {
		t.Errorf("espgw status megatelecom = %d %q %q, want the connection's tables", code, out, errOut)
	}
	if code, _, errOut := espgw("status", "nobody", "--socket", l.sock); code != 1 || !strings.Contains(errOut, `connection "nobody"`) {
		t.Errorf("espgw status nobody = %d %q, want an error naming the connection", code, errOut)
	}
	st, err = l.status(t)
	if err != nil || len(st.IPsecSAs) != 1 || len(st.Tunnels) != 1 {
		t.Fatalf("status --json = %+v, %v", st, err)
	}
	sa := st.IPsecSAs[0]
	if sa.PacketsOut < 3 || sa.PacketsIn < 3 || sa.CountersError != "" {
		t.Errorf("counters after 3 pings: out %d in %d (%s), want at least 3 each", sa.PacketsOut, sa.PacketsIn, sa.CountersError)
	}
	wantMSS, err := loader.ClampMSS(testPathMTU, sa.EncapLocalPort != 0, datapath.Enc3DESCBC, datapath.IntegHMACSHA1_96)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Tunnels[0].Policy; p == nil || p.SADownDrops < 1 || p.Events < 1 || p.PacketsOut < 3 || p.PacketsIn < 3 || p.MSS != wantMSS {
		t.Errorf("policy counters = %+v, want the first ping dropped with an event, 3 packets each way and MSS %d", p, wantMSS)
	}

	// The clamp: the client's SYN leaves with the TUN's MSS (1360) and must arrive lowered.
	mss := tcpMaxSeg(t, left, right, "10.10.1.1", "10.20.0.1:7777")
	if mss <= 0 || mss > int(wantMSS) {
		t.Errorf("server's TCP_MAXSEG = %d, want at most the clamp %d", mss, wantMSS)
	}
	t.Logf("MSS clamp %d (path MTU %d, NAT-T %v), server's TCP_MAXSEG %d", wantMSS, testPathMTU, sa.EncapLocalPort != 0, mss)

	// The XDP filter: IKE from an address that is no peer, ESP for an SPI nobody negotiated.
	right.AddAddr(t, "wan0", "192.0.2.9/24")
	sendUDP(t, right, "192.0.2.9:500", "192.0.2.1:500", make([]byte, 28))
	sendUDP(t, right, "192.0.2.2:4501", "192.0.2.1:4500", []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0})

	st, err = l.status(t)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Tunnels[0].Policy; p == nil || p.MSSRewrites < 1 {
		t.Errorf("policy counters after a TCP connection = %+v, want MSS rewrites", p)
	}
	if st.EBPF.NonPeerDrops != 1 || st.EBPF.UnknownSPIDrops != 1 {
		t.Errorf("XDP counters = %+v, want one non-peer and one unknown-SPI drop", st.EBPF)
	}

	code, out, errOut = espgw("flows", "--json", "--socket", l.sock)
	var report control.FlowReport
	if code != 0 || json.Unmarshal([]byte(out), &report) != nil {
		t.Fatalf("espgw flows --json = %d %s %s", code, out, errOut)
	}
	ping := slices.IndexFunc(report.TopFlows, func(f control.TopFlow) bool {
		return f.Src == netip.MustParseAddr("10.10.1.1") && f.Dst == netip.MustParseAddr("10.20.0.1") && f.Proto == 1
	})
	if ping < 0 || report.TopFlows[ping].Packets < 3 || report.TopFlows[ping].Connection != "MegaTelecom" || len(report.Policies) != 1 {
		t.Errorf("flows = %+v, want the ping with 3 packets through MegaTelecom/API and one policy", report)
	}
	if code, out, _ = espgw("flows", "--socket", l.sock); code != 0 || !strings.Contains(out, "MegaTelecom/API  10.10.1.1        10.20.0.1        icmp") {
		t.Errorf("espgw flows lacks the ping:\n%s", out)
	}

	t.Logf("espgw flows:\n%s", out)
	metrics := scrape(t, left, metricsAddr)
	for _, want := range []string{
		fmt.Sprintf(`espgw_sa_bytes_total{connection="MegaTelecom",direction="in",spi="0x%s",tunnel="API"}`, sa.SPIIn),
		fmt.Sprintf(`espgw_sa_bytes_total{connection="MegaTelecom",direction="out",spi="0x%s",tunnel="API"}`, sa.SPIOut),
		`espgw_policy_sa_down_drops_total{connection="MegaTelecom",tunnel="API"} `,
		`espgw_policy_mss_rewrites_total{connection="MegaTelecom",tunnel="API"} `,
		`espgw_policy_ondemand_events_total{connection="MegaTelecom",tunnel="API"} `,
		`espgw_xdp_drops_total{reason="non_peer"} 1`,
		`espgw_xdp_drops_total{reason="unknown_spi"} 1`,
		`espgw_top_flow_packets{connection="MegaTelecom",dport="0",dst="10.20.0.1",proto="1",sport="0",src="10.10.1.1",tunnel="API"} `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(metrics, `espgw_policy_sa_down_drops_total{connection="MegaTelecom",tunnel="API"} 0`) {
		t.Errorf("metrics show no SA-down drops:\n%s", metrics)
	}

	keysL := fileLines(t, filepath.Join(l.dir, "keys", "esp_sa"))
	if keysR := fileLines(t, filepath.Join(r.dir, "keys", "esp_sa")); len(keysL) != 2 || !slices.Equal(keysL, keysR) {
		t.Errorf("esp_sa files of the two gateways differ:\n%q\n%q", keysL, keysR)
	}

	// SIGHUP reloads: a second tunnel gets its policy.
	l.writeConfig(t, "      db: {local_subnet: 10.10.1.1/32, remote_subnet: 10.30.0.0/24, proposals: [aes128-sha1]}\n")
	if err := syscall.Kill(l.proc.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
		st, err := l.status(t)
		return err == nil && len(st.Tunnels) == 2, err
	})
	st, err = l.status(t)
	if err != nil || st.Tunnels[0].Policy == nil || st.Tunnels[1].Policy == nil {
		t.Errorf("after reload the classifier lacks a tunnel's policy: %+v, %v", st.Tunnels, err)
	}

	// SIGTERM: an orderly exit that leaves nothing behind and tells the peer.
	if err := l.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.proc.Exited(); err != nil {
		t.Errorf("espgw run exit: %v\n%s", err, l.proc.Log())
	}
	if _, err := os.Stat(l.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	if links := left.Exec(t, "ip", "-o", "link", "show"); strings.Contains(links, "espgw0") {
		t.Errorf("TUN device left behind:\n%s", links)
	}
	if addrs := left.Exec(t, "ip", "-o", "addr", "show", "dev", "wan0"); strings.Contains(addrs, "10.10.1.1") {
		t.Errorf("service address left behind:\n%s", addrs)
	}
	if rules := left.Exec(t, "ip", "rule", "show"); strings.Contains(rules, "lookup 220") {
		t.Errorf("policy routing rule left behind:\n%s", rules)
	}
	if progs := append(attachments(t, left, "wan0"), attachments(t, left, "espgw0")...); len(progs) != 0 {
		t.Errorf("eBPF programs left attached: %v", progs)
	}
	testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
		st, err := r.status(t)
		return err == nil && len(st.IPsecSAs) == 0, err
	})
}

// fileLines returns the lines of a file, sorted.
func fileLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(strings.SplitSeq(strings.TrimSpace(string(b)), "\n"))
}
