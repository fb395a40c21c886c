package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// gwConfig is the part of espgw's YAML configuration the tests vary.
type gwConfig struct {
	Datapath    string // auto, xfrm or userspace
	Connections []connConfig
}

type connConfig struct {
	Name                  string
	Local, Remote         string
	PSK                   string
	IKEProposal           string
	NATTraversal          string // auto, force or off; "" = auto
	ServiceAddress, Iface string // "" = no service_address
	Tunnels               []tunnelConfig
}

type tunnelConfig struct {
	Name                      string
	LocalSubnet, RemoteSubnet string
	ESPProposal               string
	Start                     string // on-demand, always or manual
}

var configTemplate = template.Must(template.New("espgw.yaml").Parse(`# written by test/interop
control_socket: {{.Socket}}
datapath: {{.Datapath}}
save_keys: {{.KeyDir}}
connections:
{{- range .Connections}}
  {{.Name}}:
    local_address: {{.Local}}
    remote_address: {{.Remote}}
    psk: {{printf "%q" .PSK}}
{{- if .ServiceAddress}}
    service_address: {address: {{.ServiceAddress}}, interface: {{.Iface}}}
{{- end}}
    ike:
      mode: main
      proposals: [{{.IKEProposal}}]
      lifetime: 1h
      nat_traversal: {{or .NATTraversal "auto"}}
    tunnels:
{{- range .Tunnels}}
      {{.Name}}:
        local_subnet: {{.LocalSubnet}}
        remote_subnet: {{.RemoteSubnet}}
        proposals: [{{.ESPProposal}}]
        lifetime: 30m
        start: {{.Start}}
{{- end}}
{{- end}}
`))

// gateway is one `espgw run` process in a network namespace.
type gateway struct {
	ns     *testutil.NetNS
	dir    string // espgw.yaml, the control socket, keys/
	proc   *testutil.Process
	socket string
}

// startGateway writes cfg into a fresh directory, runs `espgw run -c` in ns and waits until
// the control socket answers. The process is stopped (SIGTERM) in t.Cleanup at the latest,
// and its log tail is printed if the test failed.
func startGateway(t *testing.T, ns *testutil.NetNS, cfg gwConfig) *gateway {
	t.Helper()
	// Not t.TempDir(): the control socket path must fit into sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "espgw-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &gateway{ns: ns, dir: dir, socket: filepath.Join(dir, "ctl.sock")}
	var buf bytes.Buffer
	err = configTemplate.Execute(&buf, struct {
		gwConfig
		Socket, KeyDir string
	}{cfg, g.socket, g.keyDir()})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "espgw.yaml")
	if err := os.WriteFile(conf, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	g.proc = testutil.StartProcess(t, ns, filepath.Join(dir, "espgw.log"),
		espgwBin, "run", "-c", conf, "--log-level", "debug")
	err = testutil.Poll(15*time.Second, func() (bool, error) {
		if done, err := g.proc.Exited(); done {
			return false, fmt.Errorf("espgw exited: %v", err)
		}
		_, err := g.statusErr()
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("espgw in netns %s did not come up: %v\nconfig:\n%s", ns.Name(), err, buf.String())
	}
	return g
}

func (g *gateway) keyDir() string { return filepath.Join(g.dir, "keys") }

// cli runs `espgw --socket S args...` (outside the namespace: the socket is a file).
func (g *gateway) cli(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, espgwBin, append([]string{"--socket", g.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("espgw %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// up runs `espgw up target` with a deadline.
func (g *gateway) up(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := g.cli(ctx, "up", target)
	return err
}

func (g *gateway) statusErr() (status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := g.cli(ctx, "status", "--json")
	if err != nil {
		return status{}, err
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return status{}, fmt.Errorf("espgw status --json: %w\n%s", err, out)
	}
	return st, nil
}

// status runs `espgw status --json`, failing the test if that fails.
func (g *gateway) status(t *testing.T) status {
	t.Helper()
	st, err := g.statusErr()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitTunnelUp waits until status shows tunnel conn/tun up with one IPsec SA and returns it.
func (g *gateway) waitTunnelUp(t *testing.T, conn, tun string, timeout time.Duration) (status, ipsecSA) {
	t.Helper()
	var st status
	var sa ipsecSA
	testutil.WaitFor(t, timeout, func() (bool, error) {
		var err error
		if st, err = g.statusErr(); err != nil {
			return false, err
		}
		ts, ok := st.tunnel(conn, tun)
		sas := st.ipsecSAs(conn, tun)
		if !ok || ts.State != "up" || len(sas) == 0 {
			return false, fmt.Errorf("espgw tunnel %s/%s: state %q, %d IPsec SAs (last error %q)", conn, tun, ts.State, len(sas), ts.LastError)
		}
		sa = sas[0]
		return true, nil
	})
	return st, sa
}

// keys reads the save_keys files (Wireshark's esp_sa and ikev1_decryption_table).
func (g *gateway) keys(t *testing.T) testutil.Keys {
	t.Helper()
	k, err := testutil.ReadKeyDir(g.keyDir())
	if err != nil {
		t.Fatalf("espgw save_keys %s: %v", g.keyDir(), err)
	}
	return k
}

// log is what espgw wrote so far.
func (g *gateway) log() string { return g.proc.Log() }

// alive fails the test if the daemon has exited.
func (g *gateway) alive(t *testing.T) {
	t.Helper()
	if done, err := g.proc.Exited(); done {
		t.Fatalf("espgw in netns %s exited: %v", g.ns.Name(), err)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within testutil.StopTimeout, with
// no error or warning logged while shutting down.
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if err := g.proc.Stop(); err != nil {
		t.Errorf("stop espgw in netns %s: %v", g.ns.Name(), err)
		return
	}
	if _, err := g.proc.Exited(); err != nil {
		t.Errorf("espgw in netns %s after SIGTERM: %v, want exit status 0", g.ns.Name(), err)
	}
	// Removing what it installed must not fail.
	_, shutdown, ok := strings.Cut(g.log(), "msg=\"shutting down\"")
	if !ok {
		t.Errorf("espgw in netns %s did not log shutting down after SIGTERM", g.ns.Name())
	}
	for _, l := range strings.Split(shutdown, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			t.Errorf("espgw in netns %s while shutting down: %s", g.ns.Name(), l)
		}
	}
}

// status mirrors the JSON of `espgw status --json` (daemon/api.go), field by field, so that a
// change of the documented output breaks this test.
type status struct {
	Datapath string        `json:"datapath"`
	IKESAs   []ikeSA       `json:"ike_sas"`
	IPsecSAs []ipsecSA     `json:"ipsec_sas"`
	Tunnels  []tunnelState `json:"tunnels"`
}

type ikeSA struct {
	Connection      string `json:"connection"`
	Local           string `json:"local"`
	Peer            string `json:"peer"`
	InitiatorCookie string `json:"initiator_cookie"`
	ResponderCookie string `json:"responder_cookie"`
	State           string `json:"state"`
	Initiator       bool   `json:"initiator"`
	Mode            string `json:"mode"`
	Algorithms      string `json:"algorithms"`
	NATT            bool   `json:"nat_t"`
}

type ipsecSA struct {
	Connection      string `json:"connection"`
	Tunnel          string `json:"tunnel"`
	SPIIn           string `json:"spi_in"`
	SPIOut          string `json:"spi_out"`
	Algorithms      string `json:"algorithms"`
	Local           string `json:"local"`
	Remote          string `json:"remote"`
	LocalSelector   string `json:"local_selector"`
	RemoteSelector  string `json:"remote_selector"`
	BytesIn         uint64 `json:"bytes_in"`
	BytesOut        uint64 `json:"bytes_out"`
	PacketsIn       uint64 `json:"packets_in"`
	PacketsOut      uint64 `json:"packets_out"`
	EncapLocalPort  uint16 `json:"encap_local_port"`
	EncapRemotePort uint16 `json:"encap_remote_port"`
	CountersError   string `json:"counters_error"`
}

type tunnelState struct {
	Connection    string    `json:"connection"`
	Tunnel        string    `json:"tunnel"`
	State         string    `json:"state"`
	LastError     string    `json:"last_error"`
	LastErrorTime time.Time `json:"last_error_time"`
}

func (s status) tunnel(conn, tun string) (tunnelState, bool) {
	for _, t := range s.Tunnels {
		if t.Connection == conn && t.Tunnel == tun {
			return t, true
		}
	}
	return tunnelState{}, false
}

func (s status) ipsecSAs(conn, tun string) []ipsecSA {
	var out []ipsecSA
	for _, sa := range s.IPsecSAs {
		if sa.Connection == conn && sa.Tunnel == tun {
			out = append(out, sa)
		}
	}
	return out
}

func (s status) ikeSAs(conn string) []ikeSA {
	var out []ikeSA
	for _, sa := range s.IKESAs {
		if sa.Connection == conn {
			out = append(out, sa)
		}
	}
	return out
}
