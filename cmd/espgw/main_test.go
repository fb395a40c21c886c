package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets tests run the test binary as espgw (ESPGW_TEST_MAIN=1), e.g. inside a
// network namespace, without building a second binary.
func TestMain(m *testing.M) {
	if os.Getenv("ESPGW_TEST_MAIN") == "1" {
		os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// espgw runs the command line in-process and returns its exit code and output.
func espgw(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestConfigCheck(t *testing.T) {
	// good.yaml has an inline psk: only its owner may read it, whatever the checkout's umask.
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	private, public := filepath.Join(t.TempDir(), "good.yaml"), filepath.Join(t.TempDir(), "good.yaml")
	for p, mode := range map[string]os.FileMode{private: 0o600, public: 0o644} {
		if err := os.WriteFile(p, good, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	// The same connection in IKEv2, once well and once with the IKEv1-only aggressive mode;
	// two subnets per side, which only IKEv2 carries in one tunnel.
	v2 := filepath.Join(t.TempDir(), "v2.yaml")
	v2Bad := filepath.Join(t.TempDir(), "v2-bad.yaml")
	v1Subnets, v2Subnets := filepath.Join(t.TempDir(), "v1-subnets.yaml"), filepath.Join(t.TempDir(), "v2-subnets.yaml")
	const v2IKE = "version: 2\n      proposals: [aes256-sha256-modp2048, aes128gcm16-prfsha256-ecp256]"
	const subnets = "local_subnet: 10.10.1.1/32,10.10.2.0/24\n        remote_subnet: [10.20.0.0/24, 10.21.0.0/24]"
	for p, pairs := range map[string][]string{v2: {"mode: main\n      proposals: [3des-sha1-modp1024]", v2IKE},
		v2Bad:     {"mode: main\n      proposals: [3des-sha1-modp1024]", "version: 2\n      mode: aggressive\n      proposals: [3des-sha1-modp1024]"},
		v1Subnets: {"local_subnet: 10.10.1.1/32\n        remote_subnet: 10.20.0.0/24", subnets},
		v2Subnets: {"mode: main\n      proposals: [3des-sha1-modp1024]", v2IKE, "local_subnet: 10.10.1.1/32\n        remote_subnet: 10.20.0.0/24", subnets}} {
		yaml := string(good)
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(yaml, pairs[i]) {
				t.Fatalf("%q not in testdata/good.yaml", pairs[i])
			}
			yaml = strings.Replace(yaml, pairs[i], pairs[i+1], 1)
		}
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{{
		name: "good IKEv2",
		args: []string{"config", "check", "-c", v2},
		out:  "configuration OK: 1 connections, 1 tunnels\n",
	}, {
		name: "bad IKEv2: aggressive mode",
		args: []string{"config", "check", "-c", v2Bad},
		code: 1,
		err:  "espgw: " + v2Bad + ":\n  connections.MegaTelecom.ike.mode: aggressive is IKEv1 only (want main or no mode with version 2)\n",
	}, {
		name: "good IKEv2: two subnets per side",
		args: []string{"config", "check", "-c", v2Subnets},
		out:  "configuration OK: 1 connections, 1 tunnels\n",
	}, {
		name: "bad IKEv1: two subnets per side",
		args: []string{"config", "check", "-c", v1Subnets},
		code: 1,
		err: "espgw: " + v1Subnets + ":\n" +
			"  connections.MegaTelecom.tunnels.API.local_subnet: 10.10.1.1/32,10.10.2.0/24 lists 2 subnets, but an IKEv1 quick mode carries one subnet per side (want one, write one tunnel per pair, or ike.version: 2)\n" +
			"  connections.MegaTelecom.tunnels.API.remote_subnet: 10.20.0.0/24,10.21.0.0/24 lists 2 subnets, but an IKEv1 quick mode carries one subnet per side (want one, write one tunnel per pair, or ike.version: 2)\n",
	}, {
		name: "good",
		args: []string{"config", "check", "-c", private},
		out:  "configuration OK: 1 connections, 1 tunnels\n",
	}, {
		name: "good, but others may read the psk",
		args: []string{"config", "check", "-c", public},
		out:  "configuration OK: 1 connections, 1 tunnels\n",
		err: "espgw: warning: connections.MegaTelecom.psk: a pre-shared key inline in " + public +
			", which group or others may read (mode 0644): chmod 600 it or use psk_file\n",
	}, {
		name: "bad: every problem",
		args: []string{"config", "check", "-c", "testdata/bad.yaml"},
		code: 1,
		err: "espgw: testdata/bad.yaml:\n" +
			"  connections.MegaTelecom.remote_address: is missing (want an IPv4 address)\n" +
			"  connections.MegaTelecom.remote_adress: unknown key (did you mean remote_address?)\n" +
			"  connections.MegaTelecom.tunnels.API.local_subnet: \"10.10.1.1/33\" is not an IPv4 prefix (want e.g. 10.10.1.0/24)\n",
	}, {
		name: "missing file",
		args: []string{"config", "check", "-c", "testdata/nonexistent.yaml"},
		code: 1,
		err:  "espgw: testdata/nonexistent.yaml:\n  config: open testdata/nonexistent.yaml: no such file or directory\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := espgw(tt.args...)
			if code != tt.code || out != tt.out || errOut != tt.err {
				t.Errorf("espgw %s = %d\nstdout:\n%s\nstderr:\n%s\nwant %d\nstdout:\n%s\nstderr:\n%s",
					strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.out, tt.err)
			}
			if strings.Contains(out+errOut, "SUPERPASSWORD") {
				t.Error("the pre-shared key was printed")
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "espgw.sock")
	cfg := filepath.Join(t.TempDir(), "espgw.yaml")
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(good, []byte("/run/espgw/espgw.sock"), []byte(sock), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	notRunning := "espgw: cannot reach espgw at " + sock + ": is `espgw run` running?\n"
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"status", "--socket", sock}, notRunning},
		{[]string{"status", "-c", cfg}, notRunning}, // the socket comes from the configuration
		{[]string{"reload", "--socket", sock}, notRunning},
		{[]string{"flows", "--json", "--socket", sock}, notRunning},
		{[]string{"up", "megatelecom/api", "--socket", sock}, notRunning},
		{[]string{"down", "megatelecom", "--socket", sock}, notRunning},
		{[]string{"up", "megatelecom/", "--socket", sock}, "espgw: \"megatelecom/\": want NAME or NAME/TUNNEL\n"},
		{[]string{"up"}, "espgw: accepts 1 arg(s), received 0\n"},
		{[]string{"status", "a", "b"}, "espgw: accepts at most 1 arg(s), received 2\n"},
		{[]string{"run", "--log-level", "loud"}, "espgw: --log-level \"loud\": want debug, info, warn or error\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := espgw(tt.args...)
			if code != 1 || out != "" || errOut != tt.err {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, \"\", %q", code, out, errOut, tt.err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := espgw("version")
	if code != 0 || !strings.HasPrefix(out, "espgw ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestManPages: one page per command, from the commands' own help.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := espgw("man", dir); code != 0 {
		t.Fatalf("espgw man = %d\n%s%s", code, out, errOut)
	}
	for _, page := range []string{"espgw.8", "espgw-run.8", "espgw-config-check.8", "espgw-reload.8", "espgw-completion-bash.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(`.nh`)) || !bytes.Contains(b, []byte(`.TH "ESPGW" "8"`)) {
			t.Errorf("%s is not a section 8 man page:\n%.200s", page, b)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "espgw-run.8"))
	if !bytes.Contains(b, []byte("SIGHUP reloads")) {
		t.Errorf("espgw-run.8 lacks the command's help text:\n%s", b)
	}
}
