package main

import "math/rand"

// match tells whether v, or its complement, equals f wherever care is set.
func match(v, f, care uint64) (neg lit, ok bool) {
	switch {
	case (v^f)&care == 0:
		return 0, true
	case (^v^f)&care == 0:
		return 1, true
	}
	return 0, false
}

// existing finds a signal already computing f on care.
func (c *circuit) existing(f, care uint64) (lit, bool) {
	for i, t := range c.tt {
		if neg, ok := match(t, f, care); ok {
			return lit(2*i) ^ neg, true
		}
	}
	return 0, false
}

// oneGate finds a gate over two existing signals computing f on care, without adding it.
func (c *circuit) oneGate(f, care uint64) (g gate, neg lit, ok bool) {
	for i, ti := range c.tt {
		for j := i + 1; j < len(c.tt); j++ {
			tj := c.tt[j]
			for _, cand := range [...]struct {
				g gate
				v uint64
			}{
				{gate{opAnd, i, j}, ti & tj},
				{gate{opOr, i, j}, ti | tj},
				{gate{opXor, i, j}, ti ^ tj},
				{gate{opAndNot, i, j}, ti &^ tj},
				{gate{opAndNot, j, i}, tj &^ ti},
			} {
				if neg, ok := match(cand.v, f, care); ok {
					return cand.g, neg, true
				}
			}
		}
	}
	return gate{}, 0, false
}

func (c *circuit) addOneGate(f, care uint64) (lit, bool) {
	g, neg, ok := c.oneGate(f, care)
	if !ok {
		return 0, false
	}
	return c.add(g.op, g.a, g.b) ^ neg, true
}

// twoGates finds f = p AND h or f = p XOR h (any polarities) with p an existing signal and
// h one new gate; h only needs to be right where p does not already decide f.
func (c *circuit) twoGates(f, care uint64) (lit, bool) {
	for i := range c.tt {
		for p := lit(2 * i); p <= lit(2*i+1); p++ {
			pv := c.val(p)
			for fn := lit(0); fn <= 1; fn++ {
				fv := f
				if fn == 1 {
					fv = ^f
				}
				if fv&^pv&care != 0 {
					continue
				}
				if h, ok := c.addOneGate(fv, care&pv); ok {
					return c.and(p, h) ^ fn, true
				}
			}
		}
		if h, ok := c.addOneGate(f^c.tt[i], care); ok {
			return c.xor(lit(2*i), h), true
		}
	}
	return 0, false
}

// decomposition builds several output functions into one circuit by Shannon decomposition on a
// shared select input: f = f0 ^ (g & s), where f0 only has to be right where s is 0 and
// g = f ^ f0 only where s is 1. Building all targets' halves together lets them share
// gates; before decomposing, each target is looked up among existing signals and one-
// and two-gate combinations of them. The select is the cheapest by trial in the first
// lookahead levels, below them the most promising (see promising), ties broken at
// random; the caller keeps the best of many trials.
type decomposition struct {
	c         *circuit
	rng       *rand.Rand
	lookahead int // levels at which every select is tried and the cheapest kept
}

func (s *decomposition) build(fs []uint64, care uint64, depth int) []lit {
	res := make([]lit, len(fs))
	var open []int
	for i, f := range fs {
		if l, ok := s.c.existing(f, care); ok {
			res[i] = l
		} else {
			open = append(open, i)
		}
	}
	s.rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
	// Cheap matches first, one at a time, since each new gate may serve another target.
	for _, cheap := range []func(f, care uint64) (lit, bool){s.c.addOneGate, s.c.twoGates} {
		for progress := true; progress && len(open) > 0; {
			progress = false
			for j, i := range open {
				if l, ok := cheap(fs[i], care); ok {
					res[i] = l
					open = append(open[:j], open[j+1:]...)
					progress = true
					break
				}
			}
		}
	}
	if len(open) == 0 {
		return res
	}
	var selects []lit
	for i, t := range inputTT {
		if care&t != 0 && care&^t != 0 {
			selects = append(selects, lit(2*i), lit(2*i+1))
		}
	}
	s.rng.Shuffle(len(selects), func(i, j int) { selects[i], selects[j] = selects[j], selects[i] })
	var sel lit
	if depth < s.lookahead {
		n, best := len(s.c.tt), 1<<30
		for _, cand := range selects {
			s.decompose(fs, open, res, care, cand, depth+1)
			if cost := len(s.c.tt) - n; cost < best {
				sel, best = cand, cost
			}
			s.c.truncate(n)
		}
	} else {
		sel = s.promising(fs, open, care, selects)
	}
	s.decompose(fs, open, res, care, sel, depth+1)
	return res
}

// promising returns the select (the first among equals) under which most targets' first
// halves already exist or are one gate away.
func (s *decomposition) promising(fs []uint64, open []int, care uint64, selects []lit) lit {
	best, bestScore := selects[0], -1
	for _, sel := range selects {
		half := care &^ s.c.val(sel)
		score := 0
		for _, i := range open {
			if _, ok := s.c.existing(fs[i], half); ok {
				score += 2
			} else if _, _, ok := s.c.oneGate(fs[i], half); ok {
				score++
			}
		}
		if score > bestScore {
			best, bestScore = sel, score
		}
	}
	return best
}

func (s *decomposition) decompose(fs []uint64, open []int, res []lit, care uint64, sel lit, depth int) {
	sv := s.c.val(sel)
	sub := make([]uint64, len(open))
	for j, i := range open {
		sub[j] = fs[i]
	}
	f0 := s.build(sub, care&^sv, depth)
	for j, i := range open {
		sub[j] = fs[i] ^ s.c.val(f0[j])
	}
	g := s.build(sub, care&sv, depth)
	for j, i := range open {
		res[i] = s.c.xor(f0[j], s.c.and(g[j], sel))
	}
}
