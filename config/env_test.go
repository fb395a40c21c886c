package config

import (
	"strings"
	"testing"
)

// TestEnvOverrides checks that ESPGW_* variables override the top-level settings, even an
// empty one, and are validated like the file's values, the error naming the variable.
func TestEnvOverrides(t *testing.T) {
	file := "control_socket: /run/file.sock\ndatapath: xfrm\nsave_keys: /var/lib/keys\nmetrics:\n  listen: 127.0.0.1:9814\n" + base
	type settings struct{ socket, datapath, saveKeys, metrics string }
	fromFile := settings{"/run/file.sock", "xfrm", "/var/lib/keys", "127.0.0.1:9814"}
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    settings
		wantErr string // a line of the error
	}{
		{name: "none", yaml: file, want: fromFile},
		{name: "control_socket", yaml: file, env: map[string]string{"ESPGW_CONTROL_SOCKET": "/run/env.sock"},
			want: settings{"/run/env.sock", "xfrm", "/var/lib/keys", "127.0.0.1:9814"}},
		{name: "datapath", yaml: file, env: map[string]string{"ESPGW_DATAPATH": "userspace"},
			want: settings{"/run/file.sock", "userspace", "/var/lib/keys", "127.0.0.1:9814"}},
		{name: "empty turns off", yaml: file, env: map[string]string{"ESPGW_SAVE_KEYS": "", "ESPGW_METRICS_LISTEN": ""},
			want: settings{"/run/file.sock", "xfrm", "", ""}},
		{name: "metrics.listen without metrics in the file", yaml: base,
			env:  map[string]string{"ESPGW_METRICS_LISTEN": "[::1]:9814", "ESPGW_SAVE_KEYS": "/tmp/keys"},
			want: settings{DefaultControlSocket, DefaultDatapath, "/tmp/keys", "[::1]:9814"}},
		{name: "all four", yaml: base, env: map[string]string{"ESPGW_CONTROL_SOCKET": "/run/a.sock", "ESPGW_DATAPATH": "xfrm",
			"ESPGW_SAVE_KEYS": "/k", "ESPGW_METRICS_LISTEN": "0.0.0.0:1"},
			want: settings{"/run/a.sock", "xfrm", "/k", "0.0.0.0:1"}},
		{name: "bad datapath", yaml: file, env: map[string]string{"ESPGW_DATAPATH": "dpdk"},
			wantErr: `datapath: "dpdk" is not a datapath (want auto, xfrm or userspace) (from ESPGW_DATAPATH)`},
		{name: "relative control_socket", yaml: file, env: map[string]string{"ESPGW_CONTROL_SOCKET": "espgw.sock"},
			wantErr: `control_socket: "espgw.sock" is not an absolute path of at most 107 bytes (want e.g. /run/espgw/espgw.sock) (from ESPGW_CONTROL_SOCKET)`},
		{name: "empty control_socket", yaml: file, env: map[string]string{"ESPGW_CONTROL_SOCKET": ""},
			wantErr: `control_socket: "" is not an absolute path of at most 107 bytes (want e.g. /run/espgw/espgw.sock) (from ESPGW_CONTROL_SOCKET)`},
		{name: "relative save_keys", yaml: file, env: map[string]string{"ESPGW_SAVE_KEYS": "keys"},
			wantErr: `save_keys: "keys" is not an absolute directory path (want e.g. /var/lib/espgw/keys, or "" for off) (from ESPGW_SAVE_KEYS)`},
		{name: "bad metrics.listen", yaml: file, env: map[string]string{"ESPGW_METRICS_LISTEN": "9814"},
			wantErr: `metrics.listen: "9814" is not host:port (want e.g. 127.0.0.1:9814, or "" for off) (from ESPGW_METRICS_LISTEN)`},
		{name: "metrics not a mapping in the file", yaml: "metrics: 5\n" + base, env: map[string]string{"ESPGW_METRICS_LISTEN": "127.0.0.1:1"},
			wantErr: `metrics: the number 5 is not a mapping (want keys: listen)`},
		{name: "a bad file value without its variable", yaml: edit(t, "connections:", "datapath: dpdk\nconnections:"),
			env: map[string]string{"ESPGW_SAVE_KEYS": "/k"}, wantErr: `datapath: "dpdk" is not a datapath (want auto, xfrm or userspace)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := parseString(t, tt.yaml)
			if tt.wantErr != "" {
				if err == nil || !hasLine(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want the line %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := settings{cfg.ControlSocket, cfg.Datapath, cfg.SaveKeys, cfg.MetricsListen}
			if got != tt.want {
				t.Errorf("settings = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func hasLine(s, line string) bool {
	for l := range strings.Lines(s) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}
