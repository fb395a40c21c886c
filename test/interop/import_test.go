package interop

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/espgwtest"
)

// seedDir holds the seed's racoon.conf, psk.txt and ipsec-tools.conf (see their headers).
const seedDir = "../../importer/racoon/testdata/seed/"

// seedPSK is the key of the seed's psk.txt.
const seedPSK = "SUPERPASSWORD"

// TestImportedSeedStrongSwan: `espgw import racoon` turns the seed's racoon.conf, psk.txt
// and ipsec-tools.conf into a configuration that `espgw run` brings up against strongSwan
// when traffic from the service address asks for the tunnel (on demand, as racoon did), and
// pings pass through it; strongSwan shows the CHILD_SA INSTALLED with the seed's algorithms
// and counts the packets.
func TestImportedSeedStrongSwan(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	dir := t.TempDir()
	// The seed says nat_traversal off. The lab's partner, strongSwan with kernel-libipsec,
	// can only send ESP in UDP (see internal/testutil/strongswan), so this one line becomes
	// "on" — which the import turns into nat_traversal: auto.
	conf, err := os.ReadFile(seedDir + "racoon.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "nat_traversal off;") {
		t.Fatalf("%sracoon.conf has no nat_traversal off", seedDir)
	}
	write(t, filepath.Join(dir, "racoon.conf"), strings.Replace(string(conf), "nat_traversal off;", "nat_traversal on;", 1), 0o644)
	psk, err := os.ReadFile(seedDir + "psk.txt")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "psk.txt"), string(psk), 0o600) // racoon and espgw refuse a readable key file
	out := filepath.Join(dir, "espgw.yaml")

	r, err := espgwtest.Run(t.Context(), nil, "import", "racoon", "--racoon-conf", filepath.Join(dir, "racoon.conf"),
		"--psk", filepath.Join(dir, "psk.txt"), "--setkey", seedDir+"ipsec-tools.conf",
		"--name", connName, "--service-interface", gwWAN, "-o", out)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("espgw import racoon:\n%s", r.Stderr)
	if r, err := espgwtest.Run(t.Context(), nil, "config", "check", "-c", out); err != nil || r.Err() != nil {
		t.Fatal(err, r.Err())
	}
	yaml, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nat_traversal: auto", "service_address: {address: 10.10.1.1/32, interface: gw-wan}", "start: on-demand"} {
		if !strings.Contains(string(yaml), want) {
			t.Errorf("imported configuration lacks %q:\n%s", want, yaml)
		}
	}
	// The tunnel is named after the remote subnet.
	upOnDemandWithSwan(t, l, yaml, "10.20.0.0-24")
}

// TestSheetImportStrongSwan: the seed's MegaTelecom questionnaire (megatelecom-ru.xlsx) read
// by `espgw sheet import`, plus the two lines the sheet cannot carry (the key, sent
// separately, and the interface of the service address), brings the tunnel up against
// strongSwan with traffic.
func TestSheetImportStrongSwan(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "espgw.yaml")
	r, err := espgwtest.Run(t.Context(), nil, "sheet", "import", "../../sheet/testdata/megatelecom-ru.xlsx", "--name", connName, "-o", out)
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("espgw sheet import:\n%s", r.Stderr)
	yaml, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "psk.txt"), partnerAddr+" "+seedPSK+"\n", 0o600)
	lines := strings.Split(string(yaml), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, `    # psk: "..."`) })
	if i < 0 {
		t.Fatalf("no psk line to fill in:\n%s", yaml)
	}
	lines[i] = "    psk_file: " + filepath.Join(dir, "psk.txt") + "\n    service_address: {address: " + serviceAddr + "/32, interface: " + gwWAN + "}"
	upOnDemandWithSwan(t, l, []byte(strings.Join(lines, "\n")), "10.20.0.0-24")
}

// upOnDemandWithSwan runs espgw with yaml and the lab's strongSwan partner (3DES/SHA1/modp1024
// with PFS, the seed's key), sends traffic from the service address so that the tunnel comes
// up on demand, and checks strongSwan's INSTALLED CHILD_SA and its packet counters.
func upOnDemandWithSwan(t *testing.T, l *lab, yaml []byte, tunnel string) {
	t.Helper()
	sw := startSwan(t, l.partner, partnerAddr, gwAddr, seedPSK, proposalSets[0], remoteSubnet, localSubnet)
	g := espgwtest.StartYAML(t, l.gw, yaml)

	// The seed's health check: ping from the service address; the first packet asks for
	// the tunnel and may be lost while it is negotiated.
	_ = testutil.Ping(l.gw, serviceAddr, hostAddr, 1)
	swIKE, swChild := sw.WaitInstalled(t, "s2s", negotiationTimeout)
	g.WaitTunnelUp(t, connName, tunnel, negotiationTimeout)
	if err := testutil.Ping(l.gw, serviceAddr, hostAddr, 3); err != nil {
		t.Error(err)
	}
	if swIKE.Version != 1 || swIKE.Initiator || swIKE.Proposal() != proposalSets[0].swanIKE {
		t.Errorf("swanctl IKE_SA: version %d, initiator %v, proposal %s; want 1, false, %s",
			swIKE.Version, swIKE.Initiator, swIKE.Proposal(), proposalSets[0].swanIKE)
	}
	if swChild.Mode != "TUNNEL" || swChild.Proposal() != proposalSets[0].swanChild ||
		strings.Join(swChild.LocalTS, ",") != remoteSubnet || strings.Join(swChild.RemoteTS, ",") != localSubnet {
		t.Errorf("swanctl CHILD_SA: %s %s, TS %v === %v; want TUNNEL %s, %s === %s",
			swChild.Mode, swChild.Proposal(), swChild.LocalTS, swChild.RemoteTS, proposalSets[0].swanChild, remoteSubnet, localSubnet)
	}
	// strongSwan's counters after the pings: it decrypted our requests and sent replies.
	sas, err := sw.ListSAs()
	if err != nil {
		t.Fatal(err)
	}
	var in, swOut uint64
	for _, s := range sas {
		for _, c := range s.Children {
			if c.State == "INSTALLED" {
				in, swOut = in+c.PacketsIn, swOut+c.PacketsOut
			}
		}
	}
	if in < 3 || swOut < 3 {
		t.Errorf("strongSwan's CHILD_SA counted %d packets in, %d out; want at least 3 each way", in, swOut)
	}
	g.Stop(t)
}

func write(t *testing.T, name, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
