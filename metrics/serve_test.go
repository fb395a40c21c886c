package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	espgwtestutil "github.com/espgw/espgw/internal/testutil"
)

// scrape asks h for /metrics with the given Accept and Accept-Encoding headers and returns
// the response and its decompressed body.
func scrape(t *testing.T, h http.Handler, accept, encoding string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", encoding)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s, %v\n%s", resp.Status, err, b)
	}
	return resp, b
}

func ourFamilies() []string {
	var names []string
	for _, s := range allSources() {
		for _, f := range s.families() {
			names = append(names, f.name)
		}
	}
	return names
}

// TestTextMatchesRegistry: the text espgw writes itself says what client_golang's registry
// over the same collectors says (every series, label value escaping, number format), with
// HELP and TYPE once per family, and the Go runtime's and process series follow.
func TestTextMatchesRegistry(t *testing.T) {
	h, err := Handler(slog.Default(), allSources()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{"gzip", "identity", "gzip;q=0"} {
		resp, body := scrape(t, h, "", enc)
		if gz := resp.Header.Get("Content-Encoding") == "gzip"; gz != (enc == "gzip") {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("Content-Type %q, want the text format", ct)
		}
		if err := testutil.GatherAndCompare(fullRegistry(t), bytes.NewReader(body), ourFamilies()...); err != nil {
			t.Errorf("Accept-Encoding %q: %v", enc, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body)) // fails on a second HELP or TYPE
		if err != nil {
			t.Fatalf("parse the scrape: %v", err)
		}
		if fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
			t.Errorf("the scrape lacks the Go runtime's or the process's series")
		}
	}
}

// TestScrapePromtool: promtool accepts the scrape (format and its lint rules).
func TestScrapePromtool(t *testing.T) {
	promtool := espgwtestutil.RequireTool(t, "promtool", "prometheus")
	h, err := Handler(slog.Default(), allSources()...)
	if err != nil {
		t.Fatal(err)
	}
	_, body := scrape(t, h, "", "gzip")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestScrapeFormats: a client asking for OpenMetrics gets the text format (as before, through
// client_golang), one asking for protobuf gets protobuf with every family.
func TestScrapeFormats(t *testing.T) {
	h, err := Handler(slog.Default(), allSources()...)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := scrape(t, h, "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "gzip")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("OpenMetrics asked: Content-Type %q, want text/plain", ct)
	}
	if err := testutil.GatherAndCompare(fullRegistry(t), bytes.NewReader(body), ourFamilies()...); err != nil {
		t.Error(err)
	}

	resp, body = scrape(t, h, "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "gzip")
	dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.ResponseFormat(resp.Header))
	got := make(map[string]bool)
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode protobuf (Content-Type %q): %v", resp.Header.Get("Content-Type"), err)
		}
		got[f.GetName()] = true
	}
	for _, name := range append(ourFamilies(), "go_goroutines") {
		if !got[name] {
			t.Errorf("protobuf scrape lacks %s", name)
		}
	}
}

// TestScrapeSourceError: a failing source costs its own families only.
func TestScrapeSourceError(t *testing.T) {
	h, err := Handler(slog.Default(), NewCollector(failing{}, nil, 0), NewStateCollector(everything{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, body := scrape(t, h, "", "")
	if bytes.Contains(body, []byte("espgw_sa_")) || !bytes.Contains(body, []byte(`espgw_tunnel_up{connection="c",tunnel="t"} 1`)) {
		t.Errorf("scrape with a failing SA source:\n%s", body)
	}
}
