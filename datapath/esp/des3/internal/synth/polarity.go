package main

import (
	"math"
	"math/rand"
)

// Instructions of the netlist: a two-input function of stored signals. Go compiles and,
// or and xor to one amd64 instruction, andnot to one with BMI1 (GOAMD64=v3) and to two
// (NOT, AND) without; the complemented forms need a NOT on top.
const (
	insAnd = iota
	insOr
	insXor
	insAndNot // a &^ b
	insNand
	insNor
	insXnor
	insOrNot // a | ^b
)

var insNames = [...]string{"and", "or", "xor", "andnot", "nand", "nor", "xnor", "ornot"}

// insTable is each instruction's truth table, bit 2a+b being its value for operands a, b.
var insTable = [...]byte{0b1000, 0b1110, 0b0110, 0b0100, 0b0111, 0b0001, 0b1001, 0b1101}

// insCost counts amd64 instructions without BMI1, plus a tenth for a NOT that BMI1 does
// not save either, so that among equally short choices the best one with BMI1 wins.
var insCost = [...]float64{1, 1, 1, 2, 2.1, 2.1, 2.1, 2.1}

// instruction is one netlist line: signal = op(a, b), all stored signals.
type instruction struct{ op, a, b int }

// lower picks the instruction that computes gate g from its stored operands, given which
// of the operands (pa, pb) and the result (po) are held complemented. ~a&b becomes
// andnot with the operands exchanged, ~a|b likewise ornot.
func lower(g gate, pa, pb, po bool) instruction {
	var table byte
	for a := range uint64(2) {
		for b := range uint64(2) {
			v := eval(g.op, -(a^b2u(pa)), -(b^b2u(pb)))&1 ^ b2u(po)
			table |= byte(v) << (2*a + b)
		}
	}
	swapped := table&0b1001 | table>>1&0b0010 | table<<1&0b0100
	for op, t := range insTable {
		switch {
		case t == table:
			return instruction{op, g.a, g.b}
		case t == swapped:
			return instruction{op, g.b, g.a}
		}
	}
	panic("gate ignores an operand")
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// assignPolarity chooses which signals the code holds complemented (true) so that the
// gates lower to the cheapest instructions. Any signal may be complemented: a gate
// absorbs it by changing instruction, and the cipher folds complemented S-box inputs
// and outputs into its round keys. Simulated annealing over single flips.
func assignPolarity(c *circuit, rng *rand.Rand, steps int) []bool {
	n := len(c.g)
	readers := make([][]int, n)
	for i := len(inputTT); i < n; i++ {
		readers[c.g[i].a] = append(readers[c.g[i].a], i)
		readers[c.g[i].b] = append(readers[c.g[i].b], i)
	}
	pol := make([]bool, n)
	cost := func(i int) float64 {
		g := c.g[i]
		return insCost[lower(g, pol[g.a], pol[g.b], pol[i]).op]
	}
	around := func(i int) float64 { // the cost that flipping signal i can change
		sum := 0.0
		if i >= len(inputTT) {
			sum += cost(i)
		}
		for _, r := range readers[i] {
			sum += cost(r)
		}
		return sum
	}
	total := 0.0
	for i := len(inputTT); i < n; i++ {
		total += cost(i)
	}
	best, bestPol := total, append([]bool(nil), pol...)
	for step := range steps {
		temp := 1 - float64(step)/float64(steps)
		i := rng.Intn(n)
		before := around(i)
		pol[i] = !pol[i]
		delta := around(i) - before
		if delta > 0 && rng.Float64() >= math.Exp(-delta/temp) {
			pol[i] = !pol[i]
			continue
		}
		if total += delta; total < best-1e-9 {
			best = total
			copy(bestPol, pol)
		}
	}
	return bestPol
}
