package metrics

import (
	"cmp"
	"maps"
	"slices"
	"sync"
)

// maxSetLabels is the most labels a seriesSet's series have.
const maxSetLabels = 4

// seriesKey are one series' label values, in the order of its family's labels; unused ones are "".
type seriesKey [maxSetLabels]string

// seriesSet is a family kept as plain numbers, turned into series at scrape time.
// A prometheus.CounterVec series costs ~0.5 KiB (the counter and its label pairs); Events
// creates every result of every configured connection and tunnel at zero, which with 200
// connections and 1,000 tunnels made ~9,400 series and 5 MiB of the daemon's heap.
// The first label is always the connection.
type seriesSet struct {
	fam *family

	mu   sync.Mutex
	vals map[seriesKey]float64
	// sorted are vals' keys in order, rebuilt at the scrape after a series came or went:
	// series are created at Configure, so most scrapes only read the values.
	sorted []seriesKey
	dirty  bool
}

func newSeriesSet(f *family) *seriesSet {
	if len(f.labels) > maxSetLabels {
		panic("metrics: " + f.name + ": more than maxSetLabels labels")
	}
	return &seriesSet{fam: f, vals: map[seriesKey]float64{}}
}

func (c *seriesSet) key(lv []string) seriesKey {
	if len(lv) != len(c.fam.labels) {
		panic("metrics: " + c.fam.name + ": wrong number of label values")
	}
	var k seriesKey
	copy(k[:], lv)
	return k
}

// add adds v to the series lv (creating it: add(0, ...) creates a zero series).
func (c *seriesSet) add(v float64, lv ...string) {
	k := c.key(lv)
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.vals[k]
	c.vals[k] = old + v
	c.dirty = c.dirty || !ok
}

// set sets the series lv to v.
func (c *seriesSet) set(v float64, lv ...string) {
	k := c.key(lv)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.vals[k]
	c.vals[k] = v
	c.dirty = c.dirty || !ok
}

// value is the series lv's value.
func (c *seriesSet) value(lv ...string) float64 {
	k := c.key(lv)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vals[k]
}

// deleteConnection removes every series of conn.
func (c *seriesSet) deleteConnection(conn string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.vals {
		if k[0] == conn {
			delete(c.vals, k)
			c.dirty = true
		}
	}
}

// snapshot returns the series in order and their values; the keys must not be changed.
// It holds the lock only to copy: the engine counts while a slow client is being served.
func (c *seriesSet) snapshot() ([]seriesKey, []float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty {
		c.sorted = slices.SortedFunc(maps.Keys(c.vals), func(a, b seriesKey) int {
			return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]), cmp.Compare(a[3], b[3]))
		})
		c.dirty = false
	}
	vals := make([]float64, len(c.sorted))
	for i, k := range c.sorted {
		vals[i] = c.vals[k]
	}
	return c.sorted, vals
}

func (c *seriesSet) families() []*family { return []*family{c.fam} }

func (c *seriesSet) expose(s sink) {
	keys, vals := c.snapshot()
	for i, k := range keys {
		var lv labelValues
		copy(lv[:], k[:])
		s.sample(c.fam, vals[i], lv)
	}
}
