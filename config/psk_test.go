package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/internal/testutil"
)

func TestLookupPSK(t *testing.T) {
	peer := netip.MustParseAddr("192.0.2.2")
	tests := []struct {
		name, file string
		want       string // key, if no error
		err        string
	}{
		{"seed", "# Format <REMOTE IP ADDR> <PASSWORD>\n192.0.2.2 SUPERPASSWORD\n", "SUPERPASSWORD", ""},
		{"tabs, blanks, CRLF, comments", "  # c\n\n192.0.2.9\tx\r\n  192.0.2.2 \t pass word # not a comment \r\n", "pass word # not a comment", ""},
		{"hex key", "192.0.2.2 0x00ff10\n", "\x00\xff\x10", ""},
		{"fqdn identifiers skipped", "vpn.example.com k1\n192.0.2.2 k2\n", "k2", ""},
		{"mapped address matches", "::ffff:192.0.2.2 k\n", "k", ""},
		{"no line", "192.0.2.3 SECRET\n", "", `no line for 192.0.2.2 (want "192.0.2.2 <key>")`},
		{"empty file", "", "", `no line for 192.0.2.2 (want "192.0.2.2 <key>")`},
		{"identifier only", "192.0.2.2\n", "", `line 1: no key after the identifier (want "<address> <key>")`},
		{"key only", "# x\nSECRETKEY\n", "", `line 2: no key after the identifier (want "<address> <key>")`},
		{"duplicate", "192.0.2.2 SECRET1\n192.0.2.2 SECRET2\n", "", "line 2: second key for 192.0.2.2 (first on line 1)"},
		{"bad hex", "192.0.2.2 0xSECRET\n", "", "line 1: key for 192.0.2.2: starts with 0x but is not an even number of hex digits"},
		{"odd hex", "192.0.2.2 0xabc\n", "", "line 1: key for 192.0.2.2: starts with 0x but is not an even number of hex digits"},
		{"long line", "192.0.2.2 " + strings.Repeat("S", maxPSKLine) + "\n", "", "a line is longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := LookupPSK(strings.NewReader(tt.file), peer)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("LookupPSK = %q, %v; want error %q", key, err, tt.err)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error reveals a key: %v", err)
				}
				return
			}
			if err != nil || string(key) != tt.want {
				t.Fatalf("LookupPSK = %q, %v; want %q", key, err, tt.want)
			}
		})
	}
}

// pskErrors are the shapes of every LookupPSK error once the peer and numbers are masked
// (so 0x reads Nx): nothing from the file but line numbers can appear in them.
var pskErrors = map[string]bool{
	`line N: no key after the identifier (want "<address> <key>")`:                 true,
	`line N: second key for PEER (first on line N)`:                                true,
	`line N: key for PEER: starts with Nx but is not an even number of hex digits`: true,
	`a line is longer than N bytes`:                                                true,
	`no line for PEER (want "PEER <key>")`:                                         true,
}

func FuzzLookupPSK(f *testing.F) {
	f.Add([]byte("# psk.txt\n192.0.2.2 SUPERPASSWORD\n"), "192.0.2.2")
	f.Add([]byte("192.0.2.2 0x0011\n10.0.0.1\tk\n"), "10.0.0.1")
	f.Add([]byte("vpn.example.com key\n::ffff:192.0.2.2 k\r\n"), "192.0.2.2")
	f.Add([]byte("192.0.2.2\n"), "192.0.2.2")
	numbers := regexp.MustCompile(`[0-9]+`)
	f.Fuzz(func(t *testing.T, file []byte, peerText string) {
		peer, err := netip.ParseAddr(peerText)
		if err != nil {
			return
		}
		key, err := LookupPSK(strings.NewReader(string(file)), peer)
		if err != nil {
			masked := numbers.ReplaceAllString(strings.ReplaceAll(err.Error(), peer.String(), "PEER"), "N")
			if !pskErrors[masked] {
				t.Fatalf("unexpected error shape (may leak file content): %q", err)
			}
			return
		}
		if len(key) == 0 {
			t.Fatal("LookupPSK returned an empty key without error")
		}
		// A second line for the peer must be refused, not shadow the first.
		dup := string(file) + "\n" + peer.String() + " again\n"
		if _, err := LookupPSK(strings.NewReader(dup), peer); err == nil {
			t.Fatal("a second key line for the peer was accepted")
		}
	})
}

// A psk_file that group or others can access, that is not a regular file or that another
// user owns is refused, naming the file and never the key.
func TestPSKFilePermissions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		setup func(path string) error
		err   string // "" = accepted
	}{
		{"0600", func(p string) error { return os.Chmod(p, 0o600) }, ""},
		{"0400", func(p string) error { return os.Chmod(p, 0o400) }, ""},
		{"world-readable", func(p string) error { return os.Chmod(p, 0o644) }, "mode 0644 gives group or others access, want 0600 or 0400 (chmod 600)"},
		{"group-readable", func(p string) error { return os.Chmod(p, 0o640) }, "mode 0640 gives group or others access"},
		{"other-writable", func(p string) error { return os.Chmod(p, 0o602) }, "mode 0602 gives group or others access"},
		{"other owner", func(p string) error {
			if os.Geteuid() != 0 {
				return errSkip
			}
			return os.Chown(p, 4242, 4242)
		}, "owner uid 4242, want 0 (the daemon's user) or 0"},
		{"directory", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Mkdir(p, 0o700)
		}, "file type d---------, want a regular file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("psk%d.txt", i))
			if err := os.WriteFile(path, []byte("192.0.2.2 SUPERPASSWORD\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := tt.setup(path); errors.Is(err, errSkip) {
				testutil.Skipf(t, "needs root: chown to another user")
			} else if err != nil {
				t.Fatal(err)
			}
			_, err := parseString(t, edit(t, `psk: "SUPERPASSWORD"`, "psk_file: "+path))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("Parse: %v, want success", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("Parse error %v, want one containing %q", err, tt.err)
			case err != nil && strings.Contains(err.Error(), "SUPERPASSWORD"):
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

var errSkip = errors.New("skip")

// No fmt verb or encoding shows a Secret, alone or inside a Connection.
func TestSecretRedacted(t *testing.T) {
	c := model.Connection{Name: "c", PSK: model.Secret("SUPERPASSWORD")}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%c", "%U"} {
		outs = append(outs, fmt.Sprintf(verb, c.PSK), fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c))
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "conn", c, "psk", c.PSK)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "conn", c, "psk", c.PSK)
	outs = append(outs, string(j), buf.String())
	for _, o := range outs {
		if strings.Contains(o, "SUPERPASSWORD") || strings.Contains(o, "53555045") || strings.Contains(o, "U1VQRVJQQVNTV09SRA") {
			t.Errorf("key visible: %s", o)
		}
	}
}
