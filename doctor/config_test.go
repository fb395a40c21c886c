package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pskConfig = `connections:
  bank:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    psk_file: psk.txt
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels:
      api: {local_subnet: 10.10.1.1/32, remote_subnet: 10.20.0.0/24, proposals: [3des-sha1-modp1024]}
  telco:
    local_address: 192.0.2.1
    remote_address: 192.0.2.3
    psk: "TOPSECRET"
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels:
      api: {local_subnet: 10.10.1.1/32, remote_subnet: 10.30.0.0/24, proposals: [3des-sha1-modp1024]}
`

// TestCheckPSK writes real files with real modes: a loose psk_file fails (and so does the
// configuration), an inline psk fails in a world-readable file, warns in a group-readable
// one, and passes in a private one; the key itself is never printed.
func TestCheckPSK(t *testing.T) {
	tests := []struct {
		name              string
		confMode, pskMode os.FileMode
		want              []string // level id subject, per psk check
	}{
		{"loose psk_file, world-readable config", 0o644, 0o644, []string{
			"FAIL psk connections.bank.psk_file", "FAIL psk connections.telco.psk"}},
		{"private files", 0o600, 0o600, []string{
			"OK psk connections.bank.psk_file", "OK psk connections.telco.psk"}},
		{"group-readable config", 0o640, 0o400, []string{
			"OK psk connections.bank.psk_file", "WARN psk connections.telco.psk"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "espgw.yaml")
			if err := os.WriteFile(conf, []byte(pskConfig), tt.confMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "psk.txt"), []byte("192.0.2.2 SECRETKEY\n"), tt.pskMode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(conf, tt.confMode) // past the umask
			os.Chmod(filepath.Join(dir, "psk.txt"), tt.pskMode)
			r := &report{}
			checkPSK(r, conf)
			var got []string
			for _, c := range r.checks {
				got = append(got, string(c.Level)+" "+c.ID+" "+c.Subject)
				if strings.Contains(c.Message+c.Fix, "SECRET") {
					t.Errorf("a key was printed: %+v", c)
				}
				if c.Level != OK && c.Fix == "" {
					t.Errorf("%s without a fix: %+v", c.Level, c)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("checks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// The configuration fails with a loose psk_file, yet loads for the other checks.
			cfgReport := &report{}
			cfg := checkConfig(cfgReport, conf)
			failed := cfgReport.checks[0].Level == Fail
			if cfg == nil || failed != (tt.pskMode&0o077 != 0) {
				t.Errorf("config loaded = %v, failed = %v with psk_file mode %#o: want it loaded, failed exactly when loose; checks %+v",
					cfg != nil, failed, tt.pskMode, cfgReport.checks)
			}
		})
	}
}
