package metrics

import (
	"bufio"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// family is one metric family. The collectors hand their series to a sink, one family at a
// time: textSink writes the text exposition format straight away (what a scrape asks for:
// building a client_golang metric and a protobuf per series cost most of a 20,000-series
// scrape), metricSink builds client_golang metrics (the registry: other formats, the tests).
type family struct {
	name, help string
	typ        prometheus.ValueType // CounterValue or GaugeValue
	labels     []string
	byName     []int // labels' indexes sorted by name: the order client_golang writes them in
	desc       *prometheus.Desc
}

func newFamily(typ prometheus.ValueType, name, help string, labels ...string) *family {
	if len(labels) > maxLabels {
		panic("metrics: " + name + ": more than maxLabels labels")
	}
	byName := make([]int, len(labels))
	for i := range byName {
		byName[i] = i
	}
	slices.SortFunc(byName, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return &family{name: name, help: help, typ: typ, labels: labels, byName: byName, desc: prometheus.NewDesc(name, help, labels, nil)}
}

func counterFamily(name, help string, labels ...string) *family {
	return newFamily(prometheus.CounterValue, name, help, labels...)
}

func gaugeFamily(name, help string, labels ...string) *family {
	return newFamily(prometheus.GaugeValue, name, help, labels...)
}

// maxLabels is the most labels a family has (the top flows').
const maxLabels = 7

// labelValues are one series' label values in the order of its family's labels. An array,
// not a slice: passed to an interface method, a slice would be allocated for every series.
type labelValues [maxLabels]string

// sink receives series. A collector hands over all series of a family before the next
// family's: the text format names each family once.
type sink interface {
	sample(f *family, v float64, lv labelValues)
	// fail reports that f's series could not be read.
	fail(f *family, err error)
}

// exposer is a set of families that hands its series to a sink.
type exposer interface {
	families() []*family
	expose(s sink)
}

// Source is one of this package's collectors (Collector, StateCollector, Events): a
// prometheus.Collector that can also write the text format directly.
type Source interface {
	prometheus.Collector
	exposer
}

// describe and collect implement prometheus.Collector for an exposer.
func describe(e exposer, ch chan<- *prometheus.Desc) {
	for _, f := range e.families() {
		ch <- f.desc
	}
}

func collect(e exposer, ch chan<- prometheus.Metric) { e.expose(metricSink(ch)) }

// metricSink turns series into client_golang const metrics.
type metricSink chan<- prometheus.Metric

func (s metricSink) sample(f *family, v float64, lv labelValues) {
	s <- prometheus.MustNewConstMetric(f.desc, f.typ, v, lv[:len(f.labels)]...)
}

func (s metricSink) fail(f *family, err error) { s <- prometheus.NewInvalidMetric(f.desc, err) }

// textSink writes series in the Prometheus text exposition format (version 0.0.4), HELP
// and TYPE before a family's first series; a family without series is left out, as
// client_golang does.
type textSink struct {
	w    *bufio.Writer
	cur  *family
	errs []error
}

func (s *textSink) sample(f *family, v float64, lv labelValues) {
	b := s.w.AvailableBuffer()
	if f != s.cur {
		s.cur = f
		b = appendHeader(b, f)
	}
	b = append(b, f.name...)
	if len(f.labels) > 0 {
		b = append(b, '{')
		for n, i := range f.byName {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, f.labels[i]...)
			b = append(b, '=', '"')
			b = appendEscaped(b, lv[i], true)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	b = append(b, '\n')
	s.w.Write(b) // a write error stays in s.w; the handler reads it from Flush
}

func (s *textSink) fail(_ *family, err error) { s.errs = append(s.errs, err) }

func appendHeader(b []byte, f *family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	if f.typ == prometheus.CounterValue {
		return append(b, " counter\n"...)
	}
	return append(b, " gauge\n"...)
}

// appendEscaped appends s escaped as the text format wants it: backslash and line feed in
// HELP, and the double quote too in label values.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quote:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats v as client_golang's text encoder does.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
