package racoon

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/model"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.yaml")

// pskFile writes a psk.txt with keys for the peers of the test files, mode 0600 as
// config.Load demands, and returns its path.
func pskFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "psk.txt")
	keys := "192.0.2.2 SUPERPASSWORD\n198.51.100.7 key-2\n198.51.100.20 key-3\n"
	if err := os.WriteFile(p, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImport converts the seed's racoon setup and variants of it, compares the YAML with
// testdata/golden (notes included, with file:line) and requires that espgw's config
// loader accepts it.
func TestImport(t *testing.T) {
	tests := []struct {
		name, conf, setkey, iface string
		notes                     []string // substrings of notes that must be there
		conns, tunnels            int
	}{
		{name: "seed", conf: "seed/racoon.conf", setkey: "seed/ipsec-tools.conf", iface: "eth1", conns: 1, tunnels: 1,
			notes: []string{
				"seed/racoon.conf:9: log debug: not mapped",
				"seed/racoon.conf:45: compression_algorithm deflate: not mapped: espgw has no IPComp",
				"seed/ipsec-tools.conf:5: flush: mapped differently",
			}},
		{name: "seed-without-setkey", conf: "seed/racoon.conf", conns: 1, tunnels: 1,
			notes: []string{"seed/racoon.conf:20: remote 192.0.2.2 { ... }: mapped differently: 10.10.1.1/32 is a tunnel's own address"}},
		{name: "anonymous", conf: "variants/anonymous.conf", setkey: "variants/anonymous.setkey", conns: 2, tunnels: 2,
			notes: []string{
				"variants/anonymous.conf:4: remote anonymous { ... }: mapped differently: DPD: dpd_retry 10s × dpd_maxfail 3 became dpd_timeout 30s",
				"variants/anonymous.setkey:7: add (a manually keyed SA, not shown): not mapped: manual keying",
				"variants/anonymous.setkey:8: spdadd 10.10.9.0/24 10.40.0.0/24 any -P out ipsec ah/transport//require: not mapped",
				"variants/anonymous.setkey:9: spdadd 10.10.9.0/24 10.50.0.0/24 any -P out none: not mapped",
			}},
		{name: "anonymous-without-setkey", conf: "variants/anonymous.conf", conns: 0,
			notes: []string{"variants/anonymous.conf:4: remote anonymous { ... }: not mapped: espgw needs each peer's address"}},
		{name: "sainfos", conf: "variants/sainfos.conf", conns: 1, tunnels: 3,
			notes: []string{
				"variants/sainfos.conf:8: remote 192.0.2.2 [500] { ... }: mapped differently: passive on",
				"variants/sainfos.conf:28: encryption_algorithm aes 128, des: not mapped: encryption des",
				"variants/sainfos.conf:29: authentication_algorithm hmac_sha1, hmac_md5: not mapped: hmac_md5",
			}},
		{name: "aggressive", conf: "variants/aggressive.conf", conns: 1, tunnels: 1,
			notes: []string{
				"variants/aggressive.conf:4: timer { ... }: not mapped",
				"variants/aggressive.conf:6: exchange_mode aggressive, main: mapped differently",
				"variants/aggressive.conf:19: proposal { ... }: mapped differently: espgw has one ISAKMP SA lifetime per connection: 12h (the shortest) instead of 24h",
				"variants/aggressive.conf:27: encryption_algorithm blowfish: not mapped",
				"variants/aggressive.conf:29: authentication_method rsasig: not mapped",
			}},
		{name: "include", conf: "variants/include/racoon.conf", conns: 1, tunnels: 1,
			notes: []string{"variants/include/racoon.d/sainfo.conf:6: compression_algorithm deflate: not mapped"}},
		{name: "whitespace", conf: "variants/whitespace.conf", iface: "eth1", conns: 1, tunnels: 1,
			notes: []string{"variants/whitespace.conf:11: compression_algorithm deflate: not mapped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir("testdata")
			psk := pskFile(t)
			var setkey *Setkey
			if tt.setkey != "" {
				src, err := os.ReadFile(tt.setkey)
				if err != nil {
					t.Fatal(err)
				}
				if setkey, err = ParseSetkey(tt.setkey, src); err != nil {
					t.Fatal(err)
				}
			}
			stmts, err := ParseFile(tt.conf, os.ReadFile, filepath.Glob)
			if err != nil {
				t.Fatal(err)
			}
			res := Convert(Input{Racoon: stmts, Setkey: setkey, PSKFile: psk, ServiceInterface: tt.iface})
			var buf bytes.Buffer
			if err := res.WriteYAML(&buf, tt.conf); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.notes {
				found := false
				for _, n := range res.Notes {
					found = found || strings.Contains(n.String(), want)
				}
				if !found {
					t.Errorf("no note %q in\n%s", want, buf.String())
				}
			}
			if strings.Contains(buf.String(), "not-a-key-but-secret") {
				t.Errorf("a key of setkey's add statement shows in the output:\n%s", buf.String())
			}
			golden := filepath.Join("golden", tt.name+".yaml")
			got := strings.ReplaceAll(buf.String(), psk, "PSKFILE")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("YAML differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
			if len(res.Connections) != tt.conns {
				t.Fatalf("%d connections, want %d", len(res.Connections), tt.conns)
			}
			if tt.conns == 0 {
				return
			}
			cfg, err := config.Parse(&buf)
			if err != nil {
				t.Fatalf("config check of the import:\n%v\n%s", err, got)
			}
			n := 0
			for _, c := range cfg.Connections {
				n += len(c.Tunnels)
			}
			if n != tt.tunnels {
				t.Errorf("%d tunnels, want %d", n, tt.tunnels)
			}
		})
	}
}

// TestImportSeedConfig checks the seed's imported connection field by field.
func TestImportSeedConfig(t *testing.T) {
	t.Chdir("testdata")
	psk := pskFile(t)
	res, err := Import(Files{RacoonConf: "seed/racoon.conf", Setkey: "seed/ipsec-tools.conf", PSK: psk, Name: "megatelecom", ServiceInterface: "eth1"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteYAML(&buf, "seed/racoon.conf"); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections[0]
	tn := c.Tunnels[0]
	got := []string{c.Name, c.LocalAddress.String(), c.RemoteAddress.String(), string(c.PSK), c.ServiceAddress.Address.String(),
		string(c.IKE.Mode), c.IKE.Proposals[0].String(), c.IKE.Lifetime.String(), string(c.IKE.NATTraversal),
		model.Prefixes(tn.LocalSubnets), model.Prefixes(tn.RemoteSubnets), tn.Proposals[0].String(), tn.Lifetime.String()}
	want := []string{"megatelecom", "192.0.2.1", "192.0.2.2", "SUPERPASSWORD", "10.10.1.1/32",
		"main", "3des-sha1-modp1024", "24h0m0s", "off",
		"10.10.1.1/32", "10.20.0.0/24", "3des-sha1-modp1024", "8h0m0s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("imported seed:\n got %q\nwant %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"remote 192.0.2.2 {\n exchange_mode main;\n", "x.conf:1: '{' is never closed"},
		{"listen { isakmp 192.0.2.1 }", `x.conf:1: "isakmp 192.0.2.1" has no ';' before '}'`},
		{"}\n", "x.conf:1: '}' without a matching '{'"},
		{"path pre_shared_key \"/etc/psk.txt;\n", "x.conf: line 1: quoted string not closed"},
		{"log debug", `x.conf:1: "log debug" has no ';' at the end`},
		{"{ log debug; }", "x.conf:1: '{' without a directive before it"},
	}
	for _, tt := range tests {
		_, err := Parse("x.conf", []byte(tt.src))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v, want %q", tt.src, err, tt.want)
		}
	}
}

func TestIncludeLoop(t *testing.T) {
	files := map[string]string{"/a.conf": `include "b.conf";`, "/b.conf": `include "a.conf";`}
	read := func(n string) ([]byte, error) { return []byte(files[n]), nil }
	glob := func(p string) ([]string, error) { return []string{p}, nil }
	_, err := ParseFile("/a.conf", read, glob)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("include loop: %v, want an error about nesting", err)
	}
}

func TestSetkeyPolicy(t *testing.T) {
	src := "spdadd -4 10.0.0.0/24[80] 10.1.0.5 tcp -P out priority 10 ipsec esp/tunnel/192.0.2.1-192.0.2.2/unique:7;\n" +
		"spdadd 10.0.0.0/24 10.1.0.0/24 any -P out ipsec esp/transport//require;\n"
	sk, err := ParseSetkey("ipsec-tools.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(sk.Policies) != 1 || len(sk.Skipped) != 1 {
		t.Fatalf("%d policies, %d skipped; want 1, 1", len(sk.Policies), len(sk.Skipped))
	}
	p := sk.Policies[0]
	if p.Src.String() != "10.0.0.0/24" || p.SrcPort != 80 || p.Dst.String() != "10.1.0.5/32" || p.Proto != 6 ||
		p.TunnelSrc.String() != "192.0.2.1" || p.TunnelDst.String() != "192.0.2.2" || p.Level != "unique" {
		t.Errorf("policy %+v", p)
	}
	if want := "ipsec-tools.conf:2: spdadd 10.0.0.0/24 10.1.0.0/24 any -P out ipsec esp/transport//require: not mapped: request \"esp/transport//require\": mode transport; espgw supports only tunnel mode"; sk.Skipped[0].String() != want {
		t.Errorf("skipped: %s\nwant %s", sk.Skipped[0], want)
	}
}
