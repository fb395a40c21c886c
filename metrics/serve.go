package metrics

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// handler serves the sources in the text format itself, the Go runtime's and the process's
// collectors through client_golang's encoder after them; any other format a client asks for
// (protobuf) through client_golang alone.
type handler struct {
	sources []Source
	runtime prometheus.Gatherer
	other   http.Handler
	log     *slog.Logger
}

// Handler returns an http.Handler serving sources plus the Go runtime and process
// collectors in the Prometheus exposition format. Errors of a source are logged on log;
// the other series are served.
func Handler(log *slog.Logger, sources ...Source) (http.Handler, error) {
	runtime, all := prometheus.NewRegistry(), prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := errors.Join(runtime.Register(c), all.Register(c)); err != nil {
			return nil, fmt.Errorf("register collector: %w", err)
		}
	}
	for _, c := range sources {
		if err := all.Register(c); err != nil {
			return nil, fmt.Errorf("register collector: %w", err)
		}
	}
	other := promhttp.HandlerFor(all, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	return &handler{sources: sources, runtime: runtime, other: other, log: log}, nil
}

// bufPool holds the buffers between the text and the connection (or gzip). A gzip.Writer
// (~1 MB of compressor state) is not pooled: kept between scrapes it would stay in the live
// heap, and with it in the heap goal and the RSS; allocated per scrape it is garbage after.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.Negotiate(r.Header)
	if format.FormatType() != expfmt.TypeTextPlain {
		h.other.ServeHTTP(w, r)
		return
	}
	runtime, err := h.runtime.Gather()
	if err != nil {
		h.log.Warn("metrics: Go runtime and process collectors", "err", err)
	}
	w.Header().Set("Content-Type", string(format))
	w.Header().Set("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // the level is valid
		defer gz.Close()
		out = gz
	}
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(out)
	defer func() {
		bw.Reset(nil)
		bufPool.Put(bw)
	}()
	s := &textSink{w: bw}
	for _, src := range h.sources {
		src.expose(s)
	}
	enc := expfmt.NewEncoder(bw, format)
	for _, f := range runtime {
		if err := enc.Encode(f); err != nil {
			break // the client went away; Flush says so
		}
	}
	for _, err := range s.errs {
		h.log.Warn("metrics: series left out of the scrape", "err", err)
	}
	if err := bw.Flush(); err != nil {
		h.log.Debug("metrics: scrape not delivered", "err", err)
	}
}

// acceptsGzip tells whether an Accept-Encoding header value allows gzip (not with q=0).
func acceptsGzip(accept string) bool {
	for _, e := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(e, ";")
		if strings.TrimSpace(name) != "gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// Serve serves /metrics (sources, see Handler) on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, log *slog.Logger, sources ...Source) error {
	h, err := Handler(log, sources...)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %v: %w", ln.Addr(), err)
	}
	return nil
}
