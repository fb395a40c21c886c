// Package daemon runs espgw: it wires the configuration to the IKE engine and the engine
// to a datapath (wrapped by ebpfdp when the eBPF programs run), installs the tunnels'
// policies, forwards datapath events to the engine, serves the control socket (the
// protocol of package control) and writes the save_keys files.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/conn"
	"github.com/espgw/espgw/datapath"
	"github.com/espgw/espgw/datapath/ebpfdp"
	"github.com/espgw/espgw/ike"
	"github.com/espgw/espgw/loader"
	"github.com/espgw/espgw/metrics"
)

// Datapath kinds.
const (
	KindXFRM      = "xfrm"
	KindUserspace = "userspace"
)

// Options are Run's hooks into the rest of the system; cmd/espgw fills in the real ones.
type Options struct {
	Logger *slog.Logger // nil discards

	// ConfigPath is the file reload (SIGHUP, `espgw reload`) re-reads; "" refuses reloads.
	ConfigPath string
	// ControlSocket, if set, replaces control_socket of every configuration (--socket).
	ControlSocket string
	// Reload delivers reload requests, e.g. SIGHUP from signal.Notify; nil = none.
	Reload <-chan os.Signal

	// NewDatapath opens the backend kind (KindXFRM or KindUserspace). The userspace backend
	// carries ESP-in-UDP on b, the bind the engine uses. Required.
	NewDatapath func(kind string, b conn.Bind, log *slog.Logger) (datapath.Datapath, error)
	// ProbeKernelESP returns why the kernel cannot carry ESP with these transforms, nil if
	// it can. datapath: auto picks xfrm when it returns nil; a nil hook means userspace.
	ProbeKernelESP func(ctx context.Context, ts []Transform) error
	// Listen opens the IKE and NAT-T sockets on addrs; kernelESPInUDP asks for kernel
	// decapsulation of ESP-in-UDP (xfrm). nil opens conn.Listen on ports 500 and 4500.
	Listen func(addrs []netip.Addr, kernelESPInUDP bool) (conn.Bind, error)
	// OpenLoader loads the eBPF programs (loader.Open); the daemon attaches them in the
	// current network namespace. nil runs without eBPF, as when they cannot load.
	OpenLoader func(opts loader.Options) (*loader.Loader, error)
	// Ready, if set, is called once the control socket accepts requests and the tunnels'
	// policies are installed.
	Ready func()
	// Notify, if set, tells a service manager (sd_notify in cmd/espgw) what the daemon does:
	// NotifyReady when Ready is called and after every reload, whatever its outcome;
	// NotifyReloading before a reload; NotifyStopping at shutdown. status is one line for
	// humans (the tunnel count, a failed reload's error).
	Notify func(state NotifyState, status string)
}

// NotifyState is a lifecycle step reported through Options.Notify.
type NotifyState int

const (
	NotifyReady NotifyState = iota + 1
	NotifyReloading
	NotifyStopping
)

// Transform is an ESP algorithm combination the configuration may negotiate.
type Transform struct {
	Enc     datapath.Encryption
	Integ   datapath.Integrity
	KeyBits int // AES key size; 0 for 3DES
}

// daemon is one running espgw.
type daemon struct {
	log  *slog.Logger
	opts Options
	// dp is what SAs and policies are installed through: the backend, wrapped by ebpf when
	// the eBPF programs run.
	dp     datapath.Datapath
	kernel *kernel
	engine *ike.Engine
	ebpf   *ebpfdp.Datapath // nil: no eBPF programs, for the reason in ebpfOff
	// ebpfOff says why there are no eBPF programs; ebpfAttached where they are.
	ebpfOff      string
	ebpfAttached []string
	events       *metrics.Events // what the engine reports, for /metrics

	reloadMu sync.Mutex // serializes reloads
	mu       sync.Mutex // guards what follows; never held while calling the engine
	cfg      *config.Config
	policies map[datapath.Policy]ike.TunnelInfo // installed
	services map[string]serviceAddress          // applied, by connection
	upping   map[tunnelKey]int                  // `espgw up` requests in flight
}

// Run runs the gateway for cfg until ctx ends, then removes everything it installed:
// child SAs (with Delete notifications to the peers), policies, service addresses, the
// datapath's state and the control socket. It returns an error if the gateway could not
// start or failed.
func Run(ctx context.Context, cfg *config.Config, opts Options) (err error) {
	if opts.ControlSocket != "" {
		cfg.ControlSocket = opts.ControlSocket
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if opts.NewDatapath == nil {
		return errors.New("daemon: Options.NewDatapath is nil, want a datapath constructor")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &daemon{log: opts.Logger, opts: opts, cfg: cfg,
		policies: make(map[datapath.Policy]ike.TunnelInfo), services: make(map[string]serviceAddress),
		upping: make(map[tunnelKey]int)}

	// The control socket first: a second espgw must stop before it touches anything.
	ctl, err := listenControl(cfg.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	var keyLog ike.KeyLogger // an interface holding a nil *KeyLog would not be nil
	if cfg.SaveKeys != "" {
		if keyLog, err = NewKeyLog(cfg.SaveKeys, d.log); err != nil {
			return err
		}
	}
	bind, err := d.openDatapath(ctx, cfg)
	if err != nil {
		return err
	}
	defer bind.Close()
	defer func() {
		if cerr := d.dp.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %s datapath: %w", d.dp.Name(), cerr))
		}
	}()
	// The eBPF programs go in before any policy, so no tunnel's traffic passes the guard
	// unseen, and come out after the policies at shutdown.
	var off offError
	var ebpfErr error
	if d.ebpf, d.ebpfAttached, ebpfErr = d.openEBPF(cfg); errors.As(ebpfErr, &off) {
		d.ebpfOff = ebpfErr.Error()
		d.log.Info("eBPF programs off", "reason", ebpfErr)
	} else if ebpfErr != nil {
		d.ebpfOff = ebpfErr.Error()
		d.log.Warn("eBPF programs not loaded: running without the fail-closed guard, MSS clamp, XDP filter and flow counters", "reason", ebpfErr)
	} else {
		d.dp = d.ebpf // closed by the deferred d.dp.Close, before the backend
		d.log.Info("eBPF programs attached", "at", d.ebpfAttached)
	}
	d.kernel = newKernel(d.dp)
	d.kernel.configure(cfg)
	d.events = newEvents(cfg)
	d.engine = ike.New(ike.Options{Logger: d.log, Bind: bind, Kernel: d.kernel, KeyLog: keyLog, Observer: observer{d.events}})

	// The engine outlives ctx: at shutdown it must still delete its SAs and tell the
	// peers. Policies go in after Configure, which assigns the reqids, and after the service
	// addresses, which the userspace datapath routes from; they are removed after the engine
	// has deleted its SAs, so no traffic leaves in clear meanwhile.
	defer d.removeServiceAddresses()
	defer d.removePolicies()
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopEngine(); wg.Wait() }()
	engineErr := make(chan error, 1)
	wg.Go(func() { engineErr <- d.engine.Run(engineCtx) })
	wg.Go(func() { d.forwardEvents(engineCtx) })
	if err := d.engine.Configure(cfg.Connections); err != nil {
		return fmt.Errorf("configure IKE engine: %w", err)
	}
	if err := errors.Join(d.syncServiceAddresses(ctx, cfg), d.syncPolicies(ctx)); err != nil {
		return err
	}

	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe() // before the engine stops: requests in progress end first
	if cfg.MetricsListen != "" {
		var src metrics.EBPFSource // nil without eBPF
		if d.ebpf != nil {
			src = ebpfSource{d}
		}
		waitMetrics, err := startMetrics(serveCtx, cfg.MetricsListen, d.kernel, src, cfg.EBPF.TopFlows, d.log, d.events, d.stateCollector())
		if err != nil {
			return err
		}
		defer func() { stopServe(); waitMetrics() }()
	}
	wg.Go(func() { serveControl(serveCtx, ctl, d, d.log) })
	d.log.Info("espgw running", "connections", len(cfg.Connections), "datapath", d.dp.Name(), "control_socket", cfg.ControlSocket)
	if opts.Ready != nil {
		opts.Ready()
	}
	d.notify(NotifyReady, "")
	err = d.serve(ctx, engineErr)
	d.log.Info("shutting down")
	d.notify(NotifyStopping, "stopping: removing SAs, policies and addresses")
	return err
}

// serve handles reloads until ctx ends or the engine stops.
func (d *daemon) serve(ctx context.Context, engineErr <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-engineErr:
			return fmt.Errorf("IKE engine stopped: %w", cmp.Or(err, errors.New("unexpectedly")))
		case <-d.opts.Reload:
			if err := d.reloadNotify(ctx); err != nil {
				d.log.Error("reload failed: keeping the running configuration", "err", err)
			}
		}
	}
}

// reloadNotify is reload between NotifyReloading and NotifyReady.
func (d *daemon) reloadNotify(ctx context.Context) error {
	d.notify(NotifyReloading, "reloading "+d.opts.ConfigPath)
	err := d.reload(ctx)
	if err != nil {
		d.notify(NotifyReady, "reload failed (see the log), running the previous configuration")
	} else {
		d.notify(NotifyReady, "")
	}
	return err
}

// notify calls Options.Notify; an empty status says what runs.
func (d *daemon) notify(state NotifyState, status string) {
	if d.opts.Notify == nil {
		return
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	tunnels := 0
	for _, c := range cfg.Connections {
		tunnels += len(c.Tunnels)
	}
	running := fmt.Sprintf("%d connections, %d tunnels, %s datapath", len(cfg.Connections), tunnels, d.dp.Name())
	if status == "" {
		status = "running: " + running
	} else if state == NotifyReady {
		status += ": " + running
	}
	d.opts.Notify(state, status)
}

// openDatapath chooses the datapath, opens the IKE sockets and then the datapath on them.
func (d *daemon) openDatapath(ctx context.Context, cfg *config.Config) (conn.Bind, error) {
	kind, err := d.chooseDatapath(ctx, cfg)
	if err != nil {
		return nil, err
	}
	listen := d.opts.Listen
	if listen == nil {
		listen = func(addrs []netip.Addr, kernelESPInUDP bool) (conn.Bind, error) {
			return conn.Listen(addrs, conn.ListenOptions{KernelESPInUDP: kernelESPInUDP})
		}
	}
	bind, err := listen(localAddresses(cfg), kind == KindXFRM)
	if err != nil {
		return nil, fmt.Errorf("open IKE sockets: %w", err)
	}
	if d.dp, err = d.opts.NewDatapath(kind, bind, d.log.With("datapath", kind)); err != nil {
		bind.Close()
		return nil, fmt.Errorf("open %s datapath: %w", kind, err)
	}
	d.log.Info("datapath ready", "datapath", d.dp.Name())
	return bind, nil
}
