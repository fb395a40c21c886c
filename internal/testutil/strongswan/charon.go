// Package strongswan runs strongSwan 5.9 charon daemons inside test network namespaces as
// IKEv1 partners for espgw, and reads back their SAs (swanctl) and key material (charon log).
//
// By default ESP is done in userspace by charon's kernel-libipsec plugin over the TUN device
// ipsec0, so no kernel ESP support is needed. In strongSwan 5.9.8 that plugin cannot send raw
// ESP: charon fakes a NAT, floats to UDP 4500 and proposes UDP-encapsulated tunnel mode
// (RFC 3947), so the peer must do NAT-T. With Config.KernelESP charon programs the kernel's
// XFRM through kernel-netlink instead (raw ESP or, if asked, ESP in UDP), which needs a kernel
// with ESP such as the test VM's.
package strongswan

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// CharonPath is the charon daemon (Debian package strongswan-charon).
const CharonPath = "/usr/lib/ipsec/charon"

// startTimeout bounds how long charon may take to open its vici socket (the VM emulates its CPU).
const startTimeout = 15 * time.Second

// Charon is one running charon daemon in a network namespace.
type Charon struct {
	Config Config
	NS     *testutil.NetNS

	dir  string
	proc *testutil.Process
}

// Start writes strongswan.conf and swanctl.conf for cfg into a fresh directory, starts charon in
// ns, waits for its vici socket and loads the connection. tb.Cleanup stops charon by PID
// (SIGTERM, SIGKILL after testutil.StopTimeout), logs the end of charon.log if the test failed
// and removes the directory. It skips the test without root or without strongSwan and every
// plugin it loads (PluginFiles), naming the package to install.
func Start(tb testing.TB, ns *testutil.NetNS, cfg Config) *Charon {
	tb.Helper()
	testutil.RequireRoot(tb)
	testutil.RequireFile(tb, CharonPath, "charon", "strongswan-charon")
	testutil.RequireTool(tb, "swanctl", "strongswan-swanctl")
	plugins := PluginFiles(cfg.KernelESP)
	for _, path := range slices.Sorted(maps.Keys(plugins)) {
		testutil.RequireFile(tb, path, "a charon plugin", plugins[path])
	}
	cfg.setDefaults()

	// Not tb.TempDir(): the vici socket path must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "swan-")
	if err != nil {
		tb.Fatalf("strongswan: %v", err)
	}
	c := &Charon{Config: cfg, NS: ns, dir: dir}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("charon %s in netns %s, end of %s:\n%s", cfg.Name, ns.Name(), c.LogPath(), c.logTail(80))
		}
	})
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
		tb.Fatalf("strongswan: %v", err)
	}
	var sc, sw bytes.Buffer
	if err := writeStrongswanConf(&sc, dir, cfg); err != nil {
		tb.Fatalf("strongswan.conf: %v", err)
	}
	if err := writeSwanctlConf(&sw, cfg); err != nil {
		tb.Fatalf("swanctl.conf: %v", err)
	}
	if err := os.WriteFile(c.confPath(), sc.Bytes(), 0o644); err != nil {
		tb.Fatalf("strongswan: %v", err)
	}
	if err := os.WriteFile(c.swanctlPath(), sw.Bytes(), 0o600); err != nil {
		tb.Fatalf("strongswan: %v", err)
	}

	// `ip netns exec` runs charon in a private mount namespace; binding our run/ over /run
	// there gives each instance its own hard-coded /var/run/charon.pid.
	c.proc = testutil.StartProcess(tb, ns, filepath.Join(dir, "charon.stdout"),
		"env", "STRONGSWAN_CONF="+c.confPath(),
		"sh", "-c", `mount --bind "$1/run" /run && exec "$2"`, "sh", dir, CharonPath)
	err = testutil.Poll(startTimeout, func() (bool, error) {
		if done, err := c.proc.Exited(); done {
			return false, fmt.Errorf("charon exited: %v: %s", err, c.proc.Log())
		}
		_, err := os.Stat(c.socketPath())
		return err == nil, nil
	})
	if err != nil {
		tb.Fatalf("charon in netns %s: vici socket %s: %v", ns.Name(), c.socketPath(), err)
	}
	if out, err := c.Swanctl("--load-all", "--file", c.swanctlPath()); err != nil {
		tb.Fatalf("charon in netns %s: load swanctl.conf: %v\n%s", ns.Name(), err, out)
	}
	return c
}

// Dir is the instance directory (strongswan.conf, swanctl.conf, charon.log, run/).
func (c *Charon) Dir() string { return c.dir }

// PID is charon's process ID.
func (c *Charon) PID() int { return c.proc.PID() }

// URI is the vici socket URI for swanctl --uri.
func (c *Charon) URI() string { return "unix://" + c.socketPath() }

// LogPath is charon's file log.
func (c *Charon) LogPath() string { return filepath.Join(c.dir, "charon.log") }

func (c *Charon) confPath() string    { return filepath.Join(c.dir, "strongswan.conf") }
func (c *Charon) swanctlPath() string { return filepath.Join(c.dir, "swanctl.conf") }
func (c *Charon) socketPath() string  { return filepath.Join(c.dir, "run", "charon.vici") }

// Stop stops charon (SIGTERM, then SIGKILL) before the test ends; Cleanup does it otherwise.
func (c *Charon) Stop() error { return c.proc.Stop() }

// Swanctl runs `swanctl SUBCOMMAND --uri URI ARGS...` against this charon (--uri must follow
// the subcommand) and returns its combined output.
func (c *Charon) Swanctl(subcommand string, args ...string) (string, error) {
	argv := append([]string{subcommand, "--uri", c.URI()}, args...)
	cmd := exec.Command("swanctl", argv...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.confPath())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %w", strings.Join(argv, " "), err)
	}
	return string(out), nil
}

// Initiate starts the CHILD_SA child (and its IKE_SA) and waits until it is installed or
// timeout passes. The error carries swanctl's output.
func (c *Charon) Initiate(child string, timeout time.Duration) error {
	out, err := c.Swanctl("--initiate", "--child", child, "--timeout", seconds(timeout))
	if err != nil {
		return fmt.Errorf("initiate child %q: %w\n%s", child, err, out)
	}
	return nil
}

// Terminate deletes the IKE_SA ike with all its CHILD_SAs, waiting up to 10 s.
func (c *Charon) Terminate(ike string) error {
	out, err := c.Swanctl("--terminate", "--ike", ike, "--timeout", "10")
	if err != nil {
		return fmt.Errorf("terminate IKE_SA %q: %w\n%s", ike, err, out)
	}
	return nil
}

func seconds(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// Log returns charon.log as written so far.
func (c *Charon) Log() string {
	b, _ := os.ReadFile(c.LogPath())
	return string(b)
}

// LogContains reports whether charon.log contains substr.
func (c *Charon) LogContains(substr string) bool { return strings.Contains(c.Log(), substr) }

// WaitLog waits up to timeout until charon.log contains substr, failing the test otherwise.
func (c *Charon) WaitLog(tb testing.TB, substr string, timeout time.Duration) {
	tb.Helper()
	err := testutil.Poll(timeout, func() (bool, error) { return c.LogContains(substr), nil })
	if err != nil {
		tb.Fatalf("charon %s: log never contained %q: %v", c.Config.Name, substr, err)
	}
}

// hexDumpLine matches the continuation lines of charon's chunk dumps (key material).
var hexDumpLine = regexp.MustCompile(`^\S+ \d+\[\w+\] (<[^>]*> )?\s*\d+: [0-9A-F]{2} `)

// viciClient marks charon's lines about vici clients coming, asking and going: mostly the
// tests' own swanctl polling, which would crowd the negotiation out of a log tail.
const viciClient = "[CFG] vici client "

// logTail is the last n lines of charon.log without hex dumps and vici client chatter.
func (c *Charon) logTail(n int) string { return tail(c.Log(), n) }

// tail is the last n lines of a charon log without hex dumps and vici client chatter.
func tail(log string, n int) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if l != "" && !hexDumpLine.MatchString(l) && !strings.Contains(l, viciClient) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}
