package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
)

// NotRunningError says the control socket did not accept a connection.
type NotRunningError struct {
	Path string
	Err  error
}

func (e *NotRunningError) Error() string {
	if errors.Is(e.Err, fs.ErrPermission) {
		return fmt.Sprintf("cannot reach espgw at %s: permission denied (run as root?)", e.Path)
	}
	return fmt.Sprintf("cannot reach espgw at %s: is `espgw run` running?", e.Path)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// Client talks to a running daemon over its control socket, one connection per request.
type Client struct {
	path string
}

// Dial checks that a daemon answers on the control socket at path and returns a Client
// for it; a *NotRunningError says it does not.
func Dial(ctx context.Context, path string) (*Client, error) {
	c := &Client{path: path}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return c, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrPermission) {
			return nil, &NotRunningError{Path: c.path, Err: err}
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	return conn, nil
}

// Do sends req and returns the daemon's response. A command that failed in the daemon is
// an error with the daemon's message.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	var resp Response
	if err := c.roundTrip(ctx, req, &resp); err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// roundTrip sends req and decodes the daemon's answer into resp.
func (c *Client) roundTrip(ctx context.Context, req Request, resp any) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("control socket %s: send %s: %w", c.path, req.Command, err)
	}
	if err := json.NewDecoder(conn).Decode(resp); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("control socket %s: read the answer to %s: %w", c.path, req.Command, err)
	}
	return nil
}

// StatusJSON returns the daemon's whole status as the daemon encoded it: printing it as
// JSON needs no decoding into a Status and encoding again (1.2 MB with 1,000 tunnels).
func (c *Client) StatusJSON(ctx context.Context) (json.RawMessage, error) {
	var resp struct {
		Error  string          `json:"error"`
		Status json.RawMessage `json:"status"`
	}
	if err := c.roundTrip(ctx, Request{Command: CmdStatus}, &resp); err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("control socket %s: status answer without status", c.path)
	}
	return resp.Status, nil
}

// Status returns the daemon's SAs and tunnel states.
func (c *Client) Status(ctx context.Context) (*Status, error) { return c.StatusOf(ctx, "") }

// StatusOf returns the part of the daemon's status that concerns connection name (see
// Status.Connection), or all of it for "". The daemon selects it, so that one connection
// of thousands of tunnels costs a small answer; a daemon that sends everything is filtered here.
func (c *Client) StatusOf(ctx context.Context, name string) (*Status, error) {
	resp, err := c.Do(ctx, Request{Command: CmdStatus, Connection: name})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("control socket %s: status answer without status", c.path)
	}
	if name != "" {
		return resp.Status.Connection(name)
	}
	return resp.Status, nil
}

// Overview returns the daemon's whole status or, when it has more than above tunnels, its
// Summary (above 0: always the status); the other is nil. The daemon makes the summary,
// so that 1,000 tunnels cost the socket and both ends 40 KB of JSON instead of 1.2 MB; an
// older daemon sends its whole status and the summary is made here.
func (c *Client) Overview(ctx context.Context, above int) (*Status, *Summary, error) {
	resp, err := c.Do(ctx, Request{Command: CmdStatus, SummaryAbove: above})
	if err != nil {
		return nil, nil, err
	}
	switch {
	case resp.Summary != nil:
		return nil, resp.Summary, nil
	case resp.Status == nil:
		return nil, nil, fmt.Errorf("control socket %s: status answer without status or summary", c.path)
	case above > 0 && len(resp.Status.Tunnels) > above:
		return nil, resp.Status.Summary(), nil
	}
	return resp.Status, nil, nil
}

// Flows returns the limit top flows (0: the daemon's ebpf.top_flows) and the installed
// policies.
func (c *Client) Flows(ctx context.Context, limit int) (*FlowReport, error) {
	resp, err := c.Do(ctx, Request{Command: CmdFlows, Limit: limit})
	if err != nil {
		return nil, err
	}
	if resp.Flows == nil {
		return nil, fmt.Errorf("control socket %s: flows answer without flows", c.path)
	}
	return resp.Flows, nil
}

// Up negotiates a connection's tunnels (or one tunnel) and waits for the outcome.
func (c *Client) Up(ctx context.Context, connection, tunnel string) error {
	_, err := c.Do(ctx, Request{Command: CmdUp, Connection: connection, Tunnel: tunnel})
	return err
}

// Down deletes a connection's SAs (or one tunnel's).
func (c *Client) Down(ctx context.Context, connection, tunnel string) error {
	_, err := c.Do(ctx, Request{Command: CmdDown, Connection: connection, Tunnel: tunnel})
	return err
}

// Reload makes the daemon re-read its configuration file.
func (c *Client) Reload(ctx context.Context) error {
	_, err := c.Do(ctx, Request{Command: CmdReload})
	return err
}
