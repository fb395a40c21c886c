package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/espgw/espgw/control"
)

// handlerFunc lets a test answer control requests.
type handlerFunc func(ctx context.Context, req control.Request) control.Response

func (f handlerFunc) handle(ctx context.Context, req control.Request) control.Response {
	return f(ctx, req)
}

func TestListenControl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "espgw", "espgw.sock")
	l, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v, %v: want a socket with mode 0600", fi.Mode(), err)
	}
	// The directories it created are private, and the one it bound in is gone.
	for _, d := range []string{filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v, %v; want mode 0700", d, fi.Mode(), err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("socket directory holds %d entries, want the socket only", len(ents))
	}
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another espgw is running") {
		t.Errorf("second listen on a live socket = %v, want another espgw is running", err)
	}

	// A socket left behind by a dead daemon is replaced.
	l.UnixListener.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left for the test: %v", err)
	}
	l, err = listenControl(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed by Close: %v", err)
	}

	// Anything else at the path is left alone.
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("listen over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the regular file was touched")
	}
}

func TestDialNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "espgw.sock")
	_, err := control.Dial(context.Background(), path)
	var nr *control.NotRunningError
	if !errors.As(err, &nr) || err.Error() != "cannot reach espgw at "+path+": is `espgw run` running?" {
		t.Errorf("Dial(absent) = %v", err)
	}
}

// TestControlRoundTrip checks the wire protocol, including a request that is not JSON.
func TestControlRoundTrip(t *testing.T) {
	c, path := serveTest(t, handlerFunc(func(ctx context.Context, req control.Request) control.Response {
		switch req.Command {
		case control.CmdStatus:
			return control.Response{Status: &control.Status{Datapath: "test", Tunnels: []control.TunnelState{{Connection: req.Connection}}}}
		case control.CmdFlows:
			return control.Response{Flows: &control.FlowReport{Policies: []control.Flow{{Connection: "c", Tunnel: "t", ReqID: 7}},
				TopFlows: []control.TopFlow{{ReqID: 7, Packets: uint64(req.Limit)}}}}
		}
		return control.Response{Error: "failed: " + req.Command + " " + req.Connection + "/" + req.Tunnel}
	}))
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Datapath != "test" {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if fl, err := c.Flows(ctx, 3); err != nil || len(fl.Policies) != 1 || fl.Policies[0].ReqID != 7 ||
		len(fl.TopFlows) != 1 || fl.TopFlows[0].Packets != 3 {
		t.Errorf("Flows = %+v, %v", fl, err)
	}
	if err := c.Up(ctx, "mega", "api"); err == nil || err.Error() != "failed: up mega/api" {
		t.Errorf("Up = %v, want the daemon's error", err)
	}

	raw, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	io.WriteString(raw, "status please\n")
	var resp control.Response
	if err := json.NewDecoder(raw).Decode(&resp); err != nil || !strings.HasPrefix(resp.Error, "bad request: ") {
		t.Errorf("answer to garbage = %+v, %v; want a bad request error", resp, err)
	}

	// A request beyond maxRequestBytes is refused after that many bytes, not buffered whole.
	big, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	go func() {
		io.WriteString(big, `{"command": "status", "connection": "`+strings.Repeat("a", 4*maxRequestBytes)+`"}`)
	}()
	resp = control.Response{}
	if err := json.NewDecoder(big).Decode(&resp); err != nil || resp.Error != "bad request: request larger than 65536 bytes (want one JSON object)" {
		t.Errorf("answer to a %d-byte request = %+v, %v; want request larger than 65536 bytes", 4*maxRequestBytes, resp, err)
	}
}

// Root and espgw's own user may use the control socket, nobody else; this process (root or
// the owner) gets through SO_PEERCRED, as TestControlRoundTrip shows.
func TestPeerAllowed(t *testing.T) {
	if !peerAllowed(0) || !peerAllowed(uint32(os.Geteuid())) {
		t.Error("root or our own uid refused")
	}
	if other := uint32(os.Geteuid()) + 1; other != 0 && peerAllowed(other) {
		t.Errorf("uid %d allowed", other)
	}
}

// TestControlOverview: `espgw status` asks for a summary above a number of tunnels. A daemon
// that knows it answers with the Summary; one that does not (it ignores summary_above)
// sends its Status, which the client summarizes the same way; an old client, which does not
// ask, still gets the Status; an answer with neither is an error naming the command.
func TestControlOverview(t *testing.T) {
	st := &control.Status{Datapath: "test"}
	for i := range 5 {
		st.Tunnels = append(st.Tunnels, control.TunnelState{Connection: "c" + strconv.Itoa(i%2), Tunnel: strconv.Itoa(i), State: control.TunnelUp})
	}
	answers := map[string]func(control.Request) control.Response{
		"new": func(req control.Request) control.Response {
			if req.SummaryAbove > 0 && len(st.Tunnels) > req.SummaryAbove {
				return control.Response{Summary: st.Summary()}
			}
			return control.Response{Status: st}
		},
		"old":   func(control.Request) control.Response { return control.Response{Status: st} },
		"empty": func(control.Request) control.Response { return control.Response{} },
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			c, _ := serveTest(t, handlerFunc(func(_ context.Context, req control.Request) control.Response { return answer(req) }))
			ctx := context.Background()
			gotSt, gotSum, err := c.Overview(ctx, 4)
			if name == "empty" {
				if err == nil || !strings.HasSuffix(err.Error(), ": status answer without status or summary") {
					t.Fatalf("Overview = %v, %v, %v; want an error", gotSt, gotSum, err)
				}
				return
			}
			if err != nil || gotSt != nil || !reflect.DeepEqual(gotSum, st.Summary()) {
				t.Errorf("Overview(4) of 5 tunnels = %+v, %+v, %v; want the summary %+v", gotSt, gotSum, err, st.Summary())
			}
			for _, above := range []int{5, 0} {
				if gotSt, gotSum, err = c.Overview(ctx, above); err != nil || gotSum != nil || len(gotSt.Tunnels) != 5 {
					t.Errorf("Overview(%d) of 5 tunnels = %+v, %+v, %v; want the status", above, gotSt, gotSum, err)
				}
			}
		})
	}
}

// serveTest serves h on a control socket until the test ends and returns a client for it
// and the socket's path.
func serveTest(t *testing.T, h handler) (*control.Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "espgw.sock")
	l, err := listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		serveControl(ctx, l, h, slog.New(slog.DiscardHandler))
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	c, err := control.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return c, path
}
