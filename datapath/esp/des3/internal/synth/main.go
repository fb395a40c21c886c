// Command synth derives Boolean circuits for the eight DES S-boxes and writes them as the
// netlist that datapath/esp/des3's generator turns into Go code (about half an hour on
// two cores; the result depends only on the flags, not on the number of CPUs):
//
//	go run ./datapath/esp/des3/internal/synth -o datapath/esp/des3/sboxes.netlist
//
// Each S-box's four outputs are built together by a randomized Shannon decomposition
// (search.go); the smallest circuits of many trials are shrunk by mutation (polish.go);
// the polarity in which each signal is kept is chosen to need the fewest NOT
// instructions (polarity.go); the gates are ordered to keep few values live
// (schedule.go). The circuit is checked against the FIPS 46-3 table on all 64 inputs
// before it is written.
//
// Why not a logic synthesis tool: ABC (berkeley-abc 1.01, Debian 12) on the same truth
// tables, with the usual AIG scripts (resyn2, dch, &deepsyn) and mapping to two-input
// gates including xor, gave 102 to 153 gates for S1; this search finds about 60. ABC
// counts xor as three AND nodes, while DES S-boxes are rich in xor.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/espgw/espgw/datapath/esp/des3/internal/fips46"
)

func main() {
	var (
		out         = flag.String("o", "", "netlist file to write (default stdout)")
		trials      = flag.Int("trials", 600, "decomposition trials per S-box")
		lookahead   = flag.Int("lookahead", 2, "decomposition levels searched exhaustively")
		generations = flag.Int("generations", 50_000_000, "mutation steps when polishing")
		polished    = flag.Int("polished", 4, "smallest circuits polished")
		spare       = flag.Int("spare", 10, "spare gates for polishing")
		anneal      = flag.Int("anneal", 5_000_000, "annealing steps choosing stored polarities")
		seed        = flag.Int64("seed", 1, "random seed")
	)
	flag.Parse()
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# DES S-box circuits for bitslicing, written by datapath/esp/des3/internal/synth\n")
	fmt.Fprintf(bw, "# -trials %d -lookahead %d -polished %d -generations %d -spare %d -anneal %d -seed %d.\n",
		*trials, *lookahead, *polished, *generations, *spare, *anneal, *seed)
	fmt.Fprintf(bw, "# Signals are stored in either polarity: \"x1 = ~b2\" means the circuit's input x1\n")
	fmt.Fprintf(bw, "# is the complement of S-box input bit b2 of FIPS 46-3 (b1 most significant), and\n")
	fmt.Fprintf(bw, "# \"y0 = ~t9\" that output bit 1 (the most significant) is the complement of t9.\n")
	fmt.Fprintf(bw, "# Gates: and or xor, andnot (a AND NOT b), nand nor xnor, ornot (a OR NOT b).\n")
	for box := range fips46.S {
		want := truthTables(box)
		boxSeed := *seed*1_000_003 + int64(box)*7919
		found := search(want, *trials, *lookahead, *polished, boxSeed)
		// Polish the best few: where mutation gets stuck depends on where it starts.
		results := make([]candidate, len(found))
		parallel(len(found), func(i int) {
			p := newPolish(found[i].c, found[i].outs, want, *spare, rand.New(rand.NewSource(boxSeed+int64(i))))
			p.run(*generations)
			results[i].c, results[i].outs = p.circuit()
		})
		c, outs := results[0].c, results[0].outs
		for _, r := range results[1:] {
			if r.c.gates() < c.gates() {
				c, outs = r.c, r.outs
			}
		}
		for k, l := range outs {
			if c.val(l) != want[k] {
				log.Fatalf("S%d output %d: circuit disagrees with FIPS 46-3", box+1, k)
			}
		}
		log.Printf("S%d: %d gates after search, %d after polishing", box+1, found[0].c.gates(), c.gates())
		pol := assignPolarity(c, rand.New(rand.NewSource(boxSeed)), *anneal)
		writeNetlist(bw, box, c, outs, pol)
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
}

type candidate struct {
	c    *circuit
	outs []lit
}

// search runs the decomposition search trials times, trial t seeded with seed+t, and
// returns the keep smallest circuits, smallest first (earlier trials first among equals,
// so that the result does not depend on the number of CPUs).
func search(want [4]uint64, trials, lookahead, keep int, seed int64) []candidate {
	results := make([]candidate, trials)
	parallel(trials, func(t int) {
		d := &decomposition{c: newCircuit(), rng: rand.New(rand.NewSource(seed + int64(t))), lookahead: lookahead}
		results[t] = candidate{d.c, d.build(want[:], ^uint64(0), 0)}
	})
	slices.SortStableFunc(results, func(a, b candidate) int { return a.c.gates() - b.c.gates() })
	return results[:min(keep, trials)]
}

// parallel calls f(0) .. f(n-1) on all CPUs.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// truthTables returns the four output functions of S-box box.
func truthTables(box int) (t [4]uint64) {
	for x := range 64 {
		v := fips46.Lookup(box, byte(x))
		for k := range t {
			if v>>(3-k)&1 == 1 {
				t[k] |= 1 << x
			}
		}
	}
	return t
}

func writeNetlist(w io.Writer, box int, c *circuit, outs []lit, pol []bool) {
	names := make([]string, len(c.g))
	for i := range inputTT {
		names[i] = fmt.Sprintf("x%d", i)
	}
	tilde := func(b bool) string {
		if b {
			return "~"
		}
		return ""
	}
	var lines []string
	var count [len(insNames)]int
	for n, i := range schedule(c, outs) {
		g := c.g[i]
		ins := lower(g, pol[g.a], pol[g.b], pol[i])
		count[ins.op]++
		names[i] = fmt.Sprintf("t%d", n)
		lines = append(lines, fmt.Sprintf("%s = %s %s %s", names[i], insNames[ins.op], names[ins.a], names[ins.b]))
	}
	withNot := c.gates() - count[insAnd] - count[insOr] - count[insXor] - count[insAndNot]
	fmt.Fprintf(w, "\nsbox %d gates %d\n", box+1, c.gates())
	fmt.Fprintf(w, "# %d and/or/xor, %d andnot, %d with a NOT; amd64 instructions without BMI1 %d, with %d\n",
		count[insAnd]+count[insOr]+count[insXor], count[insAndNot], withNot,
		c.gates()+count[insAndNot]+withNot, c.gates()+withNot)
	for i := range inputTT {
		fmt.Fprintf(w, "x%d = %sb%d\n", i, tilde(pol[i]), i+1)
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	for k, l := range outs {
		fmt.Fprintf(w, "y%d = %s%s\n", k, tilde(l&1 == 1 != pol[l.signal()]), names[l.signal()])
	}
}
