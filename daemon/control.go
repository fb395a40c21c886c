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

	"github.com/espgw/espgw/control"
)

// Control socket limits: a request must arrive quickly; `up` may wait for a whole
// negotiation including retransmissions (the engine gives up after 30 s).
const (
	requestTimeout = 5 * time.Second
	commandTimeout = 60 * time.Second
)

// listenControl creates the control socket at path, mode 0600, creating its directory
// (0755) if needed. A socket left by a dead espgw is removed; one that still answers means
// another espgw is running, which is an error, as is a non-socket file at path.
// Closing the listener removes the socket.
func listenControl(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
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
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Only root may drive the daemon. The directory is shared, so a umask would race with
	// other goroutines creating files; the socket exists 0600-less only until this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// handler executes control commands.
type handler interface {
	handle(ctx context.Context, req control.Request) control.Response
}

// serveControl answers requests on l, one per connection, until ctx ends or l is closed,
// and waits for the requests in progress.
func serveControl(ctx context.Context, l *net.UnixListener, h handler, log *slog.Logger) {
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
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	var req control.Request
	if err := json.NewDecoder(c).Decode(&req); err != nil {
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
