package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"
)

// Defaults of the optional settings.
const (
	DefaultControlSocket = "/run/espgw/espgw.sock"
	DefaultDatapath      = "auto"
)

// Load reads and validates the YAML configuration file at path. A relative psk_file is
// resolved against the directory of path; a psk_file that group or others may access, or
// that another user owns, is refused like racoon does (checkPSKFile).
func Load(path string) (*Config, error) {
	cfg, _, err := LoadWarn(path)
	return cfg, err
}

// LoadWarn is Load that also returns warnings: problems that do not stop espgw but
// should be fixed. An inline psk in a file that group or others can read is one.
func LoadWarn(path string) (*Config, []string, error) {
	return load(path, &decoder{baseDir: filepath.Dir(path)})
}

// LoadIgnoringPSKFileMode is Load without the checks of psk_file's owner and mode, for
// `espgw doctor`, which reports those itself and goes on checking the rest.
func LoadIgnoringPSKFileMode(path string) (*Config, error) {
	cfg, _, err := load(path, &decoder{baseDir: filepath.Dir(path), loosePSK: true})
	return cfg, err
}

func load(path string, d *decoder) (*Config, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, inline, err := parse(f, d)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		for _, p := range inline {
			warnings = append(warnings, fmt.Sprintf("%s: a pre-shared key inline in %s, which group or others may read (mode %04o): "+
				"chmod 600 it or use psk_file", p, path, fi.Mode().Perm()))
		}
	}
	return cfg, warnings, nil
}

// Parse reads and validates a YAML configuration. A relative psk_file is resolved against
// the working directory. The error joins one FieldError per problem found (see errors.Join),
// or is a YAML syntax error.
func Parse(r io.Reader) (*Config, error) {
	cfg, _, err := parse(r, &decoder{baseDir: "."})
	return cfg, err
}

// parse also returns the paths of the inline psk settings.
func parse(r io.Reader, d *decoder) (*Config, []string, error) {
	// "::" instead of "." so that connection and tunnel names may contain dots.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(r); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	// AllSettings drops null values and empty mappings; Get of a top-level key keeps them.
	raw := make(map[string]any)
	for _, k := range v.AllKeys() {
		top, _, _ := strings.Cut(k, "::")
		raw[top] = v.Get(top)
	}
	cfg := d.config(raw)
	errs := d.errs
	for _, e := range cfg.check() {
		if !d.isReported(e.Path) {
			errs = append(errs, e)
		}
	}
	if err := join(errs); err != nil {
		return nil, nil, err
	}
	return cfg, d.inlinePSK, nil
}

var topKeys = []string{"control_socket", "datapath", "save_keys", "metrics", "ebpf", "connections"}

// config decodes the top level and applies the defaults.
func (d *decoder) config(raw map[string]any) *Config {
	cfg := &Config{ControlSocket: DefaultControlSocket, Datapath: DefaultDatapath}
	d.object("", raw, topKeys...)
	if s, ok := d.str("control_socket", raw["control_socket"], "an absolute path"); ok {
		cfg.ControlSocket = s
	}
	if s, ok := d.str("datapath", raw["datapath"], "auto, xfrm or userspace"); ok {
		cfg.Datapath = s
	}
	if s, ok := d.str("save_keys", raw["save_keys"], "a directory or \"\""); ok {
		cfg.SaveKeys = s
	}
	metrics := d.object("metrics", raw["metrics"], "listen")
	if s, ok := d.str("metrics.listen", metrics["listen"], "host:port or \"\""); ok {
		cfg.MetricsListen = s
	}
	cfg.EBPF = d.ebpf("ebpf", raw["ebpf"])
	conns := raw["connections"]
	for _, name := range d.names("connections", conns, "connection") {
		c := d.connection(sub("connections", name), name, conns.(map[string]any)[name])
		cfg.Connections = append(cfg.Connections, c) // names come sorted
	}
	return cfg
}
