package des3

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// TestGeneratedUpToDate regenerates the code from sboxes.netlist and compares it with the
// committed files, so the netlist and the code cannot drift apart.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		testutil.NotApplicable(t, "-short: builds and runs gen.go")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		testutil.Skipf(t, "needs the go command to run gen.go: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "run", "gen.go", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, out)
	}
	for _, name := range []string{"sbox_gen.go", "transpose_gen.go"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what gen.go makes of sboxes.netlist: run go generate", name)
		}
	}
}
