package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/ike/proposal"
)

// base is a minimal valid configuration; cases derive from it by text replacement.
const base = `
connections:
  mega:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    psk: "SUPERPASSWORD"
    ike:
      proposals: [3des-sha1-modp1024]
    tunnels:
      api:
        local_subnet: 10.10.1.1/32
        remote_subnet: 10.20.0.0/24
        proposals: [3des-sha1-modp1024]
`

// edit applies old, new replacement pairs to base; each old must occur.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := base
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("edit: %q not in base", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

func parseString(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	return Parse(strings.NewReader(yaml))
}

var (
	p3DES    = proposal.IKE{Encryption: proposal.Enc3DES, Hash: proposal.HashSHA1, Group: 2}
	esp3DES  = proposal.ESP{Encryption: proposal.Enc3DES, Integrity: proposal.HashSHA1, Group: 2}
	espAES   = proposal.ESP{Encryption: proposal.EncAESCBC, KeyBits: 128, Integrity: proposal.HashSHA1}
	addr1    = netip.MustParseAddr("192.0.2.1")
	addr2    = netip.MustParseAddr("192.0.2.2")
	seedConn = model.Connection{
		Name: "megatelecom", LocalAddress: addr1, RemoteAddress: addr2,
		LocalID: model.Identity{Kind: model.IDAddr, Addr: addr1}, RemoteID: model.Identity{Kind: model.IDAddr, Addr: addr2},
		PSK: model.Secret("SUPERPASSWORD"),
		IKE: model.IKE{Version: 1, Mode: model.ModeMain, Proposals: []proposal.IKE{p3DES}, Lifetime: 24 * time.Hour,
			NATTraversal: model.NATTAuto, DPDTimeout: 30 * time.Second, QuickModes: model.DefaultQuickModes, CookieThreshold: model.DefaultCookieThreshold, FragmentSize: model.DefaultFragmentSize},
		ServiceAddress: &model.ServiceAddress{Address: netip.MustParsePrefix("10.10.1.1/32"), Interface: "eth1"},
		Tunnels: []model.Tunnel{{
			Name: "api", LocalSubnets: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/32")},
			RemoteSubnets: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}, Proposals: []proposal.ESP{esp3DES},
			Lifetime: 8 * time.Hour, ReplayWindow: 64, Start: model.StartOnDemand,
		}},
	}
)

func TestLoadSeed(t *testing.T) {
	cfg, err := Load("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{ControlSocket: "/run/espgw/espgw.sock", Datapath: "auto", EBPF: DefaultEBPF, Connections: []model.Connection{seedConn}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(seed) =\n%+v\nwant\n%+v", cfg, want)
	}
}

// TestDefaults checks every default against the minimal configuration.
func TestDefaults(t *testing.T) {
	cfg, err := parseString(t, base)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		ControlSocket: DefaultControlSocket, Datapath: "auto", SaveKeys: "", MetricsListen: "",
		EBPF: EBPF{Enabled: true, WhenSADown: SADownDrop, MSSClamp: true, PathMTU: 1500, TopFlows: 10,
			DropUnknownSPI: true, DropNonPeerIKE: true},
		Connections: []model.Connection{{
			Name: "mega", LocalAddress: addr1, RemoteAddress: addr2,
			LocalID:  model.Identity{Kind: model.IDAddr, Addr: addr1}, // local_address
			RemoteID: model.Identity{Kind: model.IDAddr, Addr: addr2}, // remote_address
			PSK:      model.Secret("SUPERPASSWORD"),
			IKE: model.IKE{Version: 1, Mode: model.ModeMain, Proposals: []proposal.IKE{p3DES}, Lifetime: 24 * time.Hour,
				NATTraversal: model.NATTAuto, DPDDelay: 0, DPDTimeout: 30 * time.Second, QuickModes: 1, CookieThreshold: model.DefaultCookieThreshold, FragmentSize: model.DefaultFragmentSize},
			Tunnels: []model.Tunnel{{
				Name: "api", LocalSubnets: []netip.Prefix{netip.MustParsePrefix("10.10.1.1/32")},
				RemoteSubnets: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}, Protocol: 0,
				Proposals: []proposal.ESP{esp3DES}, Lifetime: 8 * time.Hour, LifeKilobytes: 0,
				ReplayWindow: 64, Start: model.StartOnDemand,
			}},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{{
		name: "fqdn ids, aggressive, dpd, nat-t off",
		yaml: edit(t, "    ike:\n", "    local_id: vpn.example.com\n    remote_id: peer@example.com\n    ike:\n      mode: aggressive\n      nat_traversal: off\n      dpd_delay: 10s\n      dpd_timeout: 5s\n      lifetime: 1h30m\n      quick_modes: 3\n"),
		check: func(t *testing.T, c *Config) {
			got := c.Connections[0]
			if got.LocalID != (model.Identity{Kind: model.IDFQDN, Name: "vpn.example.com"}) || got.RemoteID != (model.Identity{Kind: model.IDUserFQDN, Name: "peer@example.com"}) {
				t.Errorf("ids = %+v %+v", got.LocalID, got.RemoteID)
			}
			if got.IKE.Mode != model.ModeAggressive || got.IKE.NATTraversal != model.NATTOff || got.IKE.DPDDelay != 10*time.Second ||
				got.IKE.DPDTimeout != 5*time.Second || got.IKE.Lifetime != 90*time.Minute || got.IKE.QuickModes != 3 {
				t.Errorf("ike = %+v", got.IKE)
			}
		},
	}, {
		name: "keyid, force, swanctl comma list in one string",
		yaml: edit(t, "    ike:\n      proposals: [3des-sha1-modp1024]\n",
			"    remote_id: \"keyid:peer 1\"\n    ike:\n      nat_traversal: force\n      proposals: \"aes256-sha256-modp2048, 3des-sha1-modp1024\"\n"),
		check: func(t *testing.T, c *Config) {
			got := c.Connections[0]
			if got.RemoteID != (model.Identity{Kind: model.IDKeyID, Name: "peer 1"}) {
				t.Errorf("remote id = %+v", got.RemoteID)
			}
			want := []proposal.IKE{{Encryption: proposal.EncAESCBC, KeyBits: 256, Hash: proposal.HashSHA256, Group: 14}, p3DES}
			if !reflect.DeepEqual(got.IKE.Proposals, want) || got.IKE.NATTraversal != model.NATTForce {
				t.Errorf("ike = %+v", got.IKE)
			}
		},
	}, {
		name: "tunnel options, two disjoint tunnels, names keep their case, setting keys do not matter",
		yaml: edit(t, "  mega:", "  MegaTelecom:", "      api:", "      API:", "        proposals: [3des-sha1-modp1024]\n", `        Proposals: [aes128-sha1]
        protocol: tcp
        remote_port: 443
        lifetime: 1h
        lifetime_kilobytes: 4608000
        replay_window: 0
        start: always
      db:
        local_subnet: 10.10.1.1/32
        remote_subnet: 10.20.0.0/24
        protocol: 17
        proposals: aes128-sha1
        start: manual
`),
		check: func(t *testing.T, c *Config) {
			got := c.Connections[0]
			if got.Name != "MegaTelecom" || len(got.Tunnels) != 2 {
				t.Fatalf("connection %q with %d tunnels", got.Name, len(got.Tunnels))
			}
			api, db := got.Tunnels[0], got.Tunnels[1]
			if api.Name != "API" || api.Protocol != 6 || api.RemotePort != 443 || api.LocalPort != 0 || api.Lifetime != time.Hour ||
				api.LifeKilobytes != 4608000 || api.ReplayWindow != 0 || api.Start != model.StartAlways ||
				!reflect.DeepEqual(api.Proposals, []proposal.ESP{espAES}) {
				t.Errorf("api = %+v", api)
			}
			if db.Name != "db" || db.Protocol != 17 || db.Start != model.StartManual {
				t.Errorf("db = %+v", db)
			}
		},
	}, {
		name: "service address, metrics, save_keys, datapath",
		yaml: "datapath: userspace\nsave_keys: /var/lib/espgw/keys\nmetrics: {listen: \"127.0.0.1:9814\"}\ncontrol_socket: /tmp/x.sock\n" +
			edit(t, "    ike:\n", "    service_address: {address: 10.10.1.1/32, interface: eth1}\n    ike:\n"),
		check: func(t *testing.T, c *Config) {
			if c.Datapath != "userspace" || c.SaveKeys != "/var/lib/espgw/keys" || c.MetricsListen != "127.0.0.1:9814" || c.ControlSocket != "/tmp/x.sock" {
				t.Errorf("config = %+v", c)
			}
			sa := c.Connections[0].ServiceAddress
			if sa == nil || sa.Address != netip.MustParsePrefix("10.10.1.1/32") || sa.Interface != "eth1" {
				t.Errorf("service address = %+v", sa)
			}
		},
	}, {
		name: "ebpf section",
		yaml: "ebpf:\n  enabled: true\n  wan_interface: eth0\n  when_sa_down: pass\n  mss_clamp: false\n  path_mtu: 9000\n  top_flows: 0\n  xdp: {drop_unknown_spi: false}\n" + base,
		check: func(t *testing.T, c *Config) {
			want := EBPF{Enabled: true, WANInterface: "eth0", WhenSADown: SADownPass, PathMTU: 9000,
				DropUnknownSPI: false, DropNonPeerIKE: true}
			if c.EBPF != want {
				t.Errorf("ebpf = %+v, want %+v", c.EBPF, want)
			}
		},
	}, {
		name: "ebpf off skips the checks of its settings",
		yaml: "ebpf: {enabled: false, path_mtu: 100}\n" + base,
		check: func(t *testing.T, c *Config) {
			if c.EBPF.Enabled || c.EBPF.PathMTU != 100 {
				t.Errorf("ebpf = %+v", c.EBPF)
			}
		},
	}, {
		name: "IKEv2: proposals in IKEv2 syntax, mode main allowed",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:",
			"      version: 2\n      mode: main\n      proposals: [aes256-sha256-modp2048, aes128gcm16-prfsha256-ecp256]\n    tunnels:"),
		check: func(t *testing.T, c *Config) {
			ike := c.Connections[0].IKE
			want := "aes256-sha256-prfsha256-modp2048, aes128gcm16-prfsha256-ecp256"
			if ike.Version != 2 || len(ike.Proposals) != 0 || proposal.FormatIKEv2(ike.V2Proposals) != want {
				t.Errorf("ike = %+v, want version 2 with V2Proposals %s", ike, want)
			}
		},
	}, {
		name: "IKEv2: a tunnel's proposals may name several PFS groups",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:",
			"        proposals: [3des-sha1-modp1024]\n", "        proposals: [aes256gcm16-ecp256, aes256gcm16-modp2048, aes256gcm16]\n"),
		check: func(t *testing.T, c *Config) {
			if got := proposal.FormatESP(c.Connections[0].Tunnels[0].Proposals); got != "aes256gcm16-ecp256, aes256gcm16-modp2048, aes256gcm16" {
				t.Errorf("tunnel proposals %s", got)
			}
		},
	}, {
		name: "IKEv2 without a mode, version 1 explicit elsewhere",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:") + `  alpha:
    local_address: 192.0.2.1
    remote_address: 192.0.2.3
    psk: other
    ike: {version: 1, proposals: [aes128-sha1-modp2048]}
    tunnels: {t: {local_subnet: 10.10.2.0/24, remote_subnet: 10.30.0.0/16, proposals: [aes128-sha1]}}
`,
		check: func(t *testing.T, c *Config) {
			alpha, mega := c.Connections[0].IKE, c.Connections[1].IKE
			if alpha.Version != 1 || len(alpha.Proposals) != 1 || len(alpha.V2Proposals) != 0 {
				t.Errorf("alpha ike = %+v", alpha)
			}
			if mega.Version != 2 || mega.Mode != model.ModeMain || len(mega.V2Proposals) != 1 {
				t.Errorf("mega ike = %+v", mega)
			}
		},
	}, {
		name: "IKEv2: several subnets per side, as a YAML list or comma-separated",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:",
			"local_subnet: 10.10.1.1/32", "local_subnet: [10.10.1.1/32, 10.10.3.0/24]",
			"remote_subnet: 10.20.0.0/24", "remote_subnet: \"10.20.0.0/24, 10.21.0.0/24,10.22.0.0/16\""),
		check: func(t *testing.T, c *Config) {
			tn := c.Connections[0].Tunnels[0]
			if got := model.Prefixes(tn.LocalSubnets) + " <-> " + model.Prefixes(tn.RemoteSubnets); got != "10.10.1.1/32,10.10.3.0/24 <-> 10.20.0.0/24,10.21.0.0/24,10.22.0.0/16" {
				t.Errorf("tunnel subnets %s", got)
			}
		},
	}, {
		name: "two connections sorted by name",
		yaml: base + `  alpha:
    local_address: 192.0.2.1
    remote_address: 192.0.2.3
    psk: other
    ike: {proposals: [aes128-sha1-modp2048]}
    tunnels: {t: {local_subnet: 10.10.2.0/24, remote_subnet: 10.30.0.0/16, proposals: [aes128-sha1]}}
`,
		check: func(t *testing.T, c *Config) {
			if len(c.Connections) != 2 || c.Connections[0].Name != "alpha" || c.Connections[1].Name != "mega" {
				t.Errorf("connections = %+v", c.Connections)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseString(t, tt.yaml)
			if err != nil {
				t.Fatalf("Parse:\n%v\nyaml:\n%s", err, tt.yaml)
			}
			tt.check(t, c)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	dir := t.TempDir()
	pskNoPeer := filepath.Join(dir, "psk-other.txt")
	if err := os.WriteFile(pskNoPeer, []byte("# peers\n192.0.2.9 SUPERPASSWORD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")
	const (
		conn   = "connections.mega."
		tunnel = "connections.mega.tunnels.api."
	)
	tests := []struct {
		name string
		yaml string
		want []string // every error line, in order
	}{{
		name: "typo in key",
		yaml: edit(t, "remote_address:", "remote_adress:"),
		want: []string{
			conn + "remote_address: is missing (want an IPv4 address)",
			conn + "remote_adress: unknown key (did you mean remote_address?)",
		},
	}, {
		name: "unknown top-level key without a near match",
		yaml: "fancy: 1\n" + base,
		want: []string{"fancy: unknown key (want one of: control_socket, datapath, save_keys, metrics, ebpf, connections)"},
	}, {
		name: "prefix length out of range",
		yaml: edit(t, "10.10.1.1/32", "10.10.1.1/33"),
		want: []string{tunnel + `local_subnet: "10.10.1.1/33" is not an IPv4 prefix (want e.g. 10.10.1.0/24)`},
	}, {
		name: "several subnets: the bad one named by its index",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:", "remote_subnet: 10.20.0.0/24", "remote_subnet: 10.20.0.0/24,10.21.0.0/33"),
		want: []string{tunnel + `remote_subnet[1]: "10.21.0.0/33" is not an IPv4 prefix (want e.g. 10.10.1.0/24)`},
	}, {
		name: "several subnets: host bits, IPv6, overlap",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:", "remote_subnet: 10.20.0.0/24", "remote_subnet: [10.20.0.0/24, 10.21.0.1/24, 2001:db8::/64, 10.20.0.128/25]"),
		want: []string{
			tunnel + "remote_subnet[1]: 10.21.0.1/24 has host bits set (want 10.21.0.0/24)",
			tunnel + "remote_subnet[2]: 2001:db8::/64 is IPv6 (want an IPv4 prefix: IPv4 only for now)",
			tunnel + "remote_subnet[3]: 10.20.0.128/25 overlaps remote_subnet[0] 10.20.0.0/24 (want disjoint subnets)",
		},
	}, {
		name: "IKEv1: one subnet per side",
		yaml: edit(t, "local_subnet: 10.10.1.1/32", "local_subnet: 10.10.1.1/32,10.10.3.0/24"),
		want: []string{tunnel + "local_subnet: 10.10.1.1/32,10.10.3.0/24 lists 2 subnets, but an IKEv1 quick mode carries one subnet per side " +
			"(want one, write one tunnel per pair, or ike.version: 2)"},
	}, {
		name: "host bits set",
		yaml: edit(t, "10.20.0.0/24", "10.20.0.1/24"),
		want: []string{tunnel + "remote_subnet: 10.20.0.1/24 has host bits set (want 10.20.0.0/24)"},
	}, {
		name: "IPv6",
		yaml: edit(t, "local_address: 192.0.2.1", "local_address: 2001:db8::1", "10.20.0.0/24", "2001:db8::/64"),
		want: []string{
			conn + "local_address: 2001:db8::1 is IPv6 (want an IPv4 address: IPv4 only for now)",
			tunnel + "remote_subnet: 2001:db8::/64 is IPv6 (want an IPv4 prefix: IPv4 only for now)",
		},
	}, {
		name: "not an address",
		yaml: edit(t, "192.0.2.2", "192.0.2"),
		want: []string{conn + `remote_address: "192.0.2" is not an IPv4 address (want e.g. 192.0.2.1)`},
	}, {
		name: "same local and remote address",
		yaml: edit(t, "192.0.2.2", "192.0.2.1"),
		want: []string{conn + "remote_address: 192.0.2.1 is also the local_address (want the peer's address)"},
	}, {
		name: "missing psk",
		yaml: edit(t, "    psk: \"SUPERPASSWORD\"\n", ""),
		want: []string{conn + `psk: is missing (want psk: "<key>" or psk_file: <path>)`},
	}, {
		name: "psk not a string",
		yaml: edit(t, `"SUPERPASSWORD"`, "0123456"),
		want: []string{conn + "psk: is not a string (want the key in quotes)"},
	}, {
		name: "psk and psk_file",
		yaml: edit(t, "    psk:", "    psk_file: "+pskNoPeer+"\n    psk:"),
		want: []string{conn + "psk_file: psk and psk_file are both set (want one of them)"},
	}, {
		name: "psk_file unreadable",
		yaml: edit(t, `    psk: "SUPERPASSWORD"`, "    psk_file: "+missing),
		want: []string{conn + "psk_file: cannot read the key file: open " + missing + ": no such file or directory"},
	}, {
		name: "psk_file without a line for the peer",
		yaml: edit(t, `    psk: "SUPERPASSWORD"`, "    psk_file: "+pskNoPeer),
		want: []string{conn + `psk_file: "` + pskNoPeer + `": no line for 192.0.2.2 (want "192.0.2.2 <key>")`},
	}, {
		name: "bad identities",
		yaml: edit(t, "    ike:\n", "    local_id: vpn..example.com\n    remote_id: \"@example.com\"\n    ike:\n"),
		want: []string{
			conn + `local_id: "vpn..example.com" has the bad label "" (want a host name such as vpn.example.com)`,
			conn + `remote_id: "@example.com" has nothing before the @ (want user@example.com)`,
		},
	}, {
		name: "bad enums",
		yaml: "datapath: kernel\n" + edit(t,
			"      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [3des-sha1-modp1024]\n      mode: aggresive\n      nat_traversal: maybe\n    tunnels:",
			"        proposals: [3des-sha1-modp1024]\n", "        proposals: [3des-sha1-modp1024]\n        start: sometimes\n        protocol: foo\n"),
		want: []string{
			conn + `ike.mode: "aggresive" is not a phase-1 mode (want main or aggressive)`,
			conn + `ike.nat_traversal: "maybe" is not a NAT traversal policy (want auto, force or off)`,
			tunnel + `protocol: "foo" is not a protocol (want any, tcp, udp, icmp or an IP protocol number 0-255)`,
			tunnel + `start: "sometimes" is not a start action (want on-demand, always or manual)`,
			`datapath: "kernel" is not a datapath (want auto, xfrm or userspace)`,
		},
	}, {
		name: "IKE version out of range",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 3\n      proposals: [3des-sha1-modp1024]\n    tunnels:"),
		want: []string{conn + "ike.version: 3 (want 1 or 2)"},
	}, {
		name: "IKE version not a number",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: ikev2\n      proposals: [3des-sha1-modp1024]\n    tunnels:"),
		want: []string{conn + `ike.version: "ikev2" is not an IKE version (want 1 or 2)`},
	}, {
		name: "aggressive mode under IKEv2",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      mode: aggressive\n      proposals: [3des-sha1-modp1024]\n    tunnels:"),
		want: []string{conn + "ike.mode: aggressive is IKEv1 only (want main or no mode with version 2)"},
	}, {
		name: "IKEv2 fragmentation under IKEv1",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      fragment_size: 576\n      proposals: [3des-sha1-modp1024]\n    tunnels:"),
		want: []string{conn + "ike.fragment_size: 576 is an IKEv2 setting (want ike.version: 2, or no fragment_size)"},
	}, {
		name: "IKEv2 proposal under IKEv1",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [aes128gcm16-prfsha256-ecp256]\n    tunnels:"),
		want: []string{conn + `ike.proposals: "aes128gcm16-prfsha256-ecp256" is an IKEv2 proposal (want ike.version: 2, or an IKEv1 proposal without AES-GCM and prf keywords such as aes256-sha256-modp2048)`},
	}, {
		name: "IKEv2 AES-GCM without a PRF",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes128gcm16-ecp256]\n    tunnels:"),
		want: []string{conn + `ike.proposals: proposal: invalid proposal "aes128gcm16-ecp256": AES-GCM needs a PRF (prfmd5, prfsha1, prfsha256, prfsha384, prfsha512)`},
	}, {
		name: "IKEv2 without proposals",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n    tunnels:"),
		want: []string{conn + "ike.proposals: is missing (want e.g. [aes256-sha256-modp2048])"},
	}, {
		name: "bad numbers and durations",
		yaml: edit(t, "        proposals: [3des-sha1-modp1024]\n", `        proposals: [3des-sha1-modp1024]
        lifetime: 8
        replay_window: -1
        lifetime_kilobytes: 1.5
        protocol: tcp
        local_port: 70000
`, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [3des-sha1-modp1024]\n      dpd_delay: -5s\n    tunnels:"),
		want: []string{
			conn + "ike.dpd_delay: -5s is negative (want e.g. 30s, or 0s for off)",
			tunnel + "lifetime: the number 8 is not a duration (want e.g. 30s, 8h or 1h30m)",
			tunnel + "lifetime_kilobytes: the number 1.5 is not a number of kilobytes (0 = no limit)",
			tunnel + "local_port: the number 70000 is not a port number from 1 to 65535 (0 = any)",
			tunnel + "replay_window: the number -1 is not a number of packets (0 = off)",
		},
	}, {
		name: "quick_modes out of range",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [3des-sha1-modp1024]\n      quick_modes: 0\n    tunnels:"),
		want: []string{conn + "ike.quick_modes: 0 is not from 1 to 16 (want e.g. 1: strongSwan keeps the state of only 3 exchanges per ISAKMP SA)"},
	}, {
		name: "quick_modes not a number",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [3des-sha1-modp1024]\n      quick_modes: many\n    tunnels:"),
		want: []string{conn + `ike.quick_modes: "many" is not a number of quick modes in flight`},
	}, {
		name: "fragment_size too small",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [3des-sha1-modp1024]\n      fragment_size: 100\n    tunnels:"),
		want: []string{conn + "ike.fragment_size: 100 is below 200 bytes (want e.g. 1280, or 0 for no IKEv2 fragmentation)"},
	}, {
		name: "cookie_threshold negative",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [3des-sha1-modp1024]\n      cookie_threshold: -1\n    tunnels:"),
		want: []string{conn + "ike.cookie_threshold: the number -1 is not a number of half-open IKE SAs (0 = always demand a cookie)"},
	}, {
		name: "ports without a protocol that has them",
		yaml: edit(t, "        proposals: [3des-sha1-modp1024]\n", "        proposals: [3des-sha1-modp1024]\n        remote_port: 443\n"),
		want: []string{tunnel + "protocol: any has no ports but local_port/remote_port are set (want tcp or udp)"},
	}, {
		name: "bad proposals",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      proposals: [3des-sha1-modp1023]\n    tunnels:",
			"        proposals: [3des-sha1-modp1024]\n", ""),
		want: []string{
			conn + `ike.proposals: proposal: invalid proposal "3des-sha1-modp1023": unknown IKE keyword "modp1023", want one of 3des, aes128, aes192, aes256, aes, md5, sha1, sha, sha256, sha2_256, sha384, sha2_384, sha512, sha2_512, modp1024, modp1536, modp2048, modp3072, modp4096, ecp256, ecp384`,
			tunnel + "proposals: is missing (want e.g. [aes256-sha256-modp2048])",
		},
	}, {
		name: "different DH groups where the key exchange goes first",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      mode: aggressive\n      proposals: [3des-sha1-modp1024, aes128-sha1-modp2048]\n    tunnels:",
			"        proposals: [3des-sha1-modp1024]\n", "        proposals: [3des-sha1-modp1024, aes128-sha1]\n"),
		want: []string{
			conn + "ike.proposals: aggressive mode sends its key exchange with the proposals, so all must use one DH group (found 3des-sha1-modp1024 and aes128-sha1-modp2048)",
			tunnel + "proposals: quick mode sends its key exchange with the proposals, so all must use one DH group (found 3des-sha1-modp1024 and aes128-sha1)",
		},
	}, {
		name: "duplicate and overlapping tunnels",
		yaml: base + `      dup:
        local_subnet: 10.10.1.1/32
        remote_subnet: 10.20.0.0/24
        proposals: [3des-sha1-modp1024]
      wide:
        local_subnet: 10.10.0.0/16
        remote_subnet: 10.20.0.128/25
        protocol: udp
        remote_port: 53
        proposals: [3des-sha1-modp1024]
`,
		want: []string{
			"connections.mega.tunnels.dup: 10.10.1.1/32 <-> 10.20.0.0/24 any duplicates connections.mega.tunnels.api (10.10.1.1/32 <-> 10.20.0.0/24 any) (want disjoint local_subnet/remote_subnet/protocol/ports)",
			"connections.mega.tunnels.wide: 10.10.0.0/16 <-> 10.20.0.128/25 udp ports any/53 overlaps connections.mega.tunnels.api (10.10.1.1/32 <-> 10.20.0.0/24 any) (want disjoint local_subnet/remote_subnet/protocol/ports)",
			"connections.mega.tunnels.wide: 10.10.0.0/16 <-> 10.20.0.128/25 udp ports any/53 overlaps connections.mega.tunnels.dup (10.10.1.1/32 <-> 10.20.0.0/24 any) (want disjoint local_subnet/remote_subnet/protocol/ports)",
		},
	}, {
		name: "several subnets: tunnels overlapping in one pair",
		yaml: edit(t, "      proposals: [3des-sha1-modp1024]\n    tunnels:", "      version: 2\n      proposals: [aes256-sha256-modp2048]\n    tunnels:", "remote_subnet: 10.20.0.0/24", "remote_subnet: 10.20.0.0/24,10.21.0.0/24") + `      other:
        local_subnet: [10.10.9.0/24, 10.10.1.1/32]
        remote_subnet: [10.30.0.0/24, 10.21.0.128/25]
        proposals: [aes128-sha1]
`,
		want: []string{"connections.mega.tunnels.other: 10.10.9.0/24,10.10.1.1/32 <-> 10.30.0.0/24,10.21.0.128/25 any overlaps connections.mega.tunnels.api " +
			"(10.10.1.1/32 <-> 10.20.0.0/24,10.21.0.0/24 any) (want disjoint local_subnet/remote_subnet/protocol/ports)"},
	}, {
		name: "two connections to one peer",
		yaml: base + `  again:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    psk: x
    ike: {proposals: [3des-sha1-modp1024]}
    tunnels: {t: {local_subnet: 10.99.0.0/16, remote_subnet: 10.98.0.0/16, proposals: [aes128-sha1]}}
`,
		want: []string{`connections.mega.remote_address: 192.0.2.2 is also the peer of connection "again" from the same local_address (want one connection per peer)`},
	}, {
		name: "service address",
		yaml: edit(t, "    ike:\n", "    service_address: {address: 10.99.0.1/32, interface: \"\", extra: 1}\n    ike:\n"),
		want: []string{
			conn + "service_address.address: 10.99.0.1/32 is in no tunnel's local_subnet (want an address the tunnels protect)",
			conn + "service_address.extra: unknown key (want one of: address, interface)",
			conn + `service_address.interface: "" is not an interface name (want e.g. eth1)`,
		},
	}, {
		name: "service address with the peer inside a remote subnet",
		yaml: edit(t, "    ike:\n", "    service_address: {address: 10.10.1.1/32, interface: lo}\n    ike:\n",
			"remote_subnet: 10.20.0.0/24", "remote_subnet: 192.0.2.0/24"),
		want: []string{
			conn + "remote_address: 192.0.2.2 is inside tunnel api's remote_subnet 192.0.2.0/24 while service_address is set (want the peer outside the remote subnets: their routes follow the route to it)",
		},
	}, {
		name: "global settings",
		yaml: "control_socket: espgw.sock\nsave_keys: keys\nmetrics: {listen: \"9814\"}\n" + base,
		want: []string{
			`control_socket: "espgw.sock" is not an absolute path of at most 107 bytes (want e.g. /run/espgw/espgw.sock)`,
			`metrics.listen: "9814" is not host:port (want e.g. 127.0.0.1:9814, or "" for off)`,
			`save_keys: "keys" is not an absolute directory path (want e.g. /var/lib/espgw/keys, or "" for off)`,
		},
	}, {
		name: "wrong shapes",
		yaml: "metrics: on\nconnections:\n  mega: [a, b]\n  other:\n    tunnels: [x]\n    ike: {proposals: {a: 1}}\n",
		want: []string{
			`connections.mega: a list is not a mapping (want keys: local_address, remote_address, local_id, remote_id, psk, psk_file, service_address, ike, tunnels)`,
			"connections.other.ike.proposals: a mapping is not a list (want a list of proposals such as aes256-sha256-modp2048)",
			"connections.other.local_address: is missing (want an IPv4 address)",
			`connections.other.psk: is missing (want psk: "<key>" or psk_file: <path>)`,
			"connections.other.remote_address: is missing (want an IPv4 address)",
			"connections.other.tunnels: a list is not a mapping (want names, each with a tunnel)",
			`metrics: "on" is not a mapping (want keys: listen)`,
		},
	}, {
		name: "ebpf settings",
		yaml: "ebpf:\n  enabled: yes please\n  wan_interface: \"eth 0\"\n  when_sa_down: allow\n  path_mtu: 576\n  top_flows: 5000\n  xdp: {drop_unknown_spi: 1, drop_nonpeer_ike: true}\n" + base,
		want: []string{
			`ebpf.enabled: "yes please" is not a boolean (want true or false)`,
			"ebpf.path_mtu: 576 is not an MTU from 1280 to 65535 (want e.g. 1500)",
			"ebpf.top_flows: the number 5000 is not a number of flows from 0 to 1000",
			`ebpf.wan_interface: "eth 0" is not an interface name (want e.g. eth0, or "" for the route to the first peer)`,
			`ebpf.when_sa_down: "allow" is not an action (want drop or pass)`,
			"ebpf.xdp.drop_nonpeer_ike: unknown key (did you mean drop_non_peer_ike?)",
			"ebpf.xdp.drop_unknown_spi: the number 1 is not a boolean (want true or false)",
		},
	}, {
		name: "ESP integrity md5",
		yaml: edit(t, "        proposals: [3des-sha1-modp1024]\n", "        proposals: [3des-md5-modp1024]\n"),
		want: []string{tunnel + "proposals: 3des-md5-modp1024: ESP integrity md5 is not supported by the datapath; use sha1 or sha2"},
	}, {
		name: "no connections",
		yaml: "connections: {}\n",
		want: []string{"connections: none defined (want at least one connection)"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseString(t, tt.yaml)
			if err == nil {
				t.Fatalf("Parse succeeded, want errors; yaml:\n%s", tt.yaml)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse errors:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			if strings.Contains(err.Error(), "SUPERPASSWORD") || strings.Contains(err.Error(), "0123456") {
				t.Errorf("error reveals a pre-shared key:\n%v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error is not a joined FieldError: %T", err)
			}
		})
	}
}

func TestParseYAMLSyntax(t *testing.T) {
	_, err := parseString(t, "connections:\n  mega: {\n")
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Fatalf("Parse(broken YAML) = %v, want a config: YAML error", err)
	}
}

// TestLoadRelativePSKFile checks that psk_file is resolved against the configuration's directory.
func TestLoadRelativePSKFile(t *testing.T) {
	dir := t.TempDir()
	psk := "# racoon psk.txt\n192.0.2.9   other\n192.0.2.2\tSUPER PASSWORD \n"
	if err := os.WriteFile(filepath.Join(dir, "psk.txt"), []byte(psk), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := edit(t, `    psk: "SUPERPASSWORD"`, "    psk_file: psk.txt")
	if err := os.WriteFile(filepath.Join(dir, "espgw.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "espgw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Connections[0].PSK); got != "SUPER PASSWORD" {
		t.Errorf("PSK = %q, want %q", got, "SUPER PASSWORD")
	}
}

// An inline psk in a file group or others can read is a warning naming the setting; in a
// file only its owner reads, or with psk_file, there is none.
func TestInlinePSKWarning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "espgw.yaml")
	if err := os.WriteFile(path, []byte(edit(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	_, warnings, err := LoadWarn(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "connections.mega.psk: a pre-shared key inline in " + path + ", which group or others may read (mode 0644): chmod 600 it or use psk_file"
	if len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings %q, want [%q]", warnings, want)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, warnings, err = LoadWarn(path); err != nil || len(warnings) != 0 {
		t.Errorf("mode 0600: warnings %q, error %v; want none", warnings, err)
	}
}

func TestValidateBuiltConfig(t *testing.T) {
	c := &Config{ControlSocket: DefaultControlSocket, Datapath: "auto", Connections: []model.Connection{seedConn, seedConn}}
	c.Connections[1].Tunnels = nil
	err := c.Validate()
	want := []string{
		"connections.megatelecom: connection name used twice (want unique names)",
		`connections.megatelecom.remote_address: 192.0.2.2 is also the peer of connection "megatelecom" from the same local_address (want one connection per peer)`,
		"connections.megatelecom.service_address.address: 10.10.1.1/32 is in no tunnel's local_subnet (want an address the tunnels protect)",
		"connections.megatelecom.tunnels: none defined (want at least one tunnel)",
	}
	if err == nil || !reflect.DeepEqual(strings.Split(err.Error(), "\n"), want) {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if err := (&Config{ControlSocket: DefaultControlSocket, Datapath: "auto", Connections: []model.Connection{seedConn}}).Validate(); err != nil {
		t.Errorf("Validate(seed) = %v", err)
	}
}
