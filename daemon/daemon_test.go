package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/datapathtest"
	"github.com/espgw/espgw/loader"
)

// peerYAML is one end of the seed's tunnel, from the side of local.
func peerYAML(local, remote, localNet, remoteNet, psk string) string {
	return `
connections:
  mega:
    local_address: ` + local + `
    remote_address: ` + remote + `
    psk: "` + psk + `"
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels:
      api: {local_subnet: ` + localNet + `, remote_subnet: ` + remoteNet + `, proposals: [3des-sha1-modp1024]}
`
}

// lockedBuffer collects a daemon's log for failing tests.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testDaemon is a Run in a goroutine with a real engine, the given bind and a fake datapath.
type testDaemon struct {
	dir, cfgFile, sock string
	dp                 *datapathtest.Datapath
	logs               *lockedBuffer
	client             *control.Client
	stop               func() error // cancels Run and returns its error
}

// startDaemon runs the configuration yaml, to which it adds control_socket and save_keys
// in a temporary directory, and waits until it is ready.
// Options may be changed by mods.
func startDaemon(t testing.TB, name, yaml string, bind conn.Bind, dp *datapathtest.Datapath, mods ...func(*Options)) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	var logs lockedBuffer
	d := &testDaemon{dir: dir, cfgFile: filepath.Join(dir, "espgw.yaml"), sock: filepath.Join(dir, "run", "espgw.sock"), dp: dp, logs: &logs}
	d.writeConfig(t, yaml)
	cfg, err := config.Load(d.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	opts := Options{
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ConfigPath:    d.cfgFile,
		ControlSocket: d.sock, // as --socket; the file names another one
		NewDatapath: func(kind string, b conn.Bind, log *slog.Logger) (datapath.Datapath, error) {
			return dp, nil
		},
		Listen: func(addrs []netip.Addr, kernelESPInUDP bool) (conn.Bind, error) { return bind, nil },
		Ready:  func() { close(ready) },
	}
	for _, mod := range mods {
		mod(&opts)
	}
	go func() { done <- Run(ctx, cfg, opts) }()
	var once sync.Once
	var runErr error
	d.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("log of daemon %s:\n%s", name, logs.String())
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon %s: Run: %v\n%s", name, err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("daemon %s did not become ready", name)
	}
	if d.client, err = control.Dial(context.Background(), d.sock); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *testDaemon) writeConfig(t testing.TB, yaml string) {
	t.Helper()
	yaml = "control_socket: " + filepath.Join(d.dir, "overridden.sock") + "\nsave_keys: " + filepath.Join(d.dir, "keys") + "\n" + yaml
	if err := os.WriteFile(d.cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *testDaemon) status(t testing.TB) *control.Status {
	t.Helper()
	st, err := d.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tunnelState(st *control.Status, conn, tunnel string) control.TunnelState {
	for _, t := range st.Tunnels {
		if t.Connection == conn && t.Tunnel == tunnel {
			return t
		}
	}
	return control.TunnelState{}
}

// sortedLines returns the lines of a file, sorted.
func sortedLines(t *testing.T, name string) []string {
	t.Helper()
	return slices.Sorted(slices.Values(fileLines(t, name)))
}

// startPair starts two daemons wired back to back, A at 192.0.2.1, B at 192.0.2.2;
// extraA goes at the top of A's configuration.
func startPair(t *testing.T, pskB, extraA string) (a, b *testDaemon) {
	ba, bb := bindtest.NewPair()
	a = startDaemon(t, "A", extraA+peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "SUPERPASSWORD"), ba, datapathtest.New(0x1000))
	b = startDaemon(t, "B", peerYAML("192.0.2.2", "192.0.2.1", "10.20.0.0/24", "10.10.1.0/24", pskB), bb, datapathtest.New(0x2000))
	return a, b
}

// TestDaemonPair drives two daemons through the control socket: on-demand negotiation
// from a datapath acquire, status, key files, down, up, reload and shutdown.
func TestDaemonPair(t *testing.T) {
	a, b := startPair(t, "SUPERPASSWORD", "")
	ctx := context.Background()

	report, err := a.client.Flows(ctx, 0)
	if err != nil || len(report.Policies) != 1 {
		t.Fatalf("flows = %+v, %v; want one policy", report, err)
	}
	if report.EBPFOff != "this espgw has no eBPF loader" || len(report.TopFlows) != 0 {
		t.Errorf("top flows without eBPF = %+v, %q", report.TopFlows, report.EBPFOff)
	}
	flows := report.Policies
	f := flows[0]
	if f.Connection != "mega" || f.Tunnel != "api" || f.LocalSelector != "10.10.1.0/24" || f.RemoteSelector != "10.20.0.0/24" ||
		f.Local != netip.MustParseAddr("192.0.2.1") || f.Remote != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("flow = %+v", f)
	}
	if st := tunnelState(a.status(t), "mega", "api"); st.State != control.TunnelDown || st.Start != "on-demand" || st.Policy != nil {
		t.Errorf("tunnel before traffic = %+v, want down, on-demand, no eBPF counters", st)
	}

	// Traffic hits A's policy: the datapath reports an acquire.
	a.dp.Send(datapath.Event{Kind: datapath.EventAcquire, ReqID: f.ReqID})
	waitFor(t, "tunnel up on both sides", func() bool {
		return tunnelState(a.status(t), "mega", "api").State == control.TunnelUp && tunnelState(b.status(t), "mega", "api").State == control.TunnelUp
	})

	sa, sb := a.status(t), b.status(t)
	if len(sa.IKESAs) != 1 || len(sa.IPsecSAs) != 1 || len(sb.IPsecSAs) != 1 {
		t.Fatalf("A has %d IKE SAs, %d IPsec SAs; B %d IPsec SAs; want 1, 1, 1", len(sa.IKESAs), len(sa.IPsecSAs), len(sb.IPsecSAs))
	}
	ike := sa.IKESAs[0]
	if ike.Connection != "mega" || ike.State != "ESTABLISHED" || ike.Algorithms != "3des-sha1-modp1024" || ike.Mode != "main" ||
		!ike.Initiator || ike.NATT || ike.Local.String() != "192.0.2.1:500" || ike.Peer.String() != "192.0.2.2:500" ||
		len(ike.InitiatorCookie) != 16 || len(ike.ResponderCookie) != 16 {
		t.Errorf("A's IKE SA = %+v", ike)
	}
	ia, ib := sa.IPsecSAs[0], sb.IPsecSAs[0]
	if ia.Algorithms != "esp 3des-sha1 pfs modp1024" || ia.LocalSelector != "10.10.1.0/24" || ia.RemoteSelector != "10.20.0.0/24" ||
		ia.LifetimeSeconds != 8*3600 || ia.RemainingSeconds < 8*3600-10 || ia.EncapLocalPort != 0 || ia.CountersError != "" {
		t.Errorf("A's IPsec SA = %+v", ia)
	}
	if ia.SPIIn != ib.SPIOut || ia.SPIOut != ib.SPIIn {
		t.Errorf("SPIs A in/out %s/%s, B in/out %s/%s: want crosswise equal", ia.SPIIn, ia.SPIOut, ib.SPIIn, ib.SPIOut)
	}

	// What A installed for inbound is what B installed for outbound, keys included.
	sasA, _, _ := a.dp.Snapshot()
	sasB, _, _ := b.dp.Snapshot()
	if len(sasA) != 2 || len(sasB) != 2 {
		t.Fatalf("A installed %d SAs, B %d; want 2 each", len(sasA), len(sasB))
	}
	for k, in := range sasA {
		if in.Dst != netip.MustParseAddr("192.0.2.1") {
			continue
		}
		out, ok := sasB[k]
		if !ok {
			t.Fatalf("B has no SA %v matching A's inbound", k)
		}
		if !bytes.Equal(in.EncKey, out.EncKey) || !bytes.Equal(in.IntegKey, out.IntegKey) || len(in.EncKey) != 24 || len(in.IntegKey) != 20 {
			t.Errorf("A inbound and B outbound keys differ or have wrong lengths (%d, %d)", len(in.EncKey), len(in.IntegKey))
		}
		want := datapath.SA{SPI: in.SPI, Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.1"),
			Enc: datapath.Enc3DESCBC, EncKey: in.EncKey, Integ: datapath.IntegHMACSHA1_96, IntegKey: in.IntegKey,
			ReplayWindow: 64, ReqID: f.ReqID,
			// A initiated; 3DES gets the Sweet32 volume limit.
			Lifetime: datapath.Lifetime{Hard: 8 * time.Hour, Soft: 8 * time.Hour / 10 * 9,
				HardBytes: 1 << 30, SoftBytes: 1 << 30 / 10 * 9}, // ike.Sweet32Kilobytes
			Selectors: []datapath.Selector{{Local: netip.MustParsePrefix("10.10.1.0/24"), Remote: netip.MustParsePrefix("10.20.0.0/24")}},
		}
		if !reflect.DeepEqual(in, want) {
			t.Errorf("A inbound SA = %+v\nwant %+v", in, want)
		}
		if out.ReplayWindow != 0 || out.Lifetime.Soft != 8*time.Hour/20*19 {
			t.Errorf("B outbound SA: replay window %d, soft lifetime %v; want 0 and 95%% (responder)", out.ReplayWindow, out.Lifetime.Soft)
		}
	}

	// Both sides wrote the same Wireshark lines.
	espA, espB := sortedLines(t, filepath.Join(a.dir, "keys", ESPSAFile)), sortedLines(t, filepath.Join(b.dir, "keys", ESPSAFile))
	if len(espA) != 2 || !slices.Equal(espA, espB) {
		t.Errorf("esp_sa files differ:\nA %q\nB %q", espA, espB)
	}
	ikeA, ikeB := sortedLines(t, filepath.Join(a.dir, "keys", IKEv1File)), sortedLines(t, filepath.Join(b.dir, "keys", IKEv1File))
	if len(ikeA) != 1 || !slices.Equal(ikeA, ikeB) || !strings.HasPrefix(ikeA[0], ike.InitiatorCookie+",") {
		t.Errorf("ikev1 tables: A %q, B %q; want one identical line for cookie %s", ikeA, ikeB, ike.InitiatorCookie)
	}

	// down deletes the SAs on both sides; up brings them back and waits.
	if err := a.client.Down(ctx, "mega", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SAs deleted on both sides", func() bool {
		sasA, _, _ := a.dp.Snapshot()
		sasB, _, _ := b.dp.Snapshot()
		return len(sasA) == 0 && len(sasB) == 0
	})
	if st := tunnelState(a.status(t), "mega", "api"); st.State != control.TunnelDown {
		t.Errorf("after down: %+v", st)
	}
	if err := a.client.Up(ctx, "MEGA", "Api"); err != nil { // names match whatever their case, when unambiguous
		t.Fatal(err)
	}
	if st := tunnelState(a.status(t), "mega", "api"); st.State != control.TunnelUp {
		t.Errorf("after up: %+v", st)
	}
	for _, tc := range []struct{ conn, tunnel, err string }{
		{"nosuch", "", `no connection "nosuch" (configured: mega)`},
		{"mega", "nosuch", `connection mega: no tunnel "nosuch" (configured: api)`},
		{"", "", "no connection named (want NAME or NAME/TUNNEL)"},
	} {
		if err := a.client.Up(ctx, tc.conn, tc.tunnel); err == nil || err.Error() != tc.err {
			t.Errorf("Up(%q, %q) = %v, want %q", tc.conn, tc.tunnel, err, tc.err)
		}
	}
	if _, err := a.client.Do(ctx, control.Request{Command: "explode"}); err == nil || !strings.Contains(err.Error(), `unknown command "explode"`) {
		t.Errorf("unknown command: %v", err)
	}

	// reload: a new tunnel gets its policy; a broken file changes nothing, nor does one
	// with a setting that needs a restart.
	a.writeConfig(t, "metrics: {listen: \"127.0.0.1:9\"}\n"+peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "SUPERPASSWORD"))
	if err := a.client.Reload(ctx); err == nil || !strings.HasSuffix(err.Error(), `metrics.listen changed from "" to "127.0.0.1:9": restart espgw to apply it`) {
		t.Errorf("reload with a new metrics.listen: %v", err)
	}
	a.writeConfig(t, peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "SUPERPASSWORD")+
		"      db: {local_subnet: 10.10.2.0/24, remote_subnet: 10.30.0.0/24, proposals: [aes128-sha1]}\n")
	if err := a.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	report, _ = a.client.Flows(ctx, 0)
	flows = report.Policies
	if len(flows) != 2 || flows[1].Tunnel != "db" {
		t.Errorf("flows after reload = %+v, want api and db", flows)
	}
	// Reqids stay with their tunnels: api's policy was left alone, and so was its SA.
	wantOps := []string{"add 10.10.1.0/24 10.20.0.0/24 reqid 1 prio 1000"}
	if ops := slices.DeleteFunc(a.dp.PolicyOps(), func(op string) bool { return strings.Contains(op, "10.30.0.0") }); !slices.Equal(ops, wantOps) {
		t.Errorf("policy changes for api:\n%s\nwant\n%s", strings.Join(ops, "\n"), strings.Join(wantOps, "\n"))
	}
	if st := tunnelState(a.status(t), "mega", "api"); st.State != control.TunnelUp {
		t.Errorf("api after adding a tunnel by reload: %+v, want still up", st)
	}
	stateBefore := tunnelState(a.status(t), "mega", "api")
	a.writeConfig(t, strings.Replace(peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "x"), "remote_address", "remote_adress", 1))
	err = a.client.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "connections.mega.remote_adress: unknown key (did you mean remote_address?)") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if after, _ := a.client.Flows(ctx, 0); !slices.Equal(after.Policies, flows) || tunnelState(a.status(t), "mega", "api") != stateBefore {
		t.Errorf("a failed reload changed the running configuration: %+v", after)
	}

	// Shutdown removes the SAs and policies before closing the datapath, and the socket.
	if err := a.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, closed := a.dp.Snapshot(); !closed || a.dp.LeftAtClose() != 0 {
		t.Errorf("datapath closed %v with %d SAs and policies left, want closed with 0", closed, a.dp.LeftAtClose())
	}
	if _, err := os.Stat(a.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket still there after exit: %v", err)
	}
	waitFor(t, "B to see the Delete from A's shutdown", func() bool {
		sas, _, _ := b.dp.Snapshot()
		return len(sas) == 0
	})
}

func TestDaemonPSKMismatch(t *testing.T) {
	a, _ := startPair(t, "not-the-same", "")
	err := a.client.Up(context.Background(), "mega", "api")
	if err == nil || !strings.Contains(err.Error(), "pre-shared key mismatch") {
		t.Fatalf("Up with mismatched keys = %v, want a pre-shared key mismatch", err)
	}
	st := tunnelState(a.status(t), "mega", "api")
	if st.State == control.TunnelUp || !strings.Contains(st.LastError, "pre-shared key mismatch") || st.LastErrorTime.IsZero() {
		t.Errorf("tunnel = %+v, want down with last error pre-shared key mismatch", st)
	}
	for _, secret := range []string{"SUPERPASSWORD", "not-the-same"} {
		if strings.Contains(err.Error(), secret) || strings.Contains(st.LastError, secret) {
			t.Errorf("a pre-shared key appears in an error")
		}
	}
}

// TestDaemonMetrics scrapes metrics.listen after a negotiation.
func TestDaemonMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a free port for the daemon, most likely still free in a moment
	a, _ := startPair(t, "SUPERPASSWORD", "metrics: {listen: \""+addr+"\"}\n")
	if err := a.client.Up(context.Background(), "mega", ""); err != nil {
		t.Fatal(err)
	}
	ia := a.status(t).IPsecSAs[0]
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// The fake datapath counts spi%1000 bytes per SA.
	for _, want := range []string{
		fmt.Sprintf(`espgw_sa_bytes_total{connection="mega",direction="in",spi="0x%s",tunnel="api"} %d`, ia.SPIIn, ia.BytesIn),
		fmt.Sprintf(`espgw_sa_bytes_total{connection="mega",direction="out",spi="0x%s",tunnel="api"} %d`, ia.SPIOut, ia.BytesOut),
		fmt.Sprintf(`espgw_sa_packets_total{connection="mega",direction="in",spi="0x%s",tunnel="api"} 1`, ia.SPIIn),
		`espgw_tunnel_up{connection="mega",tunnel="api"} 1`,
		`espgw_ike_sa_up{connection="mega"} 1`,
		`espgw_ike_negotiations_total{connection="mega",exchange="main",result="success",role="initiator"} 1`,
		`espgw_ike_negotiations_total{connection="mega",exchange="quick",result="success",role="initiator"} 1`,
		`espgw_ike_negotiations_total{connection="mega",exchange="main",result="psk_mismatch",role="responder"} 0`,
		`espgw_tunnel_last_inbound_timestamp_seconds{connection="mega",tunnel="api"} `,
		`espgw_tunnel_sa_expiry_timestamp_seconds{connection="mega",tunnel="api"} `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if ia.BytesIn == 0 {
		t.Error("status shows no inbound bytes from the datapath")
	}
}

// TestDaemonEBPFUnavailable: programs that cannot load cost one warning, and the gateway
// runs without them.
func TestDaemonEBPFUnavailable(t *testing.T) {
	ba, _ := bindtest.NewPair()
	a := startDaemon(t, "A", peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "x"), ba, datapathtest.New(0x1000),
		func(o *Options) {
			o.OpenLoader = func(loader.Options) (*loader.Loader, error) {
				return nil, errors.New("load tc programs: operation not permitted")
			}
		})
	st := a.status(t)
	if st.EBPF.Loaded || st.EBPF.Reason != "load tc programs: operation not permitted" || tunnelState(st, "mega", "api").Policy != nil {
		t.Errorf("status = %+v, want eBPF off with the loader's reason", st.EBPF)
	}
	var warnings []string
	for line := range strings.Lines(a.logs.String()) {
		if strings.Contains(line, "eBPF") && !strings.Contains(line, "level=INFO") && !strings.Contains(line, "level=DEBUG") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `level=WARN msg="eBPF programs not loaded`) {
		t.Errorf("log lines about eBPF above info: %q, want one warning", warnings)
	}
}

// TestDaemonQuickModeFailureReleasesSPI: a quick mode the peer rejects (proxy IDs that
// match none of its tunnels) leaves no SPI reserved in the datapath.
func TestDaemonQuickModeFailureReleasesSPI(t *testing.T) {
	ba, bb := bindtest.NewPair()
	a := startDaemon(t, "A", peerYAML("192.0.2.1", "192.0.2.2", "10.10.1.0/24", "10.20.0.0/24", "k"), ba, datapathtest.New(0x1000))
	b := startDaemon(t, "B", peerYAML("192.0.2.2", "192.0.2.1", "10.20.0.0/24", "10.10.9.0/24", "k"), bb, datapathtest.New(0x2000))
	err := a.client.Up(context.Background(), "mega", "api")
	if err == nil || !strings.Contains(err.Error(), "identity mismatch") {
		t.Fatalf("Up with mismatched proxy IDs = %v, want an identity mismatch", err)
	}
	for _, d := range []*testDaemon{a, b} {
		if got := d.dp.ReservedSPIs(); len(got) != 0 {
			t.Errorf("SPIs %x still reserved after the failed quick mode", got)
		}
	}
}

// handleRaw sends request as written (e.g. as an older client would) and decodes the answer.
func (d *testDaemon) handleRaw(t testing.TB, request string) control.Response {
	t.Helper()
	c, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	var resp control.Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	return resp
}
