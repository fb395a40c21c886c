package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const racoonTestdata = "../../importer/racoon/testdata/"

// TestImportRacoon runs `espgw import racoon` on the seed's files, then `espgw config check`
// on what it wrote.
func TestImportRacoon(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk.txt")
	src, err := os.ReadFile(racoonTestdata + "seed/psk.txt")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(psk, src, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "espgw.yaml")
	code, stdout, stderr := espgw("import", "racoon", "--racoon-conf", racoonTestdata+"seed/racoon.conf",
		"--setkey", racoonTestdata+"seed/ipsec-tools.conf", "--psk", psk, "--name", "megatelecom", "--service-interface", "eth1", "-o", out)
	if code != 0 || stdout != "" {
		t.Fatalf("espgw import racoon = %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"espgw: 4 directives not mapped or mapped differently:\n",
		"  " + racoonTestdata + "seed/racoon.conf:45: compression_algorithm deflate: not mapped: espgw has no IPComp",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	code, stdout, stderr = espgw("config", "check", "-c", out)
	if code != 0 || stdout != "configuration OK: 1 connections, 1 tunnels\n" {
		t.Errorf("espgw config check of the import = %d\n%s%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "SUPERPASSWORD") {
		t.Error("the pre-shared key was printed")
	}
}

// TestImportRacoonInvalid: a result that fails config check (no psk.txt for the peer) is
// reported, the exit status is 1 and -o is not written.
func TestImportRacoonInvalid(t *testing.T) {
	out := filepath.Join(t.TempDir(), "espgw.yaml")
	code, _, stderr := espgw("import", "racoon", "--racoon-conf", racoonTestdata+"seed/racoon.conf", "-o", out)
	if code != 1 || !strings.Contains(stderr, "espgw: the imported configuration does not pass config check:\n  connections.peer-192.0.2.2.psk_file: cannot read the key file") {
		t.Errorf("espgw import racoon without --psk = %d\n%s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("-o %s was written: %v", out, err)
	}
}
