package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
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
	raw, env, err := readTree(r)
	if err != nil {
		return nil, nil, err
	}
	cfg := d.config(raw)
	errs := d.errs
	for _, e := range cfg.check() {
		if _, ok := env[e.Path]; ok {
			e.Msg += " (from " + EnvVar(e.Path) + ")"
		}
		if !d.isReported(e.Path) {
			errs = append(errs, e)
		}
	}
	if err := join(errs); err != nil {
		return nil, nil, err
	}
	return cfg, d.inlinePSK, nil
}

// ReadTree reads a YAML configuration into the untyped tree the decoder takes: viper's
// settings, whose keys it lowercases, except that connection and tunnel names keep the
// case they are written in (`espgw status` shows MegaTelecom, not megatelecom).
// ESPGW_* environment variables override control_socket, datapath, save_keys and
// metrics.listen (EnvVar).
func ReadTree(r io.Reader) (map[string]any, error) {
	raw, _, err := readTree(r)
	return raw, err
}

// readTree is ReadTree that also returns the settings the environment gave, by path.
func readTree(r io.Reader) (map[string]any, map[string]any, error) {
	raw, err := readFile(r)
	if err != nil {
		return nil, nil, err
	}
	env := fromEnv()
	for path, val := range env {
		setPath(raw, path, val)
	}
	return raw, env, nil
}

// setPath sets the setting at path (one or two keys) in raw. A parent that is not a
// mapping stays as it is, for the decoder to report.
func setPath(raw map[string]any, path string, val any) {
	top, key, nested := strings.Cut(path, ".")
	if !nested {
		raw[top] = val
		return
	}
	switch m := raw[top].(type) {
	case nil:
		raw[top] = map[string]any{key: val}
	case map[string]any:
		m[key] = val
	}
}

// envSettings are the settings an environment variable (EnvVar) overrides, validated like
// the file's. A set but empty variable counts: ESPGW_SAVE_KEYS= turns saving keys off.
var envSettings = []string{"control_socket", "datapath", "save_keys", "metrics.listen"}

// EnvVar is the environment variable that overrides the setting at path: ESPGW_ and the
// path in capitals with "_" for "." (ESPGW_METRICS_LISTEN for metrics.listen).
func EnvVar(path string) string {
	return "ESPGW_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// fromEnv returns the envSettings that the environment sets, by path.
func fromEnv() map[string]any {
	v := viper.New()
	v.AllowEmptyEnv(true)
	set := make(map[string]any)
	for _, path := range envSettings {
		_ = v.BindEnv(path, EnvVar(path)) // fails only without a key
		if v.IsSet(path) {
			set[path] = v.GetString(path)
		}
	}
	return set
}

// readFile reads the YAML itself into the decoder's tree.
func readFile(r io.Reader) (map[string]any, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// "::" instead of "." so that connection and tunnel names may contain dots.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// AllSettings drops null values and empty mappings; Get of a top-level key keeps them.
	raw := make(map[string]any)
	for _, k := range v.AllKeys() {
		top, _, _ := strings.Cut(k, "::")
		raw[top] = v.Get(top)
	}
	if _, ok := raw["connections"]; ok {
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		for k, conns := range doc {
			if strings.ToLower(k) == "connections" {
				raw["connections"] = connectionsTree(conns)
			}
		}
	}
	return raw, nil
}

// connectionsTree returns the connections mapping with connection and tunnel names as
// written and every setting key below them lowercased, as viper does.
func connectionsTree(v any) any {
	conns, ok := stringMap(v)
	if !ok {
		return v
	}
	for name, c := range conns {
		settings, ok := stringMap(c)
		if !ok {
			continue
		}
		out := make(map[string]any, len(settings))
		for k, e := range settings {
			k = strings.ToLower(k)
			out[k] = lowerKeys(e)
			if tunnels, ok := stringMap(e); ok && k == "tunnels" {
				for tn, t := range tunnels {
					tunnels[tn] = lowerKeys(t)
				}
				out[k] = tunnels
			}
		}
		conns[name] = out
	}
	return conns
}

// lowerKeys lowercases the keys of every mapping in v.
func lowerKeys(v any) any {
	m, ok := stringMap(v)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, e := range m {
		out[strings.ToLower(k)] = lowerKeys(e)
	}
	return out
}

// stringMap returns a YAML mapping with its keys as strings (a key may be a number).
func stringMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[fmt.Sprint(k)] = e
		}
		return out, true
	}
	return nil, false
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
