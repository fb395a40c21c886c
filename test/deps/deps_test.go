package deps

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
	"github.com/espgw/espgw/internal/testutil/strongswan"
)

// root is the repository, seen from this package's directory (where go test runs).
const root = "../.."

// requirement is one external file that a test or the demo needs, and the Debian package the
// code names for it (in its skip or preflight message).
type requirement struct {
	file  string // absolute path, or a command name looked up in PATH
	pkg   string
	where string // who needs it, for the error message
}

func TestEverythingUsedIsInstalledByMakeDeps(t *testing.T) {
	testutil.RequireTool(t, "dpkg-query", "dpkg")
	testutil.RequireTool(t, "apt-cache", "apt")
	installed, err := closure(makeDepsPackages(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range basePackages(t) {
		installed[p] = true
	}
	reqs := requirements(t)
	for _, e := range check(reqs, installed, ownerIn(dpkgOwners(t))) {
		t.Error(e)
	}
	t.Logf("%d files and programs checked against %d packages", len(reqs), len(installed))
}

// check returns one message per requirement that a fresh machine after `make deps` would lack.
func check(reqs []requirement, installed map[string]bool, owner func(string) (string, error)) []string {
	var errs []string
	for _, r := range reqs {
		path := r.file
		if !filepath.IsAbs(path) {
			p, err := exec.LookPath(path)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s (needed by %s) is not in PATH: apt-get install %s, and add it to DEB_PKGS in the Makefile", r.file, r.where, r.pkg))
				continue
			}
			path = p
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Sprintf("%s (needed by %s) is missing: apt-get install %s, and add it to DEB_PKGS in the Makefile", path, r.where, r.pkg))
			continue
		}
		own, err := owner(path)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s (needed by %s): %v", path, r.where, err))
			continue
		}
		if own != r.pkg {
			errs = append(errs, fmt.Sprintf("%s (needed by %s) belongs to package %s, but the code names %s", path, r.where, own, r.pkg))
		}
		if !installed[own] {
			errs = append(errs, fmt.Sprintf("%s (needed by %s) belongs to %s, which `make deps` does not install (not in DEB_PKGS, not a Depends of one): add %s to DEB_PKGS in the Makefile", path, r.where, own, own))
		}
	}
	return errs
}

func TestCheckFindsAMissingRecommends(t *testing.T) {
	// The fresh-machine defect: openssl's plugin belongs to a package strongswan-charon only
	// Recommends, so it is not in the closure of a list that does not name it.
	plugin := "/usr/lib/ipsec/plugins/libstrongswan-openssl.so"
	tmp := filepath.Join(t.TempDir(), "libstrongswan-openssl.so")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	owner := func(string) (string, error) { return "libstrongswan-standard-plugins", nil }
	reqs := []requirement{{file: tmp, pkg: "libstrongswan-standard-plugins", where: "charon"}}
	errs := check(reqs, map[string]bool{"strongswan-charon": true, "libstrongswan": true}, owner)
	if len(errs) != 1 || !strings.Contains(errs[0], "add libstrongswan-standard-plugins to DEB_PKGS") {
		t.Errorf("check with %s outside the closure = %q, want one error naming the package", plugin, errs)
	}
	if errs := check(reqs, map[string]bool{"libstrongswan-standard-plugins": true}, owner); len(errs) != 0 {
		t.Errorf("check with the package installed = %q, want none", errs)
	}
	wrong := []requirement{{file: tmp, pkg: "libcharon-extra-plugins", where: "charon"}}
	if errs := check(wrong, map[string]bool{"libstrongswan-standard-plugins": true}, owner); len(errs) != 1 || !strings.Contains(errs[0], "the code names libcharon-extra-plugins") {
		t.Errorf("check with a wrong package name = %q, want one error", errs)
	}
	missing := []requirement{{file: tmp + ".absent", pkg: "p", where: "w"}}
	if errs := check(missing, map[string]bool{"p": true}, owner); len(errs) != 1 || !strings.Contains(errs[0], "apt-get install p") {
		t.Errorf("check with a missing file = %q, want one error", errs)
	}
}

// makeDepsPackages returns DEB_PKGS from the Makefile: what `make deps` installs by name.
func makeDepsPackages(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	m := regexp.MustCompile(`(?m)^DEB_PKGS\s*:?=(.*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("Makefile: no DEB_PKGS line")
	}
	pkgs := strings.Fields(m[1])
	if len(pkgs) < 5 {
		t.Fatalf("Makefile: DEB_PKGS = %q, too short to be the real list", pkgs)
	}
	return pkgs
}

// closure returns pkgs and everything they Depend or Pre-Depend on, recursively, as apt sees it
// (alternatives and virtual packages included: any of them may be what got installed).
func closure(pkgs []string) (map[string]bool, error) {
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, pkgs...)
	out, err := exec.Command("apt-cache", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends: %w (run apt-get update once)", err)
	}
	set := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "pkg" heads a package; "  Depends: dep", " |Depends: alt", "  PreDepends: dep" follow.
		line := sc.Text()
		if strings.HasPrefix(line, " ") {
			kind, dep, ok := strings.Cut(strings.TrimLeft(line, " |"), ": ")
			if !ok || (kind != "Depends" && kind != "PreDepends") {
				continue
			}
			line = dep
		}
		name := strings.Trim(strings.TrimSpace(line), "<>")
		name, _, _ = strings.Cut(name, ":") // libfoo:i386
		set[name] = true
	}
	for _, p := range pkgs {
		if !set[p] {
			return nil, fmt.Errorf("apt-cache knows no package %q from DEB_PKGS", p)
		}
	}
	return set, nil
}

// basePackages returns the packages every Debian system has: Essential or of Priority required.
func basePackages(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Package} ${Essential} ${Priority}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var base []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && (f[1] == "yes" || f[2] == "required") {
			base = append(base, f[0])
		}
	}
	return base
}

// dpkgOwners indexes dpkg's file lists (what `dpkg -S` reads): file → the package that ships it.
func dpkgOwners(t *testing.T) map[string]string {
	t.Helper()
	lists, err := filepath.Glob("/var/lib/dpkg/info/*.list")
	if err != nil || len(lists) == 0 {
		t.Fatalf("no dpkg file lists in /var/lib/dpkg/info (%v)", err)
	}
	owners := make(map[string]string)
	for _, l := range lists {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		pkg, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(l), ".list"), ":")
		for _, f := range strings.Split(string(b), "\n") {
			owners[f] = pkg
		}
	}
	return owners
}

// ownerIn returns a lookup of path in owners that also tries the merged-/usr twin (/usr/sbin/ip
// is registered as /sbin/ip) and the symlink target.
func ownerIn(owners map[string]string) func(string) (string, error) {
	return func(path string) (string, error) {
		cands := []string{path}
		if p, err := filepath.EvalSymlinks(path); err == nil {
			cands = append(cands, p)
		}
		for _, p := range slices.Clone(cands) {
			if rest, ok := strings.CutPrefix(p, "/usr"); ok {
				cands = append(cands, rest)
			} else {
				cands = append(cands, "/usr"+p)
			}
		}
		for _, p := range cands {
			if pkg, ok := owners[p]; ok {
				return pkg, nil
			}
		}
		return "", errors.New("no installed Debian package ships it (dpkg -S): installed by hand?")
	}
}

// requirements collects every external file named in the tree: the charon and swanctl plugins
// of the test harness, every testutil.RequireTool/RequireFile call with literal arguments, and
// the demo's and the VM runner's preflight calls and plugin lists.
func requirements(t *testing.T) []requirement {
	t.Helper()
	var reqs []requirement
	for _, kernelESP := range []bool{false, true} {
		files := strongswan.PluginFiles(kernelESP)
		for _, f := range slices.Sorted(maps.Keys(files)) {
			reqs = append(reqs, requirement{f, files[f], "internal/testutil/strongswan"})
		}
	}
	goReqs := goRequirements(t)
	shReqs := shellRequirements(t)
	if len(goReqs) < 5 || len(shReqs) < 5 {
		t.Fatalf("found %d Require calls in Go and %d preflight needs in scripts: the scan is broken", len(goReqs), len(shReqs))
	}
	seen := make(map[requirement]bool)
	return slices.DeleteFunc(append(append(reqs, goReqs...), shReqs...), func(r requirement) bool {
		dup := seen[r]
		seen[r] = true
		return dup
	})
}

// goRequirements finds RequireTool(tb, "tool", "pkg") and RequireFile(tb, "path", "what", "pkg").
func goRequirements(t *testing.T) []requirement {
	t.Helper()
	var reqs []requirement
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		// testutil's own tests call the helpers with made-up tools to test the skips.
		if filepath.Dir(path) == filepath.Join(root, "internal", "testutil") && strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			case *ast.Ident:
				name = fn.Name
			}
			fileArg, pkgArg := -1, -1
			switch name {
			case "RequireTool":
				fileArg, pkgArg = 1, 2
			case "RequireFile":
				fileArg, pkgArg = 1, 3
			default:
				return true
			}
			if len(call.Args) <= pkgArg {
				return true
			}
			file, ok1 := stringLit(call.Args[fileArg])
			pkg, ok2 := stringLit(call.Args[pkgArg])
			// Files under /sys and /proc are kernel features, not packages.
			if ok1 && ok2 && !strings.HasPrefix(file, "/sys/") && !strings.HasPrefix(file, "/proc/") {
				rel, _ := filepath.Rel(root, path)
				reqs = append(reqs, requirement{file, pkg, fmt.Sprintf("%s:%d", rel, fset.Position(call.Pos()).Line)})
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var (
	needCall   = regexp.MustCompile(`(?m)^\s*need_(tool|file)\s+(\S+)\s+(\S+)\s*$`)
	pluginList = regexp.MustCompile(`(?m)^(CHARON|SWANCTL)_PLUGINS="([^"]*)"`)
)

// shellRequirements finds `need_tool NAME PKG` / `need_file PATH PKG` in the scripts and the
// plugins of their *_PLUGINS lists, with the package preflight.sh names for each.
func shellRequirements(t *testing.T) []requirement {
	t.Helper()
	var reqs []requirement
	scripts, _ := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	vm, _ := filepath.Glob(filepath.Join(root, "test", "vm", "*.sh"))
	for _, path := range append(scripts, vm...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range needCall.FindAllStringSubmatch(string(b), -1) {
			reqs = append(reqs, requirement{m[2], m[3], rel})
		}
		for _, m := range pluginList.FindAllStringSubmatch(string(b), -1) {
			for _, p := range strings.Fields(m[2]) {
				reqs = append(reqs, requirement{strongswan.PluginDir + "/libstrongswan-" + p + ".so", pluginPackage(t, p), rel})
			}
		}
	}
	return reqs
}

// pluginPackage asks preflight.sh which package it names for charon plugin p.
func pluginPackage(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("bash", "-c", `. "$1"; charon_plugin_package "$2"`, "sh",
		filepath.Join(root, "scripts", "lib", "preflight.sh"), p).Output()
	if err != nil {
		t.Fatalf("preflight.sh charon_plugin_package %s: %v", p, err)
	}
	return strings.TrimSpace(string(out))
}

// A missing plugin stops the demo before it starts charon, with one line naming the package.
func TestPreflightNamesThePackage(t *testing.T) {
	cmd := exec.Command("bash", "-c", `. "$1"; need_charon_plugins random openssl; echo reached`, "sh",
		filepath.Join(root, "scripts", "lib", "preflight.sh"))
	cmd.Env = append(os.Environ(), "CHARON_PLUGIN_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	want := "missing: charon plugin 'random'"
	if err == nil || strings.Count(string(out), "\n") != 1 || !strings.HasPrefix(string(out), want) ||
		!strings.Contains(string(out), "apt-get install libstrongswan\n") {
		t.Errorf("need_charon_plugins in an empty dir: err %v, output %q; want exit 1 and one line %q… naming libstrongswan", err, out, want)
	}
}
