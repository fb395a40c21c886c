package sheet

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/charmap"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/ike/proposal"
)

// summary is what a sheet carries of a connection, one line, for comparisons.
func summary(c model.Connection) string {
	mode := string(c.IKE.Mode)
	if c.IKE.IsV2() {
		mode = "ikev2"
	}
	s := fmt.Sprintf("%s %v<->%v id %v/%v %s ike [%s] %v natt %s dpd %v", c.Name, c.LocalAddress, c.RemoteAddress,
		c.LocalID, c.RemoteID, mode, c.IKE.FormatProposals(), c.IKE.Lifetime, c.IKE.NATTraversal, c.IKE.DPDDelay)
	for _, t := range c.Tunnels {
		s += fmt.Sprintf("; %s %v<->%v p%d %d/%d [%s] %v %dKB", t.Name, model.Prefixes(t.LocalSubnets), model.Prefixes(t.RemoteSubnets), t.Protocol,
			t.LocalPort, t.RemotePort, proposal.FormatESP(t.Proposals), t.Lifetime, t.LifeKilobytes)
	}
	return s
}

func readFile(t *testing.T, name string) *Grid {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var g *Grid
	if strings.HasSuffix(name, ".csv") {
		g, err = ReadCSV(f, name)
	} else {
		g, err = ReadXLSX(f)
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestPartnerSheets reads the sheets partners send: the seed's MegaTelecom questionnaire and
// the hand-built ones, and checks the connection and the left-out rows; then config check
// accepts the YAML once the key is added.
func TestPartnerSheets(t *testing.T) {
	tests := []struct {
		file, want string
		ignored    []string
	}{
		{"megatelecom-ru.xlsx",
			"megatelekom 192.0.2.1<->192.0.2.2 id 192.0.2.1/192.0.2.2 main ike [3des-sha1-modp1024] 24h0m0s natt auto dpd 10s; " +
				"10.20.0.0-24 10.10.1.1/32<->10.20.0.0/24 p0 0/0 [3des-sha1-modp1024] 8h0m0s 4608000KB",
			[]string{`VPN!A6: "Производитель оборудования" — not a setting espgw uses (row ignored)`}},
		{"bank-en.xlsx",
			"example 198.51.100.10<->203.0.113.5 id 198.51.100.10/203.0.113.5 main ike [aes256-sha256-modp2048] 24h0m0s natt auto dpd 0s; " +
				"10.50.0.0-16 10.10.1.1/32<->10.50.0.0/16 p0 0/0 [aes256-sha256-modp2048] 1h0m0s 4608000KB; " +
				"10.51.0.0-24 10.10.1.1/32<->10.51.0.0/24 p0 0/0 [aes256-sha256-modp2048] 1h0m0s 4608000KB",
			[]string{`Sheet1!A7: "Device" — not a setting espgw uses (row ignored)`}},
		{"bank-ru.xlsx",
			"partner 192.0.2.1<->192.0.2.2 id 192.0.2.1/192.0.2.2 main ike [3des-sha1-modp1024] 24h0m0s natt off dpd 0s; " +
				"10.20.0.0-24 10.10.1.1/32<->10.20.0.0/24 p0 0/0 [3des-sha1] 8h0m0s 0KB", nil},
		{"telco-en.csv",
			"telco 198.51.100.1<->198.51.100.2 id gw.customer.example/vpn.telco.example aggressive ike [aes128-sha1-modp1536] 24h0m0s natt auto dpd 0s; " +
				"10.70.0.0-16 10.10.0.0/24<->10.70.0.0/16 p0 0/0 [aes128gcm16-modp1536] 8h0m0s 4608000KB", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			res := Import(readFile(t, tt.file), Options{})
			if len(res.Problems) > 0 {
				t.Errorf("problems: %q", problemLines(res.Problems))
			}
			if got := summary(res.Conn.Connection); got != tt.want {
				t.Errorf("connection\n got %s\nwant %s", got, tt.want)
			}
			if got := problemLines(res.Ignored); !slices.Equal(got, tt.ignored) && len(got)+len(tt.ignored) > 0 {
				t.Errorf("ignored rows %q, want %q", got, tt.ignored)
			}
			requireValid(t, res)
		})
	}
}

// requireValid adds a key to the imported YAML and runs config check on it.
func requireValid(t *testing.T, res *Result) {
	t.Helper()
	var buf bytes.Buffer
	if err := res.WriteYAML(&buf, "test"); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(buf.String(), `# psk: "..."`, `psk: "k"`, 1)
	if _, err := config.Parse(strings.NewReader(yaml)); err != nil {
		t.Errorf("config check of the imported sheet:\n%v\n%s", err, yaml)
	}
}

// TestUnreadableCells: every cell that cannot be read is listed with its address, value and
// the reason, and a side that disagrees with the partner is reported on our cell.
func TestUnreadableCells(t *testing.T) {
	csv := "Parameter,Partner,Our side,Notes\n" + // 1
		"Peer IP,192.0.2.2,192.0.2.300,\n" + // 2
		"Phase 1,,,\n" + // 3
		"Encryption,AES-256,AES-256,\n" + // 4
		"Hash,Whirlpool,Whirlpool,\n" + // 5
		"DH group,Group 21,Group 21,\n" + // 6
		"Lifetime,24 fortnights,,\n" + // 7
		"IKE version,IKEv3,IKEv3,\n" + // 8
		"Authentication method,Certificates,Certificates,\n" + // 9
		"\n" + // 10
		"Phase 2,,,\n" + // 11
		"Encryption,3DES,3DES,\n" + // 12
		"Integrity,SHA-1,SHA-1,\n" + // 13
		"Encryption,AES-GCM-256 (ICV 12),AES-GCM-256 (ICV 12),\n" + // 14: a second row
		"PFS,Yes (group 2),Yes (group 5),\n" + // 15
		"Encryption domain,,,\n" + // 16
		"Partner network,10.20.0.0/24,,\n" + // 17
		"Our network,,10.10.1.0/24 10.10.300.0/24,\n" // 18
	g, err := ReadCSV(strings.NewReader(csv), "Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	res := Import(g, Options{})
	want := []string{ // cells read while walking the rows first, then the settings built from them
		`Sheet1!C18: "10.10.1.0/24 10.10.300.0/24" — "10.10.300.0/24" is not an IPv4 subnet (want e.g. 10.20.0.0/24)`,
		`Sheet1!C2: "192.0.2.300" — not an IPv4 address (want our public IP, e.g. 192.0.2.1)`,
		`Sheet1!C9: "Certificates" — espgw authenticates with a pre-shared key only`,
		`Sheet1!B9: "Certificates" — espgw authenticates with a pre-shared key only`,
		`Sheet1!B8: "IKEv3" — unknown IKE version (want IKEv1 or IKEv2)`,
		`Sheet1!B5: "Whirlpool" — unknown phase 1 hash (want SHA-1, SHA-256, SHA-384, SHA-512)`,
		`Sheet1!B6: "Group 21" — DH group 21 is not supported (want 2, 5, 14, 15, 16, 19 or 20)`,
		`Sheet1!B7: "24 fortnights" — unknown lifetime unit "fortnights" (want seconds, minutes, hours, days or KB, MB, GB)`,
		`Sheet1!C15: "Yes (group 5)" — differs from the partner's "Yes (group 2)" (the partner's is used)`,
		`Sheet1: "" — no encryption domains: want our and the partner's subnets ("Encryption domain", "Сеть клиента")`,
	}
	if got := problemLines(res.Problems); !slices.Equal(got, want) {
		t.Errorf("problems:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if got, want := problemLines(res.Ignored), []string{`Sheet1!A14: "Encryption" — a second encryption row (the first one is used)`}; !slices.Equal(got, want) {
		t.Errorf("ignored %q, want %q", got, want)
	}
	// The example: the cell address, the value and why.
	g.Rows[11][2], g.Rows[11][1] = "AES-GCM-256 (ICV 12)", "AES-GCM-256 (ICV 12)"
	res = Import(g, Options{})
	if !slices.Contains(problemLines(res.Problems), `Sheet1!B12: "AES-GCM-256 (ICV 12)" — unknown phase 2 encryption (espgw does AES-GCM with a 16-byte ICV only)`) {
		t.Errorf("no problem for the ICV 12 cell in %q", problemLines(res.Problems))
	}
}

// TestRoundTrip: export → read → import gives the same connection, in each format that
// can be read back.
func TestRoundTrip(t *testing.T) {
	ike := func(s string) []proposal.IKE { p, _ := proposal.ParseIKE(s); return p }
	esp := func(s string) []proposal.ESP { p, _ := proposal.ParseESP(s); return p }
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	conns := []model.Connection{{
		Name: "megatelecom", LocalAddress: addr("192.0.2.1"), RemoteAddress: addr("192.0.2.2"),
		LocalID: model.Identity{Kind: model.IDAddr, Addr: addr("192.0.2.1")}, RemoteID: model.Identity{Kind: model.IDAddr, Addr: addr("192.0.2.2")},
		PSK: model.Secret("SUPERPASSWORD"),
		IKE: model.IKE{Mode: model.ModeMain, Proposals: ike("3des-sha1-modp1024"), Lifetime: 24 * time.Hour, NATTraversal: model.NATTAuto},
		Tunnels: []model.Tunnel{{Name: "api", LocalSubnets: []netip.Prefix{pfx("10.10.1.1/32")}, RemoteSubnets: []netip.Prefix{pfx("10.20.0.0/24")},
			Proposals: esp("3des-sha1-modp1024"), Lifetime: 8 * time.Hour}},
	}, {
		Name: "bank.two", LocalAddress: addr("203.0.113.1"), RemoteAddress: addr("198.51.100.9"),
		LocalID: model.Identity{Kind: model.IDFQDN, Name: "gw.example.com"}, RemoteID: model.Identity{Kind: model.IDUserFQDN, Name: "vpn@bank.example"},
		PSK: model.Secret("SUPERPASSWORD"),
		IKE: model.IKE{Mode: model.ModeAggressive, Proposals: ike("aes256-aes128-sha256-sha1-modp2048"), Lifetime: 8 * time.Hour,
			NATTraversal: model.NATTForce, DPDDelay: 20 * time.Second},
		Tunnels: []model.Tunnel{
			{Name: "db", LocalSubnets: []netip.Prefix{pfx("10.10.0.0/24")}, RemoteSubnets: []netip.Prefix{pfx("10.60.0.0/16")}, Protocol: 6, RemotePort: 5432,
				Proposals: esp("aes256gcm16-modp2048, aes128-sha256-modp2048"), Lifetime: time.Hour, LifeKilobytes: 4608000},
			{Name: "web", LocalSubnets: []netip.Prefix{pfx("10.10.0.0/24")}, RemoteSubnets: []netip.Prefix{pfx("10.61.0.0/24")},
				Proposals: esp("aes256gcm16-modp2048, aes128-sha256-modp2048"), Lifetime: time.Hour, LifeKilobytes: 4608000}},
	}}
	v2 := func(name, local, remote, proposals string) model.Connection {
		ps, err := proposal.ParseIKEv2(proposals)
		if err != nil {
			t.Fatal(err)
		}
		return model.Connection{Name: name, LocalAddress: addr(local), RemoteAddress: addr(remote),
			LocalID: model.Identity{Kind: model.IDAddr, Addr: addr(local)}, RemoteID: model.Identity{Kind: model.IDAddr, Addr: addr(remote)},
			IKE: model.IKE{Version: 2, Mode: model.ModeMain, V2Proposals: ps, Lifetime: 4 * time.Hour, NATTraversal: model.NATTAuto},
			Tunnels: []model.Tunnel{{Name: "lan", LocalSubnets: []netip.Prefix{pfx("10.10.0.0/24")}, RemoteSubnets: []netip.Prefix{pfx("10.80.0.0/16")},
				Proposals: esp("aes256gcm16"), Lifetime: time.Hour}}}
	}
	multi := v2("ikev2.subnets", "192.0.2.1", "192.0.2.8", "aes256-sha256-modp2048")
	multi.Tunnels[0].LocalSubnets = []netip.Prefix{pfx("10.10.0.0/24"), pfx("10.11.0.0/24")}
	multi.Tunnels[0].RemoteSubnets = []netip.Prefix{pfx("10.80.0.0/16"), pfx("10.81.0.0/24"), pfx("10.82.0.1/32")}
	conns = append(conns, multi,
		v2("ikev2.cbc", "192.0.2.1", "192.0.2.5", "aes128-aes256-sha1-sha256-modp2048"),                                     // PRF of each hash: no PRF row
		v2("ikev2.gcm", "192.0.2.1", "192.0.2.6", "aes128gcm16-prfsha384-ecp256"),                                           // integrity n/a
		v2("ikev2.mixed", "192.0.2.1", "192.0.2.7", "aes256-sha256-modp2048-ecp256, aes256gcm16-prfsha256-modp2048-ecp256")) // a PRF row
	for _, c := range conns {
		for _, format := range []string{"xlsx", "csv"} {
			t.Run(c.Name+"/"+format, func(t *testing.T) {
				var buf bytes.Buffer
				if err := Export(&buf, c, format); err != nil {
					t.Fatal(err)
				}
				var g *Grid
				var err error
				if format == "xlsx" {
					g, err = ReadXLSX(&buf)
				} else {
					g, err = ReadCSV(&buf, "export.csv")
				}
				if err != nil {
					t.Fatal(err)
				}
				version := fmt.Sprintf("IKEv%d", max(c.IKE.Version, 1))
				hasVersion := false
				for _, r := range g.Rows {
					if strings.Contains(strings.Join(r, " "), "SUPERPASSWORD") {
						t.Fatalf("the pre-shared key is in the sheet: %q", r)
					}
					hasVersion = hasVersion || slices.Contains(r, "IKE version") && slices.Contains(r, version)
				}
				if !hasVersion {
					t.Errorf("no IKE version row saying %s in the exported sheet", version)
				}
				res := Import(g, Options{})
				if len(res.Problems)+len(res.Ignored) > 0 {
					t.Errorf("problems %q, ignored %q", problemLines(res.Problems), problemLines(res.Ignored))
				}
				if got, want := summary(res.Conn.Connection), summary(c); got != want {
					t.Errorf("round trip\n got %s\nwant %s", got, want)
				}
				requireValid(t, res)
			})
		}
	}
}

// TestExportMarkdown: the Markdown sheet has the sections and the tunnels table, no key.
func TestExportMarkdown(t *testing.T) {
	g := readFile(t, "megatelecom-ru.xlsx")
	res := Import(g, Options{Name: "megatelecom"})
	var buf bytes.Buffer
	if err := Export(&buf, res.Conn.Connection, "md"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# IPsec VPN parameters: megatelecom\n", "## Phase 1 (IKE)\n",
		"| Authentication method | Pre-shared key | Pre-shared key | The key is sent separately, never in this sheet |\n",
		"| PFS | Yes (Group 2) | Yes (Group 2) |  |\n", "| Lifetime | 28800 s / 4608000 KB | 28800 s / 4608000 KB | 8h |\n",
		"| 10.20.0.0-24 | 10.20.0.0/24 | 10.10.1.1/32 | any | any | any |\n"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestExportRefuses what a sheet cannot say.
func TestExportRefuses(t *testing.T) {
	ps, _ := proposal.ParseIKE("aes256-sha256-modp2048, 3des-sha1-modp1024")
	c := model.Connection{Name: "x", IKE: model.IKE{Proposals: ps}, Tunnels: []model.Tunnel{{Name: "a"}}}
	err := Export(&bytes.Buffer{}, c, "csv")
	if err == nil || !strings.Contains(err.Error(), "not every combination") {
		t.Errorf("export of mixed proposals: %v", err)
	}
	v2, _ := proposal.ParseIKEv2("aes256-sha256-modp2048, aes128gcm16-prfsha256-ecp256")
	c.IKE = model.IKE{Version: 2, V2Proposals: v2}
	err = Export(&bytes.Buffer{}, c, "csv")
	if err == nil || !strings.Contains(err.Error(), "IKEv2 proposals aes256-sha256-prfsha256-modp2048, aes128gcm16-prfsha256-ecp256 are not every combination") {
		t.Errorf("export of mixed IKEv2 proposals: %v", err)
	}
}

// TestIKEv2Sheet: a Russian IKEv2 sheet (version row, AES-GCM in phase 1, a PRF row, no
// mode) imports as an IKEv2 connection that config check accepts; aggressive mode and a
// version the sides disagree on are reported on their cells.
func TestIKEv2Sheet(t *testing.T) {
	g := readFile(t, "bank-ikev2-ru.csv")
	res := Import(g, Options{})
	if len(res.Problems)+len(res.Ignored) > 0 {
		t.Errorf("problems %q, ignored %q", problemLines(res.Problems), problemLines(res.Ignored))
	}
	want := "bank 198.51.100.1<->198.51.100.2 id 198.51.100.1/198.51.100.2 ikev2 ike [aes256gcm16-prfsha384-ecp384] 24h0m0s natt auto dpd 0s; " +
		"10.30.0.0-16 10.10.1.0/24<->10.30.0.0/16 p0 0/0 [aes256-sha256] 8h0m0s 0KB"
	if got := summary(res.Conn.Connection); got != want {
		t.Errorf("connection\n got %s\nwant %s", got, want)
	}
	if slices.Contains(res.Defaults, "phase 1 mode: main") {
		t.Errorf("defaults %q: an IKEv2 sheet needs no mode", res.Defaults)
	}
	requireValid(t, res)

	// Several subnets per side (one per line, or comma-separated): one child SA for all.
	g.Rows[12][1], g.Rows[13][2] = "10.30.0.0/16\n10.31.0.0/24", "10.10.1.0/24, 10.10.7.1"
	res = Import(g, Options{})
	want = "bank 198.51.100.1<->198.51.100.2 id 198.51.100.1/198.51.100.2 ikev2 ike [aes256gcm16-prfsha384-ecp384] 24h0m0s natt auto dpd 0s; " +
		"10.30.0.0-16 10.10.1.0/24,10.10.7.1/32<->10.30.0.0/16,10.31.0.0/24 p0 0/0 [aes256-sha256] 8h0m0s 0KB"
	if got := summary(res.Conn.Connection); got != want || len(res.Problems) > 0 {
		t.Errorf("connection with two subnets per side\n got %s\nwant %s\nproblems %q", got, want, problemLines(res.Problems))
	}
	requireValid(t, res)

	g.Rows[3][2] = "IKEv1"                                                           // C4: our side disagrees
	g.Rows = slices.Insert(g.Rows, 4, []string{"Режим", "Aggressive", "Aggressive"}) // B5
	res = Import(g, Options{})
	for _, p := range []string{`bank-ikev2-ru.csv!C4: "IKEv1" — differs from the partner's "IKEv2" (the partner's is used)`,
		`bank-ikev2-ru.csv!B5: "Aggressive" — aggressive mode is IKEv1 only (want main or no mode with IKEv2)`} {
		if !slices.Contains(problemLines(res.Problems), p) {
			t.Errorf("no problem %s in %q", p, problemLines(res.Problems))
		}
	}
}

func TestValues(t *testing.T) {
	for _, s := range []string{"3DES", "TripleDES", "3des-cbc", "Triple-DES", "ESP-3DES"} {
		if c, err := parseCipher(s, false, false); err != nil || c.enc != proposal.Enc3DES {
			t.Errorf("parseCipher(%q) = %v, %v", s, c, err)
		}
	}
	for s, bits := range map[string]int{"AES-256": 256, "AES256-CBC": 256, "aes 128": 128, "AES": 128, "AES-CBC-192": 192, "AES-CBC 256 bits": 256, "AES 256 bit": 256} {
		if c, err := parseCipher(s, false, false); err != nil || c.enc != proposal.EncAESCBC || c.bits != bits {
			t.Errorf("parseCipher(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"AES-GCM-256", "aes256gcm16", "AES-GCM-256 (ICV 16)", "AES256-GCM"} {
		if c, err := parseCipher(s, true, true); err != nil || c.enc != proposal.EncAESGCM16 || c.bits != 256 {
			t.Errorf("parseCipher(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"SHA-1", "SHA1", "HMAC-SHA1", "SHA", "HMAC-SHA-1-96", "hmac_sha1"} {
		if h, err := parseHash(s, true); err != nil || h != proposal.HashSHA1 {
			t.Errorf("parseHash(%q) = %v, %v", s, h, err)
		}
	}
	for s, g := range map[string]uint16{"Group 2": 2, "DH2": 2, "modp1024": 2, "2": 2, "DH Group 14": 14, "MODP-2048": 14,
		"Group 2 (modp1024)": 2, "ECP-256": 19, "группа 5": 5, "DH Group 2 (1024 bit)": 2, "(modp2048)": 14, "MODP 1536 bit": 5} {
		if got, err := parseGroup(s); err != nil || got != g {
			t.Errorf("parseGroup(%q) = %d, %v; want %d", s, got, err, g)
		}
	}
	lifetimes := map[string][2]uint64{"86400": {86400, 0}, "24h": {86400, 0}, "86400 sec": {86400, 0}, "86400 сек": {86400, 0},
		"28800 seconds / 4608000 KB": {28800, 4608000}, "8 hours": {28800, 0}, "1 day": {86400, 0}, "28800 сек / 4608000 КБ": {28800, 4608000},
		"3600 s (1h)": {3600, 0}, "4608000 KB": {0, 4608000}, "1h30m": {5400, 0}, "86 400 сек.": {86400, 0},
		"28 800 s / 4 608 000 KB": {28800, 4608000}}
	for s, want := range lifetimes {
		d, kb, err := parseLifetime(s)
		if err != nil || uint64(d.Seconds()) != want[0] || kb != want[1] {
			t.Errorf("parseLifetime(%q) = %v, %d, %v; want %ds %dKB", s, d, kb, err, want[0], want[1])
		}
	}
	pfs := map[string]uint16{"PFS: yes (group 2)": 2, "Yes (Group 2)": 2, "Да (Group 2)": 2, "No": 0, "Нет": 0, "Group 14": 14, "yes, DH5": 5, "disabled": 0}
	for s, want := range pfs {
		if g, err := parsePFS(s); err != nil || g != want {
			t.Errorf("parsePFS(%q) = %d, %v; want %d", s, g, err, want)
		}
	}
	versions := map[string]uint8{"IKEv1": 1, "IKEv2": 2, "1": 1, "2": 2, "v2": 2, "IKE v2": 2, "IKEv2 (RFC 7296)": 2, "ikev1 only": 1,
		"версия 2": 2, "IKEv3": 0, "IKEv1/IKEv2": 0, "": 0}
	for s, want := range versions {
		if got := versionOf(s); got != want {
			t.Errorf("versionOf(%q) = %d, want %d", s, got, want)
		}
	}
	for s, want := range map[string]proposal.Hash{"PRF-HMAC-SHA-256": proposal.HashSHA256, "prfsha384": proposal.HashSHA384, "HMAC-SHA1": proposal.HashSHA1} {
		if got, err := parsePRF(s); err != nil || got != want {
			t.Errorf("parsePRF(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for s, want := range map[string]time.Duration{"Да, 10 сек": 10 * time.Second, "yes": 30 * time.Second, "No": 0, "30": 30 * time.Second} {
		if d, err := parseDPD(s); err != nil || d != want {
			t.Errorf("parseDPD(%q) = %v, %v; want %v", s, d, err, want)
		}
	}
}

// TestExportXLSXLayout checks what makes the workbook readable: the header row frozen, bold
// headings, columns as wide as their text, the title and sections merged across the table.
func TestExportXLSXLayout(t *testing.T) {
	res := Import(readFile(t, "megatelecom-ru.xlsx"), Options{Name: "megatelecom"})
	var buf bytes.Buffer
	if err := Export(&buf, res.Conn.Connection, "xlsx"); err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	panes, err := f.GetPanes(sheetName)
	if err != nil || !panes.Freeze || panes.YSplit != 3 || panes.TopLeftCell != "A4" {
		t.Errorf("panes %+v, %v; want frozen below row 3 (the header)", panes, err)
	}
	if v, _ := f.GetCellValue(sheetName, "A3"); v != "Parameter" {
		t.Errorf("A3 = %q, want the header row", v)
	}
	for _, c := range []string{"A1", "A3", "A4", "A7", "A17", "A23", "A24"} {
		id, _ := f.GetCellStyle(sheetName, c)
		st, err := f.GetStyle(id)
		if err != nil || st.Font == nil || !st.Font.Bold {
			t.Errorf("%s (%q) is not bold", c, cellValue(f, c))
		}
	}
	rows, _ := f.GetRows(sheetName)
	for col := 1; col <= 4; col++ {
		name, _ := excelize.ColumnNumberToName(col)
		w, _ := f.GetColWidth(sheetName, name)
		for r, row := range rows {
			if r > 1 && col <= len(row) && !strings.HasPrefix(row[0], "Phase") && float64(len([]rune(row[col-1]))) > w && w < 60 {
				t.Errorf("column %s is %.0f wide, %q in row %d is longer", name, w, row[col-1], r+1)
			}
		}
	}
	merged, _ := f.GetMergeCells(sheetName)
	if len(merged) != 5 { // title + 4 sections
		t.Errorf("%d merged ranges, want 5 (title, General, Phase 1, Phase 2, Encryption domains)", len(merged))
	}
	if v := cellValue(f, "A24"); v != "Tunnel" {
		t.Errorf("A24 = %q, want the tunnels table header", v)
	}
}

func cellValue(f *excelize.File, c string) string {
	v, _ := f.GetCellValue(sheetName, c)
	return v
}

// TestReadCSVWindows1251: Excel with Russian settings saves CSV in Windows-1251.
func TestReadCSVWindows1251(t *testing.T) {
	utf := "Параметр;МегаТелеком;Клиент\nВнешний IP-адрес;192.0.2.2;192.0.2.1\n"
	cp, err := charmap.Windows1251.NewEncoder().String(utf)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ReadCSV(strings.NewReader(cp), "анкета.csv")
	if err != nil {
		t.Fatal(err)
	}
	if g.Cell(1, 0) != "Внешний IP-адрес" || g.Cell(0, 2) != "Клиент" {
		t.Errorf("rows %q", g.Rows)
	}
}

// TestIKEv1RowSeveralSubnets: an IKEv1 tunnel row listing two partner subnets is refused
// with the reason (a quick mode carries one subnet per side), not cut to one.
func TestIKEv1RowSeveralSubnets(t *testing.T) {
	g := readFile(t, "telco-en.csv")
	res := Import(g, Options{})
	if len(res.Problems) > 0 || len(res.Conn.Tunnels) == 0 || res.Conn.IKE.IsV2() {
		t.Fatalf("telco-en.csv: problems %q, %d tunnels, IKEv2 %v; want an IKEv1 sheet without problems", problemLines(res.Problems), len(res.Conn.Tunnels), res.Conn.IKE.IsV2())
	}
	var buf bytes.Buffer
	if err := Export(&buf, res.Conn.Connection, "csv"); err != nil {
		t.Fatal(err)
	}
	g, err := ReadCSV(&buf, "export.csv")
	if err != nil {
		t.Fatal(err)
	}
	first := res.Conn.Tunnels[0]
	row := slices.IndexFunc(g.Rows, func(r []string) bool { return len(r) > 1 && r[0] == first.Name })
	if row < 0 {
		t.Fatalf("no row of tunnel %s in the export", first.Name)
	}
	g.Rows[row][1] += ", 10.99.0.0/24"
	res = Import(g, Options{})
	want := "an IKEv1 tunnel row with " + model.Prefixes(first.LocalSubnets) + " <-> " + model.Prefixes(first.RemoteSubnets) +
		",10.99.0.0/24, but a quick mode carries one subnet per side (want one row per pair, or IKE version 2)"
	if ps := problemLines(res.Problems); len(ps) == 0 || !strings.HasSuffix(ps[0], want) || slices.ContainsFunc(res.Conn.Tunnels, func(t model.Tunnel) bool { return t.Name == first.Name }) {
		t.Errorf("problems %q, tunnels %v; want first the problem %q and no tunnel %s", ps, res.Conn.Tunnels, want, first.Name)
	}
}
