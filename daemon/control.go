package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/control"
)

// Control socket limits: a request must arrive quickly and be small (requests are a
// command and two names; 64 MiB of JSON once took espgw from 18 to 215 MB); `up` may wait
// for a whole negotiation including retransmissions (the engine gives up after 30 s).
const (
	requestTimeout  = 5 * time.Second
	commandTimeout  = 60 * time.Second
	maxRequestBytes = 64 << 10
)

// controlListener is the control socket; Close removes it from its path.
type controlListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

// Close stops listening and removes the socket, once.
func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// listenControl creates the control socket at path, mode 0600, creating its directory
// (0700) if needed. The socket is bound in a private 0700 directory beside path, chmod'ed,
// and only then renamed to path: there is no moment at which others could connect. A
// socket left by a dead espgw is removed; one that still answers means another espgw is
// running, which is an error, as is a non-socket file at path. Closing the listener
// removes the socket.
func listenControl(path string) (*controlListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket; remove it or set control_socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another espgw is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	// A umask would race with other goroutines creating files: the private directory
	// keeps everyone out until the socket is 0600.
	private, err := os.MkdirTemp(dir, ".espgw-ctl-")
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &controlListener{UnixListener: l, path: path}, nil
}

// peerAllowed reports whether a client with that uid may use the control socket: root and
// the user espgw runs as (the socket's mode says the same; SO_PEERCRED makes sure).
func peerAllowed(uid uint32) bool {
	return uid == 0 || uid == uint32(os.Geteuid())
}

// peerUID returns the uid of the process at the other end of c (SO_PEERCRED).
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}

// errRequestTooLarge ends a request beyond maxRequestBytes.
var errRequestTooLarge = fmt.Errorf("request larger than %d bytes", maxRequestBytes)

// limitedReader reads at most n bytes and then fails with errRequestTooLarge, so that the
// JSON decoder buffers no more than that.
type limitedReader struct {
	r io.Reader
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errRequestTooLarge
	}
	p = p[:min(len(p), l.n)]
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

// handler executes control commands.
type handler interface {
	handle(ctx context.Context, req control.Request) control.Response
}

// serveControl answers requests on l, one per connection, until ctx ends or l is closed,
// and waits for the requests in progress.
func serveControl(ctx context.Context, l *controlListener, h handler, log *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error("control socket: accept failed", "err", err)
			}
			return
		}
		wg.Go(func() { serveRequest(ctx, c, h, log) })
	}
}

func serveRequest(ctx context.Context, c *net.UnixConn, h handler, log *slog.Logger) {
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil || !peerAllowed(uid) {
		log.Warn("control socket: client refused", "uid", uid, "err", err)
		json.NewEncoder(c).Encode(control.Response{Error: fmt.Sprintf("permission denied: uid %d may not control espgw (want root)", uid)})
		return
	}
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	var req control.Request
	if err := json.NewDecoder(&limitedReader{r: c, n: maxRequestBytes}).Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return // a liveness probe such as Dial's: connected, sent nothing
		}
		log.Warn("control socket: bad request", "err", err)
		json.NewEncoder(c).Encode(control.Response{Error: fmt.Sprintf("bad request: %v (want one JSON object)", err)})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	log.Debug("control request", "command", req.Command, "conn", req.Connection, "tunnel", req.Tunnel)
	resp := h.handle(ctx, req)
	c.SetWriteDeadline(time.Now().Add(requestTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		log.Warn("control socket: cannot send the answer", "command", req.Command, "err", err)
	}
}
