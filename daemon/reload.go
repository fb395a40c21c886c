package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/espgw/espgw/config"
)

// reload re-reads the configuration file and applies it. The new file is parsed and
// validated first; if anything is wrong with it the running configuration stays.
func (d *daemon) reload(ctx context.Context) error {
	if d.opts.ConfigPath == "" {
		return errors.New("reload: espgw was started without a configuration file")
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	if d.opts.ControlSocket != "" {
		cfg.ControlSocket = d.opts.ControlSocket
	}
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	if err := needsRestart(old, cfg); err != nil {
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	d.kernel.configure(cfg)
	if err := d.engine.Configure(cfg.Connections); err != nil {
		d.kernel.configure(old)
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	d.events.Configure(connTunnels(cfg))
	var ebpfErr error
	if d.ebpf != nil {
		ebpfErr = d.ebpf.Reconfigure(ebpfOptions(cfg))
	}
	if err := errors.Join(ebpfErr, d.syncServiceAddresses(ctx, cfg), d.syncPolicies(ctx)); err != nil {
		return fmt.Errorf("reload %s: configuration applied, but: %w", d.opts.ConfigPath, err)
	}
	d.log.Info("configuration reloaded", "file", d.opts.ConfigPath, "connections", len(cfg.Connections))
	return nil
}

// needsRestart reports the settings that differ between old and new but are fixed while
// espgw runs: sockets, the datapath, the key log and the eBPF attachments are set up once
// at start. The other ebpf settings apply on reload.
func needsRestart(old, new *config.Config) error {
	var errs []error
	changed := func(what string, a, b any) {
		errs = append(errs, fmt.Errorf("%s changed from %v to %v: restart espgw to apply it", what, a, b))
	}
	if old.ControlSocket != new.ControlSocket {
		changed("control_socket", old.ControlSocket, new.ControlSocket)
	}
	if old.Datapath != new.Datapath {
		changed("datapath", old.Datapath, new.Datapath)
	}
	if old.MetricsListen != new.MetricsListen {
		changed("metrics.listen", fmt.Sprintf("%q", old.MetricsListen), fmt.Sprintf("%q", new.MetricsListen))
	}
	if old.SaveKeys != new.SaveKeys {
		changed("save_keys", fmt.Sprintf("%q", old.SaveKeys), fmt.Sprintf("%q", new.SaveKeys))
	}
	if old.EBPF.Enabled != new.EBPF.Enabled {
		changed("ebpf.enabled", old.EBPF.Enabled, new.EBPF.Enabled)
	}
	if old.EBPF.WANInterface != new.EBPF.WANInterface {
		changed("ebpf.wan_interface", fmt.Sprintf("%q", old.EBPF.WANInterface), fmt.Sprintf("%q", new.EBPF.WANInterface))
	}
	if old.EBPF.TopFlows != new.EBPF.TopFlows {
		changed("ebpf.top_flows", old.EBPF.TopFlows, new.EBPF.TopFlows)
	}
	if a, b := localAddresses(old), localAddresses(new); !slices.Equal(a, b) {
		changed("the set of local_address values", a, b)
	}
	return errors.Join(errs...)
}
