package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/daemon"
	"github.com/espgw/espgw/internal/testutil"
)

// gatewayYAML configures one end of the seed's tunnel with the userspace datapath, the
// service address on wan0 and the control socket and key files in dir; extra lines go
// into the connection's tunnels.
func gatewayYAML(dir, local, remote, service, localNet, remoteNet, extra string) string {
	return fmt.Sprintf(`control_socket: %s/espgw.sock
datapath: userspace
save_keys: %s/keys
connections:
  mega:
    local_address: %s
    remote_address: %s
    psk: "SUPERPASSWORD"
    service_address: {address: %s, interface: wan0}
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels:
      api: {local_subnet: %s, remote_subnet: %s, proposals: [3des-sha1-modp1024]}
%s`, dir, dir, local, remote, service, localNet, remoteNet, extra)
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
		_, err := daemon.Dial(context.Background(), g.sock)
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
func (g *gateway) status(t *testing.T) (*daemon.Status, error) {
	code, out, errOut := espgw("status", "--json", "--socket", g.sock)
	if code != 0 {
		return nil, fmt.Errorf("espgw status: %s", errOut)
	}
	var st daemon.Status
	return &st, json.Unmarshal([]byte(out), &st)
}

// TestRunPair runs two gateways in two network namespaces joined by a veth link, brings the
// tunnel up with `espgw up`, pings through it and checks status and shutdown.
func TestRunPair(t *testing.T) {
	left := testutil.NewNetNS(t, "espgw-cmd-l")
	right := testutil.NewNetNS(t, "espgw-cmd-r")
	testutil.Veth(t, left, "wan0", "192.0.2.1/24", right, "wan0", "192.0.2.2/24")
	t.Setenv("ESPGW_TEST_MAIN", "1") // the children run execute(), not the tests

	l := startGateway(t, left, "192.0.2.1", "192.0.2.2", "10.10.1.1/32", "10.10.1.1/32", "10.20.0.0/24")
	r := startGateway(t, right, "192.0.2.2", "192.0.2.1", "10.20.0.1/32", "10.20.0.0/24", "10.10.1.1/32")

	if code, out, errOut := espgw("up", "mega/api", "--socket", l.sock); code != 0 || out != "mega/api: up\n" {
		t.Fatalf("espgw up = %d %q %q", code, out, errOut)
	}
	// `up` returns once the initiator installed its SAs; the responder does so on QM3.
	testutil.WaitFor(t, 10*time.Second, func() (bool, error) {
		st, err := r.status(t)
		return err == nil && len(st.IPsecSAs) == 1, err
	})
	if err := testutil.Ping(left, "10.10.1.1", "10.20.0.1", 3); err != nil {
		t.Fatalf("ping through the tunnel: %v", err)
	}

	code, out, errOut := espgw("status", "--socket", l.sock)
	for _, want := range []string{"Datapath: userspace", "ESTABLISHED", "3des-sha1-modp1024", "esp 3des-sha1 pfs modp1024",
		"10.10.1.1/32 <-> 10.20.0.0/24", "mega/api  up"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("espgw status (%d, %s) lacks %q:\n%s", code, errOut, want, out)
		}
	}
	st, err := l.status(t)
	if err != nil || len(st.IPsecSAs) != 1 {
		t.Fatalf("status --json = %+v, %v", st, err)
	}
	if sa := st.IPsecSAs[0]; sa.PacketsOut < 3 || sa.PacketsIn < 3 || sa.CountersError != "" {
		t.Errorf("counters after 3 pings: out %d in %d (%s), want at least 3 each", sa.PacketsOut, sa.PacketsIn, sa.CountersError)
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
