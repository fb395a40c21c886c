package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/espgw/espgw/config"
)

// checkConfig loads the configuration: one FAIL per problem, or one OK. It returns nil when
// the file does not load even with psk_file permissions ignored; the checks that need it are
// then left out.
func checkConfig(r *report, path string) *config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		// With only psk_file permissions wrong (the psk check names them), the rest can
		// still be checked.
		loose, lerr := config.LoadIgnoringPSKFileMode(path)
		fix := fmt.Sprintf("edit %s (`espgw config check -c %s` lists every problem); checks that need the configuration were skipped", path, path)
		if lerr == nil {
			fix = "fix the psk_file as the psk line says; the other checks ran with this configuration"
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			r.fail(IDConfig, path, fix, "%s", line)
		}
		return loose
	}
	tunnels := 0
	for _, c := range cfg.Connections {
		tunnels += len(c.Tunnels)
	}
	r.ok(IDConfig, path, "valid: %d connections, %d tunnels, datapath %s", len(cfg.Connections), tunnels, cfg.Datapath)
	return cfg
}

// checkPSK looks at where the pre-shared keys live, reading the file as plain YAML so that it
// also works when the configuration does not load (a loose psk_file is one reason it does
// not): a psk_file must pass config.CheckPSKFile, an inline psk needs a file others cannot read.
func checkPSK(r *report, path string) {
	f, err := os.Open(path)
	if err != nil {
		return // checkConfig reported it
	}
	defer f.Close()
	raw, err := config.ReadTree(f)
	if err != nil {
		return // checkConfig reported it
	}
	conns, _ := raw["connections"].(map[string]any)
	names := make([]string, 0, len(conns))
	for name := range conns {
		names = append(names, name)
	}
	sort.Strings(names)
	var inline []string
	for _, name := range names {
		m, _ := conns[name].(map[string]any)
		if m["psk"] != nil {
			inline = append(inline, name)
		}
		file, ok := m["psk_file"].(string)
		if !ok || file == "" {
			continue
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(path), file)
		}
		subj := "connections." + name + ".psk_file"
		if err := config.CheckPSKFile(file); err != nil {
			r.fail(IDPSK, subj, fmt.Sprintf("chmod 600 %s && chown root %s (racoon refuses such files too)", file, file),
				"%s: %v", file, err)
			continue
		}
		r.ok(IDPSK, subj, "%s is a regular file only its owner can read", file)
	}
	if len(inline) == 0 {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	perm := fi.Mode().Perm()
	subj := "connections." + strings.Join(inline, ",") + ".psk"
	fix := fmt.Sprintf("chmod 600 %s, or move the key into a psk_file (chmod 600)", path)
	switch {
	case perm&0o004 != 0:
		r.fail(IDPSK, subj, fix, "the pre-shared key is inline in %s, which every user can read (mode %#o)", path, perm)
	case perm&0o040 != 0:
		r.warn(IDPSK, subj, fix, "the pre-shared key is inline in %s, which its group can read (mode %#o)", path, perm)
	default:
		r.ok(IDPSK, subj, "the pre-shared key is inline in %s, which only its owner can read (mode %#o)", path, perm)
	}
}
