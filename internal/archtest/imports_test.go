package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/espgw/espgw/"

// rule forbids every package under from (the package and its subpackages) to depend, even
// indirectly, on any package under to.
type rule struct {
	from, to, why string
}

var rules = []rule{
	{"ike", "datapath", "the engine negotiates; daemon adapts ike.Kernel onto datapath.Datapath"},
	{"ike", "loader", "eBPF is the datapath's business"},
	{"ike", "daemon", "daemon wires ike, not the other way round"},
	{"ike", "config", "the engine has its own connection model; config translates into it"},
	{"datapath", "ike", "the datapath programs what it is given and knows no IKE"},
}

// pending lists dependencies that break a rule today and are allowed until the named work
// is done; the test fails once one is no longer needed, so the list only shrinks.
var pending = []struct{ from, to, until string }{
	{"ike", "config", "issue 11 item 1: the engine's own connection model"},
}

func under(pkg, dir string) bool {
	p := strings.TrimPrefix(pkg, module)
	return p != pkg && (p == dir || strings.HasPrefix(p, dir+"/"))
}

// TestImportRules checks every package of the module (without its tests) against rules.
func TestImportRules(t *testing.T) {
	deps := moduleDeps(t)
	if len(deps) < 20 {
		t.Fatalf("go list found %d packages, want the whole module", len(deps))
	}
	used := make([]bool, len(pending))
	for pkg, ds := range deps {
		for _, r := range rules {
			if !under(pkg, r.from) {
				continue
			}
			for _, d := range ds {
				if !under(d, r.to) {
					continue
				}
				if i := pendingIndex(pkg, d, r); i >= 0 {
					used[i] = true
					continue
				}
				t.Errorf("%s depends on %s; %s must not depend on %s: %s", pkg, d, r.from, r.to, r.why)
			}
		}
	}
	for i, p := range pending {
		if !used[i] {
			t.Errorf("pending exception %s -> %s (%s) is no longer needed: remove it", p.from, p.to, p.until)
		}
	}
}

// pendingIndex returns the index of the pending exception that allows pkg to depend on d
// under rule r, or -1.
func pendingIndex(pkg, d string, r rule) int {
	for i, p := range pending {
		if p.from == r.from && p.to == r.to && under(pkg, p.from) && under(d, p.to) {
			return i
		}
	}
	return -1
}

// moduleDeps maps every package of the module to its module-internal dependencies, direct
// and indirect, as `go list -deps` resolves them.
func moduleDeps(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.Bytes())
	}
	deps := make(map[string][]string)
	s := bufio.NewScanner(bytes.NewReader(out))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 0 {
			continue
		}
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module) {
				deps[f[0]] = append(deps[f[0]], d)
			}
		}
		if _, ok := deps[f[0]]; !ok {
			deps[f[0]] = nil
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return deps
}
