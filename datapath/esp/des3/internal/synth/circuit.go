package main

// Gate kinds of the search. It treats complements as free (polarity.go later picks
// which signals to store complemented), so these four cover all ten two-input
// functions that depend on both inputs, up to complement.
const (
	opInput = iota
	opAnd
	opOr
	opXor
	opAndNot // a &^ b
)

type gate struct{ op, a, b int }

func eval(op int, a, b uint64) uint64 {
	switch op {
	case opAnd:
		return a & b
	case opOr:
		return a | b
	case opXor:
		return a ^ b
	}
	return a &^ b
}

// A truth table is a uint64: bit x is the function's value for the S-box input x
// (x's bit 5 is the first input bit b1).
var inputTT = func() (t [6]uint64) {
	for i := range t {
		for x := 0; x < 64; x++ {
			if x>>(5-i)&1 == 1 {
				t[i] |= 1 << x
			}
		}
	}
	return t
}()

// lit is a signal reference: 2*index + 1 if complemented.
type lit int

func (l lit) signal() int { return int(l >> 1) }

// circuit is a list of signals, the six inputs first, each gate only reading earlier ones.
type circuit struct {
	tt []uint64
	g  []gate
}

func newCircuit() *circuit {
	c := new(circuit)
	for i, t := range inputTT {
		c.tt = append(c.tt, t)
		c.g = append(c.g, gate{opInput, i, i})
	}
	return c
}

func (c *circuit) gates() int { return len(c.g) - len(inputTT) }

func (c *circuit) val(l lit) uint64 {
	if l&1 == 1 {
		return ^c.tt[l>>1]
	}
	return c.tt[l>>1]
}

func (c *circuit) add(op, a, b int) lit {
	c.tt = append(c.tt, eval(op, c.tt[a], c.tt[b]))
	c.g = append(c.g, gate{op, a, b})
	return lit(2 * (len(c.tt) - 1))
}

// truncate forgets the gates added since the circuit had n signals.
func (c *circuit) truncate(n int) { c.tt, c.g = c.tt[:n], c.g[:n] }

// and returns x & y with one gate, whatever the polarities of x and y.
func (c *circuit) and(x, y lit) lit {
	a, b := x.signal(), y.signal()
	switch x&1<<1 | y&1 {
	case 0:
		return c.add(opAnd, a, b)
	case 1:
		return c.add(opAndNot, a, b)
	case 2:
		return c.add(opAndNot, b, a)
	}
	return c.add(opOr, a, b) ^ 1 // ~a & ~b
}

func (c *circuit) xor(x, y lit) lit {
	return c.add(opXor, x.signal(), y.signal()) ^ (x^y)&1
}
