package main

import (
	"math/bits"
	"math/rand"
)

// polish shrinks a correct circuit by mutation: a (1+1) evolution strategy over the gate
// list (Cartesian genetic programming) that keeps a mutant if it is still correct and has
// no more live gates, so it can drift through equally small circuits. spare gates, wired
// at random, give it room to restructure.
type polish struct {
	nodes []gate // node i is signal 6+i; operands index earlier signals
	out   [4]int
	want  [4]uint64
	rng   *rand.Rand

	tt   []uint64
	live []bool
}

func newPolish(c *circuit, outs []lit, want [4]uint64, spare int, rng *rand.Rand) *polish {
	p := &polish{nodes: append([]gate(nil), c.g[len(inputTT):]...), want: want, rng: rng}
	for k, l := range outs {
		p.out[k] = l.signal()
	}
	for range spare {
		n := len(inputTT) + len(p.nodes)
		p.nodes = append(p.nodes, gate{opAnd + rng.Intn(4), rng.Intn(n), rng.Intn(n)})
	}
	p.tt = make([]uint64, len(inputTT)+len(p.nodes))
	p.live = make([]bool, len(p.nodes))
	return p
}

// score returns how many output bits are wrong (complements count as right) and marks
// and counts the live gates.
func (p *polish) score(nodes []gate, out [4]int) (wrong, live int) {
	copy(p.tt, inputTT[:])
	for i, n := range nodes {
		p.tt[len(inputTT)+i] = eval(n.op, p.tt[n.a], p.tt[n.b])
	}
	clear(p.live)
	mark := func(s int) {
		if s >= len(inputTT) {
			p.live[s-len(inputTT)] = true
		}
	}
	for k, s := range out {
		d := bits.OnesCount64(p.tt[s] ^ p.want[k])
		wrong += min(d, 64-d)
		mark(s)
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		if p.live[i] {
			live++
			mark(nodes[i].a)
			mark(nodes[i].b)
		}
	}
	return wrong, live
}

// mutate changes genes at random until one that matters (of a live gate or an output).
func (p *polish) mutate(nodes []gate, out *[4]int, live []bool) {
	for {
		r := p.rng.Intn(3*len(nodes) + len(out))
		if r >= 3*len(nodes) {
			out[r-3*len(nodes)] = p.rng.Intn(len(inputTT) + len(nodes))
			return
		}
		i := r / 3
		n := &nodes[i]
		switch r % 3 {
		case 0:
			n.op = opAnd + p.rng.Intn(4)
		case 1:
			n.a = p.rng.Intn(len(inputTT) + i)
		case 2:
			n.b = p.rng.Intn(len(inputTT) + i)
		}
		if live[i] {
			return
		}
	}
}

func (p *polish) run(generations int) {
	_, best := p.score(p.nodes, p.out)
	parentLive := append([]bool(nil), p.live...)
	child := make([]gate, len(p.nodes))
	for range generations {
		copy(child, p.nodes)
		out := p.out
		for range 1 + p.rng.Intn(3) {
			p.mutate(child, &out, parentLive)
		}
		if wrong, live := p.score(child, out); wrong == 0 && live <= best {
			p.nodes, child = child, p.nodes
			p.out, best = out, live
			copy(parentLive, p.live)
		}
	}
}

// circuit returns the live gates as a circuit and the outputs with their polarity.
func (p *polish) circuit() (*circuit, []lit) {
	p.score(p.nodes, p.out)
	c := newCircuit()
	index := make(map[int]int) // polish signal -> circuit signal
	for i := range len(inputTT) {
		index[i] = i
	}
	for i, n := range p.nodes {
		if p.live[i] {
			l := c.add(n.op, index[n.a], index[n.b])
			index[len(inputTT)+i] = l.signal()
		}
	}
	outs := make([]lit, len(p.out))
	for k, s := range p.out {
		l := lit(2 * index[s])
		neg, _ := match(c.val(l), p.want[k], ^uint64(0))
		outs[k] = l ^ neg
	}
	return c, outs
}
