// Package doctor finds out what keeps espgw's tunnels from working: the kernel's abilities,
// the configuration, the pre-shared key files, UDP 500/4500, the service address and the routes
// to the peers, and, when the daemon runs, each connection's and tunnel's state. Each finding
// is a Check: OK, WARN or FAIL, the latter two with the fix. The JSON form is documented in
// docs/doctor.md and stable: fields are only ever added.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/control"
)

// Level is a check's verdict.
type Level string

const (
	OK   Level = "OK"
	Warn Level = "WARN"
	Fail Level = "FAIL"
)

// Check IDs, the "id" of a check in the JSON output.
const (
	IDKernelESP      = "kernel.esp"       // ESP SAs in the kernel (xfrm datapath)
	IDKernelAlg      = "kernel.algorithm" // one configured ESP transform in the kernel
	IDKernelXFRM     = "kernel.xfrm"      // the XFRM netlink interface
	IDKernelBPF      = "kernel.bpf"       // tc and XDP programs
	IDKernelTCX      = "kernel.tcx"       // TCX attachment (Linux 6.6)
	IDKernelTUN      = "kernel.tun"       // /dev/net/tun (userspace datapath)
	IDConfig         = "config"           // the configuration file
	IDPSK            = "psk"              // psk_file permissions, inline psk in a readable file
	IDPort           = "port"             // UDP 500 and 4500
	IDLocalAddress   = "local_address"    // a connection's local_address on this host
	IDServiceAddress = "service_address"  // the service address and the route from it
	IDRoute          = "route"            // the route to a peer, its MTU and the MSS clamp
	IDDaemon         = "daemon"           // the running daemon
	IDIKE            = "ike"              // a connection's ISAKMP SA
	IDDPD            = "dpd"              // an IKEv1 connection's dead peer detection
	IDLiveness       = "liveness"         // an IKEv2 connection's liveness check
	IDNegotiation    = "negotiation"      // a recent failed negotiation
	IDTunnel         = "tunnel"           // a tunnel: SA, counters, one-sided traffic
)

// Check is one finding.
type Check struct {
	ID      string         `json:"id"`
	Level   Level          `json:"level"`
	Subject string         `json:"subject,omitempty"` // what it is about: "megatelecom/api", "udp/500"
	Message string         `json:"message"`
	Fix     string         `json:"fix,omitempty"`     // WARN and FAIL: what to do
	Details map[string]any `json:"details,omitempty"` // machine-readable facts, per ID (docs/doctor.md)
}

// Report is the outcome of Run.
type Report struct {
	Version int       `json:"version"` // of this schema: 1
	Time    time.Time `json:"time"`
	Config  string    `json:"config"`
	Daemon  bool      `json:"daemon"` // the daemon answered on its control socket
	Checks  []Check   `json:"checks"`
	Summary Summary   `json:"summary"`
}

// Summary counts the checks by level.
type Summary struct {
	OK   int `json:"ok"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
}

// Options say what Run examines.
type Options struct {
	ConfigPath string
	Socket     string // control socket; "" = the configuration's control_socket
	Now        func() time.Time
}

// report collects checks.
type report struct{ checks []Check }

func (r *report) add(c Check) { r.checks = append(r.checks, c) }

func (r *report) ok(id, subject, format string, args ...any) *Check {
	r.add(Check{ID: id, Level: OK, Subject: subject, Message: fmt.Sprintf(format, args...)})
	return &r.checks[len(r.checks)-1]
}

func (r *report) warn(id, subject, fix, format string, args ...any) *Check {
	r.add(Check{ID: id, Level: Warn, Subject: subject, Message: fmt.Sprintf(format, args...), Fix: fix})
	return &r.checks[len(r.checks)-1]
}

func (r *report) fail(id, subject, fix, format string, args ...any) *Check {
	r.add(Check{ID: id, Level: Fail, Subject: subject, Message: fmt.Sprintf(format, args...), Fix: fix})
	return &r.checks[len(r.checks)-1]
}

// Run examines the host, the configuration at opts.ConfigPath and, if it answers, the daemon.
// It needs root for the kernel probes, /proc of other processes and netlink.
func Run(ctx context.Context, opts Options) *Report {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &report{}
	cfg := checkConfig(r, opts.ConfigPath)
	checkPSK(r, opts.ConfigPath)
	var st *control.Status
	socket := opts.Socket
	if socket == "" && cfg != nil {
		socket = cfg.ControlSocket
	}
	daemonPID := 0
	if socket != "" {
		if st = daemonStatus(ctx, r, socket); st != nil {
			daemonPID = peerPID(socket)
		}
	}
	checkKernel(ctx, r, cfg)
	checkPorts(r, cfg, st != nil, daemonPID)
	if cfg != nil {
		checkAddresses(r, cfg, st)
	}
	if cfg != nil && st != nil {
		checkLive(r, cfg, st, opts.Now())
	}
	rep := &Report{Version: 1, Time: opts.Now().UTC(), Config: opts.ConfigPath, Daemon: st != nil, Checks: r.checks}
	for _, c := range r.checks {
		switch c.Level {
		case OK:
			rep.Summary.OK++
		case Warn:
			rep.Summary.Warn++
		case Fail:
			rep.Summary.Fail++
		}
	}
	return rep
}

// Failed reports whether any check failed.
func (rep *Report) Failed() bool { return rep.Summary.Fail > 0 }

// Render writes one line per check: level, id, subject and message, then the fix.
func (rep *Report) Render(w io.Writer) error {
	var b strings.Builder
	for _, c := range rep.Checks {
		line := fmt.Sprintf("%-4s  %-16s ", c.Level, c.ID)
		if c.Subject != "" {
			line += c.Subject + ": "
		}
		line += c.Message
		if c.Fix != "" {
			line += " -> fix: " + c.Fix
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "%d OK, %d WARN, %d FAIL\n", rep.Summary.OK, rep.Summary.Warn, rep.Summary.Fail)
	_, err := io.WriteString(w, b.String())
	return err
}

// daemonStatus asks the daemon at socket for its status; a daemon that does not run is not a
// failure (doctor also serves before the first start), one that does not answer is.
func daemonStatus(ctx context.Context, r *report, socket string) *control.Status {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := control.Dial(ctx, socket)
	if err != nil {
		r.ok(IDDaemon, socket, "espgw is not running (%v); checking without it", err)
		return nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		r.fail(IDDaemon, socket, "look at espgw's log (journalctl -u espgw); restart it if it hangs",
			"espgw does not answer status: %v", err)
		return nil
	}
	r.ok(IDDaemon, socket, "espgw is running (datapath %s)", st.Datapath)
	return st
}

// subject names a tunnel.
func subject(conn, tunnel string) string { return conn + "/" + tunnel }

// peerPID returns the PID of the process serving the unix socket at path (SO_PEERCRED), 0 if
// unknown.
func peerPID(path string) int {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}
