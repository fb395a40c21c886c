//go:build vmtest

package kernel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// charonPath is strongSwan's IKE daemon (Debian strongswan-charon).
const charonPath = "/usr/lib/ipsec/charon"

// charonConfig is a strongSwan IKEv1 partner using the kernel's ESP (kernel-netlink), unlike
// internal/testutil/strongswan, which needs kernel-libipsec because the host kernel has none.
type charonConfig struct {
	Local, Peer *site
	PSK         string
	IKEProposal string // swanctl syntax
	ESPProposal string
	Encap       bool // force ESP in UDP
	Dir         string
}

var charonConfTemplate = template.Must(template.New("strongswan.conf").Parse(`charon {
	load_modular = no
	load = random nonce openssl aes sha1 sha2 md5 hmac gcm pem pkcs1 x509 pubkey kernel-netlink socket-default vici
	install_routes = no
	retransmit_tries = 3
	filelog {
		main {
			path = {{.Dir}}/charon.log
			time_format = %H:%M:%S
			append = no
			flush_line = yes
			default = 1
			ike = 2
			knl = 2
		}
	}
	plugins {
		vici {
			socket = unix://{{.Dir}}/run/charon.vici
		}
	}
}
swanctl {
	load = pem pkcs1 x509 pubkey openssl random nonce
}
`))

var swanctlTemplate = template.Must(template.New("swanctl.conf").Parse(`connections {
	lab {
		version = 1
		local_addrs = {{.Local.Outer}}
		remote_addrs = {{.Peer.Outer}}
		proposals = {{.IKEProposal}}
		encap = {{if .Encap}}yes{{else}}no{{end}}
		local {
			auth = psk
			id = {{.Local.Outer}}
		}
		remote {
			auth = psk
			id = {{.Peer.Outer}}
		}
		children {
			net {
				local_ts = {{.Local.Protect}}
				remote_ts = {{.Peer.Protect}}
				esp_proposals = {{.ESPProposal}}
				mode = tunnel
			}
		}
	}
}
secrets {
	ike-lab {
		id-1 = {{.Local.Outer}}
		id-2 = {{.Peer.Outer}}
		secret = "{{.PSK}}"
	}
}
`))

// charon is a running strongSwan charon in a lab site's namespace.
type charon struct {
	cfg  charonConfig
	proc *testutil.Process
}

// startCharon starts charon in cfg.Local's namespace with its own /run (the pid file path is
// compiled in) and loads the connection. Cleanup stops it by PID.
func startCharon(tb testing.TB, cfg charonConfig) *charon {
	tb.Helper()
	testutil.RequireFile(tb, charonPath, "charon", "strongswan-charon")
	testutil.RequireTool(tb, "swanctl", "strongswan-swanctl")
	dir, err := os.MkdirTemp("", "swan-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Dir = dir
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, t := range map[string]*template.Template{"strongswan.conf": charonConfTemplate, "swanctl.conf": swanctlTemplate} {
		var b bytes.Buffer
		if err := t.Execute(&b, cfg); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	c := &charon{cfg: cfg}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("charon in %s, end of charon.log:\n%s", cfg.Local.ns.Name(), testutil.Tail(filepath.Join(dir, "charon.log"), 60))
		}
	})
	c.proc = testutil.StartProcess(tb, cfg.Local.ns, filepath.Join(dir, "charon.stdout"),
		"env", "STRONGSWAN_CONF="+filepath.Join(dir, "strongswan.conf"),
		"sh", "-c", `mount -o bind "$1/run" /run && exec "$2"`, "sh", dir, charonPath)
	err = testutil.Poll(15*time.Second, func() (bool, error) {
		if done, err := c.proc.Exited(); done {
			return false, fmt.Errorf("charon exited: %v: %s", err, c.proc.Log())
		}
		_, err := os.Stat(filepath.Join(dir, "run", "charon.vici"))
		return err == nil, nil
	})
	if err != nil {
		tb.Fatalf("charon in %s: %v", cfg.Local.ns.Name(), err)
	}
	if out, err := c.swanctl("--load-all", "--file", filepath.Join(dir, "swanctl.conf")); err != nil {
		tb.Fatalf("charon in %s: swanctl --load-all: %v\n%s", cfg.Local.ns.Name(), err, out)
	}
	return c
}

func (c *charon) swanctl(sub string, args ...string) (string, error) {
	cmd := exec.Command("swanctl", append([]string{sub, "--uri", "unix://" + filepath.Join(c.cfg.Dir, "run", "charon.vici")}, args...)...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(c.cfg.Dir, "strongswan.conf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
