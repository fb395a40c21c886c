package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryCommandsFlags merges each command's flags with the global ones, as running it does:
// a clashing shorthand (ping's -c against --config's) panics there.
func TestEveryCommandsFlags(t *testing.T) {
	root := newRoot(nil, nil)
	for _, c := range root.Commands() {
		t.Run(c.Name(), func(t *testing.T) {
			code, out, errOut := espgw(c.Name(), "--help")
			if code != 0 || !strings.Contains(out, "Usage:") {
				t.Errorf("espgw %s --help = %d\n%s%s", c.Name(), code, out, errOut)
			}
		})
	}
	if code, _, errOut := espgw("--log-format", "xml", "run", "-c", "testdata/good.yaml"); code != 1 || !strings.Contains(errOut, `--log-format "xml": want text or json`) {
		t.Errorf("espgw --log-format xml run = %d, %s; want 1 naming the format", code, errOut)
	}
	if code, _, errOut := espgw("ping", "api", "-c", "0"); code != 1 || !strings.Contains(errOut, "-c 0: want at least 1 echo request") {
		t.Errorf("espgw ping api -c 0 = %d, %s; want 1 naming -c", code, errOut)
	}
}

// TestLogFormatJSON: --log-format json writes one JSON object a line with the message and the
// structured fields.
func TestLogFormatJSON(t *testing.T) {
	var b strings.Builder
	g := &globals{logLevel: "info", logFormat: "json", stderr: &b}
	log, err := g.logger()
	if err != nil {
		t.Fatal(err)
	}
	log.Info("ISAKMP-SA established 192.0.2.1[500]-192.0.2.2[500] spi:0102030405060708:1112131415161718", "conn", "megatelecom")
	var rec map[string]any
	if err := json.Unmarshal([]byte(b.String()), &rec); err != nil || rec["msg"] != "ISAKMP-SA established 192.0.2.1[500]-192.0.2.2[500] spi:0102030405060708:1112131415161718" ||
		rec["conn"] != "megatelecom" || rec["level"] != "INFO" {
		t.Errorf("--log-format json wrote %q (%v), want one JSON object with msg, level and conn", b.String(), err)
	}
}

// TestSocketFromEnv: $ESPGW_CONTROL_SOCKET is the socket the commands talk to without
// --socket, with or without -c (whose control_socket it overrides, as for the daemon).
func TestSocketFromEnv(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "env.sock")
	t.Setenv("ESPGW_CONTROL_SOCKET", sock)
	for _, args := range [][]string{{"status"}, {"-c", "testdata/good.yaml", "status"}} {
		if code, _, errOut := espgw(args...); code != 1 || !strings.Contains(errOut, sock) {
			t.Errorf("espgw %s = %d, %s; want 1 naming %s", strings.Join(args, " "), code, errOut, sock)
		}
	}
	other := filepath.Join(t.TempDir(), "flag.sock")
	if code, _, errOut := espgw("--socket", other, "status"); code != 1 || !strings.Contains(errOut, other) {
		t.Errorf("espgw --socket %s status = %d, %s; want 1 naming it", other, code, errOut)
	}
}
