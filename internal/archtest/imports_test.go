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
	{"model", "config", "the model is what config produces, not the other way round"},
	{"model", "daemon", "the model holds values, no wiring"},
	{"config", "daemon", "config only reads files"},
	{"datapath", "ike", "the datapath programs what it is given and knows no IKE"},
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
	for pkg, ds := range deps {
		for _, r := range rules {
			if !under(pkg, r.from) {
				continue
			}
			for _, d := range ds {
				if !under(d, r.to) {
					continue
				}
				t.Errorf("%s depends on %s; %s must not depend on %s: %s", pkg, d, r.from, r.to, r.why)
			}
		}
	}
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

// TestEngineWithoutViper keeps the file reader's dependencies out of the engine: viper
// (and what it pulls in) belongs to config alone.
func TestEngineWithoutViper(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./ike/...", "./model")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/spf13/") || strings.HasPrefix(p, "github.com/fsnotify/") {
			t.Errorf("the engine depends on %s: only config may read files with viper", p)
		}
	}
}
