package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxLabels is the most labels a counterSet's series have.
const maxLabels = 4

// labelValues are one series' label values, in the order of its Desc; unused ones are "".
type labelValues [maxLabels]string

// counterSet is a counter family kept as plain numbers, turned into metrics at scrape time.
// A prometheus.CounterVec series costs ~0.5 KiB (the counter and its label pairs); Events
// creates every result of every configured connection and tunnel at zero, which with 200
// connections and 1,000 tunnels made ~9,400 series and 5 MiB of the daemon's heap.
// The first label is always the connection.
type counterSet struct {
	desc   *prometheus.Desc
	labels int

	mu   sync.Mutex
	vals map[labelValues]float64
}

func newCounterSet(name, help string, labels ...string) *counterSet {
	return &counterSet{desc: prometheus.NewDesc(name, help, labels, nil), labels: len(labels), vals: map[labelValues]float64{}}
}

func (c *counterSet) key(lv []string) labelValues {
	if len(lv) != c.labels {
		panic("metrics: " + c.desc.String() + ": wrong number of label values")
	}
	var k labelValues
	copy(k[:], lv)
	return k
}

// add adds v to the series lv (creating it: add(0, ...) creates a zero series).
func (c *counterSet) add(v float64, lv ...string) {
	k := c.key(lv)
	c.mu.Lock()
	c.vals[k] += v
	c.mu.Unlock()
}

// value is the series lv's count.
func (c *counterSet) value(lv ...string) float64 {
	k := c.key(lv)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vals[k]
}

// deleteConnection removes every series of conn.
func (c *counterSet) deleteConnection(conn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.vals {
		if k[0] == conn {
			delete(c.vals, k)
		}
	}
}

// Describe implements prometheus.Collector.
func (c *counterSet) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *counterSet) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	ms := make([]prometheus.Metric, 0, len(c.vals))
	for k, v := range c.vals {
		ms = append(ms, prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, v, k[:c.labels]...))
	}
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}
