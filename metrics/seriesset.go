package metrics

import (
	"cmp"
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
	c.vals[k] += v
}

// set sets the series lv to v.
func (c *seriesSet) set(v float64, lv ...string) {
	k := c.key(lv)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vals[k] = v
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
		}
	}
}

// series is one series of a seriesSet.
type series struct {
	key seriesKey
	val float64
}

// snapshot returns the series sorted by their label values. It holds the lock only to
// copy: the engine counts while a slow client is being served. A sorted copy kept between
// scrapes would save the sort (~1 ms for 8,000 series) but stay resident (~0.7 MB).
func (c *seriesSet) snapshot() []series {
	c.mu.Lock()
	out := make([]series, 0, len(c.vals))
	for k, v := range c.vals {
		out = append(out, series{k, v})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b series) int {
		return cmp.Or(cmp.Compare(a.key[0], b.key[0]), cmp.Compare(a.key[1], b.key[1]),
			cmp.Compare(a.key[2], b.key[2]), cmp.Compare(a.key[3], b.key[3]))
	})
	return out
}

func (c *seriesSet) families() []*family { return []*family{c.fam} }

func (c *seriesSet) expose(s sink) {
	for _, sr := range c.snapshot() {
		var lv labelValues
		copy(lv[:], sr.key[:])
		s.sample(c.fam, sr.val, lv)
	}
}
