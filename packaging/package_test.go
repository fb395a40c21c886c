package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// buildDeb runs build-deb.sh (what `make package` runs) into a temporary directory and
// returns the .deb and the version it was built with.
func buildDeb(t *testing.T) (deb, version string) {
	t.Helper()
	testutil.RequireTool(t, "git", "git")
	testutil.RequireTool(t, "gzip", "gzip")
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	version = strings.TrimSpace(string(out))
	cmd := exec.Command("./build-deb.sh", t.TempDir())
	cmd.Env = append(os.Environ(), "VERSION="+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), version
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebVersion: git versions map to Debian versions that sort in release order.
func TestDebVersion(t *testing.T) {
	for _, tt := range []struct{ git, deb string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"84e1447", "0~git84e1447"},
		{"84e1447-dirty", "0~git84e1447+dirty"},
		{"1234567", "0~git1234567"}, // a hash of digits is no release
	} {
		if got := debVersion(t, tt.git); got != tt.deb {
			t.Errorf("git %q -> Debian %q, want %q", tt.git, got, tt.deb)
		}
	}
}

// debVersion runs the mapping lines of build-deb.sh on v.
func debVersion(t *testing.T, v string) string {
	t.Helper()
	script, err := os.ReadFile("build-deb.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\nv=\$\{VERSION#v\}\n.*?\nDEB_VERSION=[^\n]*\n`).Find(script)
	if m == nil {
		t.Fatal("build-deb.sh: the version mapping (v=${VERSION#v} ... DEB_VERSION=...) is gone")
	}
	out, err := exec.Command("bash", "-c", "VERSION=$1"+string(m)+`echo "$DEB_VERSION"`, "bash", v).Output()
	if err != nil {
		t.Fatalf("version mapping: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestPackage builds the package and checks its control data, its files and their modes,
// and that what it ships works: the binary's version, the example configuration once
// filled in, the systemd unit.
func TestPackage(t *testing.T) {
	testutil.RequireTool(t, "dpkg-deb", "dpkg")
	deb, version := buildDeb(t)
	wantName := "espgw_" + debVersion(t, version) + "_amd64.deb"
	if filepath.Base(deb) != wantName {
		t.Errorf("package %s, want %s", filepath.Base(deb), wantName)
	}

	t.Run("control", func(t *testing.T) {
		fields := map[string]string{}
		for _, f := range []string{"Package", "Version", "Architecture", "Depends", "Pre-Depends", "Section"} {
			fields[f] = strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, f))
		}
		want := map[string]string{"Package": "espgw", "Version": debVersion(t, version), "Architecture": "amd64",
			"Depends": "procps", "Pre-Depends": "", "Section": "net"} // static binary; the unit runs /bin/kill
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("control field %s = %q, want %q", k, fields[k], v)
			}
		}
		if got := run(t, "dpkg-deb", "-I", deb, "conffiles"); got != "/etc/espgw/espgw.yaml\n" {
			t.Errorf("conffiles = %q, want only /etc/espgw/espgw.yaml", got)
		}
		for _, s := range []string{"postinst", "prerm", "postrm"} {
			got := run(t, "dpkg-deb", "-I", deb, s)
			want, _ := os.ReadFile(filepath.Join("scripts", s))
			if got != string(want) {
				t.Errorf("maintainer script %s differs from scripts/%s", s, s)
			}
		}
	})

	t.Run("contents", func(t *testing.T) {
		// every file and its mode; directories only where the mode matters
		want := map[string]string{
			"./usr/sbin/espgw":                                 "-rwxr-xr-x root/root",
			"./usr/lib/systemd/system/espgw.service":           "-rw-r--r-- root/root",
			"./etc/espgw/":                                     "drwx------ root/root",
			"./etc/espgw/espgw.yaml":                           "-rw------- root/root",
			"./usr/share/bash-completion/completions/espgw":    "-rw-r--r-- root/root",
			"./usr/share/zsh/vendor-completions/_espgw":        "-rw-r--r-- root/root",
			"./usr/share/fish/vendor_completions.d/espgw.fish": "-rw-r--r-- root/root",
			"./usr/share/man/man8/espgw.8.gz":                  "-rw-r--r-- root/root",
			"./usr/share/man/man8/espgw-run.8.gz":              "-rw-r--r-- root/root",
			"./usr/share/man/man8/espgw-config-check.8.gz":     "-rw-r--r-- root/root",
			"./usr/share/man/man8/espgw-reload.8.gz":           "-rw-r--r-- root/root",
			"./usr/share/man/man8/espgw-completion-bash.8.gz":  "-rw-r--r-- root/root",
			"./usr/share/espgw/grafana/espgw.json":             "-rw-r--r-- root/root",
			"./usr/share/espgw/prometheus/espgw-alerts.yml":    "-rw-r--r-- root/root",
		}
		man := regexp.MustCompile(`^\./usr/share/man/man8/espgw(-[a-z]+)*\.8\.gz$`)
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
			f := strings.Fields(line) // mode owner size date time path
			if len(f) != 6 {
				t.Fatalf("dpkg-deb -c line %q: want 6 fields", line)
			}
			got[f[5]] = f[0] + " " + f[1]
			switch {
			case want[f[5]] != "", strings.HasSuffix(f[5], "/") && f[0] == "drwxr-xr-x":
			case man.MatchString(f[5]) && f[0] == "-rw-r--r--":
			default:
				t.Errorf("unexpected entry %s %s %s", f[0], f[1], f[5])
			}
		}
		for p, m := range want {
			if got[p] != m {
				t.Errorf("%s: %q, want %q", p, got[p], m)
			}
		}
	})

	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	bin := filepath.Join(root, "usr/sbin/espgw")

	t.Run("binary", func(t *testing.T) {
		if got, want := run(t, bin, "version"), "espgw "+version+" "; !strings.HasPrefix(got, want) {
			t.Errorf("espgw version = %q, want %q...", got, want)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("/usr/sbin/espgw has an ELF interpreter: not static, the package would need Depends")
			}
		}
	})

	t.Run("example config", func(t *testing.T) {
		example := filepath.Join(root, "etc/espgw/espgw.yaml")
		out, err := exec.Command(bin, "config", "check", "-c", example).CombinedOutput()
		if err == nil || !strings.Contains(string(out), `local_address: "OUR_PUBLIC_IP" is not an IPv4 address`) {
			t.Errorf("config check of the unfilled example: %v\n%s\nwant a failure naming local_address", err, out)
		}
		// what the operator does: fill in the four values, write the PSK file
		dir := t.TempDir()
		psk := filepath.Join(dir, "psk.txt")
		if err := os.WriteFile(psk, []byte("198.51.100.2 a-long-random-key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		filled := filepath.Join(dir, "espgw.yaml")
		sed := exec.Command("sed", "-e", "s/OUR_PUBLIC_IP/203.0.113.1/", "-e", "s/PARTNER_PUBLIC_IP/198.51.100.2/",
			"-e", "s#OUR_SUBNET#10.10.1.0/24#", "-e", "s#PARTNER_SUBNET#10.20.0.0/24#", "-e", "s#/etc/espgw/psk.txt#"+psk+"#", example)
		b, err := sed.Output()
		if err != nil {
			t.Fatalf("sed: %v", err)
		}
		if err := os.WriteFile(filled, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = exec.Command(bin, "config", "check", "-c", filled).CombinedOutput()
		if err != nil || string(out) != "configuration OK: 1 connections, 1 tunnels\n" {
			t.Errorf("config check of the filled-in example: %v\n%s", err, out)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		testutil.RequireRoot(t)
		unit := filepath.Join(root, "usr/lib/systemd/system/espgw.service")
		if msg := verifyUnit(t, bin, unit); msg != "" {
			t.Errorf("systemd-analyze verify espgw.service:\n%s", msg)
		}
		// the check itself: an unknown key must be reported
		b, _ := os.ReadFile(unit)
		bad := filepath.Join(t.TempDir(), "espgw.service")
		os.WriteFile(bad, bytes.Replace(b, []byte("[Service]\n"), []byte("[Service]\nNoSuchKey=1\n"), 1), 0o644)
		if msg := verifyUnit(t, bin, bad); !strings.Contains(msg, "NoSuchKey") {
			t.Errorf("systemd-analyze verify of a unit with an unknown key said %q, want it named", msg)
		}
	})
}

// verifyUnit runs systemd-analyze verify on unit with bin at /usr/sbin/espgw, the path the
// unit runs, in a private mount namespace (so the host's /usr/sbin is not touched), and
// returns what it printed: warnings (unknown keys, bad values) do not change its exit code.
func verifyUnit(t *testing.T, bin, unit string) string {
	t.Helper()
	testutil.RequireTool(t, "systemd-analyze", "systemd")
	testutil.RequireTool(t, "unshare", "util-linux")
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs tmpfs /usr/sbin && cp "$1" /usr/sbin/espgw && exec systemd-analyze verify --man=no "$2"`,
		"sh", bin, unit).CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return string(out)
}

// TestVagrantfile: the lab cannot boot here, but its Ruby must parse.
func TestVagrantfile(t *testing.T) {
	ruby := testutil.RequireTool(t, "ruby", "ruby")
	if out, err := exec.Command(ruby, "-c", "../Vagrantfile").CombinedOutput(); err != nil || string(out) != "Syntax OK\n" {
		t.Errorf("ruby -c Vagrantfile: %v\n%s", err, out)
	}
}
