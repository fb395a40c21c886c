//go:build vmtest

package kernel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// binEnv names the espgw binary under test (vmtest.sh: /host/espgw, built with CGO_ENABLED=0).
const binEnv = "ESPGW_BIN"

// gwConfig is one espgw configuration: a single connection with a single tunnel, between two
// lab sites, always on the xfrm datapath unless Datapath says otherwise.
type gwConfig struct {
	Datapath     string // "" = xfrm
	Local, Peer  *site
	PSK          string
	IKEProposal  string // strongSwan keyword, e.g. 3des-sha1-modp1024
	ESPProposal  string
	NATTraversal string // off, force or auto
	Lifetime     string // tunnel lifetime, e.g. 8h
	Start        string // always, on-demand or manual
	Socket       string // set by startEspgw
}

var gwTemplate = template.Must(template.New("espgw.yaml").Parse(`control_socket: {{.Socket}}
datapath: {{.Datapath}}
connections:
  lab:
    local_address: {{.Local.Outer}}
    remote_address: {{.Peer.Outer}}
    psk: "{{.PSK}}"
    ike:
      mode: main
      proposals: [{{.IKEProposal}}]
      lifetime: 1h
      nat_traversal: {{.NATTraversal}}
    tunnels:
      net:
        local_subnet: {{.Local.Protect}}
        remote_subnet: {{.Peer.Protect}}
        proposals: [{{.ESPProposal}}]
        lifetime: {{.Lifetime}}
        start: {{.Start}}
`))

// gw is a running `espgw run` in a lab site's namespace.
type gw struct {
	cfg  gwConfig
	dir  string
	proc *testutil.Process
}

// startEspgw writes cfg to a fresh directory, runs `espgw run -c` in cfg.Local's namespace and
// waits until its control socket answers. Cleanup stops it by PID.
func startEspgw(tb testing.TB, cfg gwConfig) *gw {
	tb.Helper()
	bin := os.Getenv(binEnv)
	if bin == "" {
		tb.Fatalf("%s is not set: vmtest.sh passes the CGO_ENABLED=0 espgw binary", binEnv)
	}
	if cfg.Datapath == "" {
		cfg.Datapath = "xfrm"
	}
	if cfg.Lifetime == "" {
		cfg.Lifetime = "1h"
	}
	// Not tb.TempDir(): the socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "gw-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Socket = filepath.Join(dir, "ctl.sock")
	var b bytes.Buffer
	if err := gwTemplate.Execute(&b, cfg); err != nil {
		tb.Fatal(err)
	}
	g := &gw{cfg: cfg, dir: dir}
	if err := os.WriteFile(g.configPath(), b.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	g.proc = testutil.StartProcess(tb, cfg.Local.ns, filepath.Join(dir, "espgw.log"),
		bin, "run", "-c", g.configPath(), "--log-level", "debug")
	err = testutil.Poll(15*time.Second, func() (bool, error) {
		if done, err := g.proc.Exited(); done {
			return false, fmt.Errorf("espgw exited: %v", err)
		}
		_, err := g.status()
		return err == nil, err
	})
	if err != nil {
		tb.Fatalf("espgw in netns %s: control socket: %v\n%s", cfg.Local.ns.Name(), err, g.proc.Log())
	}
	return g
}

func (g *gw) configPath() string { return filepath.Join(g.dir, "espgw.yaml") }

// gwStatus is the part of `espgw status --json` the suite reads.
type gwStatus struct {
	Datapath string `json:"datapath"`
	IKESAs   []struct {
		State string `json:"state"`
		NATT  bool   `json:"nat_t"`
	} `json:"ike_sas"`
	IPsecSAs []struct {
		SPIIn      string     `json:"spi_in"`
		SPIOut     string     `json:"spi_out"`
		Algorithms string     `json:"algorithms"`
		Local      netip.Addr `json:"local"`
		Remote     netip.Addr `json:"remote"`
		PacketsIn  uint64     `json:"packets_in"`
		PacketsOut uint64     `json:"packets_out"`
		EncapPort  uint16     `json:"encap_local_port"`
	} `json:"ipsec_sas"`
	Tunnels []struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	} `json:"tunnels"`
}

// status runs `espgw status --json` against the daemon.
func (g *gw) status() (gwStatus, error) {
	var st gwStatus
	out, err := exec.Command(os.Getenv(binEnv), "status", "--json", "--socket", g.cfg.Socket).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return st, fmt.Errorf("espgw status: %w", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("espgw status --json: %w: %s", err, out)
	}
	return st, nil
}

// waitUp waits until the tunnel is up with at least one IPsec SA and returns the status.
func (g *gw) waitUp(tb testing.TB, timeout time.Duration) gwStatus {
	tb.Helper()
	var st gwStatus
	err := testutil.Poll(timeout, func() (bool, error) {
		var err error
		st, err = g.status()
		return err == nil && len(st.Tunnels) == 1 && st.Tunnels[0].State == "up" && len(st.IPsecSAs) > 0, err
	})
	if err != nil {
		tb.Fatalf("espgw in %s: tunnel not up within %v: %v; status %+v", g.cfg.Local.ns.Name(), timeout, err, st)
	}
	return st
}

// stop ends the daemon with SIGTERM and fails the test if it does not exit by itself.
func (g *gw) stop(tb testing.TB) {
	tb.Helper()
	if err := g.proc.Stop(); err != nil {
		tb.Errorf("stop espgw: %v", err)
	}
	if done, err := g.proc.Exited(); done && err != nil && !strings.Contains(err.Error(), "terminated") {
		tb.Errorf("espgw exited with %v after SIGTERM, want 0", err)
	}
}
