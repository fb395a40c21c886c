package testutil

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// HTTPGet fetches http://addr+path from inside the namespace (e.g. a daemon's /metrics on
// its loopback) and returns the body of a 200 answer, within timeout.
func (n *NetNS) HTTPGet(addr, path string, timeout time.Duration) ([]byte, error) {
	var body []byte
	err := n.Do(func() error {
		// The connection is made here, on the thread inside the namespace; the client's
		// own dialer would run elsewhere.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		// One request per connection: an idle keep-alive connection left behind would keep a
		// goroutine and buffers alive in the server (and inflate a daemon's measured memory).
		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return c, nil },
			DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("GET http://%s%s in netns %s: %w", addr, path, n.name, err)
	}
	return body, nil
}
