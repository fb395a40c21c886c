package espgwtest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/internal/testutil"
)

// startTimeout bounds how long `espgw run` may take until its control socket answers (generous:
// the VM emulates its CPU, and a loaded host slows the eBPF verifier).
const startTimeout = 45 * time.Second

// Gateway is one `espgw run` process in a network namespace.
type Gateway struct {
	NS  *testutil.NetNS
	Dir string // espgw.yaml, espgw.log, the control socket and keys/

	socket string
	proc   *testutil.Process
}

// Start writes cfg with a control socket and save_keys in a fresh directory, runs
// `espgw run -c` in ns and waits until the control socket answers. tb.Cleanup stops the process
// (SIGTERM) at the latest, prints its log tail if the test failed and removes the directory.
// It fails the test if TestMain called neither Find nor Build.
func Start(tb testing.TB, ns *testutil.NetNS, cfg Config) *Gateway {
	tb.Helper()
	return start(tb, ns, cfg.runArgs(), func(w io.Writer, socket, keyDir string) error { return cfg.write(w, socket, keyDir) })
}

// StartYAML is Start with a configuration written elsewhere (e.g. by `espgw import`): yaml
// must not set control_socket or save_keys, which StartYAML puts in front of it.
func StartYAML(tb testing.TB, ns *testutil.NetNS, yaml []byte) *Gateway {
	tb.Helper()
	return start(tb, ns, []string{"--log-level", "debug"}, func(w io.Writer, socket, keyDir string) error {
		_, err := fmt.Fprintf(w, "control_socket: %s\nsave_keys: %s\n%s", socket, keyDir, yaml)
		return err
	})
}

// runArgs are the flags of `espgw run` that cfg asks for.
func (cfg Config) runArgs() []string {
	args := []string{"--log-level", cmp.Or(cfg.LogLevel, "debug")}
	if cfg.PProf != "" {
		args = append(args, "--pprof", cfg.PProf)
	}
	return args
}

// start runs `espgw run -c CONF runArgs...` with the configuration write renders.
func start(tb testing.TB, ns *testutil.NetNS, runArgs []string, write func(w io.Writer, socket, keyDir string) error) *Gateway {
	tb.Helper()
	g, yaml := launch(tb, ns, runArgs, write)
	g.waitReady(tb, yaml)
	return g
}

// StartTogether starts one daemon per namespace and config at (nearly) the same instant,
// then waits until all of them answer; the gateways are in the order of the arguments.
func StartTogether(tb testing.TB, ns []*testutil.NetNS, cfgs []Config) []*Gateway {
	tb.Helper()
	if len(ns) != len(cfgs) {
		tb.Fatalf("espgwtest: %d namespaces for %d configurations", len(ns), len(cfgs))
	}
	gs := make([]*Gateway, len(ns))
	yamls := make([]string, len(ns))
	for i, cfg := range cfgs {
		gs[i], yamls[i] = launch(tb, ns[i], cfg.runArgs(), func(w io.Writer, socket, keyDir string) error { return cfg.write(w, socket, keyDir) })
	}
	for i, g := range gs {
		g.waitReady(tb, yamls[i])
	}
	return gs
}

// launch writes the configuration into a fresh directory and starts `espgw run runArgs` in ns
// without waiting for it; it returns the gateway and its configuration text.
func launch(tb testing.TB, ns *testutil.NetNS, runArgs []string, write func(w io.Writer, socket, keyDir string) error) (*Gateway, string) {
	tb.Helper()
	if bin == "" {
		tb.Fatalf("espgwtest: no espgw binary: call Find or Build from TestMain")
	}
	// Not tb.TempDir(): the control socket path must fit into sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "espgw-")
	if err != nil {
		tb.Fatalf("espgwtest: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	g := &Gateway{NS: ns, Dir: dir, socket: filepath.Join(dir, "ctl.sock")}
	var yaml bytes.Buffer
	if err := write(&yaml, g.socket, g.KeyDir()); err != nil {
		tb.Fatalf("espgwtest: espgw.yaml: %v", err)
	}
	conf := filepath.Join(dir, "espgw.yaml")
	if err := os.WriteFile(conf, yaml.Bytes(), 0o600); err != nil {
		tb.Fatalf("espgwtest: %v", err)
	}
	g.proc = testutil.StartProcess(tb, ns, filepath.Join(dir, "espgw.log"),
		append([]string{bin, "run", "-c", conf}, runArgs...)...)
	return g, yaml.String()
}

// waitReady waits until the control socket answers a status request, failing the test
// (with the configuration) if the daemon exits or startTimeout passes. It asks in-process:
// an `espgw status` process per probe cost ~60 ms of CPU each, which the daemon starting on a
// loaded machine (and bench/setup's timing of it) paid for. The socket exists before the
// daemon serves it; the request waits in its backlog until then.
func (g *Gateway) waitReady(tb testing.TB, yaml string) {
	tb.Helper()
	err := testutil.Poll(startTimeout, func() (bool, error) {
		if done, err := g.proc.Exited(); done {
			return false, fmt.Errorf("espgw exited: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		c, err := control.Dial(ctx, g.socket)
		if err == nil {
			_, err = c.Do(ctx, control.Request{Command: control.CmdStatus})
		}
		return err == nil, err
	})
	if err != nil {
		tb.Fatalf("espgw in netns %s did not come up: %v\nconfig:\n%s", g.NS.Name(), err, yaml)
	}
}

// PID is the espgw daemon's process ID.
func (g *Gateway) PID() int { return g.proc.PID() }

// KeyDir is the save_keys directory (Wireshark's esp_sa and ikev1_decryption_table).
func (g *Gateway) KeyDir() string { return filepath.Join(g.Dir, "keys") }

// Keys reads the save_keys files, failing the test if they cannot be read.
func (g *Gateway) Keys(tb testing.TB) testutil.Keys {
	tb.Helper()
	k, err := testutil.ReadKeyDir(g.KeyDir())
	if err != nil {
		tb.Fatalf("espgw save_keys %s: %v", g.KeyDir(), err)
	}
	return k
}

// Log is what espgw wrote so far.
func (g *Gateway) Log() string { return g.proc.Log() }

// Alive fails the test if the daemon has exited.
func (g *Gateway) Alive(tb testing.TB) {
	tb.Helper()
	if done, err := g.proc.Exited(); done {
		tb.Fatalf("espgw in netns %s exited: %v", g.NS.Name(), err)
	}
}

// Stop sends SIGTERM and requires a clean exit (status 0) within testutil.StopTimeout, with
// no error or warning logged while shutting down: removing what it installed must not fail.
func (g *Gateway) Stop(tb testing.TB) {
	tb.Helper()
	if err := g.proc.Stop(); err != nil {
		tb.Errorf("stop espgw in netns %s: %v", g.NS.Name(), err)
		return
	}
	if _, err := g.proc.Exited(); err != nil {
		tb.Errorf("espgw in netns %s after SIGTERM: %v, want exit status 0", g.NS.Name(), err)
	}
	_, shutdown, ok := strings.Cut(g.Log(), "msg=\"shutting down\"")
	if !ok {
		tb.Errorf("espgw in netns %s did not log shutting down after SIGTERM", g.NS.Name())
	}
	for _, l := range strings.Split(shutdown, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			tb.Errorf("espgw in netns %s while shutting down: %s", g.NS.Name(), l)
		}
	}
}
