//go:build vmtest

package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/internal/testutil"
)

// TestSystemdLifecycle is the espgw package as an operator runs it, in the VM booted with
// systemd as PID 1 (vmtest.sh's second boot, which runs only this test): the Vagrant lab's
// provisioning scripts set up the bank (strongSwan, in a network namespace) and ours
// (dpkg -i, the seed's tunnel, systemctl start). The tunnel must come up with traffic, a
// reload must add a tunnel, a stop must remove everything espgw installed (the peer sees
// the SAs deleted) and a purge every file of the package but the operator's own.
func TestSystemdLifecycle(t *testing.T) {
	if comm, _ := os.ReadFile("/proc/1/comm"); strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd: vmtest.sh runs this test in a boot with rdinit=/lib/systemd/systemd", comm)
	}
	deb := os.Getenv("ESPGW_DEB")
	if deb == "" {
		t.Fatal("ESPGW_DEB is not set: vmtest.sh passes the package built by packaging/build-deb.sh")
	}
	deb, _ = filepath.Abs(deb)
	scripts, _ := filepath.Abs("vagrant") // vmtest.sh copies packaging/vagrant here

	// The bank in its namespace, ours in the VM's own, where the service runs.
	bank := testutil.NewNetNS(t, "bank")
	sh(t, "ip link add wan0 type veth peer name wan0 netns "+bank.Name()+" && ip addr add 192.0.2.1/24 dev wan0 && ip link set wan0 up")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "wan0").Run() })
	bank.Exec(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "wan0")
	bank.Exec(t, "ip", "link", "set", "wan0", "up")
	for _, unit := range []string{"strongswan.service", "bank-lan.service"} {
		dir := "/run/systemd/system/" + unit + ".d"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/netns.conf", []byte("[Service]\nNetworkNamespacePath=/run/netns/"+bank.Name()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			exec.Command("systemctl", "disable", "--now", unit).Run()
			os.RemoveAll(dir)
		})
	}
	t.Cleanup(func() { os.RemoveAll("/etc/espgw") })
	sh(t, "systemctl daemon-reload")
	sh(t, "OURS=192.0.2.1 BANK=192.0.2.2 sh "+scripts+"/bank.sh")

	// Install and start: with Type=notify, ours.sh's systemctl returns after READY=1.
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(sh(t, "dpkg-deb -c "+deb)), "\n") {
		if f := strings.Fields(line); len(f) == 6 && !strings.HasSuffix(f[5], "/") {
			files = append(files, strings.TrimPrefix(f[5], "."))
		}
	}
	sh(t, "OURS=192.0.2.1 BANK=192.0.2.2 sh "+scripts+"/ours.sh "+deb)
	if got, want := sh(t, "systemctl show -P StatusText espgw.service"), "running: 1 connections, 1 tunnels, xfrm datapath\n"; got != want {
		t.Errorf("espgw.service status %q, want %q", got, want)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", "espgw.service").CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify espgw.service on the installed system: %v\n%s", err, out)
	}

	// The tunnel (start: always) as the bank sees it, with traffic.
	waitChild(t, "api")
	sh(t, "ping -c 3 -W 5 -I 10.10.1.1 10.20.0.10")
	if in, out := childPackets(t, "api"); in < 3 || out < 3 {
		t.Errorf("bank's child SA api counted %d packets in, %d out, want >= 3 each way", in, out)
	}

	// Reload with a changed configuration: a second tunnel.
	f, err := os.OpenFile("/etc/espgw/espgw.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("      db: {local_subnet: 10.10.1.1/32, remote_subnet: 10.30.0.0/24, proposals: [3des-sha1-modp1024], start: always}\n")
	f.Close()
	sh(t, "systemctl reload espgw.service")
	testutil.WaitFor(t, 30*time.Second, func() (bool, error) {
		return sh(t, "systemctl show -P StatusText espgw.service") == "running: 1 connections, 2 tunnels, xfrm datapath\n", nil
	})
	waitChild(t, "db")
	sh(t, "ping -c 3 -W 5 -I 10.10.1.1 10.30.0.10")

	// The journal has espgw's lines at their priorities, without espgw's own timestamps.
	if info := sh(t, "journalctl -u espgw.service -p info..info -o cat"); !strings.Contains(info, `msg="espgw running"`) || strings.Contains(info, "time=") {
		t.Errorf("journal, priority info:\n%s\nwant espgw running, no time=", info)
	}

	// Stop: everything espgw installed is gone, and the bank was told.
	sh(t, "systemctl stop espgw.service")
	for cmd, unwanted := range map[string]string{
		"ip xfrm state":                   "src",
		"ip xfrm policy":                  "src",
		"ip -o addr show dev wan0":        "10.10.1.1",
		"ip -d link show dev wan0":        "xdp",
		"tc filter show dev wan0 ingress": "bpf",
		"ls /run":                         "espgw",
	} {
		if out := sh(t, cmd); strings.Contains(out, unwanted) {
			t.Errorf("after systemctl stop, %s shows %q:\n%s", cmd, unwanted, out)
		}
	}
	testutil.WaitFor(t, 20*time.Second, func() (bool, error) {
		return !strings.Contains(sh(t, "swanctl --list-sas"), "ours:"), nil
	})

	// Purge: no file of the package is left but the operator's own.
	sh(t, "dpkg --purge espgw")
	for _, f := range append(files, "/var/lib/espgw", "/etc/systemd/system/multi-user.target.wants/espgw.service") {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s is left after dpkg --purge", f)
		}
	}
	if _, err := os.Stat("/etc/espgw/psk.txt"); err != nil {
		t.Errorf("the operator's /etc/espgw/psk.txt: %v, want it kept", err)
	}
	if out, err := exec.Command("systemctl", "cat", "espgw.service").CombinedOutput(); err == nil {
		t.Errorf("systemd still knows espgw.service after the purge:\n%s", out)
	}
}

// sh runs cmd with /bin/sh and returns its output; a failure ends the test.
func sh(t *testing.T, cmd string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// waitChild waits until the bank's charon has the child SA name installed.
func waitChild(t *testing.T, name string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, func() (bool, error) {
		out, _ := exec.Command("swanctl", "--list-sas", "--child", name).CombinedOutput()
		return regexp.MustCompile(`(?m)^\s+` + name + `: #\d+, reqid \d+, INSTALLED`).Match(out), nil
	})
}

// childPackets are the bank's packet counters of the child SA name: in and out.
func childPackets(t *testing.T, name string) (in, out int) {
	t.Helper()
	s := sh(t, "swanctl --list-sas --child "+name)
	m := regexp.MustCompile(`(?m)^\s+in\s+[0-9a-f]{8}.*,\s+(\d+) packets`).FindStringSubmatch(s)
	n := regexp.MustCompile(`(?m)^\s+out\s+[0-9a-f]{8}.*,\s+(\d+) packets`).FindStringSubmatch(s)
	if m == nil || n == nil {
		t.Fatalf("no packet counters in swanctl --list-sas:\n%s", s)
	}
	in, _ = strconv.Atoi(m[1])
	out, _ = strconv.Atoi(n[1])
	return in, out
}
