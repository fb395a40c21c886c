package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSheetRoundTrip: `espgw sheet export` of the seed's configuration as XLSX, then
// `espgw sheet import` of that file gives the same connection back (without the key).
func TestSheetRoundTrip(t *testing.T) {
	dir := t.TempDir()
	// A copy only we can read: git checks good.yaml out 0644, and its inline psk would be warned about.
	good, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "espgw.yaml")
	if err := os.WriteFile(cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	xlsx := filepath.Join(dir, "megatelecom.xlsx")
	code, stdout, stderr := espgw("sheet", "export", "-c", cfg, "megatelecom", "-o", xlsx)
	if code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("espgw sheet export = %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = espgw("sheet", "import", xlsx)
	if code != 0 || stderr != "" {
		t.Fatalf("espgw sheet import = %d\n%s", code, stderr)
	}
	want := `  MegaTelecom:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    # psk: "..."  # the pre-shared key is sent separately: put it here, or use psk_file
    ike:
      mode: main
      proposals: [3des-sha1-modp1024]
      lifetime: 24h
      nat_traversal: auto
    tunnels:
      API:
        local_subnet: 10.10.1.1/32
        remote_subnet: 10.20.0.0/24
        proposals: [3des-sha1-modp1024]
        lifetime: 8h
        start: on-demand
`
	if !strings.HasSuffix(stdout, want) {
		t.Errorf("espgw sheet import printed\n%s\nwant it to end in\n%s", stdout, want)
	}
	if strings.Contains(stdout, "SUPERPASSWORD") {
		t.Error("the pre-shared key went through the sheet")
	}
}

// TestSheetImportProblems: unreadable cells are listed with their addresses on stderr and
// the exit status is 1.
func TestSheetImportProblems(t *testing.T) {
	csv := filepath.Join(t.TempDir(), "partner.csv")
	data := "Parameter,Partner,Our side\nPeer IP,192.0.2.2,192.0.2.1\nPhase 1,,\nEncryption,3DES,\nHash,SHA1,\nDH group,Group 2,\n" +
		"Phase 2,,\nEncryption,AES-GCM-256 (ICV 12),\nPFS,no,\nEncryption domain,,\nTheir LAN,10.20.0.0/24,\nOur LAN,,10.10.1.0/24\n"
	if err := os.WriteFile(csv, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := espgw("sheet", "import", csv)
	want := `  partner.csv!B8: "AES-GCM-256 (ICV 12)" — unknown phase 2 encryption (espgw does AES-GCM with a 16-byte ICV only)`
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stdout, "connections:") {
		t.Errorf("espgw sheet import = %d\nstdout:\n%s\nstderr:\n%s\nwant stderr with %s", code, stdout, stderr, want)
	}
}

func TestSheetExportFormats(t *testing.T) {
	code, stdout, stderr := espgw("sheet", "export", "-c", "testdata/good.yaml", "megatelecom", "--format", "csv")
	if code != 0 || !strings.Contains(stdout, "Public IP address (peer IP),192.0.2.2,192.0.2.1,Static addresses\n") {
		t.Errorf("csv export = %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = espgw("sheet", "export", "-c", "testdata/good.yaml", "nosuch")
	if code != 1 || !strings.Contains(stderr, `testdata/good.yaml: no connection "nosuch" (configured: MegaTelecom)`) {
		t.Errorf("export of an unknown connection = %d\n%s", code, stderr)
	}
}
